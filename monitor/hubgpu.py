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


GpuSamples = list[tuple[float, list[float | None]]]


def gpu_samples(history: Sequence[GpuSnapshot] | None) -> GpuSamples:
    """The idle-GPU rule's input from a host's snapshots: (time, per-GPU utilisation) pairs, or
    nothing when no snapshot has a utilisation (no GPU there, or none readable)."""
    samples = [(s.time, [g.util_pct for g in s.gpus]) for s in history or ()]
    return samples if any(u is not None for _, utils in samples for u in utils) else []


def gpu_idle_finding(
    samples: GpuSamples,
    host: str,
    live: bool,
    last_update: float | None,
    step: float | None,
    now: float,
    th: Thresholds = DEFAULT,
) -> Finding | None:
    """The idle-GPU finding for a live run on `host` (`samples` from `gpu_samples`), or None."""
    if not samples or not live or last_update is None:
        return None
    return gpu_idle(samples, host, last_update, step, now, th)
