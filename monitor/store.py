"""Bounded per-run storage of metric points: full resolution recently, min/max-preserving history before.

A month-long run must not grow memory without bound: each metric keeps its last `recent` points
as they are and folds older ones into buckets that keep each bucket's first step, min and max
(so a spike is never averaged away). When the buckets fill up, neighbours merge and the bucket
width doubles. Values are stored in `array('d')`, 8 bytes each.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from monitor.model import Row


class MetricSeries:
    """One metric's points: a recent full-resolution window plus downsampled history."""

    __slots__ = ("_h_max", "_h_min", "_h_step", "_history", "_recent", "_steps", "_values", "count", "last")

    def __init__(self, recent: int = 4096, history: int = 2048) -> None:
        self._recent = recent
        self._history = history
        self._steps = array("d")
        self._values = array("d")
        self._h_step = array("d")
        self._h_min = array("d")
        self._h_max = array("d")
        self.count = 0
        """Points ever appended."""
        self.last = math.nan
        """Most recent value."""

    def append(self, step: float, value: float) -> None:
        self._steps.append(step)
        self._values.append(value)
        self.count += 1
        self.last = value
        if len(self._steps) > 2 * self._recent:
            self._fold()

    def _fold(self) -> None:
        # Fold the oldest `recent` points into buckets of the current width.
        n = self._recent
        steps, values = self._steps[:n], self._values[:n]
        del self._steps[:n]
        del self._values[:n]
        width = max(1, self.bucket_width)
        for i in range(0, n, width):
            chunk = values[i : i + width]
            finite = [v for v in chunk if v - v == 0.0]
            lo = min(finite) if finite else math.nan
            hi = max(finite) if finite else math.nan
            if len(finite) < len(chunk):
                # Keep the fact that a non-finite value happened here.
                hi = math.nan
            self._h_step.append(steps[i])
            self._h_min.append(lo)
            self._h_max.append(hi)
        while len(self._h_step) > self._history:
            self._merge_history()

    def _merge_history(self) -> None:
        hs, lo, hi = self._h_step, self._h_min, self._h_max
        m = len(hs) // 2 * 2
        new_s, new_lo, new_hi = array("d"), array("d"), array("d")
        for i in range(0, m, 2):
            new_s.append(hs[i])
            new_lo.append(_nanmin(lo[i], lo[i + 1]))
            a, b = hi[i], hi[i + 1]
            new_hi.append(math.nan if a != a or b != b else max(a, b))
        if m < len(hs):
            new_s.append(hs[m])
            new_lo.append(lo[m])
            new_hi.append(hi[m])
        self._h_step, self._h_min, self._h_max = new_s, new_lo, new_hi

    @property
    def bucket_width(self) -> int:
        """Points per history bucket now (grows as history merges)."""
        if not self._h_step:
            return 1
        return max(1, round(self._history_points() / len(self._h_step)))

    def _history_points(self) -> int:
        return self.count - len(self._steps)

    def recent(self) -> tuple[np.ndarray, np.ndarray]:
        """The full-resolution window: (steps, values)."""
        return np.frombuffer(self._steps, dtype=float).copy(), np.frombuffer(self._values, dtype=float).copy()

    def series(self) -> tuple[np.ndarray, np.ndarray]:
        """Everything held, oldest first: history as (min, max) pairs, then the recent window."""
        if not self._h_step:
            return self.recent()
        hs = np.frombuffer(self._h_step, dtype=float)
        steps = np.concatenate([np.repeat(hs, 2), np.frombuffer(self._steps, dtype=float)])
        hv = np.empty(2 * len(hs))
        hv[0::2] = np.frombuffer(self._h_min, dtype=float)
        hv[1::2] = np.frombuffer(self._h_max, dtype=float)
        return steps, np.concatenate([hv, np.frombuffer(self._values, dtype=float)])

    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return 8 * (len(self._steps) * 2 + len(self._h_step) * 3)


def _nanmin(a: float, b: float) -> float:
    if a != a:
        return b
    if b != b:
        return a
    return a if a < b else b


class RunStore:
    """All metric series of one run, the times rows arrived, and the tail of its log."""

    def __init__(self, recent: int = 4096, history: int = 2048, log_lines: int = 500) -> None:
        self._recent = recent
        self._history = history
        self.metrics: dict[str, MetricSeries] = {}
        self.times: deque[tuple[float, float]] = deque(maxlen=recent)
        """(step, time) of recent rows, for wall-clock x-axes and steps/s."""
        self.log_tail: deque[str] = deque(maxlen=log_lines)
        self.last_step: float | None = None
        self.rows = 0

    def add(self, row: Row, now: float) -> None:
        """Store one row; `now` stands in for rows without their own time."""
        metrics = self.metrics
        step = row.step
        for key, value in row.values.items():
            s = metrics.get(key)
            if s is None:
                s = metrics[key] = MetricSeries(self._recent, self._history)
            s.append(step, value)
        self.times.append((step, row.time if row.time is not None else now))
        if self.last_step is None or step > self.last_step:
            self.last_step = step
        self.rows += 1

    def add_many(self, rows: Iterable[Row], now: float) -> None:
        for row in rows:
            self.add(row, now)

    def add_log_lines(self, lines: Iterable[str]) -> None:
        self.log_tail.extend(lines)

    def last(self, key: str) -> float | None:
        """Latest value of a metric, if it was ever logged."""
        s = self.metrics.get(key)
        return s.last if s is not None else None

    def steps_per_second(self) -> float | None:
        """Recent speed from the arrival times of rows (None until two distinct times exist)."""
        if len(self.times) < 2:
            return None
        (s0, t0), (s1, t1) = self.times[0], self.times[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        return (s1 - s0) / (t1 - t0)

    def points(self) -> Iterator[tuple[str, float, float]]:
        """Every held point as (key, step, value), for `metrics.csv` in evidence bundles."""
        for key, s in self.metrics.items():
            steps, values = s.series()
            for st, v in zip(steps.tolist(), values.tolist(), strict=True):
                yield key, st, v

    def nbytes(self) -> int:
        return sum(s.nbytes() for s in self.metrics.values())
