"""Watches W&B runs through the public API: incremental rows, run states, an adaptive poll interval.

    poller = WandbPoller(targets, on_rows=handle_rows, on_state=handle_status)
    await poller.run()                  # polls until every watched run has ended (forever for projects)
    delay = await poller.poll_once()    # or drive it yourself: one poll, seconds until the next is due
    poller.scheduler.anomaly()          # a detector saw something: back to the shortest interval
    await poller.stop_run(target)       # the web UI's Stop button (StopRun mutation)

- `on_rows(target, rows)`: `target` is the run's `WandbTarget` (run_id set; for a project target,
  `project_target.with_run(id)`), `rows` a non-empty tuple of `monitor.model.Row` in step order,
  each W&B history row delivered once. `Row.values` holds numeric scalars only (nested dicts
  flattened with "/", NaN/Infinity kept as floats, media and W&B's `_`-keys dropped);
  `Row.step` is on the run's step axis (`WandbRunStatus.step_key` names the key); `Row.time`
  is W&B's `_timestamp`.
- `on_state(status)`: a `WandbRunStatus` each time a run's status changes (state, heartbeat,
  error): its W&B state, or `unreachable` / `api_error` (with a one-line `error`) while the API
  cannot be read; the last state W&B reported stays in `run_state`. `poller.statuses` holds the
  latest of each. Nothing from the API ever raises out of the poller. Callbacks run on the event
  loop's thread (only the HTTP runs in a worker thread).

Requests: each poll is ONE POST per W&B backend whatever the number of runs and projects (see
`WandbClient.poll`); the listing of a project target's running runs rides in the same POST every
`discover_every` polls. A project target with a selection (`WandbTarget.select`) is listed once, in
the first POST; the runs it names are then polled like run targets (their first status comes with
their first history answer). A run's config and summary (`WandbRunStatus.config` / `.summary`) are
asked for with its first rows and again once it has ended.
Runs that have finished, failed or been killed are polled once more and then dropped from the
POST (they keep their final status); a poll with nothing to ask sends nothing.
A poll that finds a backlog (a full page, or fewer rows than `historyLineCount` says exist) asks
for the next poll straight away. Each run keeps a cursor (the next `_step`) and asks for
`[cursor, cursor + width)` with `samples = page_size`; `width` is a page for dense steps and wider
for runs logged with `wandb.log(step=...)`, never so wide that W&B would sample the range (a full
answer to a wide range is discarded and the width bisected), so no row is skipped or sampled away.

The interval, error backoff and rate-limit floors are `monitor.sources.wandb_schedule.PollScheduler`'s.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from monitor.errors import RunwatchError
from monitor.model import Row
from monitor.sources.wandb_api import (
    TERMINAL_STATES,
    ProjectAnswer,
    ProjectQuery,
    RunCursor,
    RunInfo,
    WandbApiError,
    WandbClient,
    WandbTarget,
    resolve_credentials,
)
from monitor.sources.wandb_schedule import PollScheduler
from monitor.sources.wandb_select import Selection
from monitor.stepaxis import StepAxis
from monitor.wandb.reader import histogram_norm

_MAX_WIDTH = 2**50  # keeps minStep/maxStep well inside Int64
_NONFINITE = {"nan": math.nan, "infinity": math.inf, "inf": math.inf}
_NONFINITE |= {"-" + k: -v for k, v in _NONFINITE.items() if v > 0}


@dataclass(frozen=True, slots=True)
class WandbRunStatus:
    """What runwatch knows about one W&B run after the latest poll."""

    target: WandbTarget
    state: str
    """The W&B state (`running`, `finished`, …), `unreachable` / `api_error` while the API fails,
    `unknown` before the first answer."""
    run_state: str | None = None
    """The last state W&B itself reported (kept while `state` is `unreachable` / `api_error`)."""
    display_name: str | None = None
    storage_id: str | None = None
    heartbeat_at: float | None = None
    history_line_count: int | None = None
    last_step: float | None = None
    step_key: str = "_step"
    error: str | None = None
    config: Mapping[str, Any] | None = None
    """The run config (`{key: value}`), once fetched."""
    summary: Mapping[str, float] | None = None
    """The run summary's numeric scalars (nested keys joined with "/"), once fetched."""
    tags: tuple[str, ...] = ()

    @property
    def stale(self) -> bool:
        """True while the run's data cannot be fetched (unreachable is not broken)."""
        return self.state in ("unreachable", "api_error")


@dataclass
class _Track:
    status: WandbRunStatus
    cursor: int = 0
    width: int = 0
    empty_width: int | None = None
    full_width: int | None = None
    seen: int = 0
    axis: StepAxis = field(default_factory=StepAxis)
    last_step: float | None = None
    final_polls: int = 1
    active: bool = True
    meta_state: str | None = None
    """The W&B state when the config and summary were last fetched (None: not yet)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """`config`, `summary` and `tags` for the run's status, once fetched."""


@dataclass
class _Project:
    base: str | None
    entity: str
    project: str
    watch_running: bool = False
    list_in: int = 0
    list_after: str | None = None
    runs: list[WandbTarget] = field(default_factory=list)
    select: Selection | None = None
    """The target's selection, listed once (`selected` afterwards)."""
    selected: bool = False


class WandbPoller:
    """Polls W&B run and project targets; hands rows and status changes to callbacks (see module doc)."""

    def __init__(
        self,
        targets: Iterable[WandbTarget],
        on_rows: Callable[[WandbTarget, tuple[Row, ...]], None],
        on_state: Callable[[WandbRunStatus], None],
        *,
        client_factory: Callable[[str | None], WandbClient] | None = None,
        scheduler: PollScheduler | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        page_size: int = 1000,
        discover_every: int = 3,
        tick: float = 1.0,
    ) -> None:
        """Resolve credentials for each backend (may raise `RunwatchError`; reads ~/.netrc, no request)."""
        self._factory = client_factory or (lambda base: WandbClient(resolve_credentials(base)))
        self.on_rows, self.on_state = on_rows, on_state
        self.scheduler = scheduler or PollScheduler()
        self.page_size, self.discover_every, self.tick = page_size, discover_every, tick
        self._sleep = sleep
        self.answered = 0
        """Polls that every backend answered (a project's first answer lists its running runs)."""
        self._clients: dict[str | None, WandbClient] = {}
        self._projects: dict[tuple[str | None, str, str, Selection | None], _Project] = {}
        self._tracks: dict[WandbTarget, _Track] = {}
        self._named: dict[WandbTarget, int] = {}
        """How many times each target was given (`add`), so removing one of two spellings keeps it."""
        for t in targets:
            self.add(t)

    def add(self, t: WandbTarget) -> None:
        """Watch one more run or project target (polled from the next poll on). May raise `RunwatchError`
        for a backend without credentials; `run()` must be started again if it had returned (`done`)."""
        if t.base_url not in self._clients:
            self._clients[t.base_url] = self._factory(t.base_url)
        self._named[t] = self._named.get(t, 0) + 1
        proj = self._projects.setdefault(
            (t.base_url, t.entity, t.project, t.select), _Project(t.base_url, t.entity, t.project, select=t.select)
        )
        if t.run_id is None:
            proj.watch_running = proj.watch_running or t.select is None  # a selection is listed once instead
        else:
            track = self._add_run(proj, t)
            track.active = True

    def remove(self, t: WandbTarget, runs: Iterable[WandbTarget] = ()) -> None:
        """Stop watching a target given to `add` and forget `runs` (the runs it brought, which the
        caller dropped); the other targets' runs keep their cursors. A poll in flight delivers
        nothing more for what was forgotten."""
        if t not in self._named:
            return  # never added (its backend had no credentials), or removed already
        left = self._named[t] - 1
        if left > 0:
            self._named[t] = left
            return
        self._named.pop(t, None)
        gone = set(runs) | ({t} if t.run_id is not None else set())
        for target in gone:
            self._tracks.pop(target, None)
        for key, proj in list(self._projects.items()):
            proj.runs = [r for r in proj.runs if r not in gone]
            if key == (t.base_url, t.entity, t.project, t.select) and t.run_id is None:
                proj.watch_running, proj.select = False, None
            if not proj.runs and not proj.watch_running and proj.select is None:
                del self._projects[key]
        in_use = {p.base for p in self._projects.values()}
        for base in [b for b in self._clients if b not in in_use]:
            del self._clients[base]

    @property
    def statuses(self) -> Mapping[WandbTarget, WandbRunStatus]:
        """The latest status of every run seen so far."""
        return {t: tr.status for t, tr in self._tracks.items()}

    @property
    def done(self) -> bool:
        """True when nothing is left to poll (every run ended, and no project target is watched)."""
        return not any(p.watch_running or (p.select and not p.selected) for p in self._projects.values()) and not any(
            tr.active for tr in self._tracks.values()
        )

    async def run(self) -> None:
        """Poll until `done`, sleeping in `tick` steps so `anomaly()` shortens a long wait."""
        while not self.done:
            while (delay := self.scheduler.due_in()) > 0:
                await self._sleep(min(delay, self.tick))
            await self.poll_once()

    async def poll_once(self) -> float:
        """One poll: one POST per backend; returns seconds until the next poll is due."""
        failed = limited = new_data = changed = backlog = False
        for base, client in self._clients.items():
            queries, plan = self._plan(base)
            if not queries:
                continue
            try:
                answer = await asyncio.to_thread(client.poll, queries, self.page_size)
            except WandbApiError as e:
                if e.retry_after is not None:
                    limited = True
                    self.scheduler.rate_limited(e.retry_after, refused=True)
                else:
                    failed = True
                for proj in plan:
                    for t in proj.runs:
                        if t in self._tracks and self._tracks[t].active:
                            self._set(t, replace(self._tracks[t].status, state=e.kind, error=e.message))
                continue
            if answer.wait is not None:
                self.scheduler.rate_limited(answer.wait)
            for proj, pa in zip(plan, answer.projects, strict=True):
                if all(p is not proj for p in self._projects.values()):
                    continue  # its target was removed while the request was out
                n, c, b = self._apply(proj, pa)
                new_data, changed, backlog = new_data or n, changed or c, backlog or b
        if failed:
            self.scheduler.failed()
        elif not limited:
            self.scheduler.succeeded(new_data=new_data, changed=changed, backlog=backlog)
            self.answered += 1
        return self.scheduler.due_in()

    async def stop_run(self, target: WandbTarget) -> bool:
        """Ask W&B to stop a watched run; True when W&B accepted. Raises `RunwatchError` on failure."""
        track = self._tracks.get(target)
        if track is None or not track.status.storage_id:
            raise RunwatchError(f"{target}: not polled yet, its W&B id is unknown", title="Cannot stop run")
        client = self._clients[target.base_url]
        return await asyncio.to_thread(client.stop_run, track.status.storage_id)

    # -- internals -------------------------------------------------------------------------------
    def _add_run(self, proj: _Project, target: WandbTarget) -> _Track:
        track = self._tracks.get(target)
        if track is None:
            track = self._tracks[target] = _Track(WandbRunStatus(target, "unknown"))
            proj.runs.append(target)
        return track

    def _set(self, target: WandbTarget, status: WandbRunStatus) -> bool:
        """Store a run's status, tell the consumer if it changed; True when the state itself changed."""
        old = self._tracks[target].status
        self._tracks[target].status = status
        if status != old:
            self.on_state(status)
        return status.state != old.state

    def _plan(self, base: str | None) -> tuple[list[ProjectQuery], list[_Project]]:
        queries, plan = [], []
        for proj in self._projects.values():
            if proj.base != base:
                continue
            cursors = tuple(
                RunCursor(t.run_id or "", tr.cursor, tr.cursor + self._width(tr), self._wants_meta(tr))
                for t in proj.runs
                if (tr := self._tracks[t]).active
            )
            listing = proj.watch_running and proj.list_in <= 0
            if proj.watch_running and not listing:
                proj.list_in -= 1  # counts polls, whether or not this project sends anything
            select = proj.select if proj.select is not None and not proj.selected else None
            if cursors or listing or select:
                queries.append(ProjectQuery(proj.entity, proj.project, cursors, listing, proj.list_after, select))
                plan.append(proj)
        return queries, plan

    def _apply(self, proj: _Project, answer: ProjectAnswer) -> tuple[bool, bool, bool]:
        new_data = changed = backlog = False
        for run_id, info in answer.runs.items():
            target = WandbTarget(proj.entity, proj.project, run_id, proj.base)
            if target not in self._tracks:
                continue  # removed while the request was out
            n, c, b = self._apply_run(target, info)
            new_data, changed, backlog = new_data or n, changed or c, backlog or b
        if answer.running is not None and proj.watch_running:
            proj.list_after = answer.next_page
            proj.list_in = 0 if answer.next_page else self.discover_every - 1
            for info in answer.running:
                target = WandbTarget(proj.entity, proj.project, info.name, proj.base)
                known = target in self._tracks
                track = self._add_run(proj, target)
                if not known or not track.active:  # a new run, or one resumed after it ended
                    track.active, track.final_polls = True, 1
                    changed = backlog = True
                    self._set(target, self._status_from(track, info))
        if answer.selected is not None and proj.select is not None:
            proj.selected = True
            changed = backlog = True  # the runs it names are read from the next poll on, at once
            for info in answer.selected:
                target = WandbTarget(proj.entity, proj.project, info.name, proj.base)
                track = self._add_run(proj, target)
                if info.config is not None:  # known already: the first history poll need not ask
                    self._take_meta(track, info)
        return new_data, changed, backlog

    def _apply_run(self, target: WandbTarget, info: RunInfo | None) -> tuple[bool, bool, bool]:
        track = self._tracks[target]
        if info is None:
            missing = f"run {target.path} not found on W&B"
            return False, self._set(target, replace(track.status, state="api_error", error=missing)), False
        width = self._width(track)
        # A range wider than a page that comes back with a page of rows may have been sampled.
        sampled = width > self.page_size and len(info.history) >= self.page_size
        rows = () if sampled else self._rows(track, [r for r in info.history if r["_step"] >= track.cursor])
        count = info.history_line_count
        more = count is not None and count > track.seen + len(rows)
        backlog = sampled or len(info.history) >= self.page_size or (more and bool(rows))
        if rows:
            track.seen += len(rows)
            track.empty_width = track.full_width = None
            self.on_rows(target, rows)
        elif sampled or (more and width < _MAX_WIDTH):
            # Sparse steps (wandb.log(step=...)): search for a width whose range holds 1..page-1 rows,
            # by bisection between a width known empty and one known too full.
            if sampled:
                track.full_width = width
            else:
                track.empty_width = width
            lo, hi = track.empty_width, track.full_width
            if lo is not None and hi is not None and lo < hi:
                track.width = max(lo + 1, (lo + hi) // 2)
            else:
                track.width = width * 4 if not sampled else max(self.page_size, width // 4)
            backlog = True
        if info.config is not None:
            self._take_meta(track, info)
        changed = self._set(target, self._status_from(track, info))
        if info.state in TERMINAL_STATES and not backlog:
            track.final_polls -= 1
            track.active = track.final_polls >= 0
        return bool(rows), changed, backlog

    @staticmethod
    def _wants_meta(track: _Track) -> bool:
        """Ask for config and summary with a run's first rows, and again once it has ended."""
        if track.meta_state is None:
            return True
        ended = track.status.run_state in TERMINAL_STATES
        return ended and track.meta_state not in TERMINAL_STATES

    @staticmethod
    def _take_meta(track: _Track, info: RunInfo) -> None:
        track.meta_state = info.state
        track.meta = {
            "config": dict(info.config or {}),
            "summary": _numeric_values(info.summary or {}),
            "tags": info.tags,
        }

    def _width(self, track: _Track) -> int:
        """Steps to ask for: a page when steps are dense, wider for sparse ones (aiming at half a page)."""
        return max(self.page_size, track.width)

    def _status_from(self, track: _Track, info: RunInfo) -> WandbRunStatus:
        return replace(
            track.status,
            state=info.state,
            run_state=info.state,
            display_name=info.display_name,
            storage_id=info.storage_id or track.status.storage_id,
            heartbeat_at=_epoch(info.heartbeat_at),
            history_line_count=info.history_line_count,
            last_step=track.last_step,
            step_key=track.axis.key,
            error=None,
            **track.meta,
        )

    def _rows(self, track: _Track, history: list[dict[str, Any]]) -> tuple[Row, ...]:
        out = []
        gaps = []
        prev = track.cursor - 1 if track.seen else None
        for raw in history:
            step = int(raw["_step"])
            if step < track.cursor:
                continue  # a row already delivered
            if prev is not None:
                gaps.append(step - prev)
            prev = step
            track.cursor = step + 1
            values = _numeric_values(raw)
            out.append(Row(track.axis.step(values, float(step)), values, _number(raw.get("_timestamp"))))
        if gaps:
            # Runs logged with wandb.log(step=...) may skip steps; ask for wider ranges for them.
            track.width = self.page_size // 2 * max(1, min(gaps))
        if out:
            track.last_step = out[-1].step
        return tuple(out)


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        return _NONFINITE.get(v.strip().lower())
    return None


def _numeric_values(row: Mapping[str, Any]) -> dict[str, float]:
    """Numeric scalars of a W&B history row; nested dicts flattened with "/", `_`-keys and media dropped."""
    out: dict[str, float] = {}

    def walk(prefix: str, obj: Mapping[str, Any]) -> None:
        for k, v in obj.items():
            if isinstance(v, dict):
                if "_type" not in v:  # W&B media and histograms carry a _type
                    walk(f"{prefix}{k}/", v)
                elif (x := histogram_norm(v)) is not None:  # per-layer gradients (detectors/layers.py)
                    out[f"{prefix}{k}"] = x
            elif (x := _number(v)) is not None:
                out[f"{prefix}{k}"] = x

    walk("", {k: v for k, v in row.items() if not str(k).startswith("_")})
    return out


def _epoch(stamp: str | None) -> float | None:
    """Epoch seconds from W&B's ISO time (UTC, usually without a zone)."""
    if not stamp:
        return None
    try:
        dt = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
