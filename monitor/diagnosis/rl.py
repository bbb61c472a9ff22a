"""Causes in policy optimisation (PPO, GRPO, RLHF): updates too conservative or too aggressive, entropy
collapse, no learning signal in the reward, reward hacking. Read from the RL lens's findings
(`detectors/rl.py`) and the run's reward curve.

Confidence rules ("stuck" / "flat": the reward's last fifth is not above its first by more than its own
robust spread):
- updates too conservative: medium when the KL stayed low and the reward is flat; low otherwise.
- updates too aggressive: medium when the KL spiked with the clip fraction high too, or the reward got no
  better after it; low otherwise (a KL spike alone may be one odd batch).
- clip fraction high: low (said with the KL when both are out of range).
- entropy collapse: high when the detector found a collapse (bad) *and* the reward stopped improving after
  it; medium with one of the two; low otherwise.
- no learning signal: high when 90% or more of the groups score the same and the reward is flat (the
  signal is measured directly); medium otherwise.
- reward hacking: medium (the task metric falling while the reward rises is what it looks like, but a
  verifier problem reads the same).
"""

from __future__ import annotations

import re

import numpy as np

from monitor.diagnosis.facts import Curve, RunFacts, fmt
from monitor.diagnosis.model import Confidence, Hypothesis
from monitor.model import Finding, Severity

_REWARD = re.compile(r"(?:^|/)(?:rewards?|reward_mean|mean_reward|rlhf_reward|scores?|ep_rew_mean)(?:/mean)?$")


def reward_curve(f: RunFacts) -> Curve | None:
    """The run's main reward curve (`reward`, `objective/rlhf_reward`, `critic/score/mean`...), if logged."""
    keys = sorted((k for k in f.others if _REWARD.search(k.lower()) and not k.lower().startswith("eval")), key=len)
    for k in keys:
        c = f.others[k].finite()
        if len(c) >= 6:
            return c
    return None


def reward_change(c: Curve, since: float | None = None) -> tuple[float, float, float]:
    """(median of the first fifth, median of the last fifth, spread of the curve) from `since` on."""
    v = c.since(since).values if since is not None else c.values
    if len(v) < 6:
        v = c.values
    n = max(3, len(v) // 5)
    a, z = float(np.median(v[:n])), float(np.median(v[-n:]))
    spread = float(np.median(np.abs(v - np.median(v)))) * 1.4826
    return a, z, spread


def _improving(f: RunFacts, since: float | None = None) -> bool | None:
    c = reward_curve(f)
    if c is None:
        return None
    a, z, spread = reward_change(c, since)
    return z - a > max(spread, 0.05 * abs(a), 1e-9)


def _reward_text(f: RunFacts, since: float | None = None) -> str:
    c = reward_curve(f)
    if c is None:
        return ""
    a, z, _ = reward_change(c, since)
    return f"; {c.key} {fmt(a)} -> {fmt(z)}"


def _first(f: RunFacts, kind: str, text: str = "") -> Finding | None:
    got = [x for x in f.of(kind, warn=True) if text in x.message]
    return got[0] if got else None


def _kl_low(f: RunFacts) -> Hypothesis | None:
    x = _first(f, "kl_anomaly", "conservative")
    if x is None:
        return None
    flat = _improving(f) is False
    return Hypothesis(
        "rl_updates_too_conservative",
        "the policy updates are likely too conservative (it barely moves)",
        Confidence.MEDIUM if flat else Confidence.LOW,
        f"{x.metric} stayed below {fmt(x.evidence.get('below', 0.0))} from {f.where(x.onset_step)} "
        f"({x.evidence.get('points', '?')} points){_reward_text(f)}",
        "raise the learning rate (x3), lower the KL coefficient (beta), or do more optimisation passes per batch",
        f"{x.metric} grows (a reference KL to ~1e-2, a per-update KL to the 0.01-0.02 target) "
        "and the reward starts rising",
        "a short run with the change: the KL and the reward should move within the first few dozen steps",
        steps=(x.onset_step,),
        settle="" if flat else "a reward curve that stays flat would support it",
        weight=0.5,
    )


def _kl_high(f: RunFacts) -> Hypothesis | None:
    x = _first(f, "kl_anomaly", "aggressive")
    if x is None:
        return None
    clip = _first(f, "clip_anomaly")
    worse = _improving(f, x.onset_step) is False
    conf = Confidence.MEDIUM if clip is not None or worse else Confidence.LOW
    also = f"; {clip.metric} also high from {f.where(clip.onset_step)}" if clip is not None else ""
    return Hypothesis(
        "rl_updates_too_aggressive",
        "the policy updates are likely too aggressive (KL spiking or far above its target)",
        conf,
        f"{x.message}{also}{_reward_text(f, x.onset_step)}",
        "lower the learning rate, raise the KL coefficient or set a target KL (early stop per batch), "
        "fewer PPO epochs per batch or a larger batch",
        f"{x.metric} without spikes and under ~0.02 per update; the clip fraction back under ~0.2",
        "rerun from the last checkpoint before the first spike and compare the KL and reward curves",
        steps=(x.onset_step,) + ((clip.onset_step,) if clip is not None else ()),
        settle="" if conf else "a clip fraction or a reward that drops at the same steps would support it",
        weight=0.6,
    )


def _clip_high(f: RunFacts) -> Hypothesis | None:
    x = _first(f, "clip_anomaly")
    if x is None or _first(f, "kl_anomaly", "aggressive") is not None:
        return None  # said with the KL
    return Hypothesis(
        "rl_clip_high",
        "the policy steps are likely too large (most updates hit the clip range)",
        Confidence.LOW,
        x.message,
        "lower the learning rate or the PPO epochs per batch; check the advantage normalisation",
        f"{x.metric} back under ~0.2",
        f"watch {x.metric} and the KL over the first steps of a rerun",
        steps=(x.onset_step,),
        settle="a per-update KL logged beside it would tell large steps from a stale rollout",
        weight=0.4,
    )


def _entropy(f: RunFacts) -> Hypothesis | None:
    x = _first(f, "entropy_collapse")
    if x is None:
        return None
    bad = any(y.severity is Severity.BAD for y in f.of("entropy_collapse"))
    stuck = _improving(f, x.onset_step) is False
    conf = Confidence.HIGH if bad and stuck else Confidence.MEDIUM if bad or stuck else Confidence.LOW
    return Hypothesis(
        "rl_entropy_collapse",
        "the policy's entropy collapsed: it stopped exploring" if bad else "the policy's entropy is collapsing",
        conf,
        f"{x.metric} {fmt(x.evidence.get('level', 0.0))} from {f.where(x.onset_step)}, "
        f"down from a peak level {fmt(x.evidence.get('peak_level', 0.0))}{_reward_text(f, x.onset_step)}",
        "add or raise an entropy bonus, sample at a higher temperature, lower the learning rate, "
        "raise the KL coefficient",
        f"{x.metric} stays within ~10x of its early level while the reward rises",
        f"rerun from a checkpoint before {f.where(x.onset_step)} with the change and compare the entropy curves",
        steps=(x.onset_step,),
        settle="" if conf else "a reward that stops improving after the collapse would support it",
        weight=0.7,
    )


def _no_signal(f: RunFacts) -> Hypothesis | None:
    x = next((y for y in f.of("plateau", warn=True) if y.metric.endswith("frac_reward_zero_std")), None)
    if x is None:
        return None
    level = float(x.evidence.get("level", 0.0))
    flat = _improving(f) is False
    conf = Confidence.HIGH if flat and level >= 0.9 else Confidence.MEDIUM
    return Hypothesis(
        "rl_no_learning_signal",
        "the reward likely gives no learning signal (every completion of a group scores the same)",
        conf,
        f"{x.metric} {fmt(level)} from {f.where(x.onset_step)} "
        f"({x.evidence.get('points', '?')} points){_reward_text(f)}",
        "a denser reward (partial credit, format credit), more generations per prompt, easier prompts or a curriculum; "
        "check that the verifier can score these completions at all",
        f"{x.metric} falls under ~0.5, the reward spread within groups rises, then the reward itself",
        f"a short run with the change: {x.metric} and the reward spread should move within a few dozen steps",
        steps=(x.onset_step,),
        weight=0.8,
    )


def _hacking(f: RunFacts) -> Hypothesis | None:
    x = _first(f, "reward_hacking")
    if x is None:
        return None
    ev = x.evidence
    return Hypothesis(
        "rl_reward_hacking",
        "the policy may be gaming the reward (or the verifier is wrong): reward up, task metric down",
        Confidence.MEDIUM,
        f"{ev.get('reward_key', 'reward')} {fmt(ev.get('reward_then', 0.0))} -> {fmt(ev.get('reward_now', 0.0))} "
        f"while {x.metric} fell {fmt(ev.get('best', 0.0))} -> {fmt(ev.get('value', 0.0))} "
        f"since {f.where(x.onset_step)}",
        "read the highest-reward completions since then; fix the reward or verifier loophole, add a length or KL "
        f"penalty, and keep the checkpoint of {f.where(x.onset_step)}",
        f"{x.metric} rises with the reward again",
        "rescore saved completions with a stricter verifier, "
        "or rerun with the fixed reward and compare the task metric",
        steps=(x.onset_step, x.step),
        settle="samples of completions at the two steps would tell a gamed reward from a broken verifier",
        weight=0.7,
    )


def rl_lens(f: RunFacts) -> list[Hypothesis]:
    """Every RL hypothesis the run's findings support."""
    out = [_kl_low(f), _kl_high(f), _clip_high(f), _entropy(f), _no_signal(f), _hacking(f)]
    return [h for h in out if h is not None]
