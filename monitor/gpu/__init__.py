"""GPU utilisation and memory per host: local NVML, remote `nvidia-smi`, W&B system metrics.

Every failure ends up as a snapshot status ("no driver", "nvidia-smi not found", "error: …") or
a None field shown as N/A, never as an exception in a frame.
"""

from monitor.gpu.history import GpuHistory, mean_util
from monitor.gpu.nvml import NvmlSampler, process_name
from monitor.gpu.sampler import MIN_INTERVAL_S, GpuMonitor, GpuSource
from monitor.gpu.smi import (
    NVIDIA_SMI_QUERY,
    SMI_FIELDS,
    NvidiaSmiParser,
    NvidiaSmiProcess,
    nvidia_smi_argv,
    nvidia_smi_command,
    parse_smi_line,
    parse_smi_value,
    smi_status_from_exit,
    smi_status_from_message,
)
from monitor.gpu.snapshot import (
    STATUS_NO_DRIVER,
    STATUS_NO_GPU,
    STATUS_NO_SMI,
    STATUS_OK,
    GpuProcess,
    GpuSample,
    GpuSnapshot,
    error_status,
)
from monitor.gpu.wandb_stats import snapshot_from_wandb_stats

__all__ = [
    "MIN_INTERVAL_S",
    "NVIDIA_SMI_QUERY",
    "SMI_FIELDS",
    "STATUS_NO_DRIVER",
    "STATUS_NO_GPU",
    "STATUS_NO_SMI",
    "STATUS_OK",
    "GpuHistory",
    "GpuMonitor",
    "GpuProcess",
    "GpuSample",
    "GpuSnapshot",
    "GpuSource",
    "NvidiaSmiParser",
    "NvidiaSmiProcess",
    "NvmlSampler",
    "error_status",
    "mean_util",
    "nvidia_smi_argv",
    "nvidia_smi_command",
    "parse_smi_line",
    "parse_smi_value",
    "process_name",
    "smi_status_from_exit",
    "smi_status_from_message",
    "snapshot_from_wandb_stats",
]
