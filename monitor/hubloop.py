"""The hub's one supervised loop over every run's source: catch up with what the file holds, then
follow it; any exception makes the run stale (or unreadable) with a `source_error` finding, and the
source is opened again with capped backoff. A mixin of `monitor.hub.Hub`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from monitor import runstate
from monitor.aiotime import wait_for
from monitor.analysis import RunAnalysis, RunInfo
from monitor.config import Config
from monitor.errors import FormatError, RunwatchError
from monitor.feeds import make_feed
from monitor.gpu import GpuSnapshot
from monitor.hubrun import HubRun
from monitor.model import Finding, Severity
from monitor.runstate import SourceFacts
from monitor.sources.base import Chunk, RunRef, SourceContext, open_source

#: A file not modified for this long when opened is complete as it stands (its last line too).
_SETTLED_SECONDS = 30.0
#: Seconds to wait for a remote file's modification time before following it without.
_STAT_TIMEOUT = 10.0
#: A source reading this long without an error has its retry backoff reset.
_HEALTHY_RESET = 30.0
#: States in which a local file's writer is looked for.
ALIVE = frozenset({runstate.LIVE, runstate.IDLE, runstate.WAITING})
#: A source that failed is back once it has run this long without failing again (or delivered).
_RECOVERED_AFTER = 2.0


class SupervisedSources:
    """Reading and re-reading each run's source for `Hub` (which provides what is declared here)."""

    config: Config
    fmt: str | None
    clock: Callable[[], float]
    retry_initial: float
    retry_cap: float
    writer_poll: float
    runs: dict[str, HubRun]
    _context: SourceContext
    _closers: list[Callable[[], Awaitable[Any] | Any]]
    _urgent: asyncio.Event

    if TYPE_CHECKING:  # provided by Hub

        @property
        def ssh_pool(self) -> Any: ...
        def _emit(self, run: HubRun, kind: str, detail: str = "") -> None: ...
        def _source_ok(self, run: HubRun, connection: str | None = None) -> None: ...
        def _source_problem(
            self, run: HubRun, error: str, *, unreadable: bool = False, connection: str | None = None
        ) -> None: ...
        def _after_rows(self, run: HubRun, changed: bool, data: bool = True) -> None: ...
        def _take_chunk(self, run: HubRun, chunk: Chunk, written: float | None = None) -> None: ...
        def _on_gpu(self, snap: GpuSnapshot) -> None: ...

    async def _supervise(self, run: HubRun) -> None:
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
                if unreadable and not run.told_caught_up:
                    # All it held has been looked at: it is not a run's record. Said, so whoever waits
                    # for every run to be caught up (a service's readiness, a script) is not kept waiting.
                    run.told_caught_up = True
                    self._emit(run, "caught_up", f"unreadable: {why}")
            await asyncio.sleep(delay)
            delay = min(self.retry_cap, delay * 2)

    async def _read(self, run: HubRun) -> None:
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
        remote: tuple[float, int] | None = None
        """A remote file's modification time and size when opened: bytes up to there are caught up."""
        if path is not None and path.is_file():
            st = path.stat()
            run.facts = SourceFacts(run.facts.error, run.facts.unreadable, run.facts.connection, False, False)
            run.progress = (0, st.st_size)
            for changed in feed.catch_up(path, st.st_mtime, final=False):
                run.progress = (feed.resume_offset, st.st_size)
                self._after_rows(run, changed)
                await asyncio.sleep(0)
            offset = feed.resume_offset
            self._caught_up(run, st.st_mtime)
        elif ref.target.ssh is not None:
            remote = await self._remote_stat(ref)
            if remote is not None and remote[1] == 0:
                self._caught_up(run, remote[0])
                remote = None
            elif remote is not None:
                run.progress = (0, remote[1])
        if remote is None and run.progress is None and not run.told_caught_up:
            # Nothing there to catch up with (a file not created yet, stdin, a remote file whose
            # size is unknown): what comes is followed as it comes.
            run.told_caught_up = True
            self._emit(run, "caught_up", "nothing to read yet; following")
        if ref.target.kind == "stdin":
            f = run.facts
            run.facts = SourceFacts(f.error, f.unreadable, runstate.WAITING, f.ended, f.caught_up)
        source = open_source(ref, self._context, offset)
        self._closers.append(source.close)
        try:
            async for chunk in source:
                if remote is None:
                    self._take_chunk(run, chunk)
                    continue
                # What the remote file held when opened was written by its modification time.
                self._take_chunk(run, chunk, remote[0] if chunk.end <= remote[1] else None)
                run.progress = (min(chunk.end, remote[1]), remote[1])
                if chunk.end >= remote[1] and (chunk.data or chunk.reset):
                    self._caught_up(run, remote[0])
                    remote = None
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
        from monitor.sources.writers import writer_counts

        while True:
            await asyncio.sleep(self.writer_poll)
            watched = {run.ref.path: run for run in self.runs.values() if run.ref.path is not None and _running(run)}
            if not watched:
                continue
            counts = await asyncio.to_thread(writer_counts, list(watched))  # one /proc scan for all
            for path, n in counts.items():
                run = watched[path]
                if self.runs.get(run.ref.id) is not run or not _running(run):
                    continue  # removed or ended while /proc was read
                if n:
                    run.writer_seen = True
                elif n == 0 and run.writer_seen:
                    run.ended_by_writer = True
                    run.analysis.finish()
                    self._after_rows(run, True, data=False)

    def _recovered(self, run: HubRun, attempt: int) -> None:
        """The re-opened source has not failed again for a while: the outage is over."""
        if run.retries == attempt and run.facts.error is not None and not run.trusted:
            run.trusted = True
            self._source_ok(run)

    # ---- GPUs ------------------------------------------------------------------------------

    def _caught_up(self, run: HubRun, mtime: float) -> None:
        """What the file held when opened has been read: judge it as of now, then follow."""
        assert run.feed is not None
        if self.clock() - mtime > _SETTLED_SECONDS:
            run.feed.end(mtime)  # untouched for a while: complete as it stands, its last line too
        if run.analysis.store.rows == 0:
            run.analysis.detectors.touch(mtime)  # rows, when there are some, carry the time already
        run.analysis.tick(self.clock())
        f = run.facts
        run.facts = SourceFacts(f.error, f.unreadable, f.connection or runstate.WAITING, False, True)
        run.progress = None
        run.told_caught_up = True
        self._after_rows(run, True, data=False)
        if all(r.told_caught_up for r in self.runs.values()):
            self._urgent.set()  # everything is read: show it now, not after the publisher's pause
        self._emit(run, "caught_up", f"{run.analysis.store.rows} rows read; following")

    async def _remote_stat(self, ref: RunRef) -> tuple[float, int] | None:
        """A remote file's modification time and size, or None when they cannot be had quickly."""
        ssh = ref.target.ssh
        assert ssh is not None
        path = ssh.path
        quoted = '"$HOME"/' + shlex.quote(path[2:]) if path.startswith("~/") else shlex.quote(path)
        try:
            res = await wait_for(
                self.ssh_pool.run(ssh, f"stat -L -c '%Y %s' -- {quoted}", timeout=_STAT_TIMEOUT), _STAT_TIMEOUT + 1
            )
            mtime, size = res.stdout.split()[:2]
            return float(mtime), int(size)
        except (RunwatchError, TimeoutError, OSError, ValueError):
            return None  # the tail says why, if the file cannot be read at all


def _running(run: HubRun) -> bool:
    """A local run whose writer is worth looking for: not ended, and alive by its rows."""
    return run.analysis.info.state == "running" and run.state.word in ALIVE
