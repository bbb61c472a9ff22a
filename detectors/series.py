"""Shared streaming statistics of one metric series, updated once per point and read by detectors.

Detectors on the same metric (spike, divergence, plateau) need the same robust level and noise
scale; computing them once keeps the per-point cost O(1) and small.
"""

from __future__ import annotations

import math
from collections import deque


class SeriesStats:
    """Robust running statistics of one metric, in log space for positive series.

    `level` is a Huber-clipped EWMA (a single spike barely moves it; a real level shift is
    tracked within a few points) and `scale` a winsorised EWMA of absolute residuals.
    `residual` is the newest point's distance from the level *before* it was folded in.
    """

    __slots__ = (
        "_alpha",
        "_eps",
        "_linear",
        "_ref",
        "best",
        "best_step",
        "constant",
        "first",
        "last_step",
        "last_value",
        "level",
        "n",
        "residual",
        "ring",
        "scale",
        "y",
        "z",
    )

    def __init__(self, span: float = 8.0, window: int = 16) -> None:
        self._alpha = 2.0 / (span + 1.0)
        self._eps = 0.0
        self._linear = False
        self._ref = 1.0
        self.n = 0
        self.y = 0.0
        self.level = 0.0
        self.scale = 0.02
        self.residual = 0.0
        self.z = 0.0
        self.best = math.inf
        self.best_step = 0.0
        self.first = math.nan
        self.constant = True
        self.last_step = 0.0
        self.last_value = math.nan
        self.ring: deque[float] = deque(maxlen=window)

    def transform(self, x: float) -> float:
        """Map a raw value into the space the statistics live in (log for positive series)."""
        if self._linear:
            return x / self._ref
        v = x + self._eps
        if v > 0.0:
            return math.log(v)
        # A non-positive value in a log series: switch to a linear scale relative to the first value.
        self._linear = True
        self._ref = abs(self.first) or 1.0
        self.n = 0
        self.best = math.inf
        return x / self._ref

    def inverse(self, y: float) -> float:
        """Map a value of the statistics' space back to the metric's units."""
        return y * self._ref if self._linear else math.exp(y) - self._eps

    def update(self, step: float, x: float) -> None:
        """Fold a finite value in. Callers check finiteness first."""
        n = self.n
        if n == 0 and self.first != self.first:
            self.first = x
            # Exact zeros (a memorised batch) must not look like a -inf collapse in log space.
            self._eps = abs(x) * 1e-2 if x != 0.0 else 1e-12
        elif self.constant and x != self.last_value:
            self.constant = False
        # transform(), inlined for the common case: this runs once per point of every judged metric.
        v = x + self._eps
        y = math.log(v) if v > 0.0 and not self._linear else self.transform(x)
        self.y = y
        self.last_step = step
        self.last_value = x
        self.ring.append(y)
        if self.n == 0:  # transform() may have restarted the statistics on a switch to linear
            self.level = self.best = y
            self.residual = self.z = 0.0
            self.n = 1
            self.best_step = step
            return
        n = self.n = self.n + 1
        r = y - self.level
        self.residual = r
        s = self.scale
        self.z = r / (s if s > 1e-3 else 1e-3)
        c = 3.0 * s
        level = self.level + self._alpha * (c if r > c else (-c if r < -c else r))
        self.level = level
        a = r if r >= 0.0 else -r
        lim = 4.0 * s
        # Early on the scale must learn quickly from a handful of points.
        self.scale = s + (0.3 if n < 8 else 0.1) * ((lim if a > lim else a) - s)
        if level < self.best:
            self.best = level
            self.best_step = step

    @property
    def noise(self) -> float:
        """The robust noise scale, floored so perfectly smooth series do not give infinite z."""
        return self.scale if self.scale > 1e-3 else 1e-3

    def window(self) -> list[float]:
        """The last `trend_window` transformed values, oldest first (fewer while filling)."""
        return list(self.ring)


def mann_kendall_z(values: list[float]) -> float:
    """Mann-Kendall trend statistic as a z-score (positive = rising); 0 for fewer than 4 values."""
    n = len(values)
    if n < 4:
        return 0.0
    s = 0
    for i in range(n - 1):
        vi = values[i]
        for j in range(i + 1, n):
            d = values[j] - vi
            if d > 0:
                s += 1
            elif d < 0:
                s -= 1
    var = n * (n - 1) * (2 * n + 5) / 18.0
    if s > 0:
        return (s - 1) / math.sqrt(var)
    if s < 0:
        return (s + 1) / math.sqrt(var)
    return 0.0
