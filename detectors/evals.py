"""Eval metrics getting worse: overfitting (train still improving) or plain eval degradation.

Eval points are sparse (once per epoch or every N steps), so the rules count evaluations, not
points, and compare with the metric's own best (and a configured baseline when there is one).
"""

from __future__ import annotations

import math
from dataclasses import replace

from detectors.base import Detector, fmt, pct
from detectors.thresholds import Thresholds
from monitor.model import Severity

_KINDS = ("overfit", "eval_degradation")


class EvalDetector(Detector):
    """Eval clearly worse than its own best (or a baseline); `overfit` when train loss is still falling."""

    __slots__ = (
        "_baseline",
        "_best",
        "_best_raw",
        "_best_step",
        "_episode_max",
        "_higher_better",
        "_n",
        "_noise",
        "_onset",
        "_prev",
        "_prev2",
        "_quality_at_best",
        "_th",
        "_tolerance",
        "_train_at_best",
        "_warm",
        "_worse",
        "_worse_bad",
    )
    kind = "eval_degradation"

    def __init__(
        self,
        metric: str,
        th: Thresholds,
        higher_better: bool = False,
        baseline: float | None = None,
        axis: str = "step",
    ) -> None:
        super().__init__(metric, axis)
        self._th = th
        self._higher_better = higher_better
        self._baseline = baseline
        self._best = math.inf
        self._best_raw = math.nan
        self._best_step = 0.0
        self._train_at_best: float | None = None
        self._quality_at_best: tuple[str, float, float, float] | None = None
        self._worse = 0
        self._worse_bad = 0
        """Evaluations of the current episode beyond the bad margin (the others only wobble above the best)."""
        self._onset = 0.0
        self._n = 0
        self._noise = 0.0
        self._prev = math.nan
        self._prev2 = math.nan
        self._episode_max = 0.0
        self._tolerance = 0.0
        self._warm = False

    def _y(self, x: float) -> float:
        v = abs(x) + 1e-12
        return -math.log(v) if self._higher_better else math.log(v)

    def _one_story(self, kind: str) -> str:
        """One metric is never reported as both overfit and eval degradation: once it has overfit,
        that is what its earlier and later episodes are called too."""
        seen = [f for f in (*self.past, self.current) if f is not None and f.kind in _KINDS]
        if kind == "overfit":
            if any(f.kind != kind for f in seen):
                self.past = [replace(f, kind=kind) if f.kind in _KINDS else f for f in self.past]
                if self.current is not None and self.current.kind in _KINDS:
                    self.current = replace(self.current, kind=kind)
            return kind
        return "overfit" if any(f.kind == "overfit" for f in seen) else kind

    @property
    def higher_better(self) -> bool:
        """Whether higher values are better (accuracy-like)."""
        return self._higher_better

    @property
    def last_y(self) -> float | None:
        """The latest evaluation in the detector's own space (lower is better), once there is one."""
        return self._prev if self._n else None

    @property
    def noise(self) -> float:
        """The evaluations' own noise (from second differences), in the detector's space."""
        return self._noise

    @property
    def best_y(self) -> float | None:
        """The best evaluation so far in the detector's own space (lower is better), once there is one."""
        return self._best if self._n else None

    def update(
        self,
        step: float,
        x: float,
        train_level: float | None,
        quality: tuple[str, float, float, float] | None = None,
        warmup: bool = False,
    ) -> bool:
        """Fold in one evaluation; `train_level` is the training loss's current log level, if known;
        `quality` is the run's quality metric (accuracy, mAP, F1: name, `last_y`, `best_y`, `noise`). A
        worse eval loss while that metric has reached better values since the loss was at its best
        is over-confidence to watch, not a reason to stop. `warmup`: the LR is still rising through its
        initial warm-up."""
        th = self._th
        y = self._y(x)
        self._n += 1
        if self._prev2 == self._prev2:
            # Second differences cancel a steady trend, leaving the evaluation noise.
            d2 = abs(y - 2.0 * self._prev + self._prev2) / 2.449
            self._noise += (min(d2, 4.0 * self._noise if self._noise else d2) - self._noise) * 0.3
        self._prev2, self._prev = self._prev, y
        if self._baseline is not None:
            by = self._y(self._baseline)
            if y - by > max(th.eval_warn, th.eval_noise_k * self._noise) and self._n >= th.eval_patience:
                return self._fire(
                    Severity.BAD,
                    step,
                    step,
                    f"{self.metric} {fmt(x)} at {self.axis} {fmt(step)} is {pct(y - by)} worse than the baseline "
                    f"{fmt(self._baseline)}",
                    {"value": x, "baseline": self._baseline},
                )
        if warmup:
            self._warm = True
        elif self._warm:
            # The warm-up is over: an evaluation made on the way up (a noisy early best) is no
            # reference for what the model does at its operating point; this one is.
            self._warm = False
            self._best = math.inf
        if y < self._best:
            self._best = y
            self._best_raw = x
            self._best_step = step
            self._train_at_best = train_level
            self._quality_at_best = quality
            self._worse = 0
            self._worse_bad = 0
            # A wobble above the best that came back down shows how much this series wobbles normally.
            self._tolerance = max(self._tolerance, self._episode_max)
            self._episode_max = 0.0
            return self.active and self._resolve(
                step, f"{self.metric} at a new best {fmt(x)} at {self.axis} {fmt(step)}"
            )
        excess = y - self._best
        self._episode_max = max(self._episode_max, excess)
        noisy = max(th.eval_noise_k * self._noise, 1.5 * self._tolerance)
        warn_margin = max(th.eval_warn, noisy)
        bad_margin = max(th.eval_bad, noisy)
        if self._worse == 0:
            if excess <= warn_margin:
                return False
            self._onset = step
            self._worse_bad = 0
        self._worse += 1
        if excess > bad_margin:
            self._worse_bad += 1
        # Dense evaluations (one per epoch over hundreds of epochs) wobble for several evals in a row;
        # ask for persistence in proportion, up to 10 evaluations.
        patience = max(th.eval_patience, min(10, int(0.1 * self._n)))
        bad_patience = max(th.eval_bad_patience, patience)
        overfit = (
            train_level is not None
            and self._train_at_best is not None
            and train_level < self._train_at_best - math.log(1.01)
        )
        # Accuracy-like metrics wobble more than losses; they only ever warn.
        # With a quality metric beside it, an eval loss is clearly worse only when quality is clearly
        # worse too than when the loss was at its best; if quality has improved since, it only warns.
        qb = self._quality_at_best
        q = quality if quality is not None and qb is not None and quality[0] == qb[0] else None
        quality_worse = quality is None or (
            q is not None and qb is not None and q[1] > qb[1] + max(th.eval_quality_worse, th.eval_noise_k * q[3])
        )
        improving = (
            q[0] if q is not None and qb is not None and q[2] < qb[2] - th.eval_warn and not quality_worse else None
        )
        # While the LR still climbs through its warm-up the model is not at its operating point yet:
        # an eval worse than an early best is to watch (the warm-up trap), not a reason to stop.
        can_be_bad = not self._higher_better and improving is None and quality_worse and not warmup
        # Bad takes evaluations beyond the bad margin, as many as the patience: a long episode of
        # evaluations barely above the best that ends on one noisy evaluation is a wobble to watch.
        if can_be_bad and excess > bad_margin and self._worse_bad >= bad_patience:
            severity = Severity.BAD
        elif excess > warn_margin and self._worse >= patience + (0 if can_be_bad else 1):
            severity = Severity.WARN
        else:
            return False
        cur = self.current
        if cur is not None and cur.active and cur.severity > severity and improving is None:
            # Within one episode (until a new best) the verdict does not flap back with every wobble.
            severity = cur.severity
        kind = self._one_story("overfit" if overfit else "eval_degradation")
        what = "while the training loss keeps falling" if overfit else "its best"
        return self._fire(
            severity,
            step,
            self._onset,
            f"{self.metric} {fmt(x)} at {self.axis} {fmt(step)} is {pct(excess)} worse than its best "
            f"{fmt(self._best_raw)} ({self.axis} {fmt(self._best_step)}) for {self._worse} evaluations"
            + (f", {what}" if overfit else "")
            + (f" (but {improving} has improved since)" if improving is not None else ""),
            {"value": x, "best": self._best_raw, "best_step": self._best_step, "evals_worse": self._worse},
            kind=kind,
            refresh=True,
        )
