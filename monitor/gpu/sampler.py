"""`GpuMonitor`: samples a GPU source off the event loop at a bounded rate and keeps its history."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from monitor.gpu.history import GpuHistory
from monitor.gpu.snapshot import GpuSnapshot, error_status

log = logging.getLogger(__name__)

#: Faster sampling costs driver time on the training host and shows nothing a person can read.
MIN_INTERVAL_S = 1.0


class GpuSource(Protocol):
    """Anything that can read one host's GPUs on demand (`NvmlSampler` is one)."""

    host: str

    def sample(self, now: float) -> GpuSnapshot:
        """Read the GPUs now; blocking, and expected not to raise."""
        ...


class GpuMonitor:
    """Samples `source` in a worker thread at most once per `interval_s` and hands snapshots to a callback.

    The next sample is armed only after the previous one finished, so a slow driver lowers the
    rate instead of piling up threads. `on_snapshot` runs on the event loop; an exception in it
    ends the monitor and is raised from `stop()`.
    """

    def __init__(
        self,
        source: GpuSource,
        on_snapshot: Callable[[GpuSnapshot], None],
        *,
        interval_s: float = 1.0,
        history_len: int = 300,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.source = source
        self.interval_s = max(MIN_INTERVAL_S, interval_s)
        self.history = GpuHistory(history_len)
        self.latest: GpuSnapshot | None = None
        self._on_snapshot = on_snapshot
        self._clock = clock
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Start sampling in a task on the running loop (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"gpu-monitor:{self.source.host}")
        return self._task

    async def stop(self) -> None:
        """Stop sampling and wait for the loop to end; a sample in flight is left to finish in its thread."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            started = self._clock()
            snapshot = await asyncio.to_thread(self._sample, started)
            self.latest = snapshot
            self.history.add(snapshot)
            self._on_snapshot(snapshot)
            # Capped at one interval so a clock stepped backwards cannot stall sampling.
            delay = min(self.interval_s, max(0.0, started + self.interval_s - self._clock()))
            await self._sleep(delay)

    def _sample(self, now: float) -> GpuSnapshot:
        try:
            return self.source.sample(now)
        except Exception as err:
            # Sources are meant not to raise; if one does, show it as this host's status and go on.
            log.warning("GPU source %s failed", self.source.host, exc_info=True)
            return GpuSnapshot(self.source.host, now, (), error_status(f"{type(err).__name__}: {err}"))
