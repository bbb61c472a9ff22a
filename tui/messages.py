"""Messages of the app, named as facts (`…Arrived`, `…Saved`, `…Sent`) or requests (`…Requested`).

The hub's listeners and the action workers only post these; handlers on the app and screens own all
state. The run actions read as flows::

    EvidenceRequested   → EvidenceSaved | EvidenceFailed
    StopRequested       → StopPlanned → (dialog) → StopConfirmed → StopSent | StopFailed
                                                 ↘ StopCancelled
    EscalationRequested → ReviewerAnswered (STOP → StopRequested …) | ReviewerFailed
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

from monitor.hub import HubEvent, HubSnapshot

if TYPE_CHECKING:
    from monitor.actions import ReviewerAnswer, SavedBundle, StopOutcome, StopPlan


class SnapshotArrived(Message):
    """The hub published a new snapshot; a newer one waiting in the queue replaces it."""

    def __init__(self, snapshot: HubSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotArrived)


class EventArrived(Message):
    """The hub reported a fact: a verdict or source state changed, or a run appeared."""

    def __init__(self, event: HubEvent) -> None:
        super().__init__()
        self.event = event


class RunActionRequested(Message):
    """Base of the per-run action requests; all are handled in one place on the app."""

    verb = "act on"

    def __init__(self, run_id: str, run_name: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.run_name = run_name


class StopRequested(RunActionRequested):
    """The person asked to stop a run (`s`), or the reviewer answered STOP."""

    verb = "Stop"

    def __init__(self, run_id: str, run_name: str, *, confirm: bool = True) -> None:
        super().__init__(run_id, run_name)
        self.confirm = confirm
        """Ask in the dialog first; False only for a reviewer's STOP with `[reviewer] auto_stop = true`."""


class EscalationRequested(RunActionRequested):
    """The person asked the reviewer about a run (`e`)."""

    verb = "Escalate to reviewer"


class EvidenceRequested(RunActionRequested):
    """The person asked for an evidence bundle of a run (`b`)."""

    verb = "Save evidence bundle"


# ---- what came of the run actions (posted by their workers and the dialog; handled on the app) ----


class RunActionReported(Message):
    """Base of the facts the run actions report (from workers and dialogs); names the run."""

    def __init__(self, run_id: str, run_name: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.run_name = run_name


class EvidenceSaved(RunActionReported):
    """An evidence bundle was written."""

    def __init__(self, run_id: str, run_name: str, bundle: SavedBundle) -> None:
        super().__init__(run_id, run_name)
        self.bundle = bundle


class EvidenceFailed(RunActionReported):
    """An evidence bundle could not be written; `error` is the one line to show."""

    def __init__(self, run_id: str, run_name: str, error: str) -> None:
        super().__init__(run_id, run_name)
        self.error = error


class StopPlanned(RunActionReported):
    """How the run would be stopped was worked out (nothing was done); the confirmation comes next."""

    def __init__(self, plan: StopPlan, screenshot_svg: str | None, *, confirm: bool = True) -> None:
        super().__init__(plan.run_id, plan.run_name)
        self.plan = plan
        self.screenshot_svg = screenshot_svg
        """The screen as it was when the stop was asked for; it goes into the bundle saved first."""
        self.confirm = confirm


class StopConfirmed(RunActionReported):
    """The person confirmed the plan in the dialog (or `[reviewer] auto_stop` did, for a STOP answer)."""

    def __init__(self, plan: StopPlan, screenshot_svg: str | None) -> None:
        super().__init__(plan.run_id, plan.run_name)
        self.plan = plan
        self.screenshot_svg = screenshot_svg


class StopCancelled(RunActionReported):
    """Nothing was stopped: the person cancelled, or closed a dialog that said the run cannot be stopped."""

    def __init__(self, run_id: str, run_name: str, why: str) -> None:
        super().__init__(run_id, run_name)
        self.why = why


class StopSent(RunActionReported):
    """The stop was carried out (signal, command or StopRun sent), after evidence was saved."""

    def __init__(self, outcome: StopOutcome) -> None:
        super().__init__(outcome.plan.run_id, outcome.plan.run_name)
        self.outcome = outcome


class StopFailed(RunActionReported):
    """The stop was not carried out: refused (PID reused), already gone, failed or impossible."""

    def __init__(self, run_id: str, run_name: str, error: str, outcome: StopOutcome | None = None) -> None:
        super().__init__(run_id, run_name)
        self.error = error
        self.outcome = outcome


class ReviewerAnswered(RunActionReported):
    """The reviewer said STOP, CONTINUE or WAIT, with a reason."""

    def __init__(self, answer: ReviewerAnswer, *, auto: bool = False) -> None:
        super().__init__(answer.run_id, answer.run_name)
        self.answer = answer
        self.auto = auto
        """Asked by auto-escalation rather than by a person pressing `e`."""


class ReviewerFailed(RunActionReported):
    """The reviewer gave no usable answer (time-out, error, no STOP/CONTINUE/WAIT); the verdict stands."""

    def __init__(
        self, run_id: str, run_name: str, error: str, answer: ReviewerAnswer | None = None, *, auto: bool = False
    ) -> None:
        super().__init__(run_id, run_name)
        self.error = error
        self.answer = answer
        """The failed exchange (it goes into the next bundle); None when the reviewer was never asked."""
        self.auto = auto
