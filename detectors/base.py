"""What all detectors share: one current finding per detector, and a short record of past ones."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

from monitor.model import Finding, Severity

_PAST_KEPT = 8


class Detector:
    """Holds the detector's current finding; `_fire`/`_resolve` return True when it changed."""

    __slots__ = ("axis", "current", "metric", "past")
    kind = "?"

    def __init__(self, metric: str, axis: str = "step") -> None:
        self.metric = metric
        self.axis = axis
        """The run's step axis as messages name it ("step", "epoch", "iteration")."""
        self.current: Finding | None = None
        self.past: list[Finding] = []

    def _fire(
        self,
        severity: Severity,
        step: float,
        onset: float,
        message: str,
        evidence: dict[str, Any],
        kind: str | None = None,
        refresh: bool = False,
    ) -> bool:
        """Raise (or escalate) the finding; with `refresh`, an unchanged one gets the new numbers.

        Refreshing suits sparse series (evaluations), where each new point is worth showing;
        dense ones keep the message of when the finding began, to stay cheap per point.
        """
        cur = self.current
        kind = kind or self.kind
        if cur is not None and cur.active and cur.severity == severity and cur.kind == kind:
            if not refresh or (cur.message == message and cur.evidence == evidence):
                return False
            self.current = replace(cur, message=message, evidence={**cur.evidence, **evidence})
            return True
        if cur is not None and cur.active and cur.kind == kind:
            # Escalation of the same episode: keep where it was first detected and where it began.
            evidence = {**evidence, "escalated_step": step}
            step, onset = cur.step, cur.onset_step
        elif cur is not None:
            self.past.append(replace(cur, active=False) if cur.active else cur)
            del self.past[:-_PAST_KEPT]
        self.current = Finding(kind, severity, self.metric, step, onset, message, evidence)
        return True

    @property
    def active(self) -> bool:
        """Whether this detector's current finding is live (checked before building messages)."""
        cur = self.current
        return cur is not None and cur.active

    def _already(self, severity: Severity, kind: str | None = None) -> bool:
        """Whether the current finding already says this (so no message needs building)."""
        cur = self.current
        return cur is not None and cur.active and cur.severity == severity and cur.kind == (kind or self.kind)

    def _resolve(self, step: float, message: str, **evidence: Any) -> bool:
        cur = self.current
        if cur is None or not cur.active:
            return False
        ev = dict(cur.evidence)
        ev.update(evidence)
        ev["cleared_step"] = step
        # A cleared problem is kept for the record (with the severity it had while live), no longer
        # as a live alarm: the judge looks at active findings only.
        self.current = replace(cur, active=False, message=message, evidence=ev)
        return True

    def rename_axis(self, axis: str) -> None:
        """Name the step axis `axis` from now on, in the findings already made too."""
        old, self.axis = self.axis, axis
        if old == axis:
            return
        pattern = re.compile(rf"(\b(?:at|from|by|since) |\(){re.escape(old)}\b")

        def fix(f: Finding) -> Finding:
            return replace(f, message=pattern.sub(rf"\1{axis}", f.message))

        self.past = [fix(f) for f in self.past]
        if self.current is not None:
            self.current = fix(self.current)

    def findings(self) -> list[Finding]:
        """Past findings then the current one."""
        return [*self.past, self.current] if self.current is not None else list(self.past)


def fmt(x: float) -> str:
    """A number as a person reads it in a one-line message."""
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "Inf" if x > 0 else "-Inf"
    a = abs(x)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{x:.3g}"
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.4g}"


def safe_exp(x: float) -> float:
    """`math.exp` that saturates to inf instead of raising on any float (NaN stays NaN)."""
    return math.exp(x) if x < 709.0 else math.inf


def pct(log_ratio: float) -> str:
    """A log ratio as a signed percentage ('+35%'), or a factor ('x3.2e+04') beyond 1000x."""
    if log_ratio != log_ratio:
        return "?"
    if log_ratio > 6.9:
        return f"x{safe_exp(log_ratio):.3g}"
    return f"{(math.exp(log_ratio) - 1) * 100:+.0f}%"
