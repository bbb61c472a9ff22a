"""Per-metric monitors: each updates one metric's shared statistics once per point and asks its detectors.

A monitor is called with `(step, value)` for one point (`__call__`) or with a column of points
(`many`, the backfill path); both give the same findings for the same points.
"""

from __future__ import annotations

from collections.abc import Callable

from detectors.base import Detector
from detectors.evals import EvalDetector
from detectors.grad import GradExplosionDetector, GradNonFiniteDetector, GradVanishingDetector
from detectors.loss import DivergenceDetector, NanDetector, PlateauDetector, SpikeDetector, is_total_loss
from detectors.lr import LrDetector
from detectors.series import SeriesStats
from detectors.thresholds import Thresholds
from monitor.model import Role


class LossMonitor:
    """Training loss: NaN, spike, divergence, plateau/converged."""

    __slots__ = ("div", "lr", "nan", "nan_only", "plateau", "spike", "stats", "total", "zeros")

    def __init__(self, key: str, th: Thresholds, lr: Callable[[], LrDetector | None], axis: str = "step") -> None:
        self.stats = SeriesStats(th.level_span, th.trend_window)
        self.nan = NanDetector(key, th, axis)
        self.spike = SpikeDetector(key, th, axis)
        self.div = DivergenceDetector(key, th, axis)
        self.plateau = PlateauDetector(key, th, axis)
        self.lr = lr
        self.total = is_total_loss(key)
        self.nan_only = False
        """Only NaN/Inf is judged (reinforcement learning and GAN losses are not objectives that fall)."""
        self.zeros = 0
        """1 once a 0 was taken as a value, 2 once real values followed it: the log rounds to 0."""

    def __call__(self, step: float, x: float) -> bool:
        if x - x != 0.0:
            return self.nan.nonfinite(step, x)
        if x == 0.0 and self.total and self._hidden_nan():
            return self.nan.nonfinite(step, x)
        changed = self.nan.finite(step) if self.nan.current is not None else False
        if self.nan_only:
            return changed
        if self.zeros < 2:
            self._count_zero(x)
        s = self.stats
        s.update(step, x)
        lr = self.lr()
        changed = self.spike.update(s, step) or changed
        changed = (
            self.div.update(s, step, self.spike, lr is not None and lr.warming, lr is not None and lr.in_warmup)
            or changed
        )
        return self.plateau.update(s, step, lr.ratio if lr is not None else None) or changed

    def many(self, steps: list[float], xs: list[float]) -> bool:
        """`self(step, x)` over a column of points, with the learning rate as it stands (a column
        block judges the LR first, so that is where it ends in the block)."""
        s = self.stats
        update = s.update
        nan = self.nan
        spiker = self.spike
        spike, div, plateau = spiker.update, self.div.update, self.plateau.update
        lr = self.lr()
        ratio = lr.ratio if lr is not None else None
        warming = lr is not None and lr.warming
        climbing = lr is not None and lr.in_warmup
        changed = False
        if self.nan_only:
            for step, x in zip(steps, xs, strict=True):
                if nan.nonfinite(step, x) if x - x != 0.0 else nan.current is not None and nan.finite(step):
                    changed = True
            return changed
        for step, x in zip(steps, xs, strict=True):
            if x - x != 0.0:
                if nan.nonfinite(step, x):
                    changed = True
                continue
            if x == 0.0 and self.total and self._hidden_nan():
                if nan.nonfinite(step, x):
                    changed = True
                continue
            if self.zeros < 2:
                self._count_zero(x)
            update(step, x)
            if nan.current is not None and nan.finite(step):
                changed = True
            if spike(s, step):
                changed = True
            if div(s, step, spiker, warming, climbing):
                changed = True
            if plateau(s, step, ratio):
                changed = True
        return changed

    def _hidden_nan(self) -> bool:
        """Whether an exact 0 of a total loss stands for NaN steps.

        HF Trainer's nan_inf_filter leaves NaN steps out of the logged average, which reads 0 when
        every step was NaN: a total loss that falls to exactly 0 right after clearly non-zero values
        (or stays 0 while already NaN) is NaN training. Components of a loss may well be 0 (a batch
        with no objects); a total does not fall to exactly 0 within one logging interval."""
        cur = self.nan.current
        if cur is not None and cur.active:
            return True
        if self.zeros == 2:
            # A 0 earlier on was followed by real values again: the log prints the loss with a few
            # decimals and a small loss reads 0.0000 (NaN training does not come back by itself).
            return False
        st = self.stats
        return st.n > 8 and st.last_value > 0.01 * abs(st.first)

    def _count_zero(self, x: float) -> None:
        """Note a 0 taken as a value, and a real value after one."""
        if x == 0.0:
            self.zeros = 1
        elif self.zeros == 1:
            self.zeros = 2

    def detectors(self) -> tuple[Detector, ...]:
        return (self.nan, self.spike, self.div, self.plateau)


class EvalMonitor:
    """An eval loss or metric: NaN/Inf (bad at its first point) and degradation / overfitting."""

    __slots__ = ("evals", "lr", "nan", "quality", "train")

    def __init__(
        self,
        key: str,
        th: Thresholds,
        role: Role,
        baseline: float | None,
        train: Callable[[], SeriesStats | None],
        axis: str = "step",
        quality: Callable[[], tuple[str, float, float, float] | None] | None = None,
        lr: Callable[[], LrDetector | None] | None = None,
    ) -> None:
        self.nan: NanDetector | None = NanDetector(key, th, axis)
        self.evals = EvalDetector(key, th, higher_better=role is Role.EVAL_UP, baseline=baseline, axis=axis)
        self.train = train
        self.quality = quality if role is Role.EVAL_LOSS else None
        self.lr = lr

    def _warmup(self) -> bool:
        lr = self.lr() if self.lr is not None else None
        return lr is not None and lr.in_warmup

    def __call__(self, step: float, x: float) -> bool:
        nan = self.nan
        if x - x != 0.0:
            return nan.nonfinite(step, x) if nan is not None else False
        changed = nan.finite(step) if nan is not None and nan.current is not None else False
        t = self.train()
        better = self.quality() if self.quality is not None else None
        level = t.level if t is not None and t.n else None
        return self.evals.update(step, x, level, better, self._warmup()) or changed

    def many(self, steps: list[float], xs: list[float]) -> bool:
        """`self(step, x)` over a column of points, with the training level as it stands (a column
        block judges the training loss before evals)."""
        nan = self.nan
        update = self.evals.update
        t = self.train()
        level = t.level if t is not None and t.n else None
        better = self.quality() if self.quality is not None else None
        warmup = self._warmup()
        changed = False
        for step, x in zip(steps, xs, strict=True):
            if x - x != 0.0:
                if nan is not None and nan.nonfinite(step, x):
                    changed = True
                continue
            if nan is not None and nan.current is not None and nan.finite(step):
                changed = True
            if update(step, x, level, better, warmup):
                changed = True
        return changed

    def detectors(self) -> tuple[Detector, ...]:
        return (self.evals,) if self.nan is None else (self.nan, self.evals)


class GradMonitor:
    """Gradient norm: overflow skips / NaN gradients, explosion, vanishing."""

    __slots__ = ("explode", "nonfinite", "stats", "vanish")

    def __init__(self, key: str, th: Thresholds, axis: str = "step") -> None:
        self.stats = SeriesStats(th.level_span, th.trend_window, full=False, floor=1e-9)
        self.nonfinite = GradNonFiniteDetector(key, th, axis)
        self.explode = GradExplosionDetector(key, th, axis)
        self.vanish = GradVanishingDetector(key, th, axis)

    def __call__(self, step: float, x: float) -> bool:
        if x - x != 0.0:
            return self.nonfinite.nonfinite(step, x)
        s = self.stats
        s.update(step, x)
        changed = self.nonfinite.finite(step) if self.nonfinite.current is not None else False
        changed = self.explode.update(s, step) or changed
        return self.vanish.update(s, step) or changed

    def many(self, steps: list[float], xs: list[float]) -> bool:
        """`self(step, x)` over a column of points."""
        s = self.stats
        update = s.update
        nonfinite = self.nonfinite
        explode, vanish = self.explode.update, self.vanish.update
        changed = False
        for step, x in zip(steps, xs, strict=True):
            if x - x != 0.0:
                if nonfinite.nonfinite(step, x):
                    changed = True
                continue
            update(step, x)
            if nonfinite.current is not None and nonfinite.finite(step):
                changed = True
            if explode(s, step):
                changed = True
            if vanish(s, step):
                changed = True
        return changed

    def detectors(self) -> tuple[Detector, ...]:
        return (self.nonfinite, self.explode, self.vanish)
