"""Detectors on the gradient norm: explosion, vanishing, and non-finite norms (fp16 overflow skips)."""

from __future__ import annotations

import math
from collections.abc import Callable

from detectors.base import Detector, fmt, pct
from detectors.series import SeriesStats
from detectors.thresholds import Thresholds
from monitor.model import Severity


class GradNonFiniteDetector(Detector):
    """A lone non-finite grad norm is an fp16 overflow skip (information); several in a row is NaN training."""

    __slots__ = ("_run", "_run_start", "_skips", "_th", "trouble")
    kind = "overflow_skip"

    def __init__(self, metric: str, th: Thresholds, axis: str = "step") -> None:
        super().__init__(metric, axis)
        self._th = th
        self._run = 0
        self._run_start = 0.0
        self._skips = 0
        self.trouble: Callable[[], str | None] | None = None
        """What is already wrong with the run's loss (a divergence, a spike), if anything: a
        non-finite gradient then is part of the blow-up, not a routine overflow skip."""

    def nonfinite(self, step: float, x: float) -> bool:
        if self._run == 0:
            self._run_start = step
        self._run += 1
        self._skips += 1
        trouble = self.trouble() if self.trouble is not None else None
        if self._run >= self._th.grad_nonfinite_bad or trouble is not None:
            if self._already(Severity.BAD, "nan"):
                return False
            why = (
                f"while {trouble}"
                if trouble is not None
                else f"for {self._run} logged points in a row: training is producing NaN/Inf gradients"
            )
            return self._fire(
                Severity.BAD,
                step,
                self._run_start,
                f"{self.metric} is {fmt(x)} at {self.axis} {fmt(step)} {why}",
                {"consecutive": self._run},
                kind="nan",
            )
        cur = self.current
        if cur is not None and cur.active and cur.kind == "overflow_skip":
            return False
        return self._fire(
            Severity.INFO,
            step,
            step,
            f"{self.metric} {fmt(x)} at {self.axis} {fmt(step)} with a finite loss: an fp16 overflow skip "
            f"({self._skips} so far), harmless alone",
            {"skips": self._skips},
        )

    def finite(self, step: float) -> bool:
        self._run = 0
        cur = self.current
        if cur is not None and cur.active:
            if cur.kind == "nan":
                return self._resolve(step, f"{self.metric} finite again from {self.axis} {fmt(step)}")
            # Overflow skips stay informational; close the note quietly.
            return self._resolve(step, cur.message)
        return False


class GradExplosionDetector(Detector):
    """Grad norm an order of magnitude above its usual level for several points in a row.

    The usual level is the one before the run of high values began, so a norm that stays high
    does not become "usual" as the running level follows it.
    """

    __slots__ = ("_base", "_onset", "_run", "_th", "_usual")
    kind = "grad_explosion"

    def __init__(self, metric: str, th: Thresholds, axis: str = "step") -> None:
        super().__init__(metric, axis)
        self._th = th
        self._run = 0
        self._onset = 0.0
        self._base = 0.0
        self._usual = math.nan

    def update(self, s: SeriesStats, step: float) -> bool:
        th = self._th
        if s.n < 10 or s.constant:
            return False
        usual = self._usual
        if usual != usual:
            usual = self._usual = s.level
        if self._run:
            above = s.y - self._base
            high = above > 0.5 * th.grad_explosion_ratio
        else:
            # A jump far above the running level, or a climb (even a steady one, which the running
            # level follows) far above the slow usual level.
            above = s.residual
            high = above > th.grad_explosion_ratio and above > 4.0 * s.noise
            if not high and s.level - usual > th.grad_explosion_ratio:
                above = s.y - usual
                high = True
            # The usual level: a slow EWMA of the running level, frozen during an episode.
            self._usual = usual + 0.03 * (s.level - usual)
        if high:
            if self._run == 0:
                self._onset = step
                self._base = s.y - s.residual if above == s.residual else usual
            self._run += 1
            if self._run >= th.grad_sustain and not self._already(Severity.WARN):
                usual = s.inverse(self._base)
                return self._fire(
                    Severity.WARN,
                    step,
                    self._onset,
                    f"{self.metric} {fmt(s.last_value)} at {self.axis} {fmt(step)}, {pct(above)} over its usual "
                    f"level {fmt(usual)} for {self._run} points",
                    {"value": s.last_value, "level": usual, "points": self._run},
                )
            return False
        self._run = 0
        cur = self.current
        if cur is None or not cur.active:
            return False
        return self._resolve(step, f"{self.metric} back to its usual level by {self.axis} {fmt(step)}")


class GradVanishingDetector(Detector):
    """Grad norm collapsed to a tiny fraction of its peak level (and not exactly zero all along)."""

    __slots__ = ("_onset", "_peak", "_run", "_th")
    kind = "grad_vanishing"

    def __init__(self, metric: str, th: Thresholds, axis: str = "step") -> None:
        super().__init__(metric, axis)
        self._th = th
        self._peak = -float("inf")
        self._run = 0
        self._onset = 0.0

    def update(self, s: SeriesStats, step: float) -> bool:
        th = self._th
        # A norm logged as exactly 0.000 on every line is a logging artefact, not vanishing.
        if s.constant:
            return False
        if s.n >= 5 and s.level > self._peak:
            self._peak = s.level
        if s.n < 10:
            return False
        below = s.level - self._peak
        if below < th.grad_vanishing_ratio:
            if self._run == 0:
                self._onset = step
            self._run += 1
            if self._run >= th.grad_sustain and not self._already(Severity.WARN):
                return self._fire(
                    Severity.WARN,
                    step,
                    self._onset,
                    f"{self.metric} {fmt(s.last_value)} at {self.axis} {fmt(step)} is below 1/1000 of its peak "
                    f"level {fmt(s.inverse(self._peak))}: gradients vanishing",
                    {"value": s.last_value, "peak_level": s.inverse(self._peak)},
                )
            return False
        self._run = 0
        cur = self.current
        if cur is None or not cur.active:
            return False
        return self._resolve(step, f"{self.metric} recovered by {self.axis} {fmt(step)}")
