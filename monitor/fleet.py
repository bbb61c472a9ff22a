"""`watch` as a long-running service: the metrics endpoint and a targets file.

`--metrics-addr` serves the hub's snapshots to Prometheus (`monitor.metrics`). `--targets-file`
names one target per line (blank lines and `#` comments ignored); the file is re-read when it
changes or on SIGHUP, and targets that appeared or went are added to or removed from the running
hub, so the other runs keep their state. Everything that happens is one line on the log stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO, TypeVar

from monitor.aiotime import wait_for
from monitor.errors import RunwatchError
from monitor.hub import Hub
from monitor.outward import outward
from monitor.targets import parse_target

T = TypeVar("T")


def read_targets(path: Path) -> list[str]:
    """The targets a targets file names, in order, each once; RunwatchError when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RunwatchError(f"{path}: {getattr(e, 'strerror', None) or e}", title="Cannot read targets file") from None
    out: list[str] = []
    for line in text.splitlines():
        t = line.strip()
        if t and not t.startswith("#") and t not in out:
            out.append(t)
    return out


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], T], timeout: float = 10.0) -> T:
    """`fn()` run on the hub's loop (the hub is not thread-safe), from a server thread."""

    async def call() -> T:
        return fn()

    return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout)


class Fleet:
    """The service parts of `watch`; see the module docstring. Binds the metrics port when built,
    so a port in use is an error before anything starts."""

    def __init__(
        self,
        metrics_addr: str | None = None,
        targets_file: Path | None = None,
        *,
        log: TextIO = sys.stderr,
        poll: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from monitor.metrics import MetricsServer

        self.targets_file = targets_file
        self.poll = poll
        self.clock = clock
        self._log_to = log
        self.server = MetricsServer(metrics_addr) if metrics_addr is not None else None
        self.targets: list[str] = read_targets(targets_file) if targets_file is not None else []
        self._stamp = _stamp(targets_file) if targets_file is not None else None
        self._hub: Hub | None = None
        self._task: asyncio.Task[None] | None = None
        self._reload = asyncio.Event()

    def log(self, what: str) -> None:
        """One line on the log stream."""
        ts = datetime.fromtimestamp(self.clock()).strftime("%Y-%m-%d %H:%M:%S")
        self._log_to.write(f"{ts} runwatch: {outward(what)}\n")
        self._log_to.flush()

    def start(self, hub: Hub) -> None:
        """Serve `hub`'s snapshots and follow the targets file (call inside the running loop)."""
        self._hub = hub
        if self.server is not None:
            loop = asyncio.get_running_loop()
            self.server.collector.pull = lambda: _on_loop(loop, hub.snapshot)
            self.server.start()
            self.log(f"metrics on http://{self.server.address}/metrics")
        if self.targets_file is not None:
            self.log(f"targets file {self.targets_file}: {len(self.targets)} targets")
            loop = asyncio.get_running_loop()
            with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
                loop.add_signal_handler(signal.SIGHUP, self.request_reload)
            self._task = asyncio.ensure_future(self._follow())

    def request_reload(self) -> None:
        """Re-read the targets file now (SIGHUP)."""
        self._reload.set()

    async def _follow(self) -> None:
        assert self.targets_file is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await wait_for(self._reload.wait(), self.poll)
            forced = self._reload.is_set()
            self._reload.clear()
            stamp = _stamp(self.targets_file)
            if forced or stamp != self._stamp:
                self._stamp = stamp
                await self.reload()

    async def reload(self) -> None:
        """Bring the hub's targets in line with the targets file; one log line says what changed."""
        assert self.targets_file is not None and self._hub is not None
        try:
            wanted = read_targets(self.targets_file)
        except RunwatchError as e:
            self.log(f"{e.one_line()}; keeping the {len(self.targets)} targets watched")
            return
        good: list[str] = []
        for t in wanted:
            if not t.isprintable():  # no command line can carry these: a corrupt file, not a target
                self.log(f"targets file: skipped a line with control characters: {t!r}")
                continue
            try:
                parse_target(t)
            except RunwatchError as e:
                self.log(f"targets file: skipped {e.one_line()}")
                continue
            good.append(t)
        added = [t for t in good if t not in self.targets]
        removed = [t for t in self.targets if t not in good]
        refused: set[str] = set()
        for t in removed:
            why = await self._hub.remove_target(t)
            if why:
                refused.add(t)
                self.log(f"targets file: {why}")
        for t in added:
            why = self._hub.add_target(t)
            if why:
                refused.add(t)
                self.log(f"targets file: {why}")
        gone = [t for t in removed if t not in refused]
        new = [t for t in added if t not in refused]
        self.targets = [t for t in self.targets if t not in gone] + new
        if new or gone:
            what = ", ".join([*(f"+{t}" for t in new), *(f"-{t}" for t in gone)])
            self.log(f"targets file: {len(new)} added, {len(gone)} removed, {len(self.targets)} watched ({what})")

    async def aclose(self) -> None:
        """Stop following the file and serving metrics; says so in one line."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self.server is not None:
            self.server.close()
        if self.server is not None or self.targets_file is not None:
            self.log(f"stopped (pid {os.getpid()})")
