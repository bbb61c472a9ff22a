"""Detectors on the training loss: NaN/Inf, spikes, divergence, plateau (and convergence)."""

from __future__ import annotations

import math
from collections import deque

from detectors.base import Detector, fmt, pct
from detectors.series import SeriesStats, mann_kendall_z
from detectors.thresholds import Thresholds
from monitor.model import Severity


class NanDetector(Detector):
    """A NaN/Inf loss is bad at once; finite values afterwards make it a transient, kept for the record."""

    __slots__ = ("_finite_after", "_th")
    kind = "nan"

    def __init__(self, metric: str, th: Thresholds) -> None:
        super().__init__(metric)
        self._th = th
        self._finite_after = 0

    def nonfinite(self, step: float, x: float) -> bool:
        self._finite_after = 0
        cur = self.current
        if cur is not None and cur.active:
            return False
        return self._fire(
            Severity.BAD,
            step,
            step,
            f"{self.metric} is {fmt(x)} at step {fmt(step)}",
            {"value": str(x)},
        )

    def finite(self, step: float) -> bool:
        cur = self.current
        if cur is None or not cur.active:
            return False
        self._finite_after += 1
        if self._finite_after < self._th.nan_recover_points:
            return False
        return self._resolve(
            step,
            f"{self.metric} was non-finite at step {fmt(cur.onset_step)}, finite again from step {fmt(step)}",
        )


class SpikeDetector(Detector):
    """A sudden jump far above the robust level; recovered spikes become history, repeated ones are bad."""

    __slots__ = ("_base", "_in_spike", "_onsets", "_peak", "_scale", "_th")
    kind = "spike"

    def __init__(self, metric: str, th: Thresholds) -> None:
        super().__init__(metric)
        self._th = th
        self._in_spike = False
        self._base = 0.0
        self._peak = 0.0
        self._scale = 0.0
        self._onsets: deque[int] = deque(maxlen=max(1, th.spike_repeat))

    def update(self, s: SeriesStats, step: float) -> bool:
        th = self._th
        if self._in_spike:
            y = s.y
            if y > self._peak:
                self._peak = y
            if y <= self._base + max(3.0 * self._scale, 0.5 * th.spike_min_jump):
                self._in_spike = False
                return self._resolve(
                    step,
                    f"{self.metric} spike at step {fmt(self.current.onset_step if self.current else step)} "
                    f"(peak {pct(self._peak - self._base)}) recovered by step {fmt(step)}",
                    peak_ratio=math.exp(self._peak - self._base),
                )
            return False
        if s.n < 3 or s.z <= th.spike_z or s.residual <= th.spike_min_jump:
            return False
        self._in_spike = True
        self._base = s.y - s.residual
        self._peak = s.y
        self._scale = s.noise
        self._onsets.append(s.n)
        before = s.inverse(self._base)
        evidence = {
            "value": s.last_value,
            "level_before": before,
            "z": round(s.z, 1),
            "jump": pct(s.residual),
        }
        repeated = len(self._onsets) == self._onsets.maxlen and s.n - self._onsets[0] <= th.spike_repeat_window
        if repeated:
            return self._fire(
                Severity.BAD,
                step,
                step,
                f"{self.metric}: {len(self._onsets)} spikes within {s.n - self._onsets[0]} points, latest "
                f"{fmt(s.last_value)} at step {fmt(step)} ({pct(s.residual)} over its level)",
                evidence,
            )
        return self._fire(
            Severity.WARN,
            step,
            step,
            f"{self.metric} spiked to {fmt(s.last_value)} at step {fmt(step)} ({pct(s.residual)} over its "
            f"level {fmt(before)}); watching for recovery",
            evidence,
        )


class DivergenceDetector(Detector):
    """The loss's level stays well above its best, or keeps rising by a rank trend test."""

    __slots__ = ("_big_run", "_onset", "_th", "_trend_hits")
    kind = "divergence"

    def __init__(self, metric: str, th: Thresholds) -> None:
        super().__init__(metric)
        self._th = th
        self._onset: float | None = None
        self._big_run = 0
        self._trend_hits = 0

    def update(self, s: SeriesStats, step: float) -> bool:
        th = self._th
        excess = s.level - s.best
        if excess <= th.divergence_small:
            self._onset = None
            self._big_run = 0
            self._trend_hits = 0
            if excess <= 0.5 * th.divergence_small:
                cur = self.current
                if cur is not None and cur.active:
                    return self._resolve(step, f"{self.metric} came back to its best level by step {fmt(step)}")
            return False
        if self._onset is None:
            self._onset = step
        if s.n < 8 or self._already(Severity.BAD):
            return False
        self._big_run = self._big_run + 1 if excess > th.divergence_big else 0
        sustained = self._big_run >= th.divergence_sustain
        trending = False
        if not sustained and s.n >= th.trend_window:
            window = s.window()
            if mann_kendall_z(window) >= th.trend_z:
                self._trend_hits += 1
                trending = self._trend_hits >= 2
        if not (sustained or trending):
            return False
        best = s.inverse(s.best)
        how = f"for {self._big_run} points" if sustained else f"and still rising over the last {th.trend_window} points"
        return self._fire(
            Severity.BAD,
            step,
            self._onset,
            f"{self.metric} is diverging: level {pct(excess)} above its best ({fmt(best)} at step "
            f"{fmt(s.best_step)}) {how}",
            {"excess": pct(excess), "best": best, "best_step": s.best_step, "value": s.last_value},
        )


class PlateauDetector(Detector):
    """No real improvement for a long stretch; with the LR at its floor it is convergence instead."""

    __slots__ = ("_ref", "_ref_n", "_ref_step", "_th")
    kind = "plateau"

    def __init__(self, metric: str, th: Thresholds) -> None:
        super().__init__(metric)
        self._th = th
        self._ref = math.inf
        self._ref_n = 0
        self._ref_step = 0.0

    def update(self, s: SeriesStats, step: float, lr_ratio: float | None) -> bool:
        th = self._th
        if s.level < self._ref - th.plateau_improve or self._ref == math.inf:
            self._ref = s.level
            self._ref_n = s.n
            self._ref_step = step
            cur = self.current
            if cur is not None and cur.active:
                return self._resolve(step, f"{self.metric} improving again at step {fmt(step)}")
            return False
        idle = s.n - self._ref_n
        if s.constant or idle < th.plateau_min_points or idle < th.plateau_fraction * s.n:
            return False
        near_best = s.level - s.best <= th.divergence_small
        converged = near_best and lr_ratio is not None and lr_ratio <= th.converged_lr_fraction
        if self._already(Severity.INFO, "converged") if converged else self._already(Severity.WARN):
            return False
        ev = {"points_without_progress": idle, "since_step": self._ref_step}
        if converged:
            assert lr_ratio is not None
            ev["lr_fraction_of_peak"] = round(lr_ratio, 4)
            return self._fire(
                Severity.INFO,
                step,
                self._ref_step,
                f"{self.metric} flat since step {fmt(self._ref_step)} with the LR at "
                f"{lr_ratio * 100:.0f}% of its peak: converged",
                ev,
                kind="converged",
            )
        return self._fire(
            Severity.WARN,
            step,
            self._ref_step,
            f"{self.metric} has not improved by 1% since step {fmt(self._ref_step)} ({idle} points)",
            ev,
        )
