"""Keras `model.fit` console output (Keras 2 and 3, verbose 1 or 2).

    Epoch 3/10
    1875/1875 - 4s - loss: 0.4103 - accuracy: 0.8515 - val_loss: 0.3987 - val_accuracy: 0.8559
    938/938 [==============================] - 9s 10ms/step - loss: 0.0982 - accuracy: 0.9690 - ...
    1875/1875 ━━━━━━━━━━━━━━━━━━━━ 4s 2ms/step - accuracy: 0.8 - loss: 0.5 - val_accuracy: ...

(`CSVLogger` files are CSV with an `epoch` column: the `csv` format reads them, whatever their name.)
"""

from __future__ import annotations

import re
from typing import ClassVar

from monitor.model import Row
from monitor.parsers.base import Parser

_NUM = r"[-+]?(?:nan|inf|\d++\.?\d*+(?:[eE][-+]?\d++)?)"
_EPOCH = re.compile(r"^\s*Epoch (\d+)/(\d+)\s*$")
_BATCH = re.compile(r"^\s*(\d+)/(\d+)\b")
_PAIR = re.compile(rf"(?:^|\s)-\s+([A-Za-z_][\w/.]*): ({_NUM})(?![\w.])", re.I)


class KerasParser(Parser):
    """Keras progress output. Keys as printed (`loss`, `accuracy`, `val_loss`, `val_accuracy`, ...).

    Axis: epochs. The line that ends an epoch (`N/N ...`) gives the epoch's values at step = the
    epoch number; a progress line part-way (`300/1875 ... - loss: ...`, the running average so far)
    is kept at its fraction of the epoch (epoch 2.16 = 16 % into the third epoch), so a NaN shows
    before the epoch ends.
    """

    name: ClassVar[str] = "keras"
    description: ClassVar[str] = "Keras model.fit output (Epoch N/M then ... - loss: x - val_loss: y)"
    sample: ClassVar[str] = (
        "Epoch 1/10\n1875/1875 - 4s - loss: 0.5850 - accuracy: 0.7926 - val_loss: 0.4463 - val_accuracy: 0.8377"
    )

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "epoch"
        self.axis = "epoch"
        self._epoch = 0.0

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        epochs = sum(1 for line in head if line.lstrip().startswith("Epoch ") and _EPOCH.match(line))
        metrics = sum(1 for line in head if " - " in line and _BATCH.match(line) and _PAIR.search(line))
        if epochs and metrics:
            return min(0.96, 0.88 + 0.01 * (epochs + metrics))
        return 0.0

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        if "Epoch " in line:
            m = _EPOCH.match(line)
            if m:
                self._epoch = float(m.group(1))
                self.total_steps = float(m.group(2))
                stats.noise += 1
                return []
        if " - " not in line or not self._epoch:
            stats.noise += 1
            return []
        values = {k: float(v) for k, v in _PAIR.findall(line)}
        if not values:
            stats.noise += 1
            return []
        step = self._epoch
        b = _BATCH.match(line)
        if b and "ETA" in line:
            done, total = float(b.group(1)), float(b.group(2))
            if total and done < total:
                step = self._epoch - 1 + done / total
        if self.total_steps is not None and step >= self.total_steps:
            self.finished = True
        stats.metric_lines += 1
        return [Row(step, values)]
