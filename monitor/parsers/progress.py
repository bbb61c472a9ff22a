"""Logs whose metrics ride on a progress line: NeMo (Lightning's tqdm postfix and NeMo 2's
`Training epoch 0, iteration 10/99 | ...` lines) and torchtune (`1|52|Loss: 2.36` bars and its
`Step 52 | loss:2.36 lr:2e-05 ...` stdout logger)."""

from __future__ import annotations

import re
from typing import ClassVar

from monitor.model import Row
from monitor.parsers.base import Parser
from monitor.parsers.common import to_float

_NUM = r"[-+]?(?:nan|inf|\d++\.?\d*+(?:[eE][-+]?\d++)?)"
# The tqdm postfix holding the metrics: `[00:31<00:00,  1.27it/s, loss=10.9, ..., global_step=39.00, ...]`.
_POSTFIX = re.compile(r"\[[^\[\]]*global_step=[^\[\]]*\]")
_NEMO2 = re.compile(r"Training epoch (\d+), iteration (\d+)/(\d+)\s*\|(.*)")
_NEMO_SNIFF = re.compile(r"reduced_train_loss[=:]|Training epoch \d+, iteration \d+/\d+ \|")


class NeMoParser(Parser):
    """NeMo training output. Keys as printed (`reduced_train_loss`, `val_loss`, `lr`, `grad_norm`
    or `gradient_norm`, `consumed_samples`, `train_step_timing in s`, ...); Lightning's smoothed
    `loss` and the `v_num` tag are dropped. Step: `global_step` (optimizer steps).
    """

    name: ClassVar[str] = "nemo"
    description: ClassVar[str] = "NeMo progress lines (reduced_train_loss=..., global_step=...)"
    sample: ClassVar[str] = (
        "Epoch 0: : 100%|██████████| 50/50 [16:26<00:00, v_num=gjbq, reduced_train_loss=11.70, "
        "global_step=49.00, consumed_samples=12600.0, train_step_timing in s=12.80]"
    )

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "global_step"
        self._last: float | None = None

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        n = sum(
            1
            for line in head
            if ("reduced_train_loss" in line or "Training epoch" in line) and _NEMO_SNIFF.search(line)
        )
        return 0.0 if not n else min(0.96, 0.89 + 0.01 * n)

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        values: dict[str, float] = {}
        if "global_step=" in line:
            postfixes = _POSTFIX.findall(line)
            if postfixes:  # the last postfix on the line is the latest redraw
                for item in postfixes[-1][1:-1].split(","):
                    key, eq, text = item.partition("=")
                    x = to_float(text) if eq else None
                    if x is not None:
                        values[key.strip()] = x
        elif "Training epoch" in line:
            m2 = _NEMO2.search(line)
            if m2:
                for item in m2.group(4).split("|"):
                    key, colon, text = item.partition(":")
                    x = to_float(text) if colon else None
                    if x is not None:
                        values[key.strip()] = x
                values.setdefault("global_step", float(m2.group(2)))
                self.total_steps = float(m2.group(3))
        for key in ("loss", "v_num"):
            values.pop(key, None)
        step = values.pop("global_step", None)
        if not values:
            stats.noise += 1
            return []
        if step is None:
            step = self._last or 0.0
        self._last = step
        stats.metric_lines += 1
        return [Row(step, values)]


# `1|52|Loss: 2.3697006702423096`: the epoch (from 1), the global step and the step's loss.
_TUNE_BAR = re.compile(rf"(?<![\d|])(\d+)\|(\d+)\|Loss: ({_NUM})", re.I)
# `Step 52 | loss:2.36 lr:2e-05 tokens_per_second_per_gpu:1139.7`.
_TUNE_STEP = re.compile(r"^\s*Step (\d+) \| (\S+:\S+(?: \S+:\S+)*)\s*$")


class TorchtuneParser(Parser):
    """torchtune recipes: the progress bar `EPOCH|STEP|Loss: X` and the stdout metric logger
    `Step N | name:value name:value ...`. Keys: `loss` (bar), others as printed. Step: torchtune's
    global step."""

    name: ClassVar[str] = "torchtune"
    description: ClassVar[str] = "torchtune progress bar (1|52|Loss: x) and stdout logger (Step N | loss:x lr:y)"
    sample: ClassVar[str] = (
        "1|52|Loss: 2.3697006702423096:   0%|▏                     | 52/25880 [00:24<3:55:01,  1.83it/s]"
    )

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "step"

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        n = sum(
            1
            for line in head
            if ("|Loss: " in line and _TUNE_BAR.search(line)) or (line.startswith("Step ") and _TUNE_STEP.match(line))
        )
        return 0.0 if not n else min(0.95, 0.88 + 0.02 * n)

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        if "|Loss: " in line:
            # a captured bar may hold several redraws on one line: each is one step
            bars = [
                Row(float(m.group(2)), {"loss": float(m.group(3)), "epoch": float(m.group(1))})
                for m in _TUNE_BAR.finditer(line)
            ]
            if bars:
                stats.metric_lines += 1
                return bars
        s = _TUNE_STEP.match(line) if "Step " in line else None
        if s is None:
            stats.noise += 1
            return []
        values: dict[str, float] = {}
        for item in s.group(2).split():
            key, _, text = item.partition(":")
            x = to_float(text)
            if x is not None:
                values[key] = x
        if not values:
            stats.count_malformed(line)
            return []
        stats.metric_lines += 1
        return [Row(float(s.group(1)), values)]
