"""Stopping a W&B run through the public API: look up its storage id, then send `StopRun`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from monitor.errors import RunwatchError
from monitor.sources.wandb_api import TERMINAL_STATES, WandbTarget

RUN_ID_QUERY = (
    "query RunState($entity: String!, $project: String!, $name: String!) "
    "{ project(name: $project, entityName: $entity) { run(name: $name) { id state } } }"
)


def stop_wandb_run(client: Any, target: WandbTarget) -> str:
    """Ask W&B to stop `target` with a `WandbClient`; a one-line result. Blocks: call it in a thread.

    Raises `RunwatchError` (a `WandbApiError` for transport trouble) when the request was not accepted.
    """
    if target.run_id is None:
        raise RunwatchError(f"{target} is a project, not a run", title="Cannot stop run")
    data, _ = client.graphql(RUN_ID_QUERY, {"entity": target.entity, "project": target.project, "name": target.run_id})
    run = (data.get("project") or {}).get("run") or {}
    storage_id, state = run.get("id"), str(run.get("state") or "unknown").lower()
    if not storage_id:
        raise RunwatchError(f"W&B does not know run {target.path}", title="Cannot stop run")
    if state in TERMINAL_STATES:
        raise RunwatchError(f"run {target.path} is already {state} on W&B", title="Cannot stop run")
    if not client.stop_run(storage_id):
        raise RunwatchError(f"W&B did not accept the stop request for {target.path}", title="Cannot stop run")
    at = datetime.now().strftime("%H:%M:%S")
    return (
        f"W&B accepted the stop request for {target.path} at {at} (it was {state}); "
        "the training process should stop within about 30 s"
    )
