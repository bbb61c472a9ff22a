"""A root-cause hypothesis: what may have gone wrong, how sure we are, the numbers behind it, what to do."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Confidence(enum.IntEnum):
    """How directly the run's own numbers support a hypothesis; ordered so that `max()` picks the surest."""

    LOW = 0
    """Consistent with what we see, nothing more; `settle` says what data would decide it."""
    MEDIUM = 1
    """Circumstantial evidence (the right kind of symptom, not pinned to the right step)."""
    HIGH = 2
    """Direct evidence at the right step (e.g. grad norm x12 one step before the loss left its band)."""

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """One possible root cause of a run's trouble, with its evidence and what to try."""

    cause_id: str
    """Stable identifier (`lr_too_high`, `bad_batch`, ...), for scoring and tests."""
    cause: str
    """One line a person reads: the suspected cause, worded as a suspicion, never as a certainty."""
    confidence: Confidence
    evidence: str
    """The steps and numbers that support it, from the run's own metrics and config."""
    fix: str
    expect: str
    """What the fix should change in the metrics."""
    verify: str
    """How to check that it worked."""
    steps: tuple[float, ...] = ()
    """The evidence steps (markers for plots)."""
    settle: str = ""
    """What data would settle it (said for low confidence)."""
    weight: float = 0.5
    """Specificity within its confidence level (0..1): a root cause outranks a symptom."""
    incidental: bool = False
    """It happened, but it is not what limits the run (a rare fp16 overflow skip, a bad batch that
    recovered): ranked after every problem, and the only kind kept for a healthy run."""

    def rank_key(self) -> tuple[bool, int, float]:
        return (not self.incidental, int(self.confidence), self.weight)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form for `check --json`, evidence bundles and reports."""
        out: dict[str, Any] = {
            "cause": self.cause,
            "cause_id": self.cause_id,
            "confidence": str(self.confidence),
            "evidence": self.evidence,
            "fix": self.fix,
            "expect": self.expect,
            "verify": self.verify,
            "steps": [int(s) if float(s).is_integer() else s for s in self.steps],
        }
        if self.settle:
            out["settle"] = self.settle
        if self.incidental:
            out["incidental"] = True
        return out

    def one_line(self) -> str:
        return f"[{self.confidence}] {self.cause}: {self.evidence}"
