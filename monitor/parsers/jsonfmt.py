"""JSON Lines: one JSON object per line (nested objects flattened with `/`)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from monitor.model import Row
from monitor.parsers.base import Parser, ParseStats
from monitor.parsers.common import TIME_KEYS, KeyedSteps

#: Below this a "time" value is a duration, not epoch seconds (1e8 s is March 1973).
_EPOCH_SECONDS_MIN = 1e8


def flatten(obj: dict[str, Any], prefix: str = "", out: dict[str, float] | None = None) -> dict[str, float]:
    """Numeric leaves of a nested dict as `{"a/b": 1.0}`; booleans, strings and lists are left out."""
    if out is None:
        out = {}
    for key, value in obj.items():
        name = prefix + str(key)
        if isinstance(value, dict):
            flatten(value, name + "/", out)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def json_line_values(stats: ParseStats, line: str) -> dict[str, float] | None:
    """One JSON-object line, flattened; None (counted as noise or malformed) when it is not one."""
    stats.lines += 1
    text = line.strip()
    if not text.startswith("{"):
        stats.noise += 1
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        stats.count_malformed(line)
        return None
    if not isinstance(obj, dict):
        stats.noise += 1
        return None
    return flatten(obj)


class JSONLParser(Parser):
    """One JSON object per line; every numeric leaf is a metric.

    Step: the first of `step`, `global_step`, `train/global_step`, `trainer/global_step`,
    `iteration`, `iter`, `epoch`, `_step` found; once chosen it stays the axis, and lines without it
    take the latest step. Time: `_timestamp`, `timestamp` or `time` when it looks like epoch seconds.
    """

    name: ClassVar[str] = "jsonl"
    description: ClassVar[str] = "JSON Lines (one object per line)"
    sample: ClassVar[str] = '{"step": 120, "train/loss": 2.31, "lr": 0.0003}'

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "line"
        self._steps = KeyedSteps()

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        lines = [line.strip() for line in head if line.strip()]
        if not lines:
            return 0.0
        sample = lines[:50]
        objects = 0
        for line in sample:
            if line.startswith("{") and line.endswith("}"):
                try:
                    objects += isinstance(json.loads(line), dict)
                except (ValueError, RecursionError):
                    pass
        by_name = 0.9 if filename.lower().endswith((".jsonl", ".ndjson")) else 0.0
        if (objects >= 2 and objects >= 0.6 * len(sample)) or objects == len(sample):
            return max(by_name, 0.85)
        return by_name * 0.8 if objects else 0.0

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        values = json_line_values(stats, line)
        if values is None:
            return []
        step = self._steps.take(values)
        if self._steps.key is not None:
            self.step_key = self._steps.key
            self.axis = "epoch" if self._steps.key == "epoch" else "step"
        time = None
        for key in TIME_KEYS:
            t = values.get(key)
            if t is not None and t > _EPOCH_SECONDS_MIN:
                time = values.pop(key)
                break
        if not values:
            stats.noise += 1
            return []
        stats.metric_lines += 1
        self._steps.last = step
        return [Row(step, values, time)]
