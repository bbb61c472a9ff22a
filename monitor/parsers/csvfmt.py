"""CSV with a header: generic, Lightning CSVLogger `metrics.csv` (sparse rows), YOLOv5 `results.csv`."""

from __future__ import annotations

import csv
from typing import ClassVar

from monitor.model import Row
from monitor.parsers.base import Parser
from monitor.parsers.common import STEP_KEYS, to_float

#: Columns holding wall-clock epoch seconds rather than a metric.
_TIME_COLUMNS = ("_timestamp", "timestamp")


def _split(line: str) -> list[str]:
    """Cells of one CSV line; the csv module only when quoting makes a plain split wrong."""
    if '"' in line:
        try:
            return next(csv.reader([line]), [])
        except csv.Error:  # a field past the csv module's size limit: split plainly
            pass
    return line.split(",")


class CSVParser(Parser):
    """Any CSV whose first line is a header; one row per data line.

    Cells are stripped (YOLOv5 pads to width 20); empty cells are "not logged" (Lightning writes
    step, epoch and validation metrics on different sparse rows); `nan` cells are NaN values; other
    non-numeric cells are skipped. Step column: the first of `step`, `global_step`, `iteration`,
    `iter`, `epoch`, `_step` present, else the data-row number. Keys are the header names.
    """

    name: ClassVar[str] = "csv"
    description: ClassVar[str] = "CSV with a header (Lightning metrics.csv, YOLOv5 results.csv, ...)"
    sample: ClassVar[str] = "epoch,train_loss,eval_loss,eval_top1,eval_top5,lr"

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "row"
        self._header: list[str] | None = None
        self._columns: list[tuple[int, str]] = []
        self._step_col: int | None = None
        self._time_col: int | None = None
        self._rows = 0

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        lines = [line for line in head if line.strip()]
        if not lines:
            return 0.0
        header = [c.strip() for c in _split(lines[0])]
        if len(header) < 2 or any(to_float(c) is not None for c in header if c):
            return 0.0
        by_name = 0.9 if filename.lower().endswith(".csv") else 0.0
        data = lines[1:]
        if not data:
            return by_name or 0.3
        same = sum(1 for line in data if len(_split(line)) == len(header))
        cells = [c for c in _split(data[0]) if c.strip()]
        numeric = sum(1 for c in cells if to_float(c) is not None)
        if same >= 0.9 * len(data) and cells and numeric >= 0.5 * len(cells):
            return max(by_name, 0.85)
        return by_name * 0.8

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        if not line or line.isspace():
            stats.noise += 1
            return []
        cells = _split(line)
        if self._header is None:
            self._set_header([c.strip() for c in cells])
            stats.noise += 1
            return []
        if len(cells) != len(self._header):
            if any(to_float(c) is not None for c in cells):
                stats.count_malformed(line)
            else:
                stats.noise += 1  # text in a CSV stream (a banner, a warning), not a broken row
            return []
        self._rows += 1
        step = float(self._rows)
        if self._step_col is not None:
            parsed = to_float(cells[self._step_col])
            if parsed is None:
                if cells[self._step_col].strip() == self._header[self._step_col]:
                    stats.noise += 1  # the header again, written by a resumed run
                else:
                    stats.count_malformed(line)
                return []
            step = parsed
        values: dict[str, float] = {}
        for i, name in self._columns:
            cell = cells[i]
            if cell:
                try:
                    values[name] = float(cell)
                except ValueError:
                    continue
        if not values:
            stats.noise += 1
            return []
        stats.metric_lines += 1
        time = to_float(cells[self._time_col]) if self._time_col is not None else None
        return [Row(step, values, time)]

    def _set_header(self, header: list[str]) -> None:
        self._header = header
        for key in STEP_KEYS:
            if key in header:
                self._step_col = header.index(key)
                self.step_key = key
                self.axis = "epoch" if key == "epoch" else "step"
                break
        for key in _TIME_COLUMNS:
            if key in header:
                self._time_col = header.index(key)
                break
        skip = {self._step_col, self._time_col}
        self._columns = [(i, name) for i, name in enumerate(header) if i not in skip and name]
