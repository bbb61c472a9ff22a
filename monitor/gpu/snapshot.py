"""GPU readings as immutable values: one GPU's sample, one host's snapshot, and the status words."""

from __future__ import annotations

from dataclasses import dataclass

#: Every GPU read on the host worked (single fields may still be N/A).
STATUS_OK = "ok"
#: The driver answered but reports no GPU.
STATUS_NO_GPU = "no GPU"
#: No NVIDIA driver (or its NVML library) on the host: the usual state of a laptop or a CI runner.
STATUS_NO_DRIVER = "no driver"
#: The host has no `nvidia-smi` on its PATH (exit 127).
STATUS_NO_SMI = "nvidia-smi not found"

_MAX_STATUS_CHARS = 200


def error_status(message: object) -> str:
    """`error: …` on one short line, for any failure that has no status word of its own."""
    line = " ".join(str(message).split())
    if len(line) > _MAX_STATUS_CHARS:
        line = line[: _MAX_STATUS_CHARS - 1] + "…"
    return f"error: {line}"


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process holding memory on a GPU; `name` is None when /proc does not show it (containers)."""

    pid: int
    used_mib: float | None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU at one moment; every reading is None where the GPU, driver or source cannot give it."""

    index: int
    name: str | None = None
    util_pct: float | None = None
    mem_used_mib: float | None = None
    mem_total_mib: float | None = None
    temp_c: float | None = None
    power_w: float | None = None
    processes: tuple[GpuProcess, ...] = ()

    @property
    def mem_pct(self) -> float | None:
        """Memory in use as a percentage of the total, None when either is unknown."""
        if self.mem_used_mib is None or not self.mem_total_mib:
            return None
        return 100.0 * self.mem_used_mib / self.mem_total_mib


@dataclass(frozen=True, slots=True)
class GpuSnapshot:
    """All GPUs of one host at one moment, with a one-line `status` (`STATUS_*` or `error: …`)."""

    host: str
    time: float
    gpus: tuple[GpuSample, ...] = ()
    status: str = STATUS_OK

    @property
    def ok(self) -> bool:
        """True when the GPUs could be read."""
        return self.status == STATUS_OK
