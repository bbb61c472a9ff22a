"""When the reviewer is asked without a person pressing a key, and what a STOP answer may do by itself."""

from __future__ import annotations

from monitor.actions.reviewer import ReviewerAnswer
from monitor.config import ReviewerConfig
from monitor.model import Verdict


class EscalationLimiter:
    """At most one automatic escalation per run per interval (time is passed in)."""

    def __init__(self, interval_s: float = 30 * 60.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}

    def due(self, run_id: str, now: float) -> bool:
        """Whether `run_id` may be escalated at `now`."""
        last = self._last.get(run_id)
        return last is None or now - last >= self.interval_s

    def take(self, run_id: str, now: float) -> bool:
        """Claim the run's escalation for this interval; False when it was already used."""
        if not self.due(run_id, now):
            return False
        self._last[run_id] = now
        return True

    def next_at(self, run_id: str) -> float | None:
        """When the run may be escalated again (None: now)."""
        last = self._last.get(run_id)
        return None if last is None else last + self.interval_s


def wants_auto_escalation(cfg: ReviewerConfig, verdict: Verdict) -> bool:
    """Only unsure runs are escalated, and only when `[reviewer] auto = true`."""
    return cfg.auto and verdict is Verdict.UNSURE


def answer_stops_run(cfg: ReviewerConfig, answer: ReviewerAnswer) -> bool:
    """A STOP answer stops the run by itself only with `auto_stop = true`; otherwise it asks a person."""
    return answer.decision == "STOP" and cfg.auto_stop
