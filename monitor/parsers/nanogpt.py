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
            if line.startswith("tokens per iteration will be:"):  # train.py's header: the tokens axis
                n = leading_float(line.rpartition(":")[2].strip().replace(",", ""))
                if n is not None and n > 0:
                    self.config["tokens_per_iter"] = int(n)
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


# `step    1/19560 | loss 11.009662 (+nanz)| norm 15.0789 (+nanz)| lr 8.57e-07 | 4230.95 ms | 31.9% bf16 MFU | ...`
_GPT2CU_STEP = re.compile(r"^step\s+(\d+)/(\d+) \|")
_GPT2CU_FIELD = re.compile(r"^\s*([A-Za-z][\w/]*)\s+([-+]?(?:nan|inf|\d++\.?\d*+(?:[eE][-+]?\d++)?))\b", re.I)
_GPT2CU_UNIT = re.compile(
    r"^\s*([-+]?(?:nan|inf|\d++\.?\d*+(?:[eE][-+]?\d++)?))\s*(ms|% bf16 MFU|% fp16 MFU|% fp32 MFU|tok/s)", re.I
)
_GPT2CU_UNIT_KEYS = {"ms": "step_ms", "tok/s": "tok/s"}
_HELLASWAG = re.compile(r"HellaSwag: \d+/\d+ = ([\d.]+)")


class LlmcStdoutParser(Parser):
    """llm.c `train_gpt2cu` stdout: `step N/TOTAL | loss X (+nanz)| norm Y (+nanz)| lr Z | T ms | M% bf16 MFU |
    R tok/s`, `val loss X` after each evaluation and `HellaSwag: a/b = acc`.

    Keys as in `llmc` (`main.log`): `train_loss`, `grad_norm`, `lr`, `val_loss`, plus `step_ms`, `mfu`
    (%), `tok/s` and `hellaswag`. Step: llm.c's step; TOTAL is the planned length. Eval lines take
    the latest step.
    """

    name: ClassVar[str] = "llmc-stdout"
    description: ClassVar[str] = "llm.c train_gpt2cu stdout (step N/T | loss X | norm Y | lr Z | ...)"
    sample: ClassVar[str] = (
        "step    1/19560 | loss 11.009662 (+nanz)| norm 15.0789 (+nanz)| lr 8.57e-07 | 4230.95 ms | "
        "31.9% bf16 MFU | 123917 tok/s"
    )

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "step"
        self._step = 0.0

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        return _hits(head, _GPT2CU_STEP)

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        values: dict[str, float] = {}
        m = _GPT2CU_STEP.match(line) if line.startswith("step") else None
        if m:
            self._step = float(m.group(1))
            self.total_steps = float(m.group(2))
            for field in line[m.end() :].split("|"):
                f = _GPT2CU_FIELD.match(field)
                if f:
                    key = f.group(1)
                    values[_LLMC_KEYS.get(key, "train_loss" if key == "loss" else key)] = float(f.group(2))
                    continue
                u = _GPT2CU_UNIT.match(field)
                if u:
                    unit = u.group(2)
                    values[_GPT2CU_UNIT_KEYS.get(unit, "mfu")] = float(u.group(1))
        elif line.startswith("val loss "):
            x = leading_float(line[9:].strip())
            if x is not None:
                values["val_loss"] = x
        elif "HellaSwag: " in line:
            h = _HELLASWAG.search(line)
            if h:
                values["hellaswag"] = float(h.group(1))
        if not values:
            stats.noise += 1
            return []
        stats.metric_lines += 1
        if self.total_steps is not None and self._step >= self.total_steps:
            self.finished = True
        return [Row(self._step, values)]


# `0 train 10.955010`, `250 val 6.2648`, `250 hella 0.2448`
_BUILD_LINE = re.compile(r"^(\d+) (train|val|hella) ([-+]?(?:nan|inf|\d++\.?\d*+(?:[eE][-+]?\d++)?))\s*$", re.I)
_BUILD_KEYS = {"train": "train_loss", "val": "val_loss", "hella": "hellaswag"}


class BuildNanoGPTParser(Parser):
    """build-nanogpt's `log/log.txt`: `STEP train LOSS`, `STEP val LOSS`, `STEP hella ACC` lines.

    Keys: `train_loss`, `val_loss`, `hellaswag` (accuracy). Step: the step printed first.
    """

    name: ClassVar[str] = "build-nanogpt"
    description: ClassVar[str] = "build-nanogpt log.txt (STEP train|val|hella VALUE)"
    sample: ClassVar[str] = "0 train 10.955010"

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "step"

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        lines = [line for line in head if line.strip()]
        n = sum(1 for line in lines if _BUILD_LINE.match(line))
        return 0.0 if not n or n < 0.8 * len(lines) else min(0.95, 0.86 + 0.02 * n)

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        m = _BUILD_LINE.match(line)
        if m is None:
            stats.noise += 1
            return []
        stats.metric_lines += 1
        return [Row(float(m.group(1)), {_BUILD_KEYS[m.group(2).lower()]: float(m.group(3))})]
