"""`runwatch watch`: the hub without a screen; one line per verdict or source state change.

For on-call use in tmux or as a service. `--jsonl` prints one JSON object per line with a
timestamp; plain mode prints a line a person reads. Runs until interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from monitor import verdicts
from monitor.config import Config
from monitor.hub import Hub, HubEvent
from monitor.outward import outward, outward_data


def event_json(ev: HubEvent) -> dict[str, Any]:
    """An event as the JSON object `watch --jsonl` prints."""
    return {
        "time": datetime.fromtimestamp(ev.time, UTC).isoformat(timespec="milliseconds"),
        "ts": round(ev.time, 3),
        "event": ev.kind,
        "run": ev.run_id,
        "name": ev.name,
        "verdict": ev.shown_verdict or str(ev.verdict),
        "judge_verdict": str(ev.verdict),
        "decision": str(ev.decision),
        "last_step": _num(ev.last_step),
        "reason": ev.reason,
        "state": ev.state,
        "detail": ev.detail,
        "findings": [f.to_json() for f in ev.findings],
    }


def _num(x: float | None) -> float | int | str | None:
    if x is None:
        return None
    if x != x or x in (float("inf"), float("-inf")):
        return str(x)
    return int(x) if float(x).is_integer() else x


def event_text(ev: HubEvent) -> str:
    """An event as one line for a person."""
    ts = datetime.fromtimestamp(ev.time).strftime("%Y-%m-%d %H:%M:%S")
    if ev.kind == "verdict":
        shown = ev.shown_verdict or str(ev.verdict)
        return f"{ts} {verdicts.glyph(shown)} {shown:7} {ev.name}  {str(ev.decision).upper()}: {ev.reason}"
    if ev.kind == "run":
        return f"{ts} + run     {ev.name}  ({ev.detail})"
    if ev.kind == "caught_up":
        return f"{ts} = read    {ev.name}  {verdicts.badge(ev.shown_verdict or ev.verdict)} [{ev.state}]: {ev.detail}"
    if ev.detail.startswith(ev.state):  # "idle since ...": the detail says it all
        return f"{ts} ~ state   {ev.name}  {ev.detail}"
    return f"{ts} ~ state   {ev.name}  {ev.state}" + (f": {ev.detail}" if ev.detail else "")


def action_json(record: dict[str, Any], now: float) -> dict[str, Any]:
    """An action's result (evidence saved, a stop, a reviewer's answer) as a `--jsonl` object."""
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
    return {"time": stamp, "ts": round(now, 3), **record}


def action_text(record: dict[str, Any], now: float) -> str:
    """An action's result as one line for a person."""
    ts = datetime.fromtimestamp(now).strftime("%Y-%m-%d %H:%M:%S")
    kind, name = record.get("event"), record.get("name", record.get("run"))
    if kind == "evidence":
        what = f"saved to {record['path']}" if record.get("ok") else f"NOT saved: {record.get('error')}"
        return f"{ts} # evidence {name}  {what}"
    if kind == "stop":
        return f"{ts} ! stop     {name}  {record.get('status')}: {record.get('detail')}"
    if kind == "reviewer":
        said = f"{record['decision']}: {record.get('reason')}" if record.get("decision") else None
        return f"{ts} ? reviewer {name}  {said or 'no answer: ' + str(record.get('error'))}"
    return f"{ts}   {kind} {name}  {record}"


async def watch(
    targets: list[str],
    config: Config,
    *,
    fmt: str | None = None,
    jsonl: bool = False,
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
    on_bad: str | None = None,
    yes: bool = False,
    dry_run: bool = False,
    fleet: Any = None,
) -> int:
    """Run the hub and print events until `stop` is set or the process is interrupted.

    `on_bad` ("evidence" or "stop") saves an evidence bundle when a run turns bad, and with "stop"
    stops it too, but only when `yes` is set (else the stop is rehearsed and audited as a dry run).
    With `[reviewer] auto = true` unsure runs are escalated (see `monitor.actions.headless.OnBadRun`).
    `fleet` (a `monitor.fleet.Fleet`) adds the metrics endpoint and the targets file.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    def on_event(ev: HubEvent) -> None:
        # Names, paths and details are outside text: secrets redacted, escapes shown (JSON escapes its own).
        line = json.dumps(outward_data(event_json(ev)), allow_nan=False) if jsonl else outward(event_text(ev))
        out.write(line + "\n")
        out.flush()

    def on_action(record: dict[str, Any]) -> None:
        now = time.time()
        record = outward_data(record)  # stop plans carry command lines: redacted (second wall)
        line = json.dumps(action_json(record, now), allow_nan=False) if jsonl else outward(action_text(record, now))
        out.write(line + "\n")
        out.flush()

    hub = Hub(targets, config, fmt=fmt)
    hub.add_event_listener(on_event)
    handler = actions = None
    if on_bad is not None or config.reviewer.auto:
        from monitor.actions.api import Actions
        from monitor.actions.headless import OnBadRun

        actions = Actions(config, hub=hub)
        handler = OnBadRun(actions, on_bad, on_action, yes=yes, dry_run=dry_run)
        hub.add_event_listener(handler)
    await hub.start()
    if fleet is not None:  # the service parts (issue 12): metrics endpoint, targets file
        fleet.start(hub)
    try:
        await stop.wait()
    finally:
        if fleet is not None:
            await fleet.aclose()
        if handler is not None and actions is not None:
            await handler.drain()
            await actions.aclose()
        await hub.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return 0
