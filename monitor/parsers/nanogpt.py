"""Karpathy-lineage console logs: nanoGPT, llm.c `main.log` and the modded-nanogpt speedrun."""

from __future__ import annotations

import math
import re
from typing import ClassVar

from monitor.model import Row
from monitor.parsers.base import Parser
from monitor.parsers.common import is_timing_key, leading_float


def _hits(head: list[str], pattern: re.Pattern[str]) -> float:
    """Sniff score from how many head lines match `pattern`."""
    n = sum(1 for line in head if pattern.match(line))
    return 0.0 if not n else min(0.95, 0.85 + 0.02 * n)


class NanoGPTParser(Parser):
    """nanoGPT: `iter N: loss X, time Yms, mfu Z%` (train) and `step N: train loss X, val loss Y` (eval).

    Keys as printed: `loss`, `time` (ms), `mfu` (%) on train lines; `train loss`, `val loss` on eval
    lines. `mfu -100.00%` is nanoGPT's "not measured yet" sentinel and is dropped.
    """

    name: ClassVar[str] = "nanogpt"
    description: ClassVar[str] = "nanoGPT console log (iter N: loss ..., step N: train loss ...)"
    sample: ClassVar[str] = "iter 0: loss 4.2709, time 10268.08ms, mfu -100.00%"
    _LINE = re.compile(r"(?:iter|step) \d+: (?:loss|train loss) ")

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "iter"

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        return _hits(head, cls._LINE)

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        if not (line.startswith("iter ") or line.startswith("step ")):
            stats.noise += 1
            return []
        head, _, rest = line.partition(":")
        try:
            step = float(head[5:])
        except ValueError:
            stats.noise += 1
            return []
        values: dict[str, float] = {}
        for field in rest.split(","):
            key, _, text = field.strip().rpartition(" ")
            x = leading_float(text)
            if not key or x is None:
                continue
            if key == "mfu" and x == -100.0:
                continue
            if not math.isfinite(x) and is_timing_key(key):
                continue
            values[key] = x
        if not values:
            stats.count_malformed(line)
            return []
        stats.metric_lines += 1
        return [Row(step, values)]


#: llm.c's abbreviations, spelled out so that loss detectors recognise them.
_LLMC_KEYS = {"trl": "train_loss", "tel": "val_loss", "norm": "grad_norm", "lr": "lr"}


class LlmcParser(Parser):
    """llm.c `main.log`: `s:N trl:X lr:Y norm:Z` and `s:N tel:X`.

    Keys: `train_loss` (trl), `val_loss` (tel), `lr`, `grad_norm` (norm); others as printed.
    """

    name: ClassVar[str] = "llmc"
    description: ClassVar[str] = "llm.c main.log (s:N trl:X lr:Y norm:Z / s:N tel:X)"
    sample: ClassVar[str] = "s:0 trl:11.0091 lr:0.000001 norm:15.37"
    _LINE = re.compile(r"s:\d+ \w+:")

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "step"  # llm.c prints it as `s:`

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        score = _hits(head, cls._LINE)
        return min(1.0, score + 0.02) if score and filename.endswith("main.log") else score

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        if not line.startswith("s:"):
            stats.noise += 1
            return []
        tokens = line.split()
        try:
            step = float(tokens[0][2:])
        except ValueError:
            stats.noise += 1
            return []
        values: dict[str, float] = {}
        for tok in tokens[1:]:
            key, colon, text = tok.partition(":")
            if not colon:
                continue
            try:
                values[_LLMC_KEYS.get(key, key)] = float(text)
            except ValueError:
                continue
        if not values:
            stats.count_malformed(line)
            return []
        stats.metric_lines += 1
        return [Row(step, values)]


class ModdedNanoGPTParser(Parser):
    """modded-nanogpt: `step:N/TOTAL train_loss:X train_time:Yms step_avg:Zms` and `... val_loss:X ...`.

    Keys as printed (`train_loss`, `val_loss`, `train_time` and `step_avg` in ms). A non-finite value
    in a timing field (`step_avg:nanms` on the first steps) means "not measured" and is dropped.
    """

    name: ClassVar[str] = "modded-nanogpt"
    description: ClassVar[str] = "modded-nanogpt speedrun log (step:N/T train_loss:X ...)"
    sample: ClassVar[str] = "step:1/6200 train_loss:10.9184 train_time:74701ms step_avg:nanms"
    _LINE = re.compile(r"step:\d+/\d+ \w+:")

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "step"

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        return _hits(head, cls._LINE)

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        if not line.startswith("step:"):
            stats.noise += 1
            return []
        tokens = line.split()
        num, slash, total = tokens[0][5:].partition("/")
        try:
            step = float(num)
        except ValueError:
            stats.noise += 1
            return []
        if slash:
            try:
                self.total_steps = float(total)
            except ValueError:
                pass
        values: dict[str, float] = {}
        for tok in tokens[1:]:
            key, colon, text = tok.partition(":")
            if not colon:
                continue
            x = leading_float(text)
            if x is None or (not math.isfinite(x) and is_timing_key(key)):
                continue
            values[key] = x
        if not values:
            stats.count_malformed(line)
            return []
        stats.metric_lines += 1
        if self.total_steps is not None and step >= self.total_steps:
            self.finished = True
        return [Row(step, values)]
