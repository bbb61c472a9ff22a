"""Local GPUs through NVML (`pynvml` from nvidia-ml-py), degrading to N/A and status words."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pynvml

from monitor.gpu.snapshot import (
    STATUS_NO_DRIVER,
    STATUS_NO_GPU,
    STATUS_OK,
    GpuProcess,
    GpuSample,
    GpuSnapshot,
    error_status,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_MIB = 1024 * 1024
_MAX_PROCESS_NAME = 120

#: nvmlInit fails with these when the host has no NVIDIA driver at all (the library ships with it).
_NO_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    pynvml.NVMLError_LibraryNotFound,
    pynvml.NVMLError_DriverNotLoaded,
)


class NvmlSampler:
    """Samples the local GPUs; never raises, and retries a failed `nvmlInit` at most every `retry_after_s`.

    `sample()` blocks for a few milliseconds per GPU: run it in a thread (`GpuMonitor` does).
    """

    def __init__(
        self, host: str = "localhost", *, retry_after_s: float = 300.0, proc_root: Path = Path("/proc")
    ) -> None:
        self.host = host
        self._retry_after_s = retry_after_s
        self._proc_root = proc_root
        self._ready = False
        self._failed_at: float | None = None
        self._failure = STATUS_NO_DRIVER
        self._handles: dict[int, Any] = {}
        self._names: dict[int, str | None] = {}
        # close() may come from the event loop while a sample runs in a worker thread.
        self._lock = threading.Lock()

    def sample(self, now: float) -> GpuSnapshot:
        """Read every local GPU now; failures become a status or None fields, never an exception."""
        with self._lock:
            try:
                return self._sample(now)
            except Exception as err:
                # An unexpected error (a newer pynvml, a broken driver) is shown as the status and
                # retried later like an init failure, so the sampling thread never dies of it.
                log.warning("NVML sampling failed", exc_info=True)
                self._shutdown()
                return self._fail(now, error_status(f"NVML: {type(err).__name__}: {err}"))

    def close(self) -> None:
        """Release NVML; a later `sample()` initialises it again."""
        with self._lock:
            self._shutdown()

    def _sample(self, now: float) -> GpuSnapshot:
        if not self._ready:
            if self._failed_at is not None and now - self._failed_at < self._retry_after_s:
                return GpuSnapshot(self.host, now, (), self._failure)
            try:
                pynvml.nvmlInit()
            except pynvml.NVMLError as err:
                no_driver = isinstance(err, _NO_DRIVER_ERRORS)
                return self._fail(now, STATUS_NO_DRIVER if no_driver else error_status(f"NVML: {err}"))
            self._ready = True
            self._failed_at = None
        try:
            count = pynvml.nvmlDeviceGetCount()
        except pynvml.NVMLError as err:
            self._shutdown()
            return self._fail(now, error_status(f"NVML: {err}"))
        if count == 0:
            return GpuSnapshot(self.host, now, (), STATUS_NO_GPU)
        return GpuSnapshot(self.host, now, tuple(self._sample_gpu(i) for i in range(count)), STATUS_OK)

    def _sample_gpu(self, index: int) -> GpuSample:
        handle = self._handles.get(index)
        if handle is None:
            handle = _query(lambda: pynvml.nvmlDeviceGetHandleByIndex(index))
            if handle is None:
                return GpuSample(index)
            self._handles[index] = handle
            self._names[index] = _text(_query(lambda: pynvml.nvmlDeviceGetName(handle)))
        util = _query(lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        mem = _query(lambda: pynvml.nvmlDeviceGetMemoryInfo(handle))
        temp = _query(lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))
        power_mw = _query(lambda: pynvml.nvmlDeviceGetPowerUsage(handle))
        procs = _query(lambda: pynvml.nvmlDeviceGetComputeRunningProcesses(handle)) or ()
        return GpuSample(
            index=index,
            name=self._names.get(index),
            util_pct=_num(util),
            mem_used_mib=_mib(getattr(mem, "used", None)),
            mem_total_mib=_mib(getattr(mem, "total", None)),
            temp_c=_num(temp),
            power_w=None if power_mw is None else power_mw / 1000.0,
            processes=tuple(self._process(p) for p in procs),
        )

    def _process(self, info: Any) -> GpuProcess:
        pid = int(info.pid)
        return GpuProcess(pid, _mib(getattr(info, "usedGpuMemory", None)), process_name(pid, self._proc_root))

    def _fail(self, now: float, status: str) -> GpuSnapshot:
        if self._failed_at is None or status != self._failure:
            log.info("local GPUs unavailable: %s", status)
        self._failed_at = now
        self._failure = status
        return GpuSnapshot(self.host, now, (), status)

    def _shutdown(self) -> None:
        if self._ready:
            self._ready = False
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError:
                log.debug("nvmlShutdown failed", exc_info=True)
        self._handles.clear()
        self._names.clear()


def process_name(pid: int, proc_root: Path = Path("/proc")) -> str | None:
    """The command line of `pid` (else its `comm`), or None when the process is not visible here."""
    base = proc_root / str(pid)
    try:
        args = [a.decode(errors="replace") for a in (base / "cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        args = []
    if args:
        return " ".join(args)[:_MAX_PROCESS_NAME]
    try:
        comm = (base / "comm").read_text(errors="replace").strip()
    except OSError:
        return None
    return comm or None


def _query(call: Callable[[], _T]) -> _T | None:
    """The call's result, or None where NVML cannot give it (NotSupported, NoPermission, GpuIsLost…)."""
    try:
        return call()
    except pynvml.NVMLError:
        return None


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _mib(n_bytes: Any) -> float | None:
    return None if n_bytes is None else n_bytes / _MIB


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return None if value is None else str(value)
