"""Pure series work for the plots: windowing, EMA smoothing, wall-time axes, width downsampling, ranking.

Arrays in, arrays out; no Textual and no plotext, so every transformation is unit-tested.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

EMA_WEIGHTS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)
"""Smoothing weights `+`/`-` step through, as W&B's and TensorBoard's slider mean them."""
DEFAULT_EMA = 0.9
WINDOWS: tuple[int | None, ...] = (None, 1000, 200)
"""Windows the `w` key cycles through: all, or the last N steps."""
STEP = "step"
T = TypeVar("T")
TIME = "time"
"""x: time since the run's first row (relative time)."""
WALL = "wall"
"""x: clock time."""
PCT = "pct"
"""x: percent of each run's own last step (lines up runs that count steps differently)."""
EPOCH = "epoch"
"""x: the run's epoch (its own axis, or its logged `epoch` metric mapped onto its steps)."""
TOKENS = "tokens"
"""x: tokens seen (a logged token counter, or the steps times the tokens per step; `tui.tokenaxis`)."""
X_AXES: tuple[str, ...] = (STEP, WALL, TIME)
"""What `x` cycles through in the detail view (with `epoch` and `tokens` where the run knows them)."""
COMPARE_X_AXES: tuple[str, ...] = (STEP, PCT, TIME, WALL)
"""What `x` cycles through in the compare view."""
X_NAMES = {STEP: "step", TIME: "relative time", WALL: "wall time", PCT: "relative %", EPOCH: "epoch", TOKENS: "tokens"}


def axes_with(base: tuple[str, ...], *, epoch: bool = False, tokens: bool = False) -> tuple[str, ...]:
    """`base` with the epoch and tokens axes after `step` (and `%`) where the runs know them."""
    extra = tuple(a for a, ok in ((EPOCH, epoch), (TOKENS, tokens)) if ok and a not in base)
    cut = 2 if PCT in base[:2] else 1
    return base[:cut] + extra + base[cut:]


@dataclass(frozen=True, slots=True)
class PlotOptions:
    """How a person asked to see the plots (`l`, `m`, `+`/`-`, `w`, `x`)."""

    log_y: bool = False
    ema: float = 0.0
    """The smoothing weight in use (0: off)."""
    window: int | None = None
    x_axis: str = STEP
    ema_weight: float = DEFAULT_EMA
    """The weight `m` turns smoothing on with (kept while it is off)."""
    x_range: tuple[float, float] | None = None
    """The x range the mouse wheel zoomed to, in the x axis's own unit (None: the whole run)."""

    def toggled_log(self) -> PlotOptions:
        return replace(self, log_y=not self.log_y)

    def next_ema(self) -> PlotOptions:
        """`m`: smoothing on (at the remembered weight) or off."""
        return replace(self, ema=0.0 if self.ema else self.ema_weight)

    def ema_step(self, delta: int) -> PlotOptions:
        """`+`/`-`: the next heavier/lighter weight; smoothing turns on."""
        cur = self.ema or self.ema_weight
        i = min(range(len(EMA_WEIGHTS)), key=lambda j: abs(EMA_WEIGHTS[j] - cur))
        w = EMA_WEIGHTS[max(0, min(len(EMA_WEIGHTS) - 1, i + delta))]
        return replace(self, ema=w, ema_weight=w)

    def next_window(self) -> PlotOptions:
        return replace(self, window=_next(WINDOWS, self.window), x_range=None)

    def toggled_x(self, axes: tuple[str, ...] = X_AXES) -> PlotOptions:
        # A zoomed range is in the old axis's unit: it means nothing on the new one.
        return replace(self, x_axis=_next(axes, self.x_axis), x_range=None)

    def zoomed(self, x_range: tuple[float, float] | None) -> PlotOptions:
        return replace(self, x_range=x_range)

    def describe(self, step_name: str = "step", *, compact: bool = False) -> str:
        """One line for the plots' header: what the toggles are set to (`step_name`: the run's own step).
        `compact` (narrow terminals) names only the toggles that are not at their default."""
        parts = [f"x: {step_name if self.x_axis == STEP else X_NAMES.get(self.x_axis, self.x_axis)}"]
        if not compact or self.log_y:
            parts.append(f"y: {'log' if self.log_y else 'linear'}")
        if not compact or self.ema:
            parts.append(f"EMA {self.ema:g}" if self.ema else "EMA off")
        if not compact or self.window:
            parts.append(f"last {self.window:,} steps" if self.window else "all steps")
        if self.x_range is not None:
            parts.append("zoomed (z: all)")
        return " · ".join(parts)


def _next(seq: tuple[T, ...], cur: T) -> T:
    i = seq.index(cur) if cur in seq else -1
    return seq[(i + 1) % len(seq)]


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing); non-finite values pass through."""
    if weight <= 0 or len(values) == 0:
        return values
    out = np.empty_like(values, dtype=float)
    last = 0.0
    n = 0
    for i, v in enumerate(values.tolist()):
        if not math.isfinite(v):
            out[i] = v
            continue
        last = last * weight + (1 - weight) * v
        n += 1
        out[i] = last / (1 - weight**n)
    return out


def last_window(x: np.ndarray, y: np.ndarray, steps: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The points within the last `steps` steps (all when None)."""
    if steps is None or len(x) == 0:
        return x, y
    keep = x >= x[-1] - steps
    return x[keep], y[keep]


def wall_time(steps: np.ndarray, times: Iterable[tuple[float, float]]) -> tuple[np.ndarray, str]:
    """Map steps to elapsed wall time from (step, time) pairs; returns the x values and their unit."""
    pairs = np.asarray(list(times), dtype=float)
    if len(pairs) == 0 or len(steps) == 0:
        return steps.astype(float), "step"
    order = np.argsort(pairs[:, 0], kind="stable")
    ps, pt = pairs[order, 0], pairs[order, 1]
    t = np.interp(steps, ps, pt) - pt.min()
    span = float(t.max()) if len(t) else 0.0
    if span > 2 * 3600:
        return t / 3600.0, "h"
    if span > 300:
        return t / 60.0, "min"
    return t, "s"


def downsample(x: np.ndarray, y: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ~2 points per column, keeping each column's min and max so spikes survive."""
    n = len(x)
    if width <= 0 or n <= 2 * width:
        return x, y
    lo, hi = float(x[0]), float(x[-1])
    if hi <= lo:
        return x[-2 * width :], y[-2 * width :]
    cols = np.minimum(((x - lo) / (hi - lo) * width).astype(int), width - 1)
    keep: list[int] = []
    bounds = np.flatnonzero(np.diff(cols)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [n]])
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        seg = y[s:e]
        if e - s <= 2:
            keep.extend(range(s, e))
            continue
        a, b = s + int(np.argmin(seg)), s + int(np.argmax(seg))
        keep.extend(sorted({a, b}))
    # The first and last points always stay: a flat stretch must still reach the run's last step.
    idx = np.unique(np.asarray([0, *keep, n - 1], dtype=int))
    return x[idx], y[idx]


def map_x(
    x: np.ndarray,
    axis: str,
    times: Iterable[tuple[float, float]] = (),
    last_step: float | None = None,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, str]:
    """Steps to the chosen x axis: (values, unit). Unit is `step`, `s`/`min`/`h`, `clock`, `%`, `epoch`
    or `tokens`.

    For `epoch` and `tokens`, `pairs` is the run's (step, epoch) or (step, tokens seen) pairs; without
    them x stays in steps. Tokens past the last counted step go on at the last known tokens per step.
    """
    if axis in (EPOCH, TOKENS):
        if pairs is None or len(pairs[0]) == 0 or len(x) == 0:
            return x, "step"
        ps, pv = pairs
        order = np.argsort(ps, kind="stable")
        ps, pv = ps[order], pv[order]
        out = np.interp(x, ps, pv)
        if axis == TOKENS and len(ps) and ps[-1] > 0:
            # A counter logged less often than the loss: extrapolate at its own rate, never flat.
            rate = pv[-1] / ps[-1]
            late = x > ps[-1]
            out[late] = pv[-1] + (x[late] - ps[-1]) * rate
            early = x < ps[0]
            if ps[0] > 0:
                out[early] = x[early] * (pv[0] / ps[0])
        return out, axis
    if axis == TIME:
        return wall_time(x, times)
    if axis == WALL:
        st = np.asarray(list(times), dtype=float)
        if len(st) == 0 or len(x) == 0:
            return x, "step"
        order = np.argsort(st[:, 0], kind="stable")
        return np.interp(x, st[order, 0], st[order, 1]), "clock"
    if axis == PCT:
        top = last_step if last_step else (float(x[-1]) if len(x) else 0.0)
        if not top:
            return x, "step"
        return x / top * 100.0, "%"
    return x, "step"


@dataclass(frozen=True, slots=True)
class Prepared:
    """A series ready to draw: finite points on the chosen axis, and where non-finite values were."""

    x: np.ndarray
    y: np.ndarray
    unit: str
    bad_x: np.ndarray
    """x of NaN/Inf values (a line cannot show them: the plot marks them)."""
    bad_y: np.ndarray
    """Where on the curve to put those marks: the last finite value before each."""
    extent: tuple[float, float] | None = None
    """The finite x range of the whole series before any zoom (None: no finite point)."""


def prepare_series(
    x: np.ndarray,
    y: np.ndarray,
    opts: PlotOptions,
    width: int,
    times: Iterable[tuple[float, float]] = (),
    last_step: float | None = None,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> Prepared:
    """Window, smooth, map the x axis, set non-finite values apart, drop what the axis cannot show, downsample."""
    x, y = last_window(np.asarray(x, dtype=float), np.asarray(y, dtype=float), opts.window)
    y = ema(y, opts.ema)
    x, unit = map_x(x, opts.x_axis, times, last_step, pairs)
    finite = np.isfinite(y)
    bad = ~finite & np.isfinite(x)
    bad_x, bad_y = x[bad], np.full(int(bad.sum()), np.nan)
    if bad.any() and finite.any():
        # The last finite value before each bad point (the first finite one for a leading NaN).
        idx = np.maximum.accumulate(np.where(finite, np.arange(len(y)), -1))
        first = int(np.argmax(finite))
        bad_y = y[np.where(idx[bad] >= 0, idx[bad], first)]
    ok = finite & np.isfinite(x)
    if opts.log_y:
        ok &= y > 0
    extent = (float(x[ok].min()), float(x[ok].max())) if ok.any() else None
    if opts.x_range is not None:
        lo, hi = opts.x_range
        ok &= (x >= lo) & (x <= hi)
        inside = (bad_x >= lo) & (bad_x <= hi)
        bad_x, bad_y = bad_x[inside], bad_y[inside]
    dx, dy = downsample(x[ok], y[ok], width)
    return Prepared(dx, dy, unit, bad_x, bad_y, extent)


ZOOM_IN = 0.7
"""One wheel notch in keeps this share of the x range (around the pointer); one notch out undoes it."""


def zoom_range(
    shown: tuple[float, float], extent: tuple[float, float], at: float, zoom_in: bool, min_span: float = 0.0
) -> tuple[float, float] | None:
    """The x range after one wheel notch at x = `at`: narrower (in) or wider (out) around it.
    None when it would cover the whole `extent` again (not zoomed); never narrower than `min_span`."""
    lo, hi = shown
    f = ZOOM_IN if zoom_in else 1 / ZOOM_IN
    at = min(max(at, lo), hi)
    new_lo, new_hi = at - (at - lo) * f, at + (hi - at) * f
    if zoom_in and new_hi - new_lo < min_span:
        return shown
    e_lo, e_hi = extent
    if new_lo <= e_lo and new_hi >= e_hi:
        return None
    span = new_hi - new_lo
    # Slide (not shrink) a range that ran past one end of the run back inside it.
    if new_lo < e_lo:
        new_lo, new_hi = e_lo, min(e_hi, e_lo + span)
    elif new_hi > e_hi:
        new_lo, new_hi = max(e_lo, e_hi - span), e_hi
    if new_lo <= e_lo and new_hi >= e_hi:
        return None
    return (new_lo, new_hi)


def prepare(
    x: np.ndarray,
    y: np.ndarray,
    opts: PlotOptions,
    width: int,
    times: Iterable[tuple[float, float]] = (),
) -> tuple[np.ndarray, np.ndarray, str]:
    """Window, smooth, map the x axis, drop what the axis cannot show, downsample: (x, y, x unit)."""
    p = prepare_series(x, y, opts, width, times)
    return p.x, p.y, p.unit


def bucket_means(values: np.ndarray, width: int) -> tuple[float, ...]:
    """A whole series as `width` bucket means, oldest first (a bucket holding NaN/Inf stays non-finite)."""
    v = np.asarray(values, dtype=float)
    if len(v) <= width:
        return tuple(v.tolist())
    edges = np.linspace(0, len(v), width + 1).astype(int)
    sums = np.add.reduceat(v, edges[:-1])
    return tuple((sums / np.diff(edges)).tolist())


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick positions (1, 2, 2.5, 5 × 10^k apart) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks: list[float] = []
    t = first
    while t <= hi + step * 1e-9 and len(ticks) < 4 * count:
        ticks.append(round(t, 12) + 0.0)
        t += step
    return ticks


def nonfinite_steps(x: np.ndarray, y: np.ndarray) -> list[float]:
    """Steps where a value was NaN or Inf (plotted as markers: a line cannot show them)."""
    bad = ~np.isfinite(np.asarray(y, dtype=float))
    return np.asarray(x, dtype=float)[bad].tolist()


@dataclass(frozen=True, slots=True)
class RankStats:
    """A run's numbers in the compare view's ranking table."""

    last: float | None
    best: float | None
    slope_pct: float | None
    """Relative change of the metric per 1,000 steps over the last window, in percent."""
    noise_pct: float | None
    """Median step-to-step relative change over the last window, in percent (lower is steadier)."""


def rank_stats(x: np.ndarray, y: np.ndarray, window_points: int = 100) -> RankStats:
    """Last and best value, trend slope and noise over the last `window_points` finite points."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(y) == 0:
        return RankStats(None, None, None, None)
    last = float(y[-1])
    ok = np.isfinite(y)
    if not ok.any():
        return RankStats(last, None, None, None)
    best = float(np.min(y[ok]))
    xw, yw = x[ok][-window_points:], y[ok][-window_points:]
    slope = noise = None
    if len(yw) >= 3 and float(xw[-1] - xw[0]) > 0:
        if (yw > 0).all():
            ly = np.log(yw)
            b = float(np.polyfit(xw, ly, 1)[0])
            slope = (math.exp(max(-50.0, min(50.0, b * 1000))) - 1) * 100
            noise = float(np.median(np.abs(np.diff(ly)))) * 100
        else:
            b = float(np.polyfit(xw, yw, 1)[0])
            scale = float(np.median(np.abs(yw))) or 1.0
            slope = b * 1000 / scale * 100
            noise = float(np.median(np.abs(np.diff(yw)))) / scale * 100
    return RankStats(last, best, slope, noise)
