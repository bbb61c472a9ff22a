"""GPUs idle under a run that is still logging: the job may be stuck in data loading or waiting
on a peer. Pure: the caller passes the utilisation samples, their times and `now`."""

from __future__ import annotations

from collections.abc import Sequence

from detectors.thresholds import DEFAULT, Thresholds
from monitor.model import Finding, Severity

#: Fewest GPU snapshots in the window before judging (a few samples say little).
IDLE_GPU_MIN_SNAPSHOTS = 10


def gpu_idle(
    snapshots: Sequence[tuple[float, Sequence[float | None]]],
    host: str,
    last_update: float,
    step: float | None,
    now: float,
    th: Thresholds = DEFAULT,
) -> Finding | None:
    """A `gpu_idle` warning when the GPUs of `host` were nearly idle over the last window
    (`th.gpu_idle_seconds`) while the run logged within it; `snapshots` are (time, per-GPU
    utilisation or None) pairs, oldest first."""
    window = th.gpu_idle_seconds
    if now - last_update > window:
        return None
    recent = [utils for t, utils in snapshots if now - t <= window]
    values = [u for utils in recent for u in utils if u is not None]
    if len(recent) < IDLE_GPU_MIN_SNAPSHOTS or not values:
        return None
    util = sum(values) / len(values)
    if util >= th.gpu_idle_util_pct:
        return None
    at = step or 0.0
    return Finding(
        "gpu_idle",
        Severity.WARN,
        "gpu",
        at,
        at,
        f"GPUs on {host} {util:.0f}% busy over the last {window / 60:.0f} min while the run logs",
        {"util_pct": round(util, 1)},
    )
