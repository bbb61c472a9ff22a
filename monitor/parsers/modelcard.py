"""The "Training results" table of a Hugging Face model card (the README `Trainer.push_to_hub` writes).

| Training Loss | Epoch | Step | Validation Loss | Accuracy |
|:-------------:|:-----:|:----:|:---------------:|:--------:|
| No log        | 1.0   | 3    | 0.7560          | 0.8260   |
"""

from __future__ import annotations

import re
from typing import ClassVar

from monitor.model import Row
from monitor.parsers.base import Parser
from monitor.parsers.common import to_float

_HEADER = re.compile(r"^\s*\|\s*Training Loss\s*\|.*\|\s*(?:Step|Epoch)\s*\|", re.I)
_RULE = re.compile(r"^\s*\|(?:\s*:?-+:?\s*\|)+\s*$")
#: Columns the card names the same way for every task.
_KNOWN = {"training loss": "Training Loss", "validation loss": "Validation Loss", "epoch": "epoch"}


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


class ModelCardParser(Parser):
    """Rows of the model card's results table; other README text is noise.

    Keys: `Training Loss`, `Validation Loss`, `epoch`, and every other column as `eval/<name>`
    (`eval/Accuracy`, `eval/Wer`, `eval/F1`): the Trainer fills them from its evaluation. A
    `No log` cell (no training loss logged yet at that evaluation) is left out. Step: the `Step`
    column (optimizer steps), else `Epoch` (then the axis is epochs).
    """

    name: ClassVar[str] = "hf-model-card"
    description: ClassVar[str] = "HF model card 'Training results' table (README.md)"
    sample: ClassVar[str] = "| Training Loss | Epoch | Step | Validation Loss | Accuracy |"

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "Step"
        self._keys: list[str] | None = None
        self._step_col: int | None = None
        self._last = 0.0

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        return 0.97 if any("Training Loss" in line and _HEADER.match(line) for line in head) else 0.0

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        if "|" not in line:
            self._keys = None  # the table ended
            stats.noise += 1
            return []
        if "Training Loss" in line and _HEADER.match(line):
            self._header(_cells(line))
            stats.noise += 1
            return []
        if self._keys is None or _RULE.match(line):
            stats.noise += 1
            return []
        cells = _cells(line)
        if len(cells) != len(self._keys):
            stats.count_malformed(line)
            return []
        values: dict[str, float] = {}
        for key, cell in zip(self._keys, cells, strict=True):
            x = to_float(cell)
            if x is not None:
                values[key] = x
        step = values.pop("Step", None) if self._step_col is not None else values.get("epoch")
        if step is None or not values:
            stats.noise += 1
            return []
        self._last = step
        stats.metric_lines += 1
        return [Row(step, values)]

    def _header(self, names: list[str]) -> None:
        keys = []
        for name in names:
            if name.lower() == "step":
                keys.append("Step")
            else:
                keys.append(_KNOWN.get(name.lower(), f"eval/{name}"))
        self._keys = keys
        self._step_col = keys.index("Step") if "Step" in keys else None
        self.step_key = "Step" if self._step_col is not None else "epoch"
        self.axis = "step" if self._step_col is not None else "epoch"
