"""Detectors on the training loss: NaN/Inf, spikes, divergence, plateau (and convergence)."""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable

from detectors.base import Detector, fmt, pct, safe_exp
from detectors.burst import Burst
from detectors.series import SIGMA_PER_ABSDIFF as _SIGMA
from detectors.series import SeriesStats, mann_kendall_z
from detectors.thresholds import Thresholds
from monitor.model import Severity

_TOTAL_LOSS_RE = re.compile(
    r"^(?:(?:train|training|trainer)[/_ ])?"
    r"(?:total[/_ ]?loss|loss(?:[/_ ]total)?|lm[ _]loss|train[ _]loss|trl|tot_loss)$"
)


def is_total_loss(key: str) -> bool:
    """Whether a training-loss key names the whole objective ("loss", "total_loss", "lm loss"), not a
    component of it ("loss_rpn_cls", "box_loss", "kl_loss"), whose rise the others may pay for."""
    return bool(_TOTAL_LOSS_RE.match(key.strip().lower()))


class NanDetector(Detector):
    """A NaN/Inf value is bad at once; finite values afterwards make it a transient, kept for the record."""

    __slots__ = ("_finite_after", "_th")
    kind = "nan"

    def __init__(self, metric: str, th: Thresholds, axis: str = "step") -> None:
        super().__init__(metric, axis)
        self._th = th
        self._finite_after = 0

    def nonfinite(self, step: float, x: float, onset: float | None = None) -> bool:
        """A NaN/Inf value (or a 0 standing for one: `detectors.monitors.LossMonitor._hidden_nan`)."""
        self._finite_after = 0
        cur = self.current
        if cur is not None and cur.active:
            return False
        at = step if onset is None else onset
        what = fmt(x) if x != 0.0 else "exactly 0 right after real values (NaN steps left out of its average)"
        return self._fire(
            Severity.BAD,
            step,
            at,
            f"{self.metric} is {what} at {self.axis} {fmt(at)}",
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
            f"{self.metric} was non-finite at {self.axis} {fmt(cur.onset_step)}, finite again from "
            f"{self.axis} {fmt(step)}",
        )


class SpikeDetector(Detector):
    """A sudden jump far above the robust level; recovered spikes become history, repeated ones are bad.

    While a spike is in progress (`in_spike`), the divergence detector leaves the episode to it;
    one whose level has not started coming down after `spike_recover_points` is a divergence.
    """

    __slots__ = (
        "_base",
        "_count",
        "_max_jump",
        "_onsets",
        "_peak",
        "_peak_level",
        "_peaks",
        "_scale",
        "_th",
        "_zs",
        "in_spike",
        "onset_n",
        "onset_step",
    )
    kind = "spike"

    def __init__(self, metric: str, th: Thresholds, axis: str = "step") -> None:
        super().__init__(metric, axis)
        self._th = th
        self.in_spike = False
        self.onset_n = 0
        self.onset_step = 0.0
        self._base = 0.0
        self._peak = 0.0
        self._peak_level = 0.0
        self._scale = 0.0
        self._count = 0
        self._max_jump = 0.0
        self._onsets: deque[int] = deque(maxlen=max(1, th.spike_repeat))
        self._zs: deque[float] = deque(maxlen=max(1, th.spike_repeat))
        self._peaks: deque[float] = deque(maxlen=max(1, th.spike_repeat))

    def update(self, s: SeriesStats, step: float) -> bool:
        th = self._th
        if self.in_spike:
            y = s.y
            if y > self._peak:
                self._peak = y
            if s.level > self._peak_level:
                self._peak_level = s.level
            if y <= self._base + max(3.0 * self._scale, 0.5 * th.spike_min_jump):
                self.in_spike = False
                return self._resolve(
                    step,
                    f"{self.metric} spike at {self.axis} {fmt(self.onset_step)} "
                    f"(peak {pct(self._peak - self._base)}) recovered by {self.axis} {fmt(step)}",
                    peak_ratio=safe_exp(self._peak - self._base),
                )
            return False
        if s.n < 3 or s.z <= th.spike_z or s.residual <= th.spike_min_jump or s.residual <= 4.0 * s.sigma:
            return False
        self.in_spike = True
        self.onset_n = s.n
        self.onset_step = step
        self._base = s.y - s.residual
        self._peak = s.y
        self._peak_level = s.level
        self._scale = max(s.noise, s.sigma)
        self._onsets.append(s.n)
        self._zs.append(s.z)
        self._peaks.append(s.last_value)
        before = s.inverse(self._base)
        evidence = {
            "value": s.last_value,
            "level_before": before,
            "z": round(s.z, 1),
            "jump": pct(s.residual),
        }
        self._count += 1
        repeated = len(self._onsets) == self._onsets.maxlen and s.n - self._onsets[0] <= th.spike_repeat_window
        if repeated:
            # Repeated relative to this series' own habit: heavy-tailed batch noise throws a
            # "spike" every few hundred points, so a cluster must be far denser than the run's past.
            first = self._onsets[0]
            before = self._count - len(self._onsets)
            past_rate = (before + 0.5) / (first + 200.0)
            cluster_rate = len(self._onsets) / (s.n - first + 1.0)
            # And each must bring the loss back to a real fraction of where the run started: a loss
            # memorised to ~0 jumps by orders of magnitude on one hard batch, which is not instability.
            high = s.linear or min(self._peaks) >= 0.25 * s.first
            repeated = cluster_rate >= 20.0 * past_rate and min(self._zs) >= 2.0 * th.spike_z and high
        if repeated:
            return self._fire(
                Severity.BAD,
                step,
                step,
                f"{self.metric}: {len(self._onsets)} spikes within {s.n - self._onsets[0]} points, latest "
                f"{fmt(s.last_value)} at {self.axis} {fmt(step)} ({pct(s.residual)} over its level)",
                evidence,
            )
        highest = self._max_jump
        if s.residual > highest:
            self._max_jump = s.residual
        if self._count > _HABIT_SPIKES and s.residual <= highest and self._count * _HABIT_EVERY >= s.n:
            # Within the series' own habit: it has spiked this high before, often (heavy-tailed batch
            # losses, BPTT bursts). The episode is still followed (a spike that does not come down is
            # a divergence; a dense cluster is bad), it just does not warn on its own.
            return False
        return self._fire(
            Severity.WARN,
            step,
            step,
            f"{self.metric} spiked to {fmt(s.last_value)} at {self.axis} {fmt(step)} ({pct(s.residual)} over "
            f"its level {fmt(before)}); watching for recovery",
            evidence,
        )

    def stuck(self, s: SeriesStats) -> bool:
        """In a spike for `spike_recover_points` points, its level still at least half way up the jump
        and its last points not trending down: it is not coming back."""
        if not self.in_spike or s.n - self.onset_n < self._th.spike_recover_points:
            return False
        jump = self._peak_level - self._base
        if jump <= 0.0 or s.level < self._base + 0.5 * jump:
            return False
        recent = s.window()[-8:]
        return mann_kendall_z(recent) > -1.0

    def climbing(self, s: SeriesStats) -> bool:
        """The newest point is a new high of a spike two or more points old: a rise, not a spike."""
        return self.in_spike and s.n - self.onset_n >= 2 and s.y >= self._peak

    @property
    def base(self) -> float:
        """The level the current spike jumped from (statistics space)."""
        return self._base


#: A series that has spiked more than this many times, at least once every `_HABIT_EVERY` points on
#: average, spikes by habit: a spike no higher than its earlier ones does not warn by itself.
_HABIT_SPIKES = 3
_HABIT_EVERY = 100


class DivergenceDetector(Detector):
    """The loss's level stays well above its best, keeps rising by a rank trend test, or jumped and stays up.

    Margins are the larger of a relative one (20 %, 3 %) and a multiple of the series' own noise:
    the best level is the minimum of a slow robust level, so its bias below the typical level is a
    fraction of the noise, and the margins are several times that.
    """

    __slots__ = (
        "_anchor",
        "_anchor_step",
        "_big_run",
        "_burst",
        "_low",
        "_low_step",
        "_onset",
        "_progress",
        "_th",
        "_trend_hits",
        "component",
        "siblings",
    )
    kind = "divergence"

    def __init__(self, metric: str, th: Thresholds, axis: str = "step") -> None:
        super().__init__(metric, axis)
        self._th = th
        self.component = False
        """A component of a run that also logs its total loss: rising alone, it only warns."""
        self.siblings: Callable[[], bool] | None = None
        """Whether another loss of the run holds at its best (then this one rising is a trade-off)."""
        self._progress = False
        self._anchor = math.inf
        self._anchor_step = 0.0
        self._low = math.inf
        self._low_step = 0.0
        self._onset: float | None = None
        self._big_run = 0
        self._trend_hits = 0
        self._burst = Burst()

    def holding(self, s: SeriesStats) -> bool:
        """The level is at (or within the small margin of) its best."""
        small = max(self._th.divergence_small, self._th.trend_noise_k * s.absdiff * _SIGMA)
        return s.n >= 8 and s.level - min(s.best, self._anchor) <= small

    def update(
        self,
        s: SeriesStats,
        step: float,
        spike: SpikeDetector | None = None,
        warming: bool = False,
        climbing: bool = False,
    ) -> bool:
        """`warming`: the LR has not decayed since its warm-up began; `climbing`: it is rising through
        that warm-up right now (a loss rising then only warns: see below)."""
        th = self._th
        sigma = s.absdiff * _SIGMA
        small = th.trend_noise_k * sigma
        if small < th.divergence_small:
            small = th.divergence_small
        best = s.best
        if not self._progress:
            if best < s.y0 - small:
                self._progress = True
            elif warming:
                # A loss that has never fallen below where it started, while the LR still warms
                # up, has no best level yet (a detection head's losses start near zero and grow
                # as matches appear): the reference starts once the warm-up is over.
                self._anchor = s.slow
                self._anchor_step = step
        if self._anchor < math.inf:
            if s.slow < self._anchor:
                self._anchor = s.slow
                self._anchor_step = step
            best = self._anchor
        excess = s.level - best
        if excess <= small:
            if s.level <= self._low or excess <= 0.0:
                # Where the level last bottomed out: a divergence that follows began there.
                self._low = s.level
                self._low_step = step
            self._onset = None
            self._big_run = 0
            self._trend_hits = 0
            self._burst.start = 0
            if excess <= 0.5 * small:
                cur = self.current
                if cur is not None and cur.active:
                    return self._resolve(step, f"{self.metric} came back to its best level by {self.axis} {fmt(step)}")
            return False
        if self._onset is None:
            self._onset = self._low_step if self._low < math.inf else step
            self._low = math.inf
        burst = self._burst
        burst.follow(s, best, max(th.divergence_big, th.divergence_noise_k * sigma), th.divergence_big)
        if s.n < 8:
            return False
        severity = Severity.WARN if self.component or (self.siblings is not None and self.siblings()) else Severity.BAD
        if climbing:
            # While the LR still climbs through its warm-up, a loss that rises is a warning: a new
            # head's losses grow as matches appear, and the loss is judged at the full LR soon.
            # Still diverged once the LR stops rising, it is bad then.
            severity = Severity.WARN
        if self._already(severity):
            return False
        if spike is not None and spike.in_spike and not spike.climbing(s):
            # A spike in progress is the spike detector's episode: recovering or stuck, it decides.
            self._big_run = 0
            self._trend_hits = 0
            if not spike.stuck(s):
                return False
            return self._stuck(s, step, spike, severity)
        big = max(th.divergence_big, th.divergence_noise_k * sigma)
        if burst.decaying(s, best, big, small, th):
            # A burst coming back down (see `detectors.burst.Burst`): neither its height nor its trend counts yet.
            self._big_run = 0
            self._trend_hits = 0
            return False
        self._big_run = self._big_run + 1 if excess > big else 0
        sustained = self._big_run >= th.divergence_sustain
        trending = False
        # The trend test is weaker evidence than the big margin: the slow level (half the fast
        # level's noise) must have left its best by the small margin too.
        if not sustained and s.n >= th.trend_window and s.slow - s.best > small and excess > th.trend_min_rise:
            if mann_kendall_z(s.window()) >= th.trend_z:
                self._trend_hits += 1
                trending = self._trend_hits >= 2
            else:
                self._trend_hits = 0
        if not (sustained or trending):
            return False
        best_step = s.best_step if best == s.best else self._anchor_step
        best = s.inverse(best)
        how = f"for {self._big_run} points" if sustained else f"and still rising over the last {th.trend_window} points"
        rel = f"{pct(excess)} above" if not s.linear else "above"
        part = " (one component of the loss)" if self.component else ""
        if severity is Severity.WARN and not self.component:
            part = " (other losses of the run hold at their best)"
        return self._fire(
            severity,
            step,
            self._onset,
            f"{self.metric} is diverging: level {rel} its best ({fmt(best)} at {self.axis} {fmt(best_step)}) "
            f"{how}{part}",
            {"excess": pct(excess), "best": best, "best_step": best_step, "value": s.last_value},
        )

    def _stuck(self, s: SeriesStats, step: float, spike: SpikeDetector, severity: Severity) -> bool:
        before = s.inverse(spike.base)
        return self._fire(
            severity,
            step,
            spike.onset_step,
            f"{self.metric} jumped at {self.axis} {fmt(spike.onset_step)} and has not come back "
            f"({fmt(s.inverse(s.level))} now, {fmt(before)} before): diverged",
            {"level_before": before, "level": s.inverse(s.level), "value": s.last_value},
        )


class PlateauDetector(Detector):
    """No real improvement for a long stretch; with the LR at its floor it is convergence instead."""

    __slots__ = ("_ref", "_ref_n", "_ref_step", "_th")
    kind = "plateau"

    def __init__(self, metric: str, th: Thresholds, axis: str = "step") -> None:
        super().__init__(metric, axis)
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
                return self._resolve(step, f"{self.metric} improving again at {self.axis} {fmt(step)}")
            return False
        idle = s.n - self._ref_n
        if s.constant or idle < th.plateau_min_points or idle < th.plateau_fraction * s.n:
            return False
        small = max(th.divergence_small, th.trend_noise_k * s.sigma)
        # Converged means it learned, then settled: flat where it started is a plateau at any LR.
        learned = s.best < s.y0 - small
        converged = (
            learned and s.level - s.best <= small and lr_ratio is not None and lr_ratio <= th.converged_lr_fraction
        )
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
                f"{self.metric} flat since {self.axis} {fmt(self._ref_step)} with the LR at "
                f"{lr_ratio * 100:.0f}% of its peak: converged",
                ev,
                kind="converged",
            )
        return self._fire(
            Severity.WARN,
            step,
            self._ref_step,
            f"{self.metric} has not improved since {self.axis} {fmt(self._ref_step)} ({idle} points)",
            ev,
        )
