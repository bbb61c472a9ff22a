"""Findings in, a verdict (healthy / unsure / bad) and a decision (continue / wait / stop) out.

The table (ARCHITECTURE.md): NaN/Inf in loss, divergence over many points, eval clearly worse than
a baseline, repeated or unrecovered spikes -> bad/stop. Flat-but-not-diverging, noisy, a single
spike still recovering, slightly-worse-but-early -> unsure/wait. Otherwise healthy/continue.
Detectors encode those rules in their findings' severities; the judge only ranks them.
A source that cannot be read never makes a run bad by itself: it makes it stale.
"""

from __future__ import annotations

from collections.abc import Iterable

from monitor.model import Decision, Finding, Judgement, Severity, Verdict

#: Findings about reachability, not about training.
NOT_TRAINING = frozenset({"source_error"})


def judge(findings: Iterable[Finding], healthy_reason: str = "no problems found") -> Judgement:
    """Rank the findings; the worst active one decides."""
    found = tuple(findings)
    live = [f for f in found if f.active and f.kind not in NOT_TRAINING]
    worst = max(live, key=lambda f: (f.severity, f.step), default=None)
    if worst is None or worst.severity is Severity.INFO:
        return Judgement(Verdict.HEALTHY, Decision.CONTINUE, worst.message if worst else healthy_reason, found)
    if worst.severity is Severity.BAD:
        return Judgement(Verdict.BAD, Decision.STOP, worst.message, found)
    return Judgement(Verdict.UNSURE, Decision.WAIT, worst.message, found)
