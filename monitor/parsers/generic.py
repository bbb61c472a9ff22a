"""The fallback format: `key=value` / `key: value` pairs anywhere on a line."""

from __future__ import annotations

import re
from typing import ClassVar

from monitor.model import Row
from monitor.parsers.base import Parser
from monitor.parsers.common import KeyedSteps

# A number may carry a short unit (`12ms`, `45%`); a following letter, digit or dot means it was part
# of a word or a version string, not a value. `nan`/`inf` take no unit (`info`, `nano` are words).
_PAIR = re.compile(
    r"([A-Za-z_][\w./\-]*)\s*[=:]\s*"
    r"(?:([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?:%|[A-Za-z]{1,3})?"
    r"|([-+]?(?:nan|inf(?:inity)?)))(?![\w.])",
    re.IGNORECASE,
)


class KeyValueParser(Parser):
    """Generic `step=10 loss=2.3 lr=1e-4` or `epoch: 1, loss: 0.5` lines; tokens that are not numbers
    are ignored. Step: the first step-like key (`step`, `global_step`, `iteration`, `iter`, `epoch`,
    ...) seen, kept as the axis; else a running count of metric lines.
    """

    name: ClassVar[str] = "kv"
    description: ClassVar[str] = "generic key=value / key: value lines (fallback)"

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "line"
        self._steps = KeyedSteps()

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        lines = [line for line in head if line.strip()]
        if not lines:
            return 0.0
        rich = sum(1 for line in lines if len(_PAIR.findall(line)) >= 2)
        return 0.4 * rich / len(lines)

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        pairs = _PAIR.findall(line)
        if not pairs:
            stats.noise += 1
            return []
        values: dict[str, float] = {}
        for key, number, special in pairs:
            values.setdefault(key, float(number or special))
        step = self._steps.take(values)
        if self._steps.key is not None:
            self.step_key = self._steps.key
        if not values:
            stats.noise += 1
            return []
        stats.metric_lines += 1
        self._steps.last = step
        return [Row(step, values)]
