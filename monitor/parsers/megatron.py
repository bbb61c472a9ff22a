"""Megatron-LM / Megatron-DeepSpeed / NeMo console logs: `iteration N/TOTAL | key: value | ...` lines."""

from __future__ import annotations

import math
import re
from typing import ClassVar

import numpy as np

from monitor.columns import Columns, keyed_columns
from monitor.model import Row
from monitor.parsers.base import Parser

_ITER_LINE = re.compile(r"iteration\s+\d+\s*/\s*\d+\s*\|")
_ITER_NUMBER = re.compile(r"\s*(\d+)")

# Building the NamedTuple through tuple.__new__ skips its Python-level __new__: half the cost, per line.
_new_row = tuple.__new__


class MegatronParser(Parser):
    """Megatron iteration lines and `validation loss at iteration N | lm loss value: ...` lines.

    Keys are the field names as printed (`lm loss`, `learning rate`, `grad norm`, `loss scale`,
    `elapsed time per iteration (ms)`, ...); validation keys are prefixed `val/` (`val/lm loss`,
    `val/lm loss PPL`), or `test/` for the test set. NeMo 2's `Training epoch E, iteration I/T | ...`
    lines are read the same way, with the step taken from their `global_step` field.
    """

    name: ClassVar[str] = "megatron"
    description: ClassVar[str] = "Megatron-LM / Megatron-DeepSpeed / NeMo iteration lines"
    sample: ClassVar[str] = (
        " iteration    29020/  311541 | consumed samples:     10698064 | elapsed time per iterati"
        "on (ms): 22306.6 | learning rate: 9.850E-05 | global batch size:  1024 | lm loss: 2.7759"
        "23E+00 | loss scale: 32768.0 | grad norm: 0.000 |"
    )

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "iteration"
        self._last_step = 0.0
        self._total_text = ""
        self._total = math.inf

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        hits = sum(1 for line in head if "iteration" in line and _ITER_LINE.search(line))
        hits += sum(1 for line in head if "validation loss at " in line and "|" in line)
        return 0.0 if not hits else min(0.97, 0.9 + 0.02 * hits)

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        i = line.find("iteration")
        if i < 0:
            if "validation loss at " in line and "|" in line:
                return self._validation(line, None)
            if line.startswith("[after training is done]"):
                self.finished = True
            stats.noise += 1
            return []
        if line[i - 3 : i] == "at ":
            return self._validation(line, i)
        j = line.find("|", i)
        if j < 0:
            stats.noise += 1
            return []
        num, slash, total = line[i + 9 : j].partition("/")
        try:
            step = iteration = float(num)
        except ValueError:
            # "(after 10 iterations) memory (MB) | ..." and the like mention iterations but are not rows
            if _ITER_NUMBER.match(num):
                stats.count_malformed(line)
            else:
                stats.noise += 1
            return []
        if slash and total != self._total_text:
            self._total_text = total
            try:
                self.total_steps = self._total = float(total)
            except ValueError:
                pass
        values = _fields(line, j + 1)
        gs = values.get("global_step")
        if gs is not None:  # NeMo: the step itself, not a metric (it would only plot a straight line)
            step = gs
            self.step_key = "global_step"
            del values["global_step"]
        if not values:
            stats.count_malformed(line)
            return []
        stats.metric_lines += 1
        self._last_step = step
        if iteration >= self._total:
            self.finished = True
        return [_new_row(Row, (step, values, None))]

    def feed_text(self, text: str) -> list[Columns] | None:
        """Whole lines of text (ending in a newline) parsed column-wise, or None to go line by line.

        Backfilling a long log is dominated by per-line work: when every line of the chunk is a
        plain iteration line with the first line's layout, the chunk is split once, the layout
        checked with C-level list operations, and each column converted in one `map`. Anything
        unusual (rank prefixes, validation lines, colour codes, a changed layout) returns None.
        """
        n = text.count("\n")
        if (
            n < 2
            or not text.startswith(" iteration ")
            or text.count("\n iteration ") != n - 1
            or text.count("|\n") != n
            or "\r" in text
            or "\x1b" in text
            or "global_step" in text
        ):
            return None
        line0 = text[: text.index("\n")]
        keys = tuple(_fields(line0, line0.find("|") + 1))
        k = len(keys)
        stride = 1 + 2 * k
        parts = text.replace(" |\n", ": ").replace(" | ", ": ").split(": ")
        if k == 0 or len(parts) != n * stride + 1:
            return None
        try:
            cols = keyed_columns(parts, keys, 1, stride, n)
            if cols is None:
                return None
            heads = parts[0:-1:stride]
            steps = [float(h[10 : h.index("/")]) for h in heads]
        except ValueError:
            return None
        total = heads[-1][heads[-1].index("/") + 1 :]
        if total != self._total_text:
            self._total_text = total
            try:
                self.total_steps = self._total = float(total)
            except ValueError:
                pass
        st = self.stats
        st.lines += n
        st.metric_lines += n
        self._last_step = steps[-1]
        if steps[-1] >= self._total:
            self.finished = True
        return [Columns(keys, np.array(steps, dtype=float), np.column_stack(cols), None)]

    def _validation(self, line: str, i: int | None) -> list[Row]:
        """`validation loss at iteration N [on validation set] | lm loss value: X | lm loss PPL: Y |`."""
        stats = self.stats
        head, _, rest = line.partition("|")
        step = self._last_step
        if i is not None:
            m = _ITER_NUMBER.match(line, i + 9)
            if m:
                step = float(m.group(1))
        prefix = "test/" if "test set" in head else "val/"
        values = {}
        for key, x in _fields(rest, 0).items():
            if key.endswith(" value"):
                key = key[:-6]
            values[prefix + key] = x
        if not values:
            stats.count_malformed(line)
            return []
        stats.metric_lines += 1
        return [Row(step, values)]


def _fields(line: str, start: int) -> dict[str, float]:
    """The numeric `key: value` fields of `line[start:]`, the part after the first bar.

    Megatron prints `' {key}: {value} |'` per field, so after turning `' | '` into `': '` one split
    yields alternating keys and values; `dict(zip(...))` then does the work in C. Anything unusual
    (a value that is not a number, a colon inside a key) falls back to reading field by field.
    """
    if line.startswith(" ", start):
        start += 1
    body = line[start:-1] if line.endswith("|") else line[start:].rstrip().rstrip("|")
    parts = body.replace(" | ", ": ").split(": ")
    if not len(parts) & 1:
        try:
            pairs = iter(parts)  # zip takes a key, map the value after it: no slicing
            return dict(zip(pairs, map(float, pairs)))  # noqa: B905 - the length was checked
        except ValueError:
            pass
    values: dict[str, float] = {}
    for field in body.split("|"):
        key, colon, text = field.rpartition(":")
        if not colon:
            continue
        try:
            values[key.strip()] = float(text)
        except ValueError:
            continue
    return values
