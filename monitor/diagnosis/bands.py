"""A curve's own band and when it left it: the scale-free, noise-aware statistics the confidence rules use.

A band is the median and robust spread (1.4826 x MAD) of the log of a positive metric over the points
just before a moment, widened to the precision the metric was logged with (a grad norm printed as 0.01,
0.02, 0.05 moves by whole quanta). A point has left the band when it is `z` robust spreads and at least
`min_ratio` times above it. Nothing here depends on the metric's units or on one run's numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from monitor.diagnosis.facts import Curve

Z = 4.0
"""Robust z beyond which a point is outside its band (a normal tail of about 3e-5)."""
MIN_RATIO = 1.5
"""Smallest departure worth calling one, whatever the noise (a 50% jump)."""
WINDOW = 20
"""Points before the moment that make its band."""


@dataclass(frozen=True, slots=True)
class Band:
    """Typical level (`level`, in the metric's units) and spread (`spread`, in natural-log units)."""

    level: float
    spread: float

    def threshold(self, z: float = Z, min_ratio: float = MIN_RATIO) -> float:
        """The value above which a point is outside the band."""
        return self.level * math.exp(max(z * self.spread, math.log(min_ratio)))


def resolution(values: np.ndarray) -> float:
    """The step between logged values (their printing precision): the smallest gap between distinct values."""
    u = np.unique(values[np.isfinite(values)])
    d = np.diff(u)
    d = d[d > 0]
    return float(d.min()) if len(d) else 0.0


def band(values: np.ndarray, precision: float = 0.0) -> Band | None:
    """The band of these positive values (None with fewer than 5 of them)."""
    v = values[np.isfinite(values) & (values > 0)]
    if len(v) < 5:
        return None
    logs = np.log(v)
    med = float(np.median(logs))
    spread = 1.4826 * float(np.median(np.abs(logs - med)))
    level = math.exp(med)
    if precision > 0:
        # One quantum of logging precision is noise too: in log units it is precision / level.
        spread = max(spread, precision / level)
    return Band(level, spread)


@dataclass(frozen=True, slots=True)
class Exit:
    """Where a curve first went above its band: the step, the band's level and the value there."""

    step: float
    level: float
    value: float

    @property
    def ratio(self) -> float:
        return self.value / self.level if self.level > 0 else math.inf


def left_band(
    c: Curve, lo: float, hi: float, z: float = Z, min_ratio: float = MIN_RATIO, sustained: bool = False
) -> Exit | None:
    """The first point in [lo, hi] above the band of the `WINDOW` points logged before `lo` (with
    `sustained`, the first whose median with the next two points is above it: a rise, not a spike).

    None too when the typical level of those points was already `min_ratio` times that of the `WINDOW`
    before them: a curve that was climbing all along did not leave its band in [lo, hi], it left it earlier
    (the spread of a climbing window is wide, so its band alone would not tell)."""
    g = c.finite()
    before = g.before(lo)
    q = resolution(g.values)
    b = band(before.values[-WINDOW:], q)
    if b is None:
        return None
    earlier = band(before.values[-2 * WINDOW : -WINDOW], q)
    if earlier is not None and b.level > min_ratio * earlier.level:
        return None  # its typical level had already moved by `min_ratio` from one window to the next
    top = b.threshold(z, min_ratio)
    inside = (g.steps >= lo) & (g.steps <= hi)
    above = g.values > top
    if sustained:
        nxt = np.r_[g.values[1:], np.nan]
        nxt2 = np.r_[g.values[2:], np.nan, np.nan]
        above &= np.nanmedian(np.vstack([g.values, nxt, nxt2]), axis=0) > top
    hit = np.nonzero(inside & above)[0]
    if not len(hit):
        return None
    i = int(hit[0])
    return Exit(float(g.steps[i]), b.level, float(g.values[i]))


def exceptional(c: Curve, ex: Exit) -> bool:
    """Whether `ex` went further out of its band than the curve ever did before it: each earlier point's
    ratio to the median of the `WINDOW` points before it stays below `ex.ratio` (an outlier, not the
    curve's usual heavy tail)."""
    g = c.finite().before(ex.step)
    v = g.values
    if len(v) <= WINDOW:
        return True
    ref = np.median(np.lib.stride_tricks.sliding_window_view(v[:-1], WINDOW), axis=1)
    later = v[WINDOW:]
    ok = ref > 0
    worst = float(np.max(later[ok] / ref[ok])) if ok.any() else 0.0
    return ex.ratio > worst
