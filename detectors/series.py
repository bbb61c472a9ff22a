"""Shared streaming statistics of one metric series, updated once per point and read by detectors.

Detectors on the same metric (spike, divergence, plateau) need the same robust level and noise
scale; computing them once keeps the per-point cost O(1) and small.
"""

from __future__ import annotations

import math
from collections import deque

#: Standard deviation of white noise per mean absolute second difference (1 / (sqrt(6) sqrt(2/pi))).
SIGMA_PER_ABSDIFF = 1.0 / 1.954

#: Points before a best level is taken: a best is never one or two lucky first values.
_BURN_IN = 8


class SeriesStats:
    """Robust running statistics of one metric, in log space for positive series.

    `level` is an EWMA of the median of the last three points (a single spike does not move it; a
    real level shift is tracked within a few points) and `scale` a winsorised EWMA of absolute
    residuals.
    `residual` is the newest point's distance from the level *before* it was folded in.
    `sigma` is the point-to-point noise, from a slow winsorised mean of absolute second differences
    (a trend barely enters it), and `slow` a slower robust level whose minimum is `best`: the best
    level the run reached, which a lucky noisy point cannot set.
    """

    __slots__ = (
        "_alpha",
        "_eps",
        "_eps_fraction",
        "_linear",
        "_ref",
        "_slow_alpha",
        "_y2",
        "absdiff",
        "best",
        "best_step",
        "constant",
        "first",
        "full",
        "last_step",
        "last_value",
        "level",
        "n",
        "residual",
        "ring",
        "scale",
        "slow",
        "y",
        "y0",
        "z",
    )

    def __init__(
        self, span: float = 8.0, window: int = 16, slow_span: float = 32.0, full: bool = True, floor: float = 1e-2
    ) -> None:
        self.full = full
        self._eps_fraction = floor
        """Values are compared in log(x + floor * first value): a loss memorised to exactly 0 is not
        a collapse to -inf; a gradient norm (floor ~0) may well vanish by orders of magnitude."""
        """Also keep `absdiff`/`sigma`, `slow` and `best` (the level and scale alone are cheaper)."""
        self._alpha = 2.0 / (span + 1.0)
        self._y2 = 0.0
        self._slow_alpha = 2.0 / (slow_span + 1.0)
        self._eps = 0.0
        self._linear = False
        self._ref = 1.0
        self.n = 0
        self.y = 0.0
        self.y0 = 0.0
        """The first value, in the statistics' space."""
        self.level = 0.0
        self.slow = 0.0
        self.scale = 0.02
        self.absdiff = 0.0
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
        """Map a raw value into the space the statistics live in (log for positive series).

        Always finite for a finite `x`, whatever its size (1e308, subnormals, -0.0).
        """
        if not self._linear:
            v = x + self._eps
            if v > 0.0:
                return math.log(v) if v < math.inf else math.log(x)
            # A non-positive value in a log series: switch to a linear scale relative to the first value.
            self._linear = True
            self._ref = max(abs(self.first), 1e-6) if self.first == self.first else 1.0
            self.n = 0
            self.best = math.inf
            self.ring.clear()
        y = x / self._ref
        return y if -1e300 < y < 1e300 else math.copysign(1e300, y)

    def inverse(self, y: float) -> float:
        """Map a value of the statistics' space back to the metric's units."""
        if self._linear:
            return y * self._ref
        return (math.exp(y) if y < 709.0 else math.inf) - self._eps

    @property
    def linear(self) -> bool:
        """Whether the statistics are in linear units (the series went non-positive), not log ratios."""
        return self._linear

    def update(self, step: float, x: float) -> None:
        """Fold a finite value in. Callers check finiteness first."""
        n = self.n
        if n == 0 and self.first != self.first:
            self.first = x
            # Exact zeros (a memorised batch) must not look like a -inf collapse in log space.
            self._eps = abs(x) * self._eps_fraction if x != 0.0 else 1e-12
        elif self.constant and x != self.last_value:
            self.constant = False
        # transform(), inlined for the common case: this runs once per point of every judged metric.
        v = x + self._eps
        y = math.log(v) if 0.0 < v < math.inf and not self._linear else self.transform(x)
        prev = self.y
        self.y = y
        self.last_step = step
        self.last_value = x
        if self.full:
            self.ring.append(y)
        if self.n == 0:  # transform() may have restarted the statistics on a switch to linear
            self.level = self.slow = self.y0 = self._y2 = y
            self.best = math.inf
            self.residual = self.z = self.absdiff = 0.0
            self.n = 1
            self.best_step = step
            return
        n = self.n = self.n + 1
        r = self.residual = y - self.level
        s = self.scale
        self.z = r / (s if s > 1e-3 else 1e-3)
        # The level follows the median of the last three points: one outlier never moves it, a real
        # shift (a fast early descent, a jump that stays) is followed at the EWMA's own pace.
        pp = self._y2
        lo, hi = (pp, prev) if pp <= prev else (prev, pp)
        self._y2 = prev
        m = hi if y > hi else (y if y > lo else lo)
        level = self.level
        level = self.level = level + self._alpha * (m - level)
        a = r if r >= 0.0 else -r
        lim = 4.0 * s
        # Early on the scale must learn quickly from a handful of points.
        self.scale = s + (0.3 if n < 8 else 0.1) * ((lim if a > lim else a) - s)
        if not self.full:
            return
        # Noise from second differences (a trend, even the steep descent of a run's first points,
        # cancels out): slow (a divergence must not teach it that jumps are normal), winsorised, and
        # quick to learn over the first points.
        d = y - 2.0 * prev + pp
        if d < 0.0:
            d = -d
        ad = self.absdiff
        if n > 32:
            dl = 4.0 * ad
            self.absdiff = ad + 0.03 * ((dl if d > dl else d) - ad)
            # The slow level follows the (already spike-robust) fast level...
            slow = self.slow = self.slow + self._slow_alpha * (level - self.slow)
        else:
            dl = 4.0 * ad if n > 4 else d
            self.absdiff = ad + ((dl if d > dl else d) - ad) / n
            # ...and over its first points it is their running mean, not anchored to the first value.
            sa = self._slow_alpha
            slow = self.slow = self.slow + (sa if n * sa > 1.0 else 1.0 / n) * (level - self.slow)
        # Nor does it lag far behind a real descent: it stays within one noise unit of the level.
        top = level + self.absdiff * SIGMA_PER_ABSDIFF  # (absdiff as just updated)
        if slow > top:
            slow = self.slow = top
        if slow < self.best and n >= _BURN_IN:
            self.best = slow
            self.best_step = step

    @property
    def noise(self) -> float:
        """The robust noise scale, floored so perfectly smooth series do not give infinite z."""
        return self.scale if self.scale > 1e-3 else 1e-3

    @property
    def sigma(self) -> float:
        """Point-to-point noise of the series (a standard deviation, from mean absolute differences)."""
        return self.absdiff * SIGMA_PER_ABSDIFF

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
