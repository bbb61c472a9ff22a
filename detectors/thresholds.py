"""Tunable thresholds of the detectors, with the reasoning behind each default.

Loss-like series are judged in log space, so thresholds are relative (scale-free): `log(1.25)`
means "25 % above", whatever the loss's units. Counts are in logged points, not steps, so they do
not depend on the logging interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Every knob the detectors have; `[thresholds]` in the config overrides any of them."""

    level_span: float = 8.0
    """EWMA span (points) of the robust level a series is compared with."""
    spike_z: float = 6.0
    """A spike is at least this many robust deviations above the level..."""
    spike_min_jump: float = math.log(1.25)
    """...and at least 25 % above it, so batch noise on a smooth curve is never a spike."""
    spike_repeat: int = 3
    """This many spikes within `spike_repeat_window` points make a run bad."""
    spike_repeat_window: int = 200
    divergence_small: float = math.log(1.03)
    """A level 3 % above the run's best counts as rising when a trend test agrees..."""
    divergence_big: float = math.log(1.2)
    """...and 20 % above it counts as diverging on its own once sustained."""
    divergence_sustain: int = 5
    """Points the level must stay above the big margin (one spike is not a trend)."""
    divergence_noise_k: float = 2.5
    """Both divergence margins grow to this many times the series' point-to-point noise, so a
    batch-size-4 loss that jumps 10x between single steps never diverges by noise alone."""
    trend_min_rise: float = math.log(1.10)
    """...and by 10 % at least: a window-averaged loss is so smooth that a few percent of drift over an
    epoch is statistically clear and practically nothing."""
    trend_noise_k: float = 1.5
    """A rising trend must also have lifted the level this many noise units above its best."""
    spike_recover_points: int = 10
    """A spike still half way up after this many points, and not trending down, is a divergence."""
    trend_window: int = 16
    """Points in the rank (Mann-Kendall) trend test."""
    trend_z: float = 2.33
    """One-sided z of the trend test (p < 0.01)."""
    plateau_improve: float = math.log(1.01)
    """An improvement smaller than 1 % (or than the slow level's own noise) does not count as progress..."""
    plateau_min_points: int = 30
    """...and no progress for this many points..."""
    plateau_fraction: float = 0.3
    """...and for this fraction of the run so far is a plateau."""
    converged_lr_fraction: float = 0.1
    """A plateau with the LR at or below this fraction of its peak is convergence, not a plateau."""
    eval_warn: float = math.log(1.02)
    """Eval 2 % worse than its best for `eval_patience` evaluations: a warning..."""
    eval_bad: float = math.log(1.10)
    """...10 % worse for `eval_bad_patience` evaluations: bad."""
    eval_quality_worse: float = math.log(1.05)
    """Beside a quality metric (accuracy, mAP) an eval loss is bad only when quality is this much
    worse (5 %, in -log space) than when the loss was at its best."""
    eval_patience: int = 2
    eval_bad_patience: int = 3
    eval_noise_k: float = 3.0
    """The margins grow to this many times the eval series' own noise."""
    grad_explosion_ratio: float = math.log(10.0)
    """Grad norm 10x above its usual level..."""
    grad_sustain: int = 3
    """...for this many points in a row."""
    grad_vanishing_ratio: float = math.log(1e-3)
    """Grad norm below 1/1000 of its peak level for `grad_sustain` points."""
    grad_nonfinite_bad: int = 10
    """Consecutive non-finite grad norms (with a finite loss) before overflow skips are treated as NaN
    training: a loss scaler halves its scale on each skip, so a burst of a few is ordinary."""
    lr_jump_ratio: float = math.log(3.0)
    """After the schedule has started decaying, the LR tripling between two points is a jump."""
    stall_factor: float = 10.0
    """No new step for this many times the usual interval..."""
    stall_min_seconds: float = 120.0
    """...and at least this long is a stall."""
    idle_after_seconds: float = 2 * 3600.0
    """With no end marker and no update for this long, a run is idle (information), not stalled."""
    gpu_idle_seconds: float = 120.0
    """GPU history judged for idleness, and how recently the run must have logged for it to count."""
    gpu_idle_util_pct: float = 5.0
    """Mean GPU utilisation (percent) below which the GPUs under a logging run are idle."""
    nan_recover_points: int = 1
    """Finite values after a NaN that make the NaN finding inactive (a transient value)."""

    def with_overrides(self, values: dict[str, Any]) -> Thresholds:
        """A copy with `values` applied; unknown names raise KeyError naming the key."""
        names = {f.name for f in fields(self)}
        for key in values:
            if key not in names:
                raise KeyError(key)
        return replace(self, **values)


DEFAULT = Thresholds()
