"""The hub's remote sources: SSH hosts (their connection states, their GPUs) and the W&B API poller.

A mixin of `monitor.hub.Hub`, kept apart so that the hub reads as one supervised loop over runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from monitor import runstate
from monitor.config import Config
from monitor.errors import RunwatchError
from monitor.gpu import GpuSnapshot, NvidiaSmiParser, nvidia_smi_command
from monitor.hubrun import HubRun
from monitor.model import Row
from monitor.sources.base import API, TEXT, FolderState, RunRef
from monitor.sources.ssh_targets import parse_ssh_target
from monitor.targets import FOLDER, SSH, WANDB_API, Target


class RemoteSources:
    """SSH host states and W&B polling for `Hub` (which provides what is declared here)."""

    config: Config
    clock: Callable[[], float]
    runs: dict[str, HubRun]
    hosts: dict[str, str]
    raw_targets: list[str]
    _ssh_pool: Any
    _pool_listening: bool
    _stopping: bool
    _poller: Any
    _wandb_task: asyncio.Task[Any] | None
    _tasks: list[asyncio.Task[Any]]
    _wandb_client_factory: Callable[[str | None], Any] | None
    _closers: list[Callable[[], Awaitable[Any] | Any]]

    _dirty: asyncio.Event
    folder_listings: dict[str, str | None]

    if TYPE_CHECKING:  # provided by Hub

        def _source_ok(self, run: HubRun, connection: str | None = None) -> None: ...
        def _emit(self, run: HubRun, kind: str, detail: str = "") -> None: ...
        def _source_problem(
            self, run: HubRun, error: str, *, unreadable: bool = False, connection: str | None = None
        ) -> None: ...
        def _after_rows(self, run: HubRun, changed: bool, data: bool = True) -> None: ...
        def _add_run(self, ref: RunRef) -> HubRun: ...
        def _failed_target(self, raw: str, error: str) -> None: ...
        def _spawn(self, coro: Awaitable[Any], run: HubRun | None = None) -> None: ...
        def _on_gpu(self, snap: GpuSnapshot) -> None: ...

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
            if run.target.ssh is None or run.target.ssh.host != st.host or run.target.kind != SSH:
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

    def _folder_state(self, st: FolderState) -> None:
        """A remote folder was listed (`error` None) or could not be (a row for the folder says why,
        stale with a `source_error`, until a listing works; its runs then take its place)."""
        self.folder_listings[st.origin] = st.error
        row = self.runs.get(st.origin)
        placeholder = row is not None and row.target.kind == FOLDER
        if st.error is None:
            if placeholder:
                del self.runs[st.origin]
                self._dirty.set()
            return
        if any(r.ref.origin == st.origin for r in self.runs.values()) and not placeholder:
            return  # its runs are known: each one's own source says whether it can be read
        if row is None:
            # Kind FOLDER, not SSH: the host's connection states do not clear a listing's error.
            target = Target(st.origin, FOLDER, ssh=parse_ssh_target(st.origin))
            row = self._add_run(RunRef(st.origin, target, st.origin, TEXT, st.origin))
        self._source_problem(row, f"{st.origin}: {st.error} (listed again later)")

    def _start_wandb(self, targets: list[Target]) -> None:
        """The hub's one W&B poller, for the W&B targets given at start (`_add_wandb` adds more)."""
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
            if status.config is not None:  # the run's config and summary, once the API sent them
                run.analysis.info.config = dict(status.config)
                run.analysis.info.summary = dict(status.summary or {})
            if status.state in ("finished", "failed", "crashed", "killed") and run.analysis.info.state == "running":
                run.analysis.finish("finished" if status.state == "finished" else "crashed")
            if status.stale:
                self._source_problem(run, status.error or status.state, connection=status.state)
            else:
                self._source_ok(run)
            if not run.told_caught_up:  # the API's first answer holds what the run logged so far
                run.told_caught_up = True
                self._emit(run, "caught_up", f"{run.analysis.store.rows} rows read; polling")
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
            return
        self._poller = poller
        for t in targets:
            assert t.wandb is not None
            if t.wandb.run_id:
                self._wandb_run(t.wandb)
        self._poll_wandb()

    def _poll_wandb(self) -> None:
        """Run the poller (again: it returns once nothing is left to poll)."""
        if self._wandb_task is not None and not self._wandb_task.done():
            return
        if self._wandb_task is not None:
            self._tasks.remove(self._wandb_task)
        self._wandb_task = asyncio.ensure_future(self._poller.run())
        self._tasks.append(self._wandb_task)

    def _add_wandb(self, target: Target) -> None:
        """A W&B target added while running: polled by the same poller from its next poll, at once."""
        assert target.wandb is not None
        if self._poller is None:
            self._start_wandb([target])
            return
        try:
            self._poller.add(target.wandb)
        except RunwatchError as e:  # a backend without credentials
            self._failed_target(target.raw, e.message)
            return
        if target.wandb.run_id:
            self._wandb_run(target.wandb)
        self._poller.scheduler.poll_now()
        self._poll_wandb()

    def _remove_wandb(self, raw: str, runs: list[Any]) -> None:
        """A W&B target removed while running: the poller forgets it and the runs the hub dropped
        with it (their cursors go too: one named again starts over); the others poll on."""
        from monitor.sources.wandb_api import parse_wandb_target

        target = parse_wandb_target(raw)
        if target is not None and self._poller is not None:
            self._poller.remove(target, runs)

    def _wandb_run(self, wt: Any) -> HubRun:
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

    @property
    def api_answered(self) -> int:
        """How many W&B polls were answered (0 also without W&B targets)."""
        return self._poller.answered if self._poller is not None else 0

    def note_anomaly(self) -> None:
        """Ask remote pollers for their shortest interval (an anomaly was seen)."""
        if self._poller is not None:
            self._poller.scheduler.anomaly()

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
