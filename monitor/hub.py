"""The hub: starts sources, feeds rows into each run's store and detectors, publishes snapshots.

Listeners get immutable `HubSnapshot`s at a bounded rate (coalesced) and `HubEvent`s (a verdict or
source state changed, a run appeared) as they happen. Only the hub reads the clock. Everything
runs on one asyncio loop; blocking work (NVML, HTTP) runs in threads inside the sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor import feeds
from monitor.analysis import RunAnalysis, RunInfo
from monitor.config import Config
from monitor.errors import RunwatchError
from monitor.feeds import TextFeed, WandbFeed
from monitor.gpu import GpuMonitor, GpuSnapshot, NvidiaSmiParser, NvmlSampler, nvidia_smi_command
from monitor.gpu.history import mean_util
from monitor.model import Decision, Finding, Role, Row, Severity, Verdict
from monitor.sources.ssh_tail import Chunk
from monitor.targets import SSH, STDIN, WANDB_API, WANDB_LOCAL, Target, parse_target

_SPARK_POINTS = 48
_GPU_HISTORY = 120


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """Everything a view shows about one run at one moment."""

    id: str
    name: str
    target: str
    source: str
    host: str
    state: str
    """connecting, live, retrying in N s, waiting, finished, failed, auth failed, ..."""
    stale: bool
    source_error: str | None
    verdict: Verdict
    decision: Decision
    reason: str
    findings: tuple[Finding, ...]
    last_step: float | None
    total_steps: float | None
    steps_per_s: float | None
    last_update: float | None
    """When the run last delivered data (a finding changing on its own does not move it)."""
    loss_key: str | None
    loss: float | None
    loss_trend: tuple[float, ...]
    headline: tuple[tuple[str, float], ...]
    gpu_util: float | None
    gpu_mem_pct: float | None
    format: str
    step_key: str
    url: str | None
    version: int
    rows: int = 0
    """Rows stored so far: a data version for views that redraw only on new data."""


@dataclass(frozen=True, slots=True)
class HubSnapshot:
    """All runs and hosts at one moment."""

    time: float
    runs: tuple[RunSnapshot, ...]
    hosts: tuple[tuple[str, str], ...]
    """(host, one-line connection state) for SSH hosts and W&B backends."""
    gpus: tuple[tuple[str, GpuSnapshot], ...]

    def counts(self) -> dict[Verdict, int]:
        out = dict.fromkeys(Verdict, 0)
        for r in self.runs:
            out[r.verdict] += 1
        return out


@dataclass(frozen=True, slots=True)
class HubEvent:
    """A fact worth a line in `watch`: `verdict`, `state` or `run` (a new run appeared)."""

    time: float
    kind: str
    run_id: str
    name: str
    verdict: Verdict
    decision: Decision
    reason: str
    state: str
    detail: str = ""
    findings: tuple[Finding, ...] = ()


@dataclass
class _Run:
    id: str
    target: Target
    analysis: RunAnalysis
    feed: TextFeed | WandbFeed | None = None
    state: str = "connecting"
    source_error: str | None = None
    last_update: float | None = None
    verdict: Verdict | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


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
        self.gpu = gpu
        self.targets = [parse_target(t) for t in targets]
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
            run.state,
            detail,
            tuple(f for f in j.findings if f.active),
        )
        for cb in self._event_listeners:
            cb(ev)

    # ---- life cycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every source and the publisher; returns at once."""
        if self._started:
            return
        self._started = True
        wandb_targets = []
        local_gpu = False
        ssh_hosts: set[str] = set()
        for t in self.targets:
            if t.kind == WANDB_API:
                wandb_targets.append(t)
            elif t.kind == WANDB_LOCAL:
                self._spawn(self._watch_wandb_dir(t))
                local_gpu = True
            elif t.kind == SSH:
                run = self._add_run(t.raw, t)
                self._spawn(self._follow_ssh(run))
                ssh_hosts.add(t.host)
            elif t.kind == STDIN:
                run = self._add_run(t.raw, t)
                self._spawn(self._follow_stdin(run))
            else:
                run = self._add_run(t.raw, t)
                self._spawn(self._follow_local(run))
                local_gpu = True
        if wandb_targets:
            self._start_wandb(wandb_targets)
        if self.gpu:
            if local_gpu:
                self._start_local_gpu()
            for host in ssh_hosts:
                self._spawn(self._remote_gpu(host))
        self._spawn(self._publisher())
        self._spawn(self._ticker())

    async def stop(self) -> None:
        """Stop every source and task; idempotent."""
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
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            # A source that dies must not take the hub down: say so once, on stderr.
            print(f"runwatch: source stopped: {type(exc).__name__}: {exc}", file=sys.stderr)

    # ---- runs ------------------------------------------------------------------------------
    def _add_run(self, run_id: str, target: Target, name: str | None = None) -> _Run:
        cfg = self.config.run_for(target.raw)
        info = RunInfo(
            target=target.raw,
            name=(cfg.name if cfg and cfg.name else None) or name or _short_name(target),
            url=target.raw if target.kind == WANDB_API else None,
        )
        run = _Run(run_id, target, RunAnalysis(info, cfg, self.config.thresholds))
        self.runs[run_id] = run
        self._emit(run, "run", target.raw)
        self._dirty.set()
        return run

    def analysis(self, run_id: str) -> RunAnalysis:
        """The live analysis of a run (store and detectors), for detail views and actions."""
        return self.runs[run_id].analysis

    def _set_state(self, run: _Run, state: str, error: str | None = None) -> None:
        if state == run.state and error == run.source_error:
            return
        run.state = state
        run.source_error = error
        if error:
            f = Finding(
                "source_error",
                Severity.WARN,
                "source",
                run.analysis.detectors.last_step or 0.0,
                run.analysis.detectors.last_step or 0.0,
                error,
                {},
            )
            run.analysis.detectors.set_external(f)
        else:
            run.analysis.detectors.clear_external("source_error")
        self._emit(run, "state", error or state)
        self._dirty.set()

    def _after_rows(self, run: _Run, changed: bool, data: bool = True) -> None:
        if data:
            run.last_update = self.clock()
        if changed or run.verdict is None:
            v = run.analysis.judgement().verdict
            if v != run.verdict:
                first = run.verdict is None
                run.verdict = v
                if not first or v is not Verdict.HEALTHY:
                    self._emit(run, "verdict")
        self._dirty.set()

    def _take_chunk(self, run: _Run, chunk: Chunk) -> None:
        if chunk.problem:
            self._set_state(run, "waiting", chunk.problem)
            return
        if run.source_error or run.state not in ("live", "finished", "failed"):
            self._set_state(run, "live")
        assert run.feed is not None
        changed = run.feed.chunk(chunk, self.clock())
        self._take_end(run)
        if chunk.data or changed:
            self._after_rows(run, changed)

    def _take_end(self, run: _Run) -> None:
        """The run's state follows the end its source recorded (a `.wandb` exit record)."""
        if run.analysis.info.state in ("finished", "failed") and run.state != run.analysis.info.state:
            self._set_state(run, run.analysis.info.state)

    def _make_feed(self, run: _Run, filename: str) -> TextFeed | WandbFeed:
        if run.target.binary or filename.endswith(".wandb"):
            return WandbFeed(run.analysis, run.target.host, self._on_gpu)
        cfg = self.config.run_for(run.target.raw)
        return TextFeed(run.analysis, self.fmt or (cfg.format if cfg else None), filename)

    # ---- sources ---------------------------------------------------------------------------
    async def _follow_local(self, run: _Run, path: Path | None = None) -> None:
        from monitor.sources.local import LocalTail

        path = path or run.target.path
        assert path is not None
        run.feed = feed = self._make_feed(run, path.name)
        offset = 0
        if isinstance(feed, WandbFeed) and _size(path) >= feeds.BULK_BYTES:
            # A long run already written: read it in bulk first, then tail from where that stopped.
            self._set_state(run, "live")
            async for changed in feed.catch_up(path, self.clock):
                self._after_rows(run, changed)
            self._take_end(run)
            offset = feed.resume_offset
        tail = LocalTail(path, offset=offset, poll=self.poll)
        self._closers.append(tail.close)
        async for chunk in tail:
            self._take_chunk(run, chunk)

    async def _watch_wandb_dir(self, target: Target) -> None:
        from monitor.sources.local import WandbDirWatcher

        assert target.path is not None
        watcher = WandbDirWatcher(target.path)
        self._closers.append(watcher.close)
        single = target.path.suffix == ".wandb"
        async for file in watcher:
            run_id = target.raw if single else f"{target.raw}#{file.parent.name}"
            run = self._add_run(run_id, target, name=file.parent.name)
            self._spawn(self._follow_local(run, file), run)

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
        line = st.describe()
        self.hosts[st.host] = line
        status = str(st.status)
        for run in self.runs.values():
            if run.target.ssh is not None and run.target.ssh.host == st.host:
                if status == "live":
                    self._set_state(run, "live")
                else:
                    word = status.replace("_", " ")
                    if st.retry_in is not None and status == "retrying":
                        word = f"retrying in {st.retry_in:.0f} s"
                    self._set_state(run, word, line if status != "connecting" else None)
        self._dirty.set()

    async def _follow_ssh(self, run: _Run) -> None:
        assert run.target.ssh is not None
        run.feed = self._make_feed(run, run.target.ssh.path)
        tail = self.ssh_pool.follow(run.target.ssh)
        self._closers.append(tail.close)
        async for chunk in tail:
            self._take_chunk(run, chunk)

    async def _follow_stdin(self, run: _Run) -> None:
        run.feed = self._make_feed(run, "stdin")
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
        offset = 0
        self._set_state(run, "live")
        while data := await reader.read(1 << 16):
            self._take_chunk(run, Chunk(offset, data))
            offset += len(data)
        self._set_state(run, "finished")

    def _start_wandb(self, targets: list[Target]) -> None:
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
            if status.state in ("finished", "failed", "killed") and run.analysis.info.state == "running":
                run.analysis.finish(status.state)
            self._set_state(run, status.state, status.error if status.stale else None)
            self.hosts[f"W&B {status.target.entity}/{status.target.project}"] = (
                status.error if status.stale and status.error else "ok"
            )

        try:
            self._poller = WandbPoller(
                [t.wandb for t in targets if t.wandb is not None],
                on_rows,
                on_state,
                client_factory=self._wandb_client_factory,
            )
        except RunwatchError as e:
            for t in targets:
                run = self._add_run(t.raw, t)
                self._set_state(run, "error", e.message)
            return
        for t in targets:
            assert t.wandb is not None
            if t.wandb.run_id:
                self._wandb_run(t.wandb)
        self._spawn(self._poller.run())

    def _wandb_run(self, wt: Any) -> _Run:
        run_id = f"wandb://{wt.entity}/{wt.project}/{wt.run_id}"
        run = self.runs.get(run_id)
        if run is None:
            raw = next((t.raw for t in self.targets if t.wandb == wt), run_id)
            run = self._add_run(run_id, Target(raw, WANDB_API, wandb=wt), name=wt.run_id)
            run.analysis.info.url = run_id
        return run

    def note_anomaly(self) -> None:
        """Ask remote pollers for their shortest interval (an anomaly was seen)."""
        if self._poller is not None:
            self._poller.scheduler.anomaly()

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

    def _gpu_for(self, run: _Run) -> tuple[float | None, float | None]:
        snap = self.gpus.get(run.target.host)
        if snap is None or not snap.gpus:
            return None, None
        utils = [g.util_pct for g in snap.gpus if g.util_pct is not None]
        mems = [g.mem_pct for g in snap.gpus if g.mem_pct is not None]
        return (sum(utils) / len(utils) if utils else None, sum(mems) / len(mems) if mems else None)

    def _check_gpu_idle(self, run: _Run, now: float) -> None:
        hist = self.gpu_history.get(run.target.host)
        if not hist or run.state != "live" or run.last_update is None or now - run.last_update > 120:
            run.analysis.detectors.clear_external("gpu_idle")
            return
        recent = [s for s in hist if now - s.time <= 120]
        samples = [g for s in recent for g in s.gpus]
        util = mean_util(samples, len(samples)) if samples else None
        if util is not None and len(recent) >= 10 and util < 5.0:
            step = run.analysis.detectors.last_step or 0.0
            run.analysis.detectors.set_external(
                Finding(
                    "gpu_idle",
                    Severity.WARN,
                    "gpu",
                    step,
                    step,
                    f"GPUs on {run.target.host} {util:.0f}% busy over the last 2 min while the run logs",
                    {"util_pct": round(util, 1)},
                )
            )
        else:
            run.analysis.detectors.clear_external("gpu_idle")

    # ---- periodic work ---------------------------------------------------------------------
    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            self.tick()

    def tick(self) -> None:
        """Time-based checks: stalls, idle GPUs, a format still undecided."""
        now = self.clock()
        anomaly = False
        for run in list(self.runs.values()):
            changed = run.analysis.tick(now)
            if isinstance(run.feed, TextFeed):
                changed = run.feed.tick(now) or changed
            before = run.analysis.detectors.version
            self._check_gpu_idle(run, now)
            changed = changed or run.analysis.detectors.version != before
            if changed:
                self._after_rows(run, True, data=False)
                anomaly = anomaly or run.verdict is not Verdict.HEALTHY
        if anomaly:
            self.note_anomaly()

    async def _publisher(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
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
        runs = tuple(self._run_snapshot(r) for r in self.runs.values())
        return HubSnapshot(now, runs, tuple(sorted(self.hosts.items())), tuple(sorted(self.gpus.items())))

    def _run_snapshot(self, run: _Run) -> RunSnapshot:
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
        util, mem = self._gpu_for(run)
        stale = run.source_error is not None
        return RunSnapshot(
            id=run.id,
            name=info.name,
            target=run.target.raw,
            source=run.target.source_label,
            host=run.target.host,
            state=run.state,
            stale=stale,
            source_error=run.source_error,
            verdict=j.verdict,
            decision=j.decision,
            reason=j.reason,
            findings=j.findings,
            last_step=a.detectors.last_step,
            total_steps=info.total_steps,
            steps_per_s=a.store.steps_per_second(self.clock()),
            last_update=run.last_update,
            rows=a.store.rows,
            loss_key=loss_key,
            loss=loss,
            loss_trend=trend,
            headline=tuple(a.headline().items()),
            gpu_util=util,
            gpu_mem_pct=mem,
            format=info.format,
            step_key=info.step_key,
            url=info.url,
            version=a.detectors.version,
        )


def _short_name(t: Target) -> str:
    if t.ssh is not None:
        p = Path(t.ssh.path)
        return f"{t.ssh.host}:{p.parent.name}/{p.name}" if p.parent.name else f"{t.ssh.host}:{p.name}"
    if t.path is not None:
        p = t.path.resolve()
        return f"{p.parent.name}/{p.name}" if p.parent.name else p.name
    return t.raw


def _size(path: Path) -> int:
    """The size of a file, 0 if it cannot be read (its tail then says why)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0
