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
from datetime import UTC, datetime
from typing import Any, TextIO

from monitor.config import Config
from monitor.hub import Hub, HubEvent
from monitor.model import Verdict

GLYPH = {Verdict.HEALTHY: "✓", Verdict.UNSURE: "?", Verdict.BAD: "✗"}


def event_json(ev: HubEvent) -> dict[str, Any]:
    """An event as the JSON object `watch --jsonl` prints."""
    return {
        "time": datetime.fromtimestamp(ev.time, UTC).isoformat(timespec="milliseconds"),
        "ts": round(ev.time, 3),
        "event": ev.kind,
        "run": ev.run_id,
        "name": ev.name,
        "verdict": str(ev.verdict),
        "decision": str(ev.decision),
        "reason": ev.reason,
        "state": ev.state,
        "detail": ev.detail,
        "findings": [f.to_json() for f in ev.findings],
    }


def event_text(ev: HubEvent) -> str:
    """An event as one line for a person."""
    ts = datetime.fromtimestamp(ev.time).strftime("%Y-%m-%d %H:%M:%S")
    if ev.kind == "verdict":
        return f"{ts} {GLYPH[ev.verdict]} {ev.verdict!s:7} {ev.name}  {str(ev.decision).upper()}: {ev.reason}"
    if ev.kind == "run":
        return f"{ts} + run     {ev.name}  ({ev.detail})"
    return f"{ts} ~ state   {ev.name}  {ev.state}" + (f": {ev.detail}" if ev.detail and ev.detail != ev.state else "")


async def watch(
    targets: list[str],
    config: Config,
    *,
    fmt: str | None = None,
    jsonl: bool = False,
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
) -> int:
    """Run the hub and print events until `stop` is set or the process is interrupted."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    def on_event(ev: HubEvent) -> None:
        line = json.dumps(event_json(ev), allow_nan=False) if jsonl else event_text(ev)
        out.write(line + "\n")
        out.flush()

    hub = Hub(targets, config, fmt=fmt)
    hub.add_event_listener(on_event)
    await hub.start()
    try:
        await stop.wait()
    finally:
        await hub.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return 0
