"""The hub: opens every target's runs, supervises their sources, feeds each run's analysis and
publishes snapshots.

Every run's source runs in one generic supervised loop (`_supervise`): catch up with what the
file holds, then follow. Any exception makes the run `stale` with a `source_error` finding naming
the cause (`unreadable` when the bytes are not a run's record at all), and the source is retried
with backoff (reset after a healthy stretch, capped); the run's last verdict stays visible and one
`state` event marks the outage, one its end. Run states come from `monitor.runstate`, the module
`check` uses too. Listeners get immutable `HubSnapshot`s at a bounded rate (coalesced) and
`HubEvent`s as they happen. Only the hub reads the clock. Everything runs on one asyncio loop;
blocking work (NVML, HTTP) runs in threads inside the sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from monitor import runstate
from monitor.aiotime import wait_for
from monitor.analysis import RunAnalysis, RunInfo
from monitor.config import Config
from monitor.errors import RunwatchError
from monitor.feeds import TextFeed
from monitor.gpu import GpuMonitor, GpuSnapshot, NvmlSampler
from monitor.hubgpu import GpuSamples, gpu_idle_finding, gpu_samples
from monitor.hubloop import SupervisedSources
from monitor.hubremote import RemoteSources
from monitor.hubrun import HubRun, run_snapshot
from monitor.model import Decision, Finding, Severity, Verdict
from monitor.outward import env_redactor
from monitor.runstate import SourceFacts
from monitor.snapshot import HubEvent, HubSnapshot, RunSnapshot
from monitor.sources.base import API, Chunk, Opened, RunRef, SourceContext, open_sources
from monitor.targets import SSH, WANDB_API, Target

__all__ = ["Hub", "HubEvent", "HubSnapshot", "RunSnapshot"]

_GPU_HISTORY = 120
#: How many times less often snapshots go out while a run catches up with what its source held
#: (see `_publisher`): once a second at the default `publish_interval`.
CATCH_UP_SLOWER = 4


class Hub(SupervisedSources, RemoteSources):
    """Watches targets; see the module docstring."""

    def __init__(
        self,
        targets: list[str],
        config: Config | None = None,
        *,
        fmt: str | None = None,
        clock: Callable[[], float] = time.time,
        publish_interval: float = 0.25,
        tick_interval: float = 1.0,
        poll: float = 0.1,
        discover_poll: float = 1.0,
        retry_initial: float = 1.0,
        retry_cap: float = 60.0,
        connect_timeout: float = 60.0,
        writer_poll: float = 5.0,
        gpu: bool = True,
        ssh_pool: Any = None,
        wandb_client_factory: Callable[[str | None], Any] | None = None,
    ) -> None:
        self.config = config or Config()
        self.fmt = fmt
        self.clock = clock
        self.publish_interval = publish_interval
        self.tick_interval = tick_interval
        self.poll = poll
        self.discover_poll = discover_poll
        self.retry_initial = retry_initial
        self.retry_cap = retry_cap
        self.connect_timeout = connect_timeout
        self.writer_poll = writer_poll
        self.gpu = gpu
        self.raw_targets = list(targets)
        self.runs: dict[str, HubRun] = {}
        self.hosts: dict[str, str] = {}
        self.gpus: dict[str, GpuSnapshot] = {}
        self.gpu_history: dict[str, list[GpuSnapshot]] = {}
        self._snapshot_listeners: list[Callable[[HubSnapshot], Any]] = []
        self._event_listeners: list[Callable[[HubEvent], Any]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._dirty = asyncio.Event()
        self._urgent = asyncio.Event()
        """Set when a snapshot should not wait out the publisher's pause (a run was just caught up)."""
        self._ssh_pool = ssh_pool
        self._pool_listening = False
        self._wandb_client_factory = wandb_client_factory
        self._poller: Any = None
        self._closers: list[Callable[[], Awaitable[Any] | Any]] = []
        self._started = False
        self._stopping = False
        self._context = SourceContext(lambda: self.ssh_pool, poll)
        self._discoveries: dict[str, asyncio.Task[Any]] = {}
        self.folder_listings: dict[str, str | None] = {}
        """Remote folders listed so far: why the last listing failed, or None (`hubremote`)."""
        self._gpu_hosts: set[str] = set()
        self._gpu_streams: dict[str, asyncio.Task[Any]] = {}
        self._wandb_task: asyncio.Task[Any] | None = None

    # ---- listeners -------------------------------------------------------------------------
    def add_snapshot_listener(self, cb: Callable[[HubSnapshot], Any]) -> None:
        self._snapshot_listeners.append(cb)

    def add_event_listener(self, cb: Callable[[HubEvent], Any]) -> None:
        self._event_listeners.append(cb)

    def _emit(self, run: HubRun, kind: str, detail: str = "") -> None:
        j = run.analysis.judgement()
        decision, reason = runstate.shown_decision(run.state, j)  # an unread run is WAIT, with its reason
        ev = HubEvent(
            self.clock(),
            kind,
            run.id,
            run.analysis.info.name,
            j.verdict,
            Decision(decision),
            reason,
            run.state.word,
            detail,
            tuple(f for f in j.findings if f.active),
            runstate.shown_verdict(run.state, j.verdict),
            run.analysis.detectors.last_step,
        )
        for cb in self._event_listeners:
            cb(ev)

    # ---- life cycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Open every target and start its sources and the publisher; returns at once."""
        if self._started:
            return
        self._started = True
        wandb_targets: list[Target] = []
        local_gpu = False
        ssh_hosts: set[str] = set()
        for raw in self.raw_targets:
            opened = self._open_target(raw)
            if opened is None:
                continue
            if opened.target.kind == WANDB_API:
                wandb_targets.append(opened.target)
            elif opened.target.kind == SSH and opened.target.ssh is not None:
                ssh_hosts.add(opened.target.ssh.host)
            else:
                local_gpu = True
        self._gpu_hosts = set(ssh_hosts) | ({"localhost"} if local_gpu else set())
        if wandb_targets:
            self._start_wandb(wandb_targets)
        if self.gpu:
            if local_gpu:
                self._start_local_gpu()
            for host in ssh_hosts:
                self._start_remote_gpu(host)
        self._spawn(self._publisher())
        self._spawn(self._ticker())
        if local_gpu and self.writer_poll > 0:
            self._spawn(self._watch_writers())

    def _open_target(self, raw: str) -> Opened | None:
        """Open one target's runs (and the search for runs appearing in it); None when it names nothing."""
        try:
            opened = open_sources(raw, self.config)
        except RunwatchError as e:
            self._failed_target(raw, e.one_line())
            return None
        if opened.target.kind == WANDB_API:
            return opened
        for ref in opened.runs:
            self._open_run(ref)
        if opened.discover is not None:
            task = asyncio.ensure_future(self._discover(opened))
            self._tasks.append(task)
            self._discoveries[raw] = task
        return opened

    # ---- targets added and removed while running (a service's targets file) ----------------
    def add_target(self, raw: str) -> str | None:
        """Start watching one more target now; None, or one line saying why it was not added.

        Files, folders, SSH paths and W&B targets come and go freely (every W&B target shares the
        hub's one batched poller)."""
        if raw in self.raw_targets:
            return None
        self.raw_targets.append(raw)
        if not self._started:
            return None
        opened = self._open_target(raw)
        if opened is not None and opened.target.kind == WANDB_API:
            self._add_wandb(opened.target)
        elif opened is not None and self.gpu:
            host = opened.target.ssh.host if opened.target.kind == SSH and opened.target.ssh else "localhost"
            if host not in self._gpu_hosts:
                self._gpu_hosts.add(host)
                if host == "localhost":
                    self._start_local_gpu()
                else:
                    self._start_remote_gpu(host)
        self._dirty.set()
        return None

    async def remove_target(self, raw: str) -> str | None:
        """Stop watching a target and drop its runs; the other runs keep their state. None, or why not."""
        if raw not in self.raw_targets:
            return None
        self.raw_targets.remove(raw)
        tasks: list[asyncio.Task[Any]] = []
        found = self._discoveries.pop(raw, None)
        if found is not None:
            tasks.append(found)
            self._tasks.remove(found)
        dropped = [self.runs.pop(i) for i, r in list(self.runs.items()) if raw in (r.ref.origin, r.target.raw)]
        for run in dropped:
            tasks.extend(run.tasks)
        self._remove_wandb(raw, [r.target.wandb for r in dropped if r.target.wandb is not None])
        in_use = {r.target.ssh.host for r in self.runs.values() if r.target.ssh is not None}
        for host in [h for h in self._gpu_streams if h not in in_use]:  # its last run went: stop its GPU stream
            stream = self._gpu_streams.pop(host)
            tasks.append(stream)
            self._tasks.remove(stream)
            self._gpu_hosts.discard(host)
            for table in (self.gpus, self.gpu_history, self.hosts):
                table.pop(host, None)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._dirty.set()
        return None

    def _start_remote_gpu(self, host: str) -> None:
        task = asyncio.ensure_future(self._remote_gpu(host))
        self._tasks.append(task)
        self._gpu_streams[host] = task

    async def stop(self) -> None:
        """Stop every source and task; idempotent."""
        self._stopping = True  # connections closing now are not outages
        tasks = self._tasks + [t for r in self.runs.values() for t in r.tasks]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                res = close()
                if asyncio.iscoroutine(res):
                    await res
        self._closers.clear()

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Awaitable[Any], run: HubRun | None = None) -> None:
        task = asyncio.ensure_future(coro)
        (run.tasks if run is not None else self._tasks).append(task)

    # ---- runs ------------------------------------------------------------------------------
    def _add_run(self, ref: RunRef) -> HubRun:
        cfg = self.config.run_for(ref.origin) or self.config.run_for(ref.id)
        info = RunInfo(target=ref.id, name=ref.name, url=ref.id if ref.feed == API else None)
        run = HubRun(ref.id, ref, RunAnalysis(info, cfg, self.config.thresholds))
        self.runs[ref.id] = run
        self._emit(run, "run", ref.target.raw)
        self._dirty.set()
        return run

    def _open_run(self, ref: RunRef) -> None:
        if ref.id in self.runs:
            return
        run = self._add_run(ref)
        self._spawn(self._supervise(run), run)

    def _failed_target(self, raw: str, error: str) -> None:
        """A target that cannot be opened (no W&B credentials, a missing W&B folder): a row that says
        why, stale rather than a crash."""
        from monitor.targets import FILE

        target = Target(raw, FILE)
        run = self._add_run(RunRef(raw, target, raw, "text", raw))
        self._source_problem(run, error)

    async def _discover(self, opened: Opened) -> None:
        assert opened.discover is not None
        found = opened.discover(self.discover_poll, self._context)
        self._closers.append(found.close)
        try:
            async for ref in found:
                if isinstance(ref, RunRef):
                    self._open_run(ref)
                else:  # a remote folder listed, or not (monitor.hubremote)
                    self._folder_state(ref)
        finally:  # a target removed while running stops looking for runs in it now
            res = found.close()
            if asyncio.iscoroutine(res):
                await res

    def analysis(self, run_id: str) -> RunAnalysis:
        """The live analysis of a run (store and detectors), for detail views and actions."""
        return self.runs[run_id].analysis

    # ---- run state -------------------------------------------------------------------------
    def _source_problem(
        self, run: HubRun, error: str, *, unreadable: bool = False, connection: str | None = None
    ) -> None:
        """The source cannot be read now: a `source_error` finding, and the state says so."""
        step = run.analysis.detectors.last_step or 0.0
        if error != run.facts.error:
            run.analysis.detectors.set_external(Finding("source_error", Severity.WARN, "source", step, step, error, {}))
        run.facts = SourceFacts(error, unreadable, connection, run.facts.ended, run.facts.caught_up)
        self._refresh(run)

    def _source_ok(self, run: HubRun, connection: str | None = None) -> None:
        """The source delivers again (or is connecting for the first time, without an error)."""
        if run.facts.error is not None:
            run.analysis.detectors.clear_external("source_error")
        run.facts = SourceFacts(None, False, connection, run.facts.ended, run.facts.caught_up)
        self._refresh(run)

    def _refresh(self, run: HubRun) -> None:
        """Re-decide the run's state; one `state` event when its word (or its error) changes."""
        runstate.note_end_markers(run.analysis)
        new = runstate.decide(run.analysis, run.facts)
        old, run.state = run.state, new
        if new.word == runstate.UNREADABLE and run.facts.error is None:
            self._note_unreadable(run, new.detail)
        elif old.word == runstate.UNREADABLE and run.facts.error is None:
            run.analysis.detectors.clear_external("source_error")  # metrics came after all
        if new.word != old.word:
            self._emit(run, "state", run.facts.error or new.label)
        self._dirty.set()

    def _note_unreadable(self, run: HubRun, why: str) -> None:
        step = run.analysis.detectors.last_step or 0.0
        run.analysis.detectors.set_external(Finding("source_error", Severity.WARN, "source", step, step, why, {}))

    def _after_rows(self, run: HubRun, changed: bool, data: bool = True) -> None:
        if data:
            run.last_update = self.clock()
            if run.facts.error is not None and run.trusted:
                self._source_ok(run)
        self._refresh(run)  # first: a verdict line carries the state it is shown with
        if changed or run.verdict is None:
            v = run.analysis.judgement().verdict
            if v != run.verdict:
                first = run.verdict is None
                run.verdict = v
                if not first or v is not Verdict.HEALTHY:
                    self._emit(run, "verdict")

    def _take_chunk(self, run: HubRun, chunk: Chunk, written: float | None = None) -> None:
        if chunk.problem:
            self._source_problem(run, chunk.problem, connection=runstate.WAITING)
            return
        assert run.feed is not None
        if chunk.data:
            run.trusted = True
            if run.ended_by_writer:  # written again (a resumed job): running after all
                run.ended_by_writer = False
                run.writer_seen = False  # the new writer must be seen before its going ends the run again
                run.analysis.info.state = "running"
                run.analysis.detectors.stall.finished = False
        changed = run.feed.chunk(chunk, self.clock() if written is None else written)
        if chunk.data or chunk.reset or changed:
            self._after_rows(run, changed, data=bool(chunk.data or chunk.reset))

    # ---- sources ---------------------------------------------------------------------------
    def _on_gpu(self, snap: GpuSnapshot) -> None:
        self.gpus[snap.host] = snap
        hist = self.gpu_history.setdefault(snap.host, [])
        hist.append(snap)
        del hist[:-_GPU_HISTORY]
        self._dirty.set()

    def _start_local_gpu(self) -> None:
        mon = GpuMonitor(NvmlSampler("localhost"), self._on_gpu, interval_s=2.0)
        mon.start()
        self._closers.append(mon.stop)

    def _check_gpu_idle(self, run: HubRun, now: float, samples: dict[str, GpuSamples]) -> None:
        """`samples`: each host's GPU samples, built once per tick for all its runs."""
        live = run.state.word == runstate.LIVE
        host = run.target.host
        if host not in samples:
            samples[host] = gpu_samples(self.gpu_history.get(host))
        step = run.analysis.detectors.last_step
        f = gpu_idle_finding(samples[host], host, live, run.last_update, step, now, self.config.thresholds)
        if f is None:
            run.analysis.detectors.clear_external("gpu_idle")
        else:
            run.analysis.detectors.set_external(f)

    # ---- periodic work ---------------------------------------------------------------------
    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            self.tick()

    def tick(self) -> None:
        """Time-based checks: stalls and idleness, idle GPUs, a format still undecided."""
        now = self.clock()
        anomaly = False
        gpu: dict[str, GpuSamples] = {}
        for run in list(self.runs.values()):
            changed = run.analysis.tick(now)
            if isinstance(run.feed, TextFeed):
                changed = run.feed.tick(now) or changed
            if run.state.word == runstate.CONNECTING and not run.facts.error and run.opened_at:
                waited = now - run.opened_at
                if waited > self.connect_timeout:
                    why = f"{run.ref.name}: no answer from the source for {waited:.0f} s"
                    self._source_problem(run, why, connection=runstate.CONNECTING)
            before = run.analysis.detectors.version
            self._check_gpu_idle(run, now, gpu)
            changed = changed or run.analysis.detectors.version != before
            if changed:
                self._after_rows(run, True, data=False)
                anomaly = anomaly or run.verdict is not Verdict.HEALTHY
            else:
                self._refresh(run)
        if anomaly:
            self.note_anomaly()

    async def _publisher(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self._snapshot_listeners:  # `watch` alone has none: no snapshot to build
                self.publish()
            if not self._urgent.is_set():
                # While a run catches up, views redraw (its plot) on this process's core, which
                # its judging needs: they get its progress less often (caught up is urgent).
                pause = self.publish_interval
                if any(r.progress is not None for r in self.runs.values()):
                    pause *= CATCH_UP_SLOWER
                with contextlib.suppress(TimeoutError):
                    await wait_for(self._urgent.wait(), pause)
            self._urgent.clear()

    def publish(self) -> HubSnapshot:
        """Build a snapshot and hand it to the snapshot listeners."""
        snap = self.snapshot()
        for cb in self._snapshot_listeners:
            cb(snap)
        return snap

    def refresh(self) -> None:
        """Re-judge and republish now (the `r` key)."""
        self.tick()
        self._dirty.set()

    def snapshot(self) -> HubSnapshot:
        now = self.clock()
        red = env_redactor()  # once per snapshot: checking the environment per run cost a quarter core at 300 runs
        runs = tuple(run_snapshot(r, self.gpus.get(r.target.host), now, red) for r in self.runs.values())
        return HubSnapshot(now, runs, tuple(sorted(self.hosts.items())), tuple(sorted(self.gpus.items())))

    def _run_snapshot(self, run: HubRun) -> RunSnapshot:
        return run_snapshot(run, self.gpus.get(run.target.host), self.clock())
