"""PyTorch examples `word_language_model` logs: `| epoch 1 | 200/ 2983 batches | lr ... | loss ... |`."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from monitor.model import Row
from monitor.parsers.base import Parser

_LINE = re.compile(r"\| (?:epoch +\d+ \| +\d+/ *\d+ batches|end of epoch +\d+ \||End of training \|)")
_NAMESPACE_ITEM = re.compile(r"(\w+)=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^,()]*)")


def parse_namespace(text: str) -> dict[str, Any]:
    """`Namespace(a=1, b='x', c=True)` → `{"a": 1, "b": "x", "c": True}`, best effort."""
    out: dict[str, Any] = {}
    body = text[text.find("(") + 1 : text.rfind(")")] if "(" in text else text
    for key, raw in _NAMESPACE_ITEM.findall(body):
        raw = raw.strip()
        value: Any = raw
        if raw[:1] in ("'", '"') and raw[-1:] == raw[:1]:
            value = raw[1:-1]
        elif raw in ("True", "False"):
            value = raw == "True"
        elif raw == "None":
            value = None
        else:
            try:
                value = int(raw)
            except ValueError:
                try:
                    value = float(raw)
                except ValueError:
                    pass
        out[key] = value
    return out


class WordLMParser(Parser):
    """word_language_model: batch lines, end-of-epoch validation lines and the final test line.

    Step is the global batch: `(epoch-1)*batches_per_epoch + batch` on batch lines and
    `epoch*batches_per_epoch` on end-of-epoch lines. Keys: `lr`, `ms/batch`, `loss`, `ppl`, `time`
    (epoch seconds), `valid loss`, `valid ppl`, `test loss`, `test ppl`.
    """

    name: ClassVar[str] = "wordlm"
    description: ClassVar[str] = "PyTorch examples word_language_model log"
    sample: ClassVar[str] = (
        "| epoch   1 |   200/ 2983 batches | lr 20.0000 | ms/batch 11.77 | loss  9.09 | ppl  8835.03"
    )

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "global batch ((epoch-1)*batches_per_epoch + batch)"
        self._per_epoch: float | None = None
        self._last_step = 0.0

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        n = sum(1 for line in head if line.startswith("| ") and _LINE.match(line))
        return 0.0 if not n else min(0.96, 0.88 + 0.02 * n)

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        if not line.startswith("| "):
            if line.startswith("Namespace("):
                self.config.update(parse_namespace(line))
                self._update_total()
            stats.noise += 1
            return []
        fields = [f.strip() for f in line.split("|")[1:]]
        first = fields[0]
        try:
            if first.startswith("epoch"):
                step = self._batch_step(float(first[5:]), fields[1])
                rest = fields[2:]
            elif first.startswith("end of epoch"):
                epoch = float(first[12:])
                step = epoch * self._per_epoch if self._per_epoch else self._last_step
                rest = fields[1:]
            elif first.startswith("End of training"):
                step = self._last_step
                self.finished = True
                rest = fields[1:]
            else:
                stats.noise += 1
                return []
        except ValueError:
            stats.count_malformed(line)
            return []
        values: dict[str, float] = {}
        for field in rest:
            key, _, text = field.rpartition(" ")
            key = key.rstrip(" :")
            if text.endswith("s") and key == "time":
                text = text[:-1]
            try:
                values[key] = float(text)
            except ValueError:
                continue
        if not values:
            stats.count_malformed(line)
            return []
        stats.metric_lines += 1
        self._last_step = step
        return [Row(step, values)]

    def _batch_step(self, epoch: float, batches: str) -> float:
        """Global batch from `epoch` and a `200/ 2983 batches` field; learns batches per epoch."""
        done, _, of = batches.partition("/")
        per_epoch = float(of.split()[0])
        if per_epoch != self._per_epoch:
            self._per_epoch = per_epoch
            self._update_total()
        return (epoch - 1) * per_epoch + float(done)

    def _update_total(self) -> None:
        epochs = self.config.get("epochs")
        if self._per_epoch and isinstance(epochs, int | float):
            self.total_steps = float(epochs) * self._per_epoch
