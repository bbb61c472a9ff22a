"""`check` for remote targets (SSH paths, W&B runs and projects): the hub opens them the way
`watch` and the TUI do, follows them until what they hold now has arrived, and hands back each
run's analysis and state.

A remote run is caught up when nothing new has arrived for `settle` seconds after its first
data, or its source has failed (then it is stale, and `check` exits 3); `timeout` bounds it all.
A remote folder is listed once (its runs are those it holds now); one that cannot be listed is a
stale row saying why.
"""

from __future__ import annotations

import asyncio
import time

from monitor import runstate
from monitor.check import CheckResult
from monitor.config import Config
from monitor.hub import Hub


def check_remote(
    targets: list[str], config: Config, fmt: str | None, now: float | None, timeout: float, settle: float
) -> list[list[CheckResult]]:
    """The runs of each remote target, judged as of `now` (default: when they were read)."""
    return asyncio.run(_check(targets, config, fmt, now, timeout, settle))


async def _check(
    targets: list[str], config: Config, fmt: str | None, now: float | None, timeout: float, settle: float
) -> list[list[CheckResult]]:
    folders = _remote_folders(targets)
    hub = Hub(targets, config, fmt=fmt, gpu=False, publish_interval=3600.0, tick_interval=3600.0, discover_poll=3600.0)
    async with hub:
        start = time.monotonic()
        last_change = start
        seen: tuple[tuple[str, int, str], ...] = ()
        while time.monotonic() - start < timeout:
            await asyncio.sleep(0.1)
            hub.tick()  # time-based decisions as in watch: a format waited on, a silent source
            shape = tuple((r.id, r.analysis.store.rows, r.state.word) for r in hub.runs.values())
            t = time.monotonic()
            if shape != seen:
                seen, last_change = shape, t
                continue
            waiting = any(
                r.state.word in (runstate.CONNECTING, runstate.WAITING) and not r.facts.error for r in hub.runs.values()
            )
            # A W&B project with no running run has nothing more to show once the API answered.
            listed = bool(hub.runs) or hub.api_answered > 0 or bool(folders)
            listed = listed and all(raw in hub.folder_listings for raw in folders)
            if listed and t - last_change >= settle and not waiting:
                break
        wall = time.time() if now is None else now
        out: list[list[CheckResult]] = []
        for raw in targets:
            results = []
            for run in hub.runs.values():
                if run.ref.origin != raw:
                    continue
                run.analysis.tick(wall)
                state = runstate.decide(run.analysis, run.facts)
                results.append(CheckResult(run.id, run.analysis, error=None, state=state))
            if not results:
                why = "nothing read"
                if raw.startswith("wandb://"):
                    why = "no run matches the selection" if "?" in raw else "no running runs in this W&B project"
                elif raw in folders and hub.folder_listings.get(raw) is None:
                    why = "no log, metrics file, event file or W&B run in this remote folder"
                results.append(CheckResult(raw, error=f"{raw}: no runs found ({why})"))
            out.append(results)
        return out


def _remote_folders(targets: list[str]) -> set[str]:
    """The targets that are remote folders (listed by the hub before their runs are known)."""
    from monitor.errors import RunwatchError
    from monitor.sources.ssh_folder import is_remote_folder
    from monitor.targets import SSH, parse_target

    out = set()
    for raw in targets:
        try:
            t = parse_target(raw)
        except RunwatchError:
            continue
        if t.kind == SSH and t.ssh is not None and is_remote_folder(t.ssh.path):
            out.add(raw)
    return out
