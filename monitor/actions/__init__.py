"""Actions on runs: stop, escalate to a reviewer, evidence bundles, audit log. No Textual here.

The UI-free API the TUI binds to `s`, `e` and `b` is `Actions` (see `monitor.actions.api`)::

    actions = Actions(config, hub=hub)
    plan = await actions.plan_stop(run_id)          # StopPlan; plan.describe() for the confirm dialog
    outcome = await actions.execute_stop(plan)      # StopOutcome (evidence first, then the act, then audit)
    answer = await actions.escalate(run_id)         # ReviewerAnswer
    bundle = await actions.save_evidence(run_id)    # SavedBundle
"""

from monitor.actions.api import Actions
from monitor.actions.evidence import EvidenceError, SavedBundle
from monitor.actions.redact import Redactor, redact_text
from monitor.actions.reviewer import ReviewerAnswer
from monitor.actions.stop import StopOutcome, StopPlan

__all__ = [
    "Actions",
    "EvidenceError",
    "Redactor",
    "ReviewerAnswer",
    "SavedBundle",
    "StopOutcome",
    "StopPlan",
    "redact_text",
]
