"""Console logs that print a step header and then one metric per line: OLMo and MosaicML Composer.

Each metric line becomes a row at the step of the latest header, so a live tail reports it at once
(rather than waiting for the next header to close the block).
"""

from __future__ import annotations

import re
from typing import ClassVar

from monitor.model import Row
from monitor.parsers.base import Parser

_NUM = r"[-+]?(?:nan|inf|\d[\d,]*+\.?\d*+(?:[eE][-+]?\d++)?|\.\d++(?:[eE][-+]?\d++)?)"

# `[step=120/739328,epoch=0]`, `[step=1/739328]`, `[step=15000/30000, eta=1 hour, 2 minutes]`.
_OLMO_HEAD = re.compile(r"\[step=(\d+)(?:/(\d+))?(?:,\s*epoch=(\d+))?")
# `    train/CrossEntropyLoss=7.41`, `    System/Peak GPU Memory (MB)=42,133`.
_OLMO_METRIC = re.compile(rf"^\s+([A-Za-z][^=]*?)=\s*({_NUM})\s*$", re.I)


def _number(text: str) -> float:
    """A printed number, thousands separators allowed (`83,461`)."""
    return float(text.replace(",", ""))


class OLMoParser(Parser):
    """OLMo (and OLMo-core) trainer console logs: a `[step=N/TOTAL,epoch=E]` header line, then
    indented `name=value` lines (`train/CrossEntropyLoss=7.41`, `train/Perplexity=83,461`,
    `throughput/total_tokens=4,194,304`, `eval/.../CrossEntropyLoss=...`).

    Keys as printed; numbers may carry thousands separators. Step: the header's step (optimizer
    steps); its TOTAL is the planned length and its epoch is kept as the `epoch` metric.
    """

    name: ClassVar[str] = "olmo"
    description: ClassVar[str] = "OLMo console log ([step=N/T,epoch=E] then indented name=value lines)"
    sample: ClassVar[str] = (
        "[2024-04-17 09:42:26] INFO     [olmo.train:816, rank=0] [step=1/739328]\n    train/CrossEntropyLoss=11.25"
    )

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "step"
        self._step: float | None = None

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        headers = sum(1 for line in head if "[step=" in line and _OLMO_HEAD.search(line))
        metrics = sum(1 for line in head if line[:1] in (" ", "\t") and "=" in line and _OLMO_METRIC.match(line))
        if headers and metrics:
            return min(0.96, 0.88 + 0.01 * (headers + metrics))
        return 0.0

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        if "[step=" in line:
            m = _OLMO_HEAD.search(line)
            if m:
                self._step = float(m.group(1))
                if m.group(2):
                    self.total_steps = float(m.group(2))
                if m.group(3):
                    stats.metric_lines += 1
                    return [Row(self._step, {"epoch": float(m.group(3))})]
                stats.noise += 1
                return []
        if self._step is None or line[:1] not in (" ", "\t") or "=" not in line:
            stats.noise += 1
            return []
        m = _OLMO_METRIC.match(line)
        if m is None:
            stats.noise += 1
            return []
        stats.metric_lines += 1
        return [Row(self._step, {m.group(1).strip(): _number(m.group(2))})]


# `[batch=1/100]:`, `[epoch=1][batch=16/100]:`, `0: [batch=1/300000000]:`.
_COMPOSER_HEAD = re.compile(r"\[batch=(\d+)(?:/(\d+))?\]")
# `Train LanguageCrossEntropy: 10.9736`, `Eval metrics/eval/LanguageCrossEntropy: 0.0154`.
_COMPOSER_METRIC = re.compile(rf"\b(Train|Eval) ([^\s:]+): ({_NUM})(?![\w.])", re.I)


class ComposerParser(Parser):
    """MosaicML Composer console logs: a `[batch=N/TOTAL]:` (or `[epoch=E][batch=N/TOTAL]:`) header
    and `Train name: value` / `Eval name: value` fields on the following lines or on the same line.

    Keys as printed without the `Train ` / `Eval ` word (`LanguageCrossEntropy`, `loss/train/total`,
    `metrics/train/LanguagePerplexity`); eval keys get an `eval/` prefix unless they name eval
    already. Composer's `time/*` counters are not metrics. Step: the header's batch.
    """

    name: ClassVar[str] = "composer"
    description: ClassVar[str] = "MosaicML Composer console log ([batch=N/T]: then Train/Eval name: value)"
    sample: ClassVar[str] = "[batch=1/100]:\n         Train LanguageCrossEntropy: 10.9736"

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "batch"
        self._step = 0.0

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        headers = sum(1 for line in head if "[batch=" in line and _COMPOSER_HEAD.search(line))
        metrics = sum(1 for line in head if ("Train " in line or "Eval " in line) and _COMPOSER_METRIC.search(line))
        if headers and metrics:
            return min(0.96, 0.88 + 0.01 * (headers + metrics))
        return 0.0

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        if "[batch=" in line:
            m = _COMPOSER_HEAD.search(line)
            if m:
                self._step = float(m.group(1))
                if m.group(2):
                    self.total_steps = float(m.group(2))
        values: dict[str, float] = {}
        if "Train " in line or "Eval " in line:
            for phase, key, num in _COMPOSER_METRIC.findall(line):
                if key.startswith("time/"):
                    continue
                if phase.lower() == "eval" and "eval" not in key.lower():
                    key = "eval/" + key
                values[key] = _number(num)
        if not values:
            stats.noise += 1
            return []
        stats.metric_lines += 1
        return [Row(self._step, values)]
