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
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter

import numpy as np

from monitor.columns import Columns
from monitor.model import Row
from monitor.textsafe import safe_text


class MetricSeries:
    """One metric's points: a recent full-resolution window plus downsampled history."""

    __slots__ = (
        "_h_bad",
        "_h_max",
        "_h_min",
        "_h_step",
        "_history",
        "_limit",
        "_recent",
        "_steps",
        "_values",
        "count",
        "last",
    )

    def __init__(self, recent: int = 4096, history: int = 2048) -> None:
        self._recent = recent
        self._limit = 2 * recent
        self._history = history
        self._steps = array("d")
        self._values = array("d")
        self._h_step = array("d")
        self._h_min = array("d")
        self._h_max = array("d")
        self._h_bad = array("d")
        """1.0 where a history bucket held a NaN/Inf (its min and max are of the finite values)."""
        self.count = 0
        """Points ever appended."""
        self.last = math.nan
        """Most recent value."""

    def append(self, step: float, value: float) -> None:
        self._steps.append(step)
        self._values.append(value)
        self.count += 1
        self.last = value
        if len(self._steps) > self._limit:
            self._fold()

    def extend(self, steps: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray) -> None:
        """Append many points at once (the store's batched path)."""
        # Through numpy: converting a list of floats there is several times faster than array.extend.
        self._steps.frombytes(np.asarray(steps, dtype=float).tobytes())
        self._values.frombytes(np.asarray(values, dtype=float).tobytes())
        self.count += len(values)
        self.last = values[-1]
        while len(self._steps) > self._limit:
            self._fold()

    def _fold(self) -> None:
        # Fold the oldest `recent` points into buckets of the current width (vectorised: this runs
        # once per `recent` points of every metric).
        n = self._recent
        steps = np.frombuffer(self._steps, dtype=float, count=n).copy()
        values = np.frombuffer(self._values, dtype=float, count=n).copy()
        del self._steps[:n]
        del self._values[:n]
        width = max(1, self.bucket_width)
        m = n // width * width
        lo, hi, bad, first = _buckets(values[:m], steps[:m], width)
        if m < n:
            tail = _buckets(values[m:], steps[m:], n - m)
            lo, hi, bad, first = (np.append(a, b) for a, b in zip((lo, hi, bad, first), tail, strict=True))
        self._h_step.frombytes(first.tobytes())
        self._h_min.frombytes(lo.tobytes())
        self._h_max.frombytes(hi.tobytes())
        self._h_bad.frombytes(bad.astype(float).tobytes())
        while len(self._h_step) > self._history:
            self._merge_history()

    def _merge_history(self) -> None:
        # Neighbouring buckets merge pairwise: first step of the pair, min of mins, max of maxes.
        arrays = [np.frombuffer(a, dtype=float) for a in (self._h_step, self._h_min, self._h_max, self._h_bad)]
        m = len(arrays[0]) // 2 * 2
        hs, lo, hi, bad = arrays
        merged = [
            hs[0:m:2],
            np.fmin(lo[0:m:2], lo[1:m:2]),
            np.fmax(hi[0:m:2], hi[1:m:2]),
            np.fmax(bad[0:m:2], bad[1:m:2]),
        ]
        if m < len(hs):
            merged = [np.append(a, full[m]) for a, full in zip(merged, arrays, strict=True)]
        self._h_step, self._h_min, self._h_max, self._h_bad = (array("d", a.tobytes()) for a in merged)

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
        """Everything held, oldest first: history as (min, max) pairs (plus a NaN where a bucket held
        a non-finite value), then the recent window."""
        if not self._h_step:
            return self.recent()
        hs = np.frombuffer(self._h_step, dtype=float)
        bad = np.frombuffer(self._h_bad, dtype=float) > 0
        per = 2 + bad.astype(int)
        steps = np.repeat(hs, per)
        hv = np.empty(len(steps))
        ends = np.cumsum(per)
        starts = ends - per
        hv[starts] = np.frombuffer(self._h_min, dtype=float)
        hv[starts + 1] = np.frombuffer(self._h_max, dtype=float)
        hv[(starts + 2)[bad]] = np.nan
        return (
            np.concatenate([steps, np.frombuffer(self._steps, dtype=float)]),
            np.concatenate([hv, np.frombuffer(self._values, dtype=float)]),
        )

    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return 8 * (len(self._steps) * 2 + len(self._h_step) * 4)


def _buckets(
    values: np.ndarray, steps: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per bucket of `width` points: finite min, finite max, whether a non-finite value was inside, first step."""
    v = values.reshape(-1, width)
    finite = np.isfinite(v)
    lo = np.where(finite, v, np.inf).min(axis=1)
    hi = np.where(finite, v, -np.inf).max(axis=1)
    none = ~finite.any(axis=1)
    lo[none] = np.nan
    hi[none] = np.nan
    return lo, hi, ~finite.all(axis=1), steps.reshape(-1, width)[:, 0]


class RunStore:
    """All metric series of one run, the times rows arrived, and the tail of its log.

    Rows are buffered and folded into the per-metric arrays in batches (consecutive rows with the
    same keys become one array extend per key), which costs a fraction of appending value by value.
    Every reader goes through a property or method that folds the buffer first.
    """

    _FLUSH_ROWS = 4096

    def __init__(self, recent: int = 4096, history: int = 2048, log_lines: int = 500) -> None:
        self._recent = recent
        self._history = history
        self._metrics: dict[str, MetricSeries] = {}
        self._times: deque[tuple[float, float]] = deque(maxlen=recent)
        self._pending: list[Row] = []
        self._pending_now: list[tuple[int, float]] = []
        self._last_step: float | None = None
        self._rows = 0
        self.log_tail: deque[str] = deque(maxlen=log_lines)
        self.log_lines_added = 0
        """Log lines ever added to `log_tail` (so a reader can tell which of its lines are new)."""

    def add(self, row: Row, now: float) -> None:
        """Store one row; `now` stands in for rows without their own time."""
        self._pending.append(row)
        self._pending_now.append((len(self._pending), now))
        if len(self._pending) >= self._FLUSH_ROWS:
            self._flush()

    def add_many(self, rows: list[Row], now: float) -> None:
        """Store rows that arrived together at `now`."""
        if not rows:
            return
        self._pending.extend(rows)
        self._pending_now.append((len(self._pending), now))
        if len(self._pending) >= self._FLUSH_ROWS:
            self._flush()

    def add_columns(self, blocks: Iterable[Columns], now: float) -> None:
        """Store blocks of rows given column-wise (the backfill path: one array extend per key)."""
        self._flush()
        for block in blocks:
            n = len(block.steps)
            if not n:
                continue
            for j, key in enumerate(block.keys):
                self._series(key).extend(block.steps, block.values[:, j])
            self._rows += n
            tail = block.steps[-self._recent :].tolist()
            times = block.times[-self._recent :].tolist() if block.times is not None else [now] * len(tail)
            self._times.extend(zip(tail, (now if t != t else t for t in times), strict=True))
            top = float(block.steps.max())
            if self._last_step is None or top > self._last_step:
                self._last_step = top

    def _flush(self) -> None:
        rows = self._pending
        if not rows:
            return
        nows = self._pending_now
        self._pending, self._pending_now = [], []
        self._rows += len(rows)
        # Arrival times matter only for the last `recent` rows (steps/s, wall-clock axes).
        first = max(0, len(rows) - self._recent)
        seg = 0
        for i in range(first, len(rows)):
            while nows[seg][0] <= i:
                seg += 1
            r = rows[i]
            self._times.append((r.step, r.time if r.time is not None else nows[seg][1]))
        last = self._last_step
        if not self._fold_uniform(rows):
            start = 0
            keys = rows[0].values.keys()
            for i in range(1, len(rows) + 1):
                if i < len(rows):
                    k = rows[i].values.keys()
                    if k == keys:
                        continue
                self._fold_run(rows[start:i], tuple(keys))
                if i < len(rows):
                    start, keys = i, k
        top = max(r.step for r in rows)
        self._last_step = top if last is None or top > last else last

    def _fold_uniform(self, rows: list[Row]) -> bool:
        """Fold rows that all carry the same keys in one transposition (the common case); False if not."""
        dicts = [r.values for r in rows]
        keys = tuple(dicts[0])
        if not keys or len(set(map(len, dicts))) != 1:
            return False
        try:
            # Same length and every key of the first row present: the same key set.
            cols = (
                list(zip(*map(itemgetter(*keys), dicts), strict=True))
                if len(keys) > 1
                else [list(map(itemgetter(keys[0]), dicts))]
            )
        except KeyError:
            return False
        steps = [r.step for r in rows]
        for key, col in zip(keys, cols, strict=True):
            self._series(key).extend(steps, col)
        return True

    def _fold_run(self, run: list[Row], keys: tuple[str, ...]) -> None:
        steps = [r.step for r in run]
        for key in keys:
            self._series(key).extend(steps, [r.values[key] for r in run])

    def _series(self, key: str) -> MetricSeries:
        series = self._metrics.get(key)
        if series is None:
            series = self._metrics[key] = MetricSeries(self._recent, self._history)
        return series

    @property
    def metrics(self) -> dict[str, MetricSeries]:
        """Every metric's series, by key."""
        self._flush()
        return self._metrics

    @property
    def times(self) -> deque[tuple[float, float]]:
        """(step, time) of recent rows, for wall-clock x-axes and steps/s."""
        self._flush()
        return self._times

    @property
    def last_step(self) -> float | None:
        self._flush()
        return self._last_step

    @property
    def rows(self) -> int:
        """Rows ever stored."""
        return self._rows + len(self._pending)

    def add_log_lines(self, lines: Iterable[str]) -> None:
        """Keep the last lines for the log tail; a line's escapes and controls are shown, never sent raw."""
        got = lines if isinstance(lines, list) else list(lines)
        self.log_lines_added += len(got)
        keep = self.log_tail.maxlen
        # Lines the deque would drop at once are not worth sanitising.
        kept = got[-keep:] if keep is not None and len(got) > keep else got
        self.log_tail.extend(safe_text(line.removesuffix("\n").removesuffix("\r")) for line in kept)

    def last(self, key: str) -> float | None:
        """Latest value of a metric, if it was ever logged."""
        s = self.metrics.get(key)
        return s.last if s is not None else None

    def steps_per_second(self, now: float | None = None) -> float | None:
        """Recent speed from the arrival times of rows (None until two distinct times exist).

        With `now`, a run that has gone quiet for longer than its recent window slows down
        towards 0 instead of showing its old speed forever.
        """
        times = self.times
        if len(times) < 2:
            return None
        (s0, t0), (s1, t1) = times[0], times[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        span = t1 - t0
        if now is not None and now - t1 > span / (len(times) - 1) * 3:
            span = now - t0
        return (s1 - s0) / span

    def points(self) -> Iterator[tuple[str, float, float]]:
        """Every held point as (key, step, value), for `metrics.csv` in evidence bundles."""
        for key, s in self.metrics.items():
            steps, values = s.series()
            for st, v in zip(steps.tolist(), values.tolist(), strict=True):
                yield key, st, v

    def nbytes(self) -> int:
        return sum(s.nbytes() for s in self.metrics.values())
