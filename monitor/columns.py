"""Rows regrouped column-wise: consecutive rows with the same keys become one `Columns` block.

Backfilling a long log is dominated by per-value work; blocks let the store extend arrays in one
call per key and the detectors walk one metric at a time, and they cross process boundaries as
a few numpy arrays (cheap to pickle) instead of millions of small dicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import NamedTuple

import numpy as np

from monitor.model import Row


class Columns(NamedTuple):
    """Rows sharing their keys: `steps[i]` and `values[i, j]` = row i's value of `keys[j]`."""

    keys: tuple[str, ...]
    steps: np.ndarray
    values: np.ndarray
    times: np.ndarray | None

    def rows(self) -> list[Row]:
        """Back to rows (for callers that want them)."""
        keys = self.keys
        times = self.times.tolist() if self.times is not None else [None] * len(self.steps)
        return [
            Row(s, dict(zip(keys, vals, strict=True)), t)
            for s, vals, t in zip(self.steps.tolist(), self.values.tolist(), times, strict=True)
        ]


def to_columns(rows: Sequence[Row]) -> list[Columns]:
    """Group consecutive rows with the same key set into `Columns` blocks, order kept."""
    out: list[Columns] = []
    n = len(rows)
    start = 0
    while start < n:
        keys = rows[start].values.keys()
        end = start + 1
        while end < n and rows[end].values.keys() == keys:
            end += 1
        out.append(_block(rows[start:end], tuple(keys)))
        start = end
    return out


def _block(run: Sequence[Row], keys: tuple[str, ...]) -> Columns:
    dicts = [r.values for r in run]
    if len(keys) == 1:
        values = np.fromiter(map(itemgetter(keys[0]), dicts), dtype=float, count=len(dicts)).reshape(-1, 1)
    elif keys:
        values = np.array(list(map(itemgetter(*keys), dicts)), dtype=float)
    else:
        values = np.empty((len(dicts), 0))
    steps = np.fromiter((r.step for r in run), dtype=float, count=len(run))
    times = None
    if run[0].time is not None or run[-1].time is not None:
        times = np.array([r.time if r.time is not None else np.nan for r in run], dtype=float)
    return Columns(keys, steps, values, times)


def float_column(texts: list[str]) -> np.ndarray:
    """One field's values from their texts (ValueError if one is not a number): a column that repeats
    one string (batch size, skipped-iteration counts, a steady loss scale) is converted once."""
    first = texts[0]
    if texts.count(first) == len(texts):
        return np.full(len(texts), float(first))
    return np.array(list(map(float, texts)), dtype=float)


def keyed_columns(parts: list[str], keys: Sequence[str], first: int, stride: int, n: int) -> list[np.ndarray] | None:
    """The value columns of `n` records split into `parts`, `stride` parts a record, each holding
    `key, value` pairs from part `first` on: None unless every record has `keys` in that order, and
    ValueError if a value is not a number."""
    for j, key in enumerate(keys):
        if parts[first + 2 * j :: stride].count(key) != n:
            return None
    return [float_column(parts[first + 2 * j + 1 :: stride]) for j in range(len(keys))]
