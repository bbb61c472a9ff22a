"""The RL / LLM lens: detectors on the metrics that policy-optimisation trainers log (TRL, verl, OpenRLHF,
DeepSpeed-Chat, stable-baselines3 naming).

- KL divergence too low for long (the policy barely moves: updates too conservative), spiky, or (for the
  per-update KL of PPO) sustained far above its usual target (updates too aggressive);
- entropy collapse (the policy turned deterministic: nothing left to explore);
- clip fraction far above its usual range (most tokens hit the PPO clip: steps too large);
- no learning signal (GRPO's `frac_reward_zero_std` near 1: every completion of a group gets the same
  reward, so every advantage is zero);
- reward rising while the task metric (accuracy, success, exact match) falls: reward hacking or a
  verifier problem.

Every check is O(1) per point and scale-free where the quantity has no natural scale. Most findings are
warnings: RL curves are noisy by nature, and a false STOP on a healthy run is the worst error. Only an
entropy that collapsed by orders of magnitude to almost nothing, and stayed there, is bad.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from detectors.base import Detector, fmt
from detectors.series import SIGMA_PER_ABSDIFF, SeriesStats
from monitor.model import Finding, Role, Severity

Handler = Callable[[float, float], bool]

_KL_UPDATE = re.compile(r"(?:^|[/_])(?:ppo_kl|approx_?kl|approxkl)(?:_mean|_avg|/mean)?$")
_KL_REF = re.compile(r"(?:^|/)(?:kl|ref_kl|kl_ref|kl_div|kl_mean|mean_kl|kl/mean)(?:_mean|_avg)?$")
_ENTROPY = re.compile(r"(?:^|/)(?:policy_)?entropy(?:_avg|_mean|/mean)?$")
_CLIP = re.compile(r"(?:^|[/_])(?:pg_)?(?:clip_?frac(?:tion)?|clip_ratio)(?:_avg|_mean|/mean|/region_mean)?$")
_REWARD = re.compile(r"(?:^|/)(?:rewards?|reward_mean|mean_reward|rlhf_reward|scores?|ep_rew_mean)(?:/mean)?$")
_ZERO_STD = re.compile(r"(?:^|/)frac_reward_zero_std$")
_TASK = re.compile(r"success|exact[_ ]?match|pass@\d|solve[_ ]?rate|accuracy|(?:^|[/_])acc(?:$|[/_@])")

#: Keys that show the run's loss is a policy objective (not a loss that falls): GRPO/PPO for LLMs.
_POLICY_RUN = re.compile(r"(?:^|/)frac_reward_zero_std$|clip_ratio/|(?:^|/)(?:actor|objective)/|ppo_kl")


def kind_of(key: str, role: Role) -> str | None:
    """Which RL quantity a metric is ("kl_update", "kl_ref", "entropy", "clip", "reward", "zero_std", "task")."""
    k = key.strip().lower()
    if "kl_coef" in k or "kl_ctl" in k or "kl_coeff" in k:
        return None
    if _KL_UPDATE.search(k):
        return "kl_update"
    if _KL_REF.search(k):
        return "kl_ref"
    if "loss" in k:
        return None
    if _ENTROPY.search(k):
        return "entropy"
    if _CLIP.search(k) and "completion" not in k:
        return "clip"
    if _ZERO_STD.search(k):
        return "zero_std"
    if "reward" not in k and (role is Role.EVAL_UP or _TASK.search(k)) and role is not Role.EVAL_DOWN:
        return "task"
    if _REWARD.search(k) and not k.startswith(("eval", "val", "test")):
        return "reward"
    return None


def policy_run(key: str) -> bool:
    """Whether a key shows a policy-optimisation run whose `loss` is not an objective that falls."""
    return bool(_POLICY_RUN.search(key.strip().lower()))


@dataclass(frozen=True, slots=True)
class RlThresholds:
    """Knobs of the RL lens, with the reasoning behind each default."""

    min_points: int = 30
    """Points before any "for long" judgement (KL too low, no signal, entropy collapse)."""
    long_fraction: float = 0.5
    """A condition "for long" holds for this fraction of the run's points so far, at least."""
    kl_ref_low: float = 1e-3
    """A KL to the reference policy under 1e-3 nats all along: the policy has barely moved."""
    kl_growth: float = math.log(3.0)
    """...and not growing: a KL up 3x since the low stretch began starts the count again."""
    kl_update_low: float = 1e-4
    """A per-update KL (PPO approx_kl) 100x under the usual 0.01-0.02 target: steps too small."""
    kl_update_high: float = 0.1
    """A per-update KL 5-10x above the usual target, sustained: steps too large."""
    kl_high_sustain: int = 10
    kl_spike_ratio: float = math.log(10.0)
    """A KL point 10x above its level (and `kl_spike_z` noise units) is a spike..."""
    kl_spike_z: float = 6.0
    kl_spike_floor: float = 0.05
    """...and large in absolute terms (nats): 1e-5 -> 1e-4 is no aggressive update."""
    kl_spike_repeat: int = 3
    """This many KL spikes within `kl_spike_window` points: updates too aggressive (warn)."""
    kl_spike_window: int = 50
    entropy_warn: float = math.log(1 / 20)
    """Entropy level 20x under its peak level: collapsing (warn)..."""
    entropy_bad: float = math.log(1 / 100)
    """...100x under its peak, below `entropy_bad_abs` nats and for long: collapsed (bad)."""
    entropy_bad_abs: float = 0.01
    entropy_sustain: int = 5
    clip_high: float = 0.3
    """Clip fraction level above 30 % (and 3x its usual level): most updates are clipped."""
    clip_usual_factor: float = 3.0
    clip_sustain: int = 10
    zero_std_high: float = 0.8
    """GRPO groups with zero reward spread above 80 % of the time: (almost) no learning signal."""
    task_drop_abs: float = 0.02
    """The task metric is down from its best by at least this much (plus 5 % of it and 3 noise units)..."""
    task_drop_rel: float = 0.05
    task_noise_k: float = 3.0
    task_patience: int = 2
    """...for this many evaluations in a row,"""
    reward_rise_k: float = 2.0
    """...while the reward level rose this many noise units (and 5 % of its size) since that best."""


RL_DEFAULT = RlThresholds()


class _Level:
    """Robust level of a raw series (EWMA of the median of the last three points) and its noise."""

    __slots__ = ("_a", "_p1", "_p2", "level", "n", "noise")

    def __init__(self, span: float = 8.0) -> None:
        self._a = 2.0 / (span + 1.0)
        self._p1 = self._p2 = math.nan
        self.level = 0.0
        self.noise = 0.0
        self.n = 0

    def update(self, x: float) -> None:
        self.n += 1
        if self.n == 1:
            self.level = self._p1 = self._p2 = x
            return
        p1, p2 = self._p1, self._p2
        m = sorted((x, p1, p2))[1]
        r = abs(x - self.level)
        lim = 4.0 * self.noise if self.n > 4 else r
        self.noise += (0.3 if self.n < 8 else 0.1) * (min(r, lim) - self.noise)
        self.level += self._a * (m - self.level)
        self._p2, self._p1 = p1, x


class KlDetector(Detector):
    """KL divergence: too low for long (warn), spiky or sustained too high (warn)."""

    __slots__ = ("_cand", "_high", "_low", "_low_level", "_low_start", "_spikes", "_th", "stats", "update_kl")
    kind = "kl_anomaly"

    def __init__(self, metric: str, th: RlThresholds, update_kl: bool, axis: str = "step") -> None:
        super().__init__(metric, axis)
        self._th = th
        self.update_kl = update_kl
        """A KL between the old and the new policy of one update (PPO), not to a reference model."""
        self.stats = SeriesStats(8.0, 16, full=True, floor=1e-9)
        self._low = 0
        self._low_start = 0.0
        self._low_level = 0.0
        self._high = 0
        self._spikes: list[float] = []
        self._cand = 0
        """Points in a row far above the level: one alone that comes back is a spike, more are a level shift."""

    def update(self, step: float, x: float) -> bool:
        if x - x != 0.0:
            return False
        th = self._th
        s = self.stats
        s.update(step, max(x, 1e-12))
        if s.n < 5 or s.constant:
            return False
        level = s.inverse(s.level)
        # Spikes: far above the running level in ratio, in noise units, and in nats.
        if s.residual > th.kl_spike_ratio and s.z > th.kl_spike_z and x > th.kl_spike_floor:
            self._cand += 1
        else:
            if self._cand == 1:
                self._spikes.append(s.n)
            self._cand = 0
        while self._spikes and s.n - self._spikes[0] > th.kl_spike_window:
            self._spikes.pop(0)
        low_bar = th.kl_update_low if self.update_kl else th.kl_ref_low
        if level < low_bar:
            if self._low == 0 or s.level - self._low_level > th.kl_growth:
                # A KL that keeps growing (a policy leaving its reference slowly) is not stuck.
                self._low_start, self._low_level, self._low = step, s.level, 0
            self._low += 1
        else:
            self._low = 0
        high = self.update_kl and level > th.kl_update_high
        self._high = self._high + 1 if high else 0
        if len(self._spikes) >= th.kl_spike_repeat:
            if self._already(Severity.WARN) and self.current is not None and "spik" in self.current.message:
                return False
            return self._fire(
                Severity.WARN,
                step,
                step,
                f"{self.metric} spiked {len(self._spikes)} times in the last {th.kl_spike_window} points "
                f"(now {fmt(x)}, level {fmt(level)}) by {self.axis} {fmt(step)}: updates too aggressive?",
                {"value": x, "level": level, "spikes": len(self._spikes)},
            )
        if self._high >= th.kl_high_sustain:
            if self._already(Severity.WARN):
                return False
            return self._fire(
                Severity.WARN,
                step,
                step,
                f"{self.metric} level {fmt(level)} at {self.axis} {fmt(step)} has stayed above "
                f"{fmt(th.kl_update_high)} for {self._high} points (PPO usually targets 0.01-0.02): "
                "updates too aggressive?",
                {"value": x, "level": level, "points": self._high},
            )
        if s.n >= th.min_points and self._low >= max(th.min_points, th.long_fraction * s.n):
            if self._already(Severity.WARN):
                return False
            what = (
                "each update barely changes the policy"
                if self.update_kl
                else "the policy barely moves from its reference"
            )
            return self._fire(
                Severity.WARN,
                step,
                self._low_start,
                f"{self.metric} {fmt(level)} at {self.axis} {fmt(step)} has stayed below {fmt(low_bar)} for "
                f"{self._low} points: {what} (updates too conservative?)",
                {"value": x, "level": level, "points": self._low, "below": low_bar},
            )
        cur = self.current
        if cur is None or not cur.active or self._spikes or self._high or self._low:
            return False
        return self._resolve(step, f"{self.metric} back in its usual range by {self.axis} {fmt(step)}")


class EntropyDetector(Detector):
    """Policy entropy collapsed by orders of magnitude from its peak level."""

    __slots__ = ("_off", "_onset", "_peak", "_run", "_th", "stats")
    kind = "entropy_collapse"

    def __init__(self, metric: str, th: RlThresholds, axis: str = "step") -> None:
        super().__init__(metric, axis)
        self._th = th
        self.stats = SeriesStats(8.0, 16, full=False, floor=1e-9)
        self._peak = -math.inf
        self._run = 0
        self._onset = 0.0
        self._off = False

    def update(self, step: float, x: float) -> bool:
        if self._off or x - x != 0.0:
            return False
        if x < 0.0:
            # A differential entropy (continuous actions) can be negative: no collapse scale to judge.
            self._off = True
            return self._resolve(step, f"{self.metric} is a differential entropy (negative): not judged")
        th = self._th
        s = self.stats
        s.update(step, max(x, 1e-12))
        if s.constant:
            return False
        if s.n >= 5 and s.level > self._peak:
            self._peak = s.level
        if s.n < 10:
            return False
        below = s.level - self._peak
        level = s.inverse(s.level)
        if below < th.entropy_warn:
            if self._run == 0:
                self._onset = step
            self._run += 1
            bad = (
                below < th.entropy_bad
                and level < th.entropy_bad_abs
                and s.n >= th.min_points
                and self._run >= max(th.min_points // 2, 0.25 * s.n)
            )
            sev = Severity.BAD if bad else Severity.WARN
            if self._run < th.entropy_sustain or self._already(sev):
                return False
            peak = s.inverse(self._peak)
            return self._fire(
                sev,
                step,
                self._onset,
                f"{self.metric} {fmt(level)} at {self.axis} {fmt(step)} is {fmt(math.exp(-below))}x under its peak "
                f"level {fmt(peak)}"
                + (f" for {self._run} points: entropy collapsed" if bad else ": entropy collapsing")
                + " (the policy stopped exploring)",
                {"value": x, "level": level, "peak_level": peak, "points": self._run},
            )
        self._run = 0
        cur = self.current
        if cur is None or not cur.active:
            return False
        return self._resolve(step, f"{self.metric} recovered by {self.axis} {fmt(step)}")


class ClipDetector(Detector):
    """PPO/GRPO clip fraction far above its usual range, sustained."""

    __slots__ = ("_off", "_onset", "_run", "_th", "_usual", "lev")
    kind = "clip_anomaly"

    def __init__(self, metric: str, th: RlThresholds, axis: str = "step") -> None:
        super().__init__(metric, axis)
        self._th = th
        self.lev = _Level()
        self._usual = math.nan
        self._run = 0
        self._onset = 0.0
        self._off = False

    def update(self, step: float, x: float) -> bool:
        if self._off or x - x != 0.0:
            return False
        if x > 1.0 or x < 0.0:
            self._off = True  # not a fraction (a percentage, a count): no range to judge
            return False
        th = self._th
        lv = self.lev
        lv.update(x)
        if lv.n < 10:
            return False
        usual = self._usual
        if usual != usual:
            usual = self._usual = lv.level
        high = lv.level > th.clip_high and lv.level > th.clip_usual_factor * usual
        if not high:
            self._usual = usual + 0.03 * (lv.level - usual)
            self._run = 0
            cur = self.current
            if cur is None or not cur.active:
                return False
            return self._resolve(step, f"{self.metric} back in its usual range by {self.axis} {fmt(step)}")
        if self._run == 0:
            self._onset = step
        self._run += 1
        if self._run < th.clip_sustain or self._already(Severity.WARN):
            return False
        return self._fire(
            Severity.WARN,
            step,
            self._onset,
            f"{self.metric} level {fmt(lv.level)} at {self.axis} {fmt(step)}, {fmt(lv.level / max(usual, 1e-9))}x "
            f"its usual {fmt(usual)} for {self._run} points: most updates hit the clip range (steps too large?)",
            {"value": x, "level": lv.level, "usual": usual, "points": self._run},
        )


class ZeroSignalDetector(Detector):
    """GRPO's share of groups whose completions all got the same reward, near 1 for long: no advantage
    left to learn from. A reward that does not improve for that reason is a plateau."""

    __slots__ = ("_onset", "_run", "_th", "lev")
    kind = "plateau"

    def __init__(self, metric: str, th: RlThresholds, axis: str = "step") -> None:
        super().__init__(metric, axis)
        self._th = th
        self.lev = _Level()
        self._run = 0
        self._onset = 0.0

    def update(self, step: float, x: float) -> bool:
        if x - x != 0.0:
            return False
        th = self._th
        lv = self.lev
        lv.update(x)
        if lv.level >= th.zero_std_high:
            if self._run == 0:
                self._onset = step
            self._run += 1
        else:
            self._run = 0
            cur = self.current
            if cur is None or not cur.active:
                return False
            return self._resolve(step, f"{self.metric} fell to {fmt(lv.level)} by {self.axis} {fmt(step)}")
        if lv.n < th.min_points or self._run < max(th.min_points, th.long_fraction * lv.n):
            return False
        if self._already(Severity.WARN):
            return False
        return self._fire(
            Severity.WARN,
            step,
            self._onset,
            f"{self.metric} {fmt(lv.level)} at {self.axis} {fmt(step)} for {self._run} points: in most groups every "
            "completion gets the same reward, so the advantages are zero and there is no learning signal",
            {"value": x, "level": lv.level, "points": self._run},
        )


class RewardHackDetector(Detector):
    """The task metric falls from its best while the reward keeps rising: reward hacking or a verifier problem."""

    __slots__ = ("_bad", "_best", "_best_reward", "_best_step", "_diff", "_last", "_n", "_prev", "_th", "reward")
    kind = "reward_hacking"

    def __init__(
        self, metric: str, th: RlThresholds, reward: Callable[[], tuple[str, _Level] | None], axis: str = "step"
    ) -> None:
        super().__init__(metric, axis)
        self._th = th
        self.reward = reward
        self._best = -math.inf
        self._best_reward = math.nan
        self._best_step = 0.0
        self._bad = 0
        self._diff = 0.0
        self._last = math.nan
        self._prev = math.nan
        self._n = 0

    def update(self, step: float, x: float) -> bool:
        if x - x != 0.0:
            return False
        th = self._th
        self._n += 1
        if self._prev == self._prev:
            # Evaluation noise from second differences (a steady trend cancels out).
            d = abs(x - 2.0 * self._last + self._prev) * SIGMA_PER_ABSDIFF
            self._diff += (d - self._diff) / min(self._n - 2, 8)
        self._prev, self._last = self._last, x
        got = self.reward()
        if x > self._best:
            self._best, self._best_step = x, step
            self._best_reward = got[1].level if got is not None and got[1].n >= 5 else math.nan
            self._bad = 0
            cur = self.current
            if cur is not None and cur.active:
                return self._resolve(step, f"{self.metric} at a new best {fmt(x)} by {self.axis} {fmt(step)}")
            return False
        if got is None or self._best_reward != self._best_reward or self._n < 3:
            return False
        rkey, rl = got
        margin = th.task_drop_abs + th.task_drop_rel * abs(self._best) + th.task_noise_k * self._diff
        rise = rl.level - self._best_reward
        rising = rise > th.reward_rise_k * rl.noise and rise > 0.05 * abs(self._best_reward)
        if self._best - x > margin and rising:
            self._bad += 1
        else:
            self._bad = 0
            cur = self.current
            if cur is None or not cur.active:
                return False
            return self._resolve(step, f"{self.metric} no longer falling while {rkey} rises by {self.axis} {fmt(step)}")
        if self._bad < th.task_patience or self._already(Severity.WARN):
            return False
        return self._fire(
            Severity.WARN,
            step,
            self._best_step,
            f"{rkey} rose {fmt(self._best_reward)} -> {fmt(rl.level)} since {self.axis} {fmt(self._best_step)} while "
            f"{self.metric} fell {fmt(self._best)} -> {fmt(x)}: reward hacking or a verifier problem?",
            {
                "value": x,
                "best": self._best,
                "best_step": self._best_step,
                "reward_key": rkey,
                "reward_then": self._best_reward,
                "reward_now": rl.level,
            },
        )


class RlLens:
    """The RL detectors of one run: routes its RL metrics (beside their ordinary monitors) and holds the findings."""

    def __init__(self, th: RlThresholds = RL_DEFAULT, axis: str = "step") -> None:
        self._th = th
        self.axis = axis
        self.detectors: list[Detector] = []
        self._reward: tuple[str, _Level] | None = None
        self.armed = False
        """Whether the run shows it is policy optimisation (a reward, a clip fraction, a PPO KL): a `kl` or
        an `entropy` alone may be a VAE's or a classifier's, and then nothing here is said."""

    def _reward_level(self) -> tuple[str, _Level] | None:
        return self._reward

    def route(self, key: str, role: Role, handler: Handler, skip: Handler) -> Handler:
        """The handler for `key`: `handler` alone, or combined with this lens's detector for it."""
        kind = kind_of(key, role)
        if kind in ("kl_update", "clip", "zero_std", "reward") or policy_run(key) or "ep_rew" in key.lower():
            self.armed = True
        if kind is None:
            return handler
        th, axis = self._th, self.axis
        d: KlDetector | EntropyDetector | ClipDetector | ZeroSignalDetector | RewardHackDetector
        if kind in ("kl_update", "kl_ref"):
            d = KlDetector(key, th, kind == "kl_update", axis)
        elif kind == "entropy":
            d = EntropyDetector(key, th, axis)
        elif kind == "clip":
            d = ClipDetector(key, th, axis)
        elif kind == "zero_std":
            d = ZeroSignalDetector(key, th, axis)
        elif kind == "task":
            d = RewardHackDetector(key, th, self._reward_level, axis)
        else:
            if self._reward is not None:
                return handler
            lv = _Level()
            self._reward = (key, lv)

            def track(step: float, x: float) -> bool:
                if x - x == 0.0:
                    lv.update(x)
                return False

            return track if handler is skip else _both(handler, track)
        self.detectors.append(d)
        return d.update if handler is skip else _both(handler, d.update)

    def restart(self, step: float, top: float) -> list[Finding]:
        """The run went back (a relaunch, a resume): findings so far are history, detectors start again."""
        out: list[Finding] = []
        for d in self.detectors:
            was = d.current.message if d.current else ""
            d._resolve(step, f"{was} (the run restarted at {self.axis} {fmt(step)} after {fmt(top)})")
            out.extend(d.findings())
        self.detectors = []
        self._reward = None
        return out if self.armed else []

    def rename_axis(self, axis: str) -> None:
        self.axis = axis
        for d in self.detectors:
            d.rename_axis(axis)

    def findings(self) -> list[Finding]:
        if not self.armed:
            return []
        out: list[Finding] = []
        for d in self.detectors:
            out.extend(d.findings())
        return out


def _both(first: Handler, second: Handler) -> Handler:
    def h(step: float, x: float) -> bool:
        a = first(step, x)
        return second(step, x) or a

    return h
