"""The run actions' workers: each awaits one `monitor.actions.Actions` call and posts what came of it.

They run as Textual workers on the app's loop (the hub's, which `Actions` needs), touch no widget
and return nothing: the outcome is a past-tense message from `tui.messages`, handled on the app.
`Actions` reports the run's own trouble as values; anything it raises becomes a `…Failed` message
with a one-line reason, so a failing action never takes the app down.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

from textual import log
from textual.message import Message

from monitor.actions import Actions, StopPlan
from monitor.errors import RunwatchError
from tui.messages import (
    EvidenceFailed,
    EvidenceSaved,
    ReviewerAnswered,
    ReviewerFailed,
    StopFailed,
    StopPlanned,
    StopSent,
)

Post = Callable[[Message], object]
"""Where a worker reports: the app's `post_message`."""


def failure(error: Exception) -> str:
    """One line for a person about an exception an action raised."""
    if isinstance(error, RunwatchError):
        return error.one_line()
    if isinstance(error, KeyError):
        return f"the hub has no run {error.args[0]!r} (it may have just been removed)"
    # A bug rather than the run's trouble: the traceback goes to the Textual devtools log too.
    log.error("".join(traceback.format_exception(error)))
    return f"unexpected {type(error).__name__}: {error}"


async def save_evidence(actions: Actions, post: Post, run_id: str, run_name: str, screenshot_svg: str | None) -> None:
    """`b`: write a bundle → `EvidenceSaved` | `EvidenceFailed`."""
    try:
        bundle = await actions.save_evidence(
            run_id, why="saved by hand from the terminal UI", screenshot_svg=screenshot_svg
        )
    except Exception as e:
        post(EvidenceFailed(run_id, run_name, failure(e)))
    else:
        post(EvidenceSaved(run_id, run_name, bundle))


async def plan_stop(
    actions: Actions, post: Post, run_id: str, run_name: str, screenshot_svg: str | None, *, confirm: bool
) -> None:
    """`s`: work out how the run would be stopped (changes nothing) → `StopPlanned` | `StopFailed`."""
    try:
        plan = await actions.plan_stop(run_id)
    except Exception as e:
        post(StopFailed(run_id, run_name, f"cannot plan the stop: {failure(e)}"))
    else:
        post(StopPlanned(plan, screenshot_svg, confirm=confirm))


async def execute_stop(actions: Actions, post: Post, plan: StopPlan, screenshot_svg: str | None) -> None:
    """A confirmed plan: evidence, the act, the audit entry → `StopSent` | `StopFailed`."""
    try:
        outcome = await actions.execute_stop(plan, screenshot_svg=screenshot_svg)
    except Exception as e:
        post(StopFailed(plan.run_id, plan.run_name, f"{plan.run_name}: not stopped: {failure(e)}"))
        return
    if outcome.ok:
        post(StopSent(outcome))
    else:
        post(StopFailed(plan.run_id, plan.run_name, outcome.one_line(), outcome))


async def escalate(actions: Actions, post: Post, run_id: str, run_name: str, *, auto: bool = False) -> None:
    """`e` (or auto-escalation of an unsure run): ask the reviewer → `ReviewerAnswered` | `ReviewerFailed`.

    With `auto`, `Actions.auto_escalate` decides whether to ask at all (`[reviewer] auto`, the
    per-run interval, the run still unsure); when it does not, nothing is posted.
    """
    try:
        answer = await (actions.auto_escalate(run_id) if auto else actions.escalate(run_id))
    except Exception as e:
        post(ReviewerFailed(run_id, run_name, failure(e), auto=auto))
        return
    if answer is None:
        return
    if answer.ok:
        post(ReviewerAnswered(answer, auto=auto))
    else:
        post(ReviewerFailed(run_id, run_name, answer.one_line(), answer, auto=auto))
