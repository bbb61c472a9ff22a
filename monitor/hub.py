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
from dataclasses import dataclass, field
from typing import Any

from monitor import runstate
from monitor.analysis import RunAnalysis, RunInfo
from monitor.config import Config
from monitor.errors import FormatError, RunwatchError
from monitor.feeds import Feed, TextFeed, make_feed
from monitor.gpu import GpuMonitor, GpuSnapshot, NvidiaSmiParser, NvmlSampler, nvidia_smi_command
from monitor.hubgpu import gpu_for, gpu_idle_finding
from monitor.model import Finding, Role, Row, Severity, Verdict
from monitor.outward import env_redactor, outward
from monitor.runstate import RunState, SourceFacts
from monitor.snapshot import HubEvent, HubSnapshot, RunSnapshot
from monitor.sources.base import API, Chunk, Opened, RunRef, SourceContext, open_source, open_sources
from monitor.targets import SSH, WANDB_API, Target

__all__ = ["Hub", "HubEvent", "HubSnapshot", "RunSnapshot"]

_SPARK_POINTS = 48
_GPU_HISTORY = 120
#: A file not modified for this long when opened is complete as it stands (its last line too).
_SETTLED_SECONDS = 30.0
#: A source reading this long without an error has its retry backoff reset.
_HEALTHY_RESET = 30.0
#: States in which a local file's writer is looked for.
ALIVE = frozenset({runstate.LIVE, runstate.IDLE, runstate.WAITING})
#: A source that failed is back once it has run this long without failing again (or delivered).
_RECOVERED_AFTER = 2.0


@dataclass
class _Run:
    id: str
    ref: RunRef
    analysis: RunAnalysis
    feed: Feed | None = None
    facts: SourceFacts = field(default_factory=SourceFacts)
    state: RunState = field(default_factory=lambda: RunState(runstate.CONNECTING))
    last_update: float | None = None
    verdict: Verdict | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    retries: int = 0
    """Times its source failed and was opened again."""
    writer_seen: bool = False
    """Whether a process was seen holding the run's local file open for writing."""
    ended_by_writer: bool = False
    trusted: bool = True
    """Whether data from the source clears its error (not while a failed source is re-read)."""
    opened_at: float = 0.0

    @property
    def target(self) -> Target:
        return self.ref.target

    @property
    def source_error(self) -> str | None:
        return self.facts.error


class Hub:
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
        self.runs: dict[str, _Run] = {}
        self.hosts: dict[str, str] = {}
        self.gpus: dict[str, GpuSnapshot] = {}
        self.gpu_history: dict[str, list[GpuSnapshot]] = {}
        self._snapshot_listeners: list[Callable[[HubSnapshot], Any]] = []
        self._event_listeners: list[Callable[[HubEvent], Any]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._dirty = asyncio.Event()
        self._ssh_pool = ssh_pool
        self._pool_listening = False
        self._wandb_client_factory = wandb_client_factory
        self._poller: Any = None
        self._closers: list[Callable[[], Awaitable[Any] | Any]] = []
        self._started = False
        self._stopping = False
        self._context = SourceContext(lambda: self.ssh_pool, poll)
        self._discoveries: dict[str, asyncio.Task[Any]] = {}
        self._pollers: list[Any] = []
        self._wandb_added: dict[str, tuple[asyncio.Task[Any], Any]] = {}
        """W&B targets added while running: each has its own poller (task, WandbTarget)."""
        self._gpu_hosts: set[str] = set()
        self._gpu_streams: dict[str, asyncio.Task[Any]] = {}

    # ---- listeners -------------------------------------------------------------------------
    def add_snapshot_listener(self, cb: Callable[[HubSnapshot], Any]) -> None:
        self._snapshot_listeners.append(cb)

    def add_event_listener(self, cb: Callable[[HubEvent], Any]) -> None:
        self._event_listeners.append(cb)

    def _emit(self, run: _Run, kind: str, detail: str = "") -> None:
        j = run.analysis.judgement()
        ev = HubEvent(
            self.clock(),
            kind,
            run.id,
            run.analysis.info.name,
            j.verdict,
            j.decision,
            j.reason,
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

        Files, folders and SSH paths come and go freely. The W&B targets given at start share one
        batched poller; one added later gets a poller of its own."""
        if raw in self.raw_targets:
            return None
        self.raw_targets.append(raw)
        if not self._started:
            return None
        opened = self._open_target(raw)
        if opened is not None and opened.target.kind == WANDB_API:
            task = self._start_wandb([opened.target])
            if task is not None:
                self._wandb_added[raw] = (task, opened.target.wandb)
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
        from monitor.sources.wandb_api import parse_wandb_target

        added = self._wandb_added.pop(raw, None)
        if parse_wandb_target(raw) is not None and added is None:
            return f"{raw}: the W&B targets given at start share one poller; restart to remove one"
        self.raw_targets.remove(raw)
        tasks: list[asyncio.Task[Any]] = []
        if added is not None:
            tasks.append(added[0])
            self._tasks.remove(added[0])
        found = self._discoveries.pop(raw, None)
        if found is not None:
            tasks.append(found)
            self._tasks.remove(found)
        for run_id in [i for i, r in self.runs.items() if raw in (r.ref.origin, r.target.raw)]:
            tasks.extend(self.runs.pop(run_id).tasks)
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

    def _spawn(self, coro: Awaitable[Any], run: _Run | None = None) -> None:
        task = asyncio.ensure_future(coro)
        (run.tasks if run is not None else self._tasks).append(task)

    # ---- runs ------------------------------------------------------------------------------
    def _add_run(self, ref: RunRef) -> _Run:
        cfg = self.config.run_for(ref.origin) or self.config.run_for(ref.id)
        info = RunInfo(target=ref.id, name=ref.name, url=ref.id if ref.feed == API else None)
        run = _Run(ref.id, ref, RunAnalysis(info, cfg, self.config.thresholds))
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
        """A target that names nothing readable: a row that says why (never a crash)."""
        from monitor.targets import FILE

        target = Target(raw, FILE)
        run = self._add_run(RunRef(raw, target, raw, "text", raw))
        self._source_problem(run, error, unreadable=True)

    async def _discover(self, opened: Opened) -> None:
        assert opened.discover is not None
        found = opened.discover(self.discover_poll)
        self._closers.append(found.close)
        try:
            async for ref in found:
                self._open_run(ref)
        finally:  # a target removed while running stops looking for runs in it now
            res = found.close()
            if asyncio.iscoroutine(res):
                await res

    def analysis(self, run_id: str) -> RunAnalysis:
        """The live analysis of a run (store and detectors), for detail views and actions."""
        return self.runs[run_id].analysis

    # ---- run state -------------------------------------------------------------------------
    def _source_problem(
        self, run: _Run, error: str, *, unreadable: bool = False, connection: str | None = None
    ) -> None:
        """The source cannot be read now: a `source_error` finding, and the state says so."""
        step = run.analysis.detectors.last_step or 0.0
        if error != run.facts.error:
            run.analysis.detectors.set_external(Finding("source_error", Severity.WARN, "source", step, step, error, {}))
        run.facts = SourceFacts(error, unreadable, connection, run.facts.ended, run.facts.caught_up)
        self._refresh(run)

    def _source_ok(self, run: _Run, connection: str | None = None) -> None:
        """The source delivers again (or is connecting for the first time, without an error)."""
        if run.facts.error is not None:
            run.analysis.detectors.clear_external("source_error")
        run.facts = SourceFacts(None, False, connection, run.facts.ended, run.facts.caught_up)
        self._refresh(run)

    def _refresh(self, run: _Run) -> None:
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

    def _note_unreadable(self, run: _Run, why: str) -> None:
        step = run.analysis.detectors.last_step or 0.0
        run.analysis.detectors.set_external(Finding("source_error", Severity.WARN, "source", step, step, why, {}))

    def _after_rows(self, run: _Run, changed: bool, data: bool = True) -> None:
        if data:
            run.last_update = self.clock()
            if run.facts.error is not None and run.trusted:
                self._source_ok(run)
        if changed or run.verdict is None:
            v = run.analysis.judgement().verdict
            if v != run.verdict:
                first = run.verdict is None
                run.verdict = v
                if not first or v is not Verdict.HEALTHY:
                    self._emit(run, "verdict")
        self._refresh(run)

    def _take_chunk(self, run: _Run, chunk: Chunk) -> None:
        if chunk.problem:
            self._source_problem(run, chunk.problem, connection=runstate.WAITING)
            return
        assert run.feed is not None
        if chunk.data:
            run.trusted = True
            if run.ended_by_writer:  # written again (a resumed job): running after all
                run.ended_by_writer = False
                run.analysis.info.state = "running"
                run.analysis.detectors.stall.finished = False
        changed = run.feed.chunk(chunk, self.clock())
        if chunk.data or chunk.reset or changed:
            self._after_rows(run, changed, data=bool(chunk.data or chunk.reset))

    # ---- sources ---------------------------------------------------------------------------
    async def _supervise(self, run: _Run) -> None:
        """Read the run's source; on any error mark it stale, wait (backing off) and read it again."""
        delay = self.retry_initial
        while True:
            started = self.clock()
            try:
                await self._read(run)
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any failure of a source is a state of its run, never a crash
                unreadable = isinstance(e, FormatError | UnicodeDecodeError)
                why = e.message if isinstance(e, RunwatchError) else f"{type(e).__name__}: {e}"
                if self.clock() - started >= _HEALTHY_RESET:
                    delay = self.retry_initial
                run.retries += 1
                self._source_problem(
                    run, f"{run.ref.name}: {why}", unreadable=unreadable, connection=f"retrying in {delay:.0f} s"
                )
            await asyncio.sleep(delay)
            delay = min(self.retry_cap, delay * 2)

    async def _read(self, run: _Run) -> None:
        """Catch up with what a local file holds now, then follow it (any source) until it ends."""
        ref = run.ref
        cfg = self.config.run_for(ref.origin) or self.config.run_for(ref.id)
        run.opened_at = self.clock()
        run.trusted = run.facts.error is None
        if not run.trusted:
            # Re-reading a failed source: its outage ends when it has kept working a little while.
            asyncio.get_running_loop().call_later(_RECOVERED_AFTER, self._recovered, run, run.retries)
        if run.feed is not None:  # a retry: start again from a clean slate, keeping the run's row
            info = run.analysis.info
            fresh = RunAnalysis(RunInfo(target=info.target, name=info.name, url=info.url), cfg, self.config.thresholds)
            if run.facts.error:
                step = 0.0
                fresh.detectors.set_external(
                    Finding("source_error", Severity.WARN, "source", step, step, run.facts.error, {})
                )
            run.analysis = fresh
        filename = ref.path.name if ref.path is not None else (ref.target.ssh.path if ref.target.ssh else "stdin")
        run.feed = feed = make_feed(
            ref.feed,
            run.analysis,
            fmt=self.fmt or (cfg.format if cfg else None),
            filename=filename,
            host=ref.target.host,
            on_gpu=self._on_gpu,
        )
        offset = 0
        path = ref.path
        if path is not None and path.is_file():
            mtime = path.stat().st_mtime
            run.facts = SourceFacts(run.facts.error, run.facts.unreadable, run.facts.connection, False, False)
            for changed in feed.catch_up(path, mtime, final=False):
                self._after_rows(run, changed)
                await asyncio.sleep(0)
            if self.clock() - mtime > _SETTLED_SECONDS:
                feed.end(mtime)
            if run.analysis.store.rows == 0:
                run.analysis.detectors.touch(mtime)  # rows, when there are some, carry the time already
            run.analysis.tick(self.clock())
            offset = feed.resume_offset
            f = run.facts
            run.facts = SourceFacts(f.error, f.unreadable, f.connection or runstate.WAITING, False, True)
            self._after_rows(run, True, data=False)
            self._emit(run, "caught_up", f"{run.analysis.store.rows} rows read; following")
        if ref.target.kind == "stdin":
            f = run.facts
            run.facts = SourceFacts(f.error, f.unreadable, runstate.WAITING, f.ended, f.caught_up)
        source = open_source(ref, self._context, offset)
        self._closers.append(source.close)
        try:
            async for chunk in source:
                self._take_chunk(run, chunk)
        finally:
            with contextlib.suppress(Exception):
                res = source.close()
                if asyncio.iscoroutine(res):
                    await res
        feed.end(self.clock())  # the input closed (stdin): what it held is all there is
        run.facts = SourceFacts(None, False, None, True, True)
        self._after_rows(run, True, data=False)

    async def _watch_writers(self) -> None:
        """Local files whose writer process was seen and has gone: their runs have finished."""
        from monitor.sources.writers import writers_of

        while True:
            await asyncio.sleep(self.writer_poll)
            for run in list(self.runs.values()):
                path = run.ref.path
                if path is None or run.analysis.info.state != "running" or run.state.word not in ALIVE:
                    continue
                n = await asyncio.to_thread(writers_of, path)
                if n:
                    run.writer_seen = True
                elif n == 0 and run.writer_seen:
                    run.ended_by_writer = True
                    run.analysis.finish()
                    self._after_rows(run, True, data=False)

    def _recovered(self, run: _Run, attempt: int) -> None:
        """The re-opened source has not failed again for a while: the outage is over."""
        if run.retries == attempt and run.facts.error is not None and not run.trusted:
            run.trusted = True
            self._source_ok(run)

    @property
    def ssh_pool(self) -> Any:
        """The session's SSH connections (one per host), created on first use; actions share it."""
        if self._ssh_pool is None:
            from monitor.sources.ssh import SSHPool

            self._ssh_pool = SSHPool()
            self._closers.append(self._ssh_pool.close)  # a pool passed in is its owner's to close
        if not self._pool_listening:
            self._ssh_pool.add_listener(self._on_host_state)
            self._pool_listening = True
        return self._ssh_pool

    def _on_host_state(self, st: Any) -> None:
        if self._stopping:
            return
        line = st.describe()
        self.hosts[st.host] = line
        status = str(st.status)
        for run in self.runs.values():
            if run.target.ssh is None or run.target.ssh.host != st.host:
                continue
            if status == "live":
                self._source_ok(run)
            elif status == "connecting" and run.facts.error is None:
                self._source_ok(run, connection=runstate.CONNECTING)
            else:
                # Retrying after an outage keeps the outage's error: one outage, one notice.
                word = f"retrying in {st.retry_in:.0f} s" if st.retry_in is not None else status.replace("_", " ")
                error = run.facts.error if status == "connecting" and run.facts.error else line
                self._source_problem(run, error, connection=word)
        self._dirty.set()

    def _start_wandb(self, targets: list[Target]) -> asyncio.Task[Any] | None:
        from monitor.sources.wandb_poller import WandbPoller

        def on_rows(wt: Any, rows: tuple[Row, ...]) -> None:
            run = self._wandb_run(wt)
            changed = run.analysis.add_rows(rows, self.clock())
            self._after_rows(run, changed)

        def on_state(status: Any) -> None:
            run = self._wandb_run(status.target)
            if status.display_name:
                run.analysis.info.name = status.display_name
            run.analysis.info.step_key = status.step_key
            if status.state in ("finished", "failed", "crashed", "killed") and run.analysis.info.state == "running":
                run.analysis.finish("finished" if status.state == "finished" else "crashed")
            if status.stale:
                self._source_problem(run, status.error or status.state, connection=status.state)
            else:
                self._source_ok(run)
            self.hosts[f"W&B {status.target.entity}/{status.target.project}"] = (
                status.error if status.stale and status.error else "ok"
            )

        try:
            poller = WandbPoller(
                [t.wandb for t in targets if t.wandb is not None],
                on_rows,
                on_state,
                client_factory=self._wandb_client_factory,
            )
        except RunwatchError as e:
            for t in targets:
                self._failed_target(t.raw, e.message)
            return None
        self._poller = self._poller or poller
        self._pollers.append(poller)
        for t in targets:
            assert t.wandb is not None
            if t.wandb.run_id:
                self._wandb_run(t.wandb)
        task = asyncio.ensure_future(poller.run())
        self._tasks.append(task)

        def forget(_task: asyncio.Task[Any]) -> None:
            if poller in self._pollers:
                self._pollers.remove(poller)

        task.add_done_callback(forget)
        return task

    def _wandb_run(self, wt: Any) -> _Run:
        run_id = f"wandb://{wt.entity}/{wt.project}/{wt.run_id}"
        run = self.runs.get(run_id)
        if run is None:
            raw = self._wandb_origin(wt, run_id)
            run = self._add_run(RunRef(run_id, Target(raw, WANDB_API, wandb=wt), wt.run_id, API, raw))
            run.analysis.info.url = run_id
        return run

    def _wandb_origin(self, wt: Any, run_id: str) -> str:
        """The target string that named a W&B run: the run itself, else its project."""
        from monitor.sources.wandb_api import parse_wandb_target

        named = {raw: parse_wandb_target(raw) for raw in self.raw_targets}
        for raw, t in named.items():
            if t is not None and (t.entity, t.project, t.run_id) == (wt.entity, wt.project, wt.run_id):
                return raw
        for raw, t in named.items():
            if t is not None and t.run_id is None and (t.entity, t.project) == (wt.entity, wt.project):
                return raw
        return run_id

    def note_anomaly(self) -> None:
        """Ask remote pollers for their shortest interval (an anomaly was seen)."""
        for poller in self._pollers:
            poller.scheduler.anomaly()

    # ---- GPUs ------------------------------------------------------------------------------
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

    async def _remote_gpu(self, host: str) -> None:
        parser = NvidiaSmiParser(host)
        stream = self.ssh_pool.lines(host, nvidia_smi_command(2))
        async for line in stream:
            snap = parser.feed(line, self.clock())
            if snap is not None:
                self._on_gpu(snap)
        status = getattr(stream, "exit_status", None)
        if status not in (None, 0):
            self._on_gpu(GpuSnapshot(host, self.clock(), (), "nvidia-smi not found" if status == 127 else "N/A"))

    def _check_gpu_idle(self, run: _Run, now: float) -> None:
        live = run.state.word == runstate.LIVE
        history = self.gpu_history.get(run.target.host)
        step = run.analysis.detectors.last_step
        f = gpu_idle_finding(history, run.target.host, live, run.last_update, step, now, self.config.thresholds)
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
            self._check_gpu_idle(run, now)
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
            await asyncio.sleep(self.publish_interval)

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
        runs = tuple(self._run_snapshot(r, red) for r in self.runs.values())
        return HubSnapshot(now, runs, tuple(sorted(self.hosts.items())), tuple(sorted(self.gpus.items())))

    def _run_snapshot(self, run: _Run, red: Any = None) -> RunSnapshot:
        a = run.analysis
        j = a.judgement()
        info = a.info
        loss_key = a.key_for(Role.TRAIN_LOSS)
        trend: tuple[float, ...] = ()
        loss = None
        if loss_key is not None and loss_key in a.store.metrics:
            _, values = a.store.metrics[loss_key].recent()
            trend = tuple(values[-_SPARK_POINTS:].tolist())
            loss = a.store.last(loss_key)
        util, mem = gpu_for(self.gpus.get(run.target.host))
        roles = tuple(
            (role.value, key, value)
            for role in (Role.TRAIN_LOSS, Role.EVAL_LOSS, Role.LR, Role.GRAD_NORM)
            if (key := a.key_for(role)) is not None and (value := a.store.last(key)) is not None
        )
        state = run.state
        detail = state.label if state.word != runstate.STALE else (run.facts.connection or state.label)
        return RunSnapshot(
            id=run.id,
            name=info.name,
            # hostile wall: paths and remote errors are outside text, shown in the TUI; the run's id stays raw.
            target=outward(run.target.raw, redactor=red),
            source=outward(run.target.source_label, redactor=red),
            host=run.target.host,
            state=state.word,
            stale=state.stale,
            source_error=outward(run.facts.error, redactor=red) if run.facts.error else run.facts.error,
            verdict=j.verdict,
            decision=j.decision,
            reason=j.reason,
            findings=j.findings,
            last_step=a.detectors.last_step,
            total_steps=info.total_steps,
            steps_per_s=a.store.steps_per_second(self.clock()),
            last_update=a.detectors.stall.last_time or run.last_update,
            rows=a.store.rows,
            loss_key=loss_key,
            loss=loss,
            loss_trend=trend,
            headline=tuple({key: value for _, key, value in roles}.items()),  # = a.headline(), read once
            gpu_util=util,
            gpu_mem_pct=mem,
            format=info.format,
            step_key=info.step_key,
            url=info.url,
            version=a.detectors.version,
            shown_verdict=runstate.shown_verdict(state, j.verdict),
            state_detail=detail,
            exit_code=info.exit_code,
            reconnects=run.retries,
            role_values=roles,
        )
