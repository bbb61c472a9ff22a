"""Average-meter console logs: the PyTorch ImageNet example and its descendants (MoCo, SwAV, SimCLR
ports), DINO / DeiT / MAE `MetricLogger` lines and timm's `train.py`.

Each field prints the latest value and a running average, `Loss 4.51 (4.62)` or
`loss: 10.92 (10.93)`: the value is the metric, the average is not (it lags and hides spikes).
"""

from __future__ import annotations

import re
from typing import ClassVar

from monitor.model import Row
from monitor.parsers.base import Parser

_NUM = r"[-+]?(?:nan|inf|\d++\.?\d*+(?:e[-+]?\d++)?|\.\d++(?:e[-+]?\d++)?)"
# `Epoch: [12][150/196]` (ImageNet example, MoCo, SwAV), `Epoch: [0/100]  [  10/1251]` and
# `Epoch: [0]  [  10/5004]` (DINO, DeiT, MAE), `Train: 0 [  10/1251 (  1%)]` (timm).
_HEAD = re.compile(
    r"(?:Epoch:?\s*\[\s*(\d+)(?:\s*/\s*\d+)?\s*\]|Train:\s*(\d+))\s*\[\s*(\d+)\s*/\s*(\d+)",
)
# Swin Transformer: `Train: [0/300][10/1251]`, or `Train: [3/5]` alone in scripts that log per epoch.
_SWIN = re.compile(r"Train:\s*\[\s*(\d+)\s*/\s*\d+\s*\](?:\s*\[\s*(\d+)\s*/\s*(\d+)\s*\])?")
# One field: a name, an optional colon, the value (a unit `s` and a `, 38.89/s` rate allowed), and
# the running average in parentheses, which is skipped.
_FIELD = re.compile(
    rf"(?<![\w@/.\-])([A-Za-z][\w@/.\-]*+(?: [a-z]+(?=:))?):?[ \t]++({_NUM})s?(?:,\s*[\d.]+/s)?"
    rf"(?:\s*\(\s*({_NUM})s?(?:,\s*[\d.]+/s)?\s*\))?",
    re.I,
)
# The evaluation summary: ` * Acc@1 49.164 Acc@5 73.468` (DeiT adds `loss 0.812`).
_SUMMARY = re.compile(r"^\s*\*\s+(?:Acc@1|Acc1|Prec@1|acc1)\b", re.I)
_SKIP = frozenset({"eta", "Epoch", "Train", "Test"})
# timm's evaluation progress: `Test: [  78/78]  Time: ...  Loss:  4.53 (4.57)  Acc@1:  6.25 ( 1.97)`.
_TEST = re.compile(r"Test:\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]")
_TIMING = frozenset({"Time", "Data", "time", "data"})


class MeterLogParser(Parser):
    """Meter lines: every `Name value (average)` or `name: value` field, keys as printed (`Loss`,
    `Acc@1`, `Lr`, `Time`, `Data`, `loss`, `lr`, `wd`, ...), the value and never the average.

    Step: the global iteration, `epoch × iterations_per_epoch + iteration` (epochs counted from 0,
    as these scripts print them). `Test: [...]` progress lines are skipped; the ` * Acc@1 ...`
    summary after an evaluation gives `val/Acc@1`, `val/Acc@5` (and `val/loss`) at the latest step,
    and so does timm's last `Test: [ N/N]` line (from its averages: the evaluation's results).
    """

    name: ClassVar[str] = "meters"
    description: ClassVar[str] = "average-meter logs: ImageNet example, MoCo, SwAV, DINO/DeiT MetricLogger, timm"
    sample: ClassVar[str] = (
        "Epoch: [0][  10/1307]\tTime  0.779 ( 5.211)\tData  0.000 ( 0.060)\tLoss 2.3915e+01 (1.5221e+01)"
        "\tAcc@1   0.00 (  5.68)\tAcc@5  12.50 ( 27.27)"
    )

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "iteration (epoch × iterations_per_epoch + batch)"
        self._last = 0.0

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        n = 0
        for line in head:
            if ("Epoch" in line or "Train:" in line) and "(" in line:
                m = _HEAD.search(line) or _SWIN.search(line)
                if m and any("(" in f.group(0) for f in _FIELD.finditer(line, m.end())):
                    n += 1
        return 0.0 if not n else min(0.95, 0.86 + 0.02 * n)

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        m = _HEAD.search(line) if ("Epoch" in line or "Train:" in line) else None
        if m is None and "Train: [" in line:
            return self._swin(line)
        if m is None:
            if "Validate:" in line:  # a per-epoch validation line: its averages are the results
                i = line.index("Validate:") + 9
                values = {"val/" + k: float(a) for k, v, a in _FIELD.findall(line, i) if a and k not in _TIMING}
                if values:
                    stats.metric_lines += 1
                    return [Row(self._last, values)]
            t = _TEST.search(line) if "Test:" in line else None
            if t and int(t.group(2)) - int(t.group(1)) in (0, 1) and int(t.group(2)) > 1:
                # the last evaluation batch (timm counts to N, MetricLogger to N-1): the running
                # averages are the evaluation's results
                values = {"val/" + k: float(a) for k, v, a in _FIELD.findall(line, t.end()) if a and k not in _TIMING}
                if values:
                    stats.metric_lines += 1
                    return [Row(self._last, values)]
            if "*" in line and _SUMMARY.match(line):
                values = {"val/" + k: float(v) for k, v, _ in _FIELD.findall(line)}
                if values:
                    stats.metric_lines += 1
                    return [Row(self._last, values)]
            stats.noise += 1
            return []
        epoch = float(m.group(1) or m.group(2))
        step = epoch * float(m.group(4)) + float(m.group(3))
        values = {k: float(v) for k, v, _ in _FIELD.findall(line, m.end()) if k not in _SKIP}
        if not values:
            stats.noise += 1
            return []
        values["epoch"] = epoch
        self._last = step
        stats.metric_lines += 1
        return [Row(step, values)]

    def _swin(self, line: str) -> list[Row]:
        """A Swin-style `Train: [e/E][i/n]` line (global iteration), or `Train: [e/E]` (then the axis
        is epochs)."""
        stats = self.stats
        m = _SWIN.search(line)
        values = {k: float(v) for k, v, _ in _FIELD.findall(line, m.end()) if k not in _SKIP} if m else {}
        if m is None or not values:
            stats.noise += 1
            return []
        epoch = float(m.group(1))
        if m.group(2) is not None:
            step = epoch * float(m.group(3)) + float(m.group(2))
        else:
            step = epoch
            self.step_key, self.axis = "epoch", "epoch"
        values["epoch"] = epoch
        self._last = step
        stats.metric_lines += 1
        return [Row(step, values)]
