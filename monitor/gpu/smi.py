"""`nvidia-smi --query-gpu … -l N` output: the command, a pure line parser, and a local runner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

from monitor.aiotime import wait_for
from monitor.gpu.snapshot import (
    STATUS_NO_DRIVER,
    STATUS_NO_GPU,
    STATUS_NO_SMI,
    GpuSample,
    GpuSnapshot,
    error_status,
)

log = logging.getLogger(__name__)

#: Queried fields, in the order the parser reads them.
SMI_FIELDS = (
    "index",
    "name",
    "utilization.gpu",
    "memory.used",
    "memory.total",
    "temperature.gpu",
    "power.draw",
)

#: The command for one long-lived stream; fill `{interval}` (whole seconds) or use `nvidia_smi_command`.
NVIDIA_SMI_QUERY = "nvidia-smi --query-gpu=" + ",".join(SMI_FIELDS) + " --format=csv,noheader,nounits -l {interval}"

#: nvidia-smi exit codes with a status word of their own (from `man nvidia-smi`).
_EXIT_STATUS = {127: STATUS_NO_SMI, 9: STATUS_NO_DRIVER, 12: STATUS_NO_DRIVER, 6: STATUS_NO_GPU}

#: Messages nvidia-smi (or the shell running it) prints instead of CSV, lower-cased.
_MESSAGE_STATUS = (
    ("nvidia-smi: command not found", STATUS_NO_SMI),
    ("nvidia-smi: not found", STATUS_NO_SMI),
    ("couldn't communicate with the nvidia driver", STATUS_NO_DRIVER),
    ("no devices were found", STATUS_NO_GPU),
)


def _whole_seconds(interval_s: float) -> int:
    # `-l` takes whole seconds; less than one second would hammer the driver for nothing.
    return max(1, round(interval_s))


def nvidia_smi_command(interval_s: float = 1.0) -> str:
    """`NVIDIA_SMI_QUERY` for an interval, as one shell command line (for SSH)."""
    return NVIDIA_SMI_QUERY.format(interval=_whole_seconds(interval_s))


def nvidia_smi_argv(interval_s: float = 1.0, executable: str = "nvidia-smi") -> list[str]:
    """The same command as an argument list (for a local exec)."""
    return [executable, *nvidia_smi_command(interval_s).split()[1:]]


def parse_smi_value(text: str) -> float | None:
    """A number from one CSV cell; `[N/A]`, `[Not Supported]`, blanks and anything else odd → None."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_smi_line(line: str) -> GpuSample | None:
    """One CSV line as a sample, or None when it is not a data line."""
    parts = line.split(",")
    if len(parts) < len(SMI_FIELDS):
        return None
    try:
        index = int(parts[0].strip())
    except ValueError:
        return None
    # Only the name can contain a comma: the five numbers are always the last cells.
    name = ",".join(parts[1:-5]).strip()
    util, used, total, temp, power = (parse_smi_value(p) for p in parts[-5:])
    return GpuSample(
        index=index,
        name=name if name and not name.startswith("[") else None,
        util_pct=util,
        mem_used_mib=used,
        mem_total_mib=total,
        temp_c=temp,
        power_w=power,
    )


def smi_status_from_message(line: str) -> str | None:
    """The status a known nvidia-smi or shell message means, else None."""
    lowered = line.lower()
    return next((status for text, status in _MESSAGE_STATUS if text in lowered), None)


def smi_status_from_exit(returncode: int, last_line: str = "") -> str:
    """The status an exited nvidia-smi leaves (127 → not found), using its last stderr line."""
    by_message = smi_status_from_message(last_line) if last_line else None
    if by_message is not None:
        return by_message
    if returncode in _EXIT_STATUS:
        return _EXIT_STATUS[returncode]
    detail = f": {last_line.strip()}" if last_line.strip() else ""
    return error_status(f"nvidia-smi exited with {returncode}{detail}")


class NvidiaSmiParser:
    """Groups `nvidia-smi … -l N` lines into one snapshot per interval; pure, time is passed in.

    nvidia-smi prints the GPUs in index order every interval, so a group ends when the index
    goes back (usually to 0). Once one whole group has been seen its size is known and later
    groups are handed out as soon as their last line arrives, without waiting for the next interval.
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self._group: list[GpuSample] = []
        self._group_time = 0.0
        self._gpu_count: int | None = None

    def feed(self, line: str, now: float) -> GpuSnapshot | None:
        """Take one output line; return a snapshot when a group (or a status message) is complete."""
        text = line.strip()
        if not text:
            return None
        sample = parse_smi_line(text)
        if sample is None:
            self._group.clear()
            status = smi_status_from_message(text) or error_status(f"nvidia-smi: {text}")
            return GpuSnapshot(self.host, now, (), status)
        done = None
        if self._group and sample.index <= self._group[-1].index:
            self._gpu_count = len(self._group)
            done = self._take()
        if not self._group:
            self._group_time = now
        self._group.append(sample)
        if self._gpu_count is not None and len(self._group) >= self._gpu_count:
            # When the size was only just learnt, the older group is dropped in favour of the
            # newer one rather than trailing one interval behind from then on.
            return self._take()
        return done

    def flush(self) -> GpuSnapshot | None:
        """Hand out a pending partial group (at end of output), if any."""
        return self._take() if self._group else None

    def _take(self) -> GpuSnapshot:
        snapshot = GpuSnapshot(self.host, self._group_time, tuple(self._group))
        self._group.clear()
        return snapshot


class NvidiaSmiProcess:
    """Runs `nvidia-smi … -l N` as a local subprocess and hands each snapshot to `on_snapshot`.

    `run()` returns when nvidia-smi exits or `stop()` is called, after one status snapshot saying
    why; it never restarts it, so a missing nvidia-smi is reported once, not in a loop.
    """

    def __init__(
        self,
        on_snapshot: Callable[[GpuSnapshot], None],
        *,
        host: str = "localhost",
        interval_s: float = 1.0,
        executable: str = "nvidia-smi",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.argv = nvidia_smi_argv(interval_s, executable)
        self._on_snapshot = on_snapshot
        self._clock = clock
        self._parser = NvidiaSmiParser(host)
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._last_status: str | None = None
        self._stderr_tail = ""

    async def run(self) -> str:
        """Stream snapshots until nvidia-smi exits or `stop()`; return the last status delivered."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            return self._status(STATUS_NO_SMI)
        except OSError as err:
            return self._status(error_status(f"cannot run {self.argv[0]}: {err}"))
        self._proc = proc
        if self._stopping:
            await _end(proc)
            return self._last_status or ""
        assert proc.stdout is not None and proc.stderr is not None
        stderr_task = asyncio.create_task(self._read_stderr(proc.stderr))
        try:
            async for raw in proc.stdout:
                snapshot = self._parser.feed(raw.decode(errors="replace"), self._clock())
                if snapshot is not None:
                    self._deliver(snapshot)
            returncode = await proc.wait()
            await stderr_task
        finally:
            await _end(proc)
            stderr_task.cancel()
            # gather() reaps the reader without swallowing a cancellation aimed at run() itself.
            await asyncio.gather(stderr_task, return_exceptions=True)
        if self._stopping:
            return self._last_status or ""
        pending = self._parser.flush()
        if pending is not None:
            self._deliver(pending)
        if returncode == 0 and self._last_status is not None:
            return self._last_status
        return self._status(smi_status_from_exit(returncode, self._stderr_tail))

    async def stop(self) -> None:
        """Ask nvidia-smi to end; `run()` then returns without a further status."""
        self._stopping = True
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        # Drained so a chatty nvidia-smi never blocks on a full pipe; the last line explains an exit.
        async for raw in stream:
            line = raw.decode(errors="replace").strip()
            if line:
                self._stderr_tail = line

    def _deliver(self, snapshot: GpuSnapshot) -> None:
        self._last_status = snapshot.status
        self._on_snapshot(snapshot)

    def _status(self, status: str) -> str:
        # The same status already shown by a message line is not repeated at exit.
        if status != self._last_status:
            log.info("nvidia-smi on %s: %s", self.host, status)
            self._deliver(GpuSnapshot(self.host, self._clock(), (), status))
        return status


async def _end(proc: asyncio.subprocess.Process, grace_s: float = 2.0) -> None:
    """Terminate `proc` if it still runs, kill it after `grace_s`, and reap it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await wait_for(proc.wait(), grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
