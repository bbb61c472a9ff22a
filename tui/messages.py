"""Messages of the app, named as facts (`…Arrived`) or requests (`…Requested`).

The hub's listeners only post these; handlers on the app and screens own all state.
"""

from __future__ import annotations

from textual.message import Message

from monitor.hub import HubEvent, HubSnapshot


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
    """The person asked to stop a run (`s`)."""

    verb = "Stop"


class EscalationRequested(RunActionRequested):
    """The person asked the reviewer about a run (`e`)."""

    verb = "Escalate to reviewer"


class EvidenceRequested(RunActionRequested):
    """The person asked for an evidence bundle of a run (`b`)."""

    verb = "Save evidence bundle"
