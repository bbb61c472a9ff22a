"""LR schedule mistakes: a warm-up that never ends, no decay, a restart on resume, a jump (from the LR detector's
findings, read through their machine-readable `evidence["anomaly"]`, else from the logged LR itself).

Confidence rules (the LR curve is direct evidence of its own shape; the question is whether the shape is a
mistake, so high needs something that says it is):
- warm-up never ends: high when the LR still rises past twice a *declared* warm-up or under a declared
  schedule; medium when only the run's length says so (a long warm-up may be deliberate) or the declared
  schedule restarts (warm restarts raise the LR again by design).
- no decay: high (the detector fires only against a declared decaying schedule over a known length) when
  the LR sat at its peak, and for a step or warm-up-stable-decay schedule only past its declared first
  decay (before it there is nothing to see; with none declared, medium); an LR "at its peak" because it
  kept rising to new peaks is medium, as an LR that keeps rising; medium from the LR's shape alone (a
  constant schedule after a warm-up is common and fine).
- an LR climbing again after a decay and past its old peak: medium, as a warm-up that never ended (a
  restarted warm-up would climb back to the old peak, no further).
- schedule reset: high only for a warm-up from near zero again after a decay in a run that declared a
  schedule that does not restart; medium otherwise (a deliberate second warm-up, or a climb that may be
  the first warm-up still running under the decay: both are listed).
- LR jump: high for a jump above the LR's own peak after it had decayed (no schedule does that); medium
  for a jump to below the peak (a restart of the schedule reads the same).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.lr import Schedule
from monitor.diagnosis.facts import RunFacts, fmt
from monitor.diagnosis.model import Confidence, Hypothesis
from monitor.model import Finding


@dataclass(frozen=True, slots=True)
class _Cause:
    cause_id: str
    cause: str
    fix: str
    expect: str


_WARMUP = _Cause(
    "warmup_never_ends",
    "the LR warm-up never ends",
    "fix the scheduler's warm-up length (warmup_steps) so it stops at the peak",
    "the LR flattens at its peak after the warm-up and then decays",
)
_NO_DECAY = _Cause(
    "no_decay",
    "the LR schedule is not applied (no decay)",
    "check that scheduler.step() is called and the scheduler is attached to the optimizer",
    "the LR follows the declared schedule down; the loss drops further late in training",
)
_RESET = _Cause(
    "schedule_reset",
    "the LR schedule restarted on resume",
    "restore the scheduler's state (or pass the global step) when resuming",
    "the LR continues from where it was at the resume instead of warming up again",
)
_RISING = _Cause(
    "warmup_never_ends",
    "the LR keeps rising past its peak after it had decayed (a warm-up still running under the decay?)",
    "fix the scheduler so the warm-up ends at the peak and the LR only decays after it",
    "the LR stays at or below its peak and decays",
)
_RESET_MAYBE = _Cause(
    "schedule_reset",
    "the LR schedule likely restarted (a resume that lost the scheduler state?)",
    "restore the scheduler's state (or pass the global step) when resuming",
    "the LR continues from where it was at the resume",
)
_JUMP = _Cause(
    "lr_jump",
    "the learning rate jumped (a config or schedule change)",
    "find what changed the LR at that step (resume with a new config, a schedule bug) and restore it",
    "the LR stays on its schedule; no jump in the loss or grad norm",
)


def _reading(
    x: Finding, declared: Schedule | None, beyond: float | None, climbing: bool, first_decay: float | None = None
) -> tuple[_Cause, Confidence, str] | None:
    """What one LR finding says: the cause, how sure, and what else it could be (empty: nothing else).

    `beyond` is the highest LR logged after the finding began; `climbing` whether the LR was still rising
    well above its level from the finding's onset to where it was found."""
    ev = x.evidence
    anomaly = ev.get("anomaly")
    if anomaly == "warmup_never_ends":
        if declared is not None and declared.style == "restarts":
            return _WARMUP, Confidence.MEDIUM, f"a warm restart of the declared {declared.name} schedule"
        if ev.get("declared") in ("warmup", "schedule"):
            return _WARMUP, Confidence.HIGH, ""
        return _WARMUP, Confidence.MEDIUM, "a deliberately long warm-up (no schedule is declared to compare with)"
    if anomaly == "no_decay":
        if climbing:
            # At its peak because it keeps setting new peaks: not a schedule left flat, an LR that grows.
            return _RISING, Confidence.MEDIUM, "a scheduler that is not applied (the LR should decay here)"
        if first_decay is not None and x.step < first_decay:
            return None  # the declared first decay is still ahead
        if declared is not None and _late_decay(declared) and first_decay is None:
            return _NO_DECAY, Confidence.MEDIUM, f"a {declared.name} schedule whose first decay is later"
        return _NO_DECAY, Confidence.HIGH, ""
    if anomaly == "reset":
        if declared is not None and declared.style in ("decay", "constant"):
            return _RESET, Confidence.HIGH, ""
        return _RESET, Confidence.MEDIUM, "a deliberate second warm-up (no schedule is declared to compare with)"
    if anomaly == "rising_again":
        peak = ev.get("peak")
        if isinstance(peak, float) and beyond is not None and beyond > 1.2 * peak:
            # A restarted warm-up climbs back to the old peak; this one went past it.
            return _RISING, Confidence.MEDIUM, "a schedule that grows the LR by design"
        return _RESET_MAYBE, Confidence.MEDIUM, "the first warm-up still running under the decay"
    if anomaly == "jump":
        if ev.get("above_peak"):
            return _JUMP, Confidence.HIGH, ""
        return _RESET_MAYBE, Confidence.MEDIUM, "a deliberate LR change (a jump to below the peak reads the same)"
    return None


def lr_schedule(f: RunFacts) -> list[Hypothesis]:
    """LR schedule mistakes the LR detector found: warm-up that never ends, no decay, reset on resume, a jump."""
    out: list[Hypothesis] = []
    # What the logged LR itself shows: a one-off climb back after a decay, or one jump above the peak.
    # It decides between readings of a finding (a jump also "keeps rising past the warm-up").
    seen = [h for h in (_lr_restarted(f), lr_jumped(f)) if h] if f.lr is not None else []
    shown = {h.cause_id for h in seen}
    declared = Schedule.from_config(f.config)
    for x in f.of("lr_anomaly", warn=True):
        after = f.lr.finite().since(x.onset_step) if f.lr is not None else None
        got = _reading(
            x,
            declared,
            float(after.values.max()) if after is not None and len(after) else None,
            _climbing(f, x),
            first_decay(f.config),
        )
        if got is None:
            continue
        c, conf, alt = got
        if shown and c.cause_id not in shown:
            continue  # the LR's own shape names another mistake
        out.append(
            Hypothesis(
                c.cause_id,
                c.cause,
                conf,
                f"{x.message} (from {f.where(x.onset_step)})" + (f"; it may also be {alt}" if alt else ""),
                c.fix,
                c.expect,
                "plot the LR of the fixed run against the schedule the config declares; "
                f"it should match from {f.where(x.onset_step)}",
                steps=(x.onset_step, x.step),
                settle="the scheduler and warm-up the job declared, and whether it resumed there" if alt else "",
                weight=0.8,
            )
        )
    have = {o.cause_id for o in out}
    out += [h for h in seen if h.cause_id not in have]
    if not out and f.lr is not None:
        out += [h for h in (_lr_never_decays(f), _lr_keeps_rising(f)) if h]
    return out


#: Schedules that may hold the LR at its peak for a long stretch by design (step decay until its first
#: milestone, warm-up-stable-decay until its decay phase).
_LATE = ("step", "wsd", "stable")
_FIRST_DECAY_KEYS = (
    "step_size",
    "lr_step_size",
    "milestones",
    "lr_milestones",
    "lr_steps",
    "decay_start",
    "stable_steps",
)


def _late_decay(declared: Schedule) -> bool:
    return any(k in declared.name.lower() for k in _LATE)


def first_decay(config: Mapping[str, Any]) -> float | None:
    """The step of a declared schedule's first decay (`step_size`, the first of `milestones`...), if declared."""
    flat: dict[str, Any] = {}
    for k, v in config.items():
        v = v.get("value", v) if isinstance(v, Mapping) else v
        if isinstance(v, Mapping):
            flat.update({str(k2).lower(): v2 for k2, v2 in v.items()})
        else:
            flat[str(k).lower()] = v
    for k in _FIRST_DECAY_KEYS:
        v = flat.get(k)
        if isinstance(v, (list, tuple)) and v:
            v = min((x for x in v if isinstance(x, (int, float)) and not isinstance(x, bool)), default=None)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return float(v)
    return None


def _climbing(f: RunFacts, x: Finding) -> bool:
    """The LR where `x` was found is 1.2x or more its median since `x`'s onset: still rising, not flat."""
    if f.lr is None:
        return False
    lv = f.lr.finite()
    v = lv.values[(lv.steps >= x.onset_step) & (lv.steps <= x.step)]
    return len(v) >= 3 and float(v[-1]) >= 1.2 * float(np.median(v))


def lr_jumped(f: RunFacts) -> Hypothesis | None:
    """The LR multiplied at once to 1.2x or more above anything it reached before (from its peak or from a
    decayed level: no schedule restarts past its old peak)."""
    assert f.lr is not None
    lr = f.lr.finite()
    v = lr.values
    if len(v) < 10:
        return None
    before = np.maximum.accumulate(v)[:-1]
    # From near its peak, or from a decayed level to well past the old peak (a restart climbs back to it,
    # no further).
    up = np.nonzero((v[1:] > 2.0 * v[:-1]) & (v[1:] > 1.2 * before))[0] + 1
    # Not a warm-up step: the LR was flat just before, and the jump is past the first tenth of the run.
    jumps = [int(i) for i in up if i >= max(2, len(v) // 10) and v[i - 2] >= 0.95 * v[i - 1]]
    if not jumps:
        return None
    i = jumps[0]
    st = float(lr.steps[i])
    return Hypothesis(
        "lr_jump",
        "the learning rate jumped (a config or schedule change)",
        Confidence.MEDIUM,
        f"LR x{v[i] / v[i - 1]:.3g} ({fmt(float(v[i - 1]))} -> {fmt(float(v[i]))}) at {f.where(st)}, "
        f"above its earlier peak {fmt(float(before[i - 1]))}",
        "find what changed the LR at that step (a resume with a new config, a schedule bug) and restore it",
        "the LR stays on its schedule; no jump in the loss or grad norm",
        f"compare the LR of a rerun with this one around {f.where(st)}",
        steps=(st,),
        settle="the job's config and scheduler state at that step",
        weight=0.75,
    )


def _lr_keeps_rising(f: RunFacts) -> Hypothesis | None:
    """The LR still rising through the second half of the run, by 2x or more."""
    assert f.lr is not None
    lr = f.lr.finite()
    v = lr.values
    if len(v) < 20:
        return None
    half = v[len(v) // 2 :]
    if not (half[0] > 0 and half[-1] >= 2.0 * half[0] and np.mean(np.diff(half) >= 0) >= 0.9):
        return None
    st = float(lr.steps[len(v) // 2])
    return Hypothesis(
        "warmup_never_ends",
        "the LR keeps rising: a warm-up that never ends or a schedule growing the LR",
        Confidence.MEDIUM,
        f"LR {fmt(float(half[0]))} at {f.where(st)} and {fmt(float(half[-1]))} at {f.where(float(lr.steps[-1]))}, "
        "rising all the way",
        "fix the scheduler (warm-up length, or the sign/base of the schedule) so the LR peaks and then decays",
        "the LR flattens at its peak and decays",
        "compare the logged LR with the schedule the config declares",
        steps=(st,),
        settle="the scheduler and warm-up length the config declares",
        weight=0.75,
    )


def _lr_restarted(f: RunFacts) -> Hypothesis | None:
    """One climb back to about the peak after the LR had decayed (several climbs are restarts by design); a
    climb straight past 1.2x the old peak is no restart."""
    assert f.lr is not None
    lr = f.lr.finite()
    v = lr.values
    if len(v) < 10:
        return None
    peak_so_far = np.maximum.accumulate(v)
    up = np.nonzero((v[1:] > 1.5 * v[:-1]) & (v[:-1] < 0.7 * peak_so_far[:-1]))[0] + 1
    if len(up) != 1:
        return None
    i = int(up[0])
    later = v[i:]
    if later.max() < 0.5 * peak_so_far[i - 1]:
        return None
    if v[i] > 1.2 * peak_so_far[i - 1]:
        return None  # a restart climbs back to about the old peak; this jumped past it (`lr_jumped`)
    st = float(lr.steps[i])
    return Hypothesis(
        "schedule_reset",
        "the LR schedule likely restarted (a resume that lost the scheduler state?)",
        Confidence.MEDIUM,
        f"LR back up from {fmt(float(v[i - 1]))} to {fmt(float(later.max()))} at {f.where(st)} after it had decayed "
        f"from its peak {fmt(float(peak_so_far[i - 1]))}; once only, so not a restart schedule",
        "restore the scheduler's state (or pass the global step) when resuming",
        "the LR continues from where it was at the resume",
        f"plot the LR around {f.where(st)} against the schedule the config declares",
        steps=(st,),
        settle="whether the job resumed from a checkpoint at that step, and the scheduler it declared",
        weight=0.7,
    )


def _lr_never_decays(f: RunFacts) -> Hypothesis | None:
    """A warm-up, then the LR flat at its peak for the rest of a long run."""
    assert f.lr is not None
    lr = f.lr.finite()
    v = lr.values
    if len(v) < 20 or not v.max() > 0:
        return None
    top = float(v.max())
    i = int(np.nonzero(v >= 0.999 * top)[0][0])
    warm = v[0] < 0.5 * top and i > 0
    flat = np.all(np.abs(v[i:] - top) <= 1e-3 * top)
    total = f.total_steps or float(lr.steps[-1])
    if not (warm and flat and lr.steps[-1] - lr.steps[i] >= 0.5 * total):
        return None
    first = first_decay(f.config)
    if first is not None and lr.steps[-1] < first:
        return None  # the declared first decay is still ahead
    declared = Schedule.from_config(f.config)
    if declared is not None and declared.style in ("constant", "plateau"):
        return None  # flat by design (or until the eval stops improving)
    st = float(lr.steps[i])
    return Hypothesis(
        "no_decay",
        "the LR possibly never decays after its warm-up (a schedule not applied?)",
        Confidence.MEDIUM if f.lr is not None else Confidence.LOW,
        f"LR warmed up to {fmt(top)} by {f.where(st)} and stayed exactly there to {f.where(float(lr.steps[-1]))}",
        "if the config declares a decay: check the scheduler is stepped and attached to the optimizer",
        "the LR falls along the declared schedule; the loss drops further late in training",
        "compare the logged LR with the schedule the config declares",
        steps=(st,),
        settle="the scheduler the config declares (a constant schedule with warm-up is fine)",
        weight=0.5,
    )
