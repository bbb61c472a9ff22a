"""GPU snapshots as the hub uses them: a run's GPU columns and the idle-GPU rule's inputs."""

from __future__ import annotations

from collections.abc import Sequence

from detectors.gpu_idle import gpu_idle
from detectors.thresholds import DEFAULT, Thresholds
from monitor.gpu import GpuSnapshot
from monitor.model import Finding


def gpu_for(snap: GpuSnapshot | None) -> tuple[float | None, float | None]:
    """Mean utilisation and memory use (percent) of a host's GPUs, None where not known."""
    if snap is None or not snap.gpus:
        return None, None
    utils = [g.util_pct for g in snap.gpus if g.util_pct is not None]
    mems = [g.mem_pct for g in snap.gpus if g.mem_pct is not None]
    return (sum(utils) / len(utils) if utils else None, sum(mems) / len(mems) if mems else None)


def gpu_idle_finding(
    history: Sequence[GpuSnapshot] | None,
    host: str,
    live: bool,
    last_update: float | None,
    step: float | None,
    now: float,
    th: Thresholds = DEFAULT,
) -> Finding | None:
    """The idle-GPU finding for a live run on `host`, or None."""
    if not history or not live or last_update is None:
        return None
    samples = [(s.time, [g.util_pct for g in s.gpus]) for s in history]
    return gpu_idle(samples, host, last_update, step, now, th)
