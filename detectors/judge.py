"""Findings in, a verdict (healthy / unsure / bad) and a decision (continue / wait / stop) out.

The table (ARCHITECTURE.md): NaN/Inf in loss, divergence over many points, eval clearly worse than
a baseline, repeated or unrecovered spikes, a crashed process -> bad/stop. Flat-but-not-diverging,
noisy, a single spike still recovering, slightly-worse-but-early -> unsure/wait. Otherwise
healthy/continue. Detectors encode those rules in their findings' severities; the judge ranks them
and names the *cause*: of the findings at the worst severity, the one whose trouble began first
(a divergence from step 425 before the NaN at 441 and the eval NaN at 450), with the others
listed after it as what followed.
A source that cannot be read never makes a run bad by itself: it makes it stale.
"""

from __future__ import annotations

from collections.abc import Iterable

from detectors.base import fmt
from monitor.model import Decision, Finding, Judgement, Severity, Verdict

#: Findings about reachability, not about training.
NOT_TRAINING = frozenset({"source_error"})
#: How many later findings the reason names after the cause.
_FOLLOWERS = 3


def cause_key(f: Finding) -> tuple[float, float, str]:
    """Order of findings of one severity by how early their trouble began."""
    return (f.onset_step, f.step, f.kind)


def judge(findings: Iterable[Finding], healthy_reason: str = "no problems found") -> Judgement:
    """Rank the findings; the worst severity decides, and its earliest finding is the reason."""
    found = tuple(findings)
    live = [f for f in found if f.active and f.kind not in NOT_TRAINING]
    if not live:
        return Judgement(Verdict.HEALTHY, Decision.CONTINUE, healthy_reason, found)
    top = max(f.severity for f in live)
    if top is Severity.INFO:
        latest = max(live, key=lambda f: f.step)
        return Judgement(Verdict.HEALTHY, Decision.CONTINUE, latest.message, found)
    tier = sorted((f for f in live if f.severity is top), key=cause_key)
    cause, rest = tier[0], tier[1:]
    reason = cause.message
    if rest:
        named = ", ".join(f"{f.kind} in {f.metric} from {fmt(f.onset_step)}" for f in rest[:_FOLLOWERS])
        more = f" and {len(rest) - _FOLLOWERS} more" if len(rest) > _FOLLOWERS else ""
        reason += f" (then: {named}{more})"
    if top is Severity.BAD:
        return Judgement(Verdict.BAD, Decision.STOP, reason, found)
    return Judgement(Verdict.UNSURE, Decision.WAIT, reason, found)
