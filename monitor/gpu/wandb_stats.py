"""W&B system metrics (`gpu.N.*` in `stats` records, `system.gpu.N.*` from the API) as a snapshot."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from monitor.gpu.snapshot import STATUS_NO_GPU, STATUS_OK, GpuSample, GpuSnapshot

_MIB = 1024 * 1024

# Labelled keys (`gpu.0.gpu/l:node-1`) belong to another node of a shared run and are left out.
_GPU_KEY = re.compile(r"^(?:system\.)?gpu\.(\d+)\.([A-Za-z]+)$")


def snapshot_from_wandb_stats(
    stats: Mapping[str, Any],
    *,
    host: str,
    now: float,
    names: Mapping[int, str] | None = None,
    mem_total_mib: Mapping[int, float] | None = None,
) -> GpuSnapshot:
    """One `stats` mapping as a snapshot; `names` and `mem_total_mib` come from the run's metadata if known.

    Note `gpu.N.memory` is the memory *controller* busy %, not memory in use: memory in use is
    `memoryAllocatedBytes` (and `memoryAllocated` is that as a % of the total).
    """
    per_gpu: dict[int, dict[str, float]] = {}
    for key, raw in stats.items():
        match = _GPU_KEY.match(key)
        if match is None:
            continue
        value = _number(raw)
        if value is not None:
            per_gpu.setdefault(int(match[1]), {})[match[2]] = value
    if not per_gpu:
        return GpuSnapshot(host, now, (), STATUS_NO_GPU)
    gpus = tuple(
        _sample(index, fields, (names or {}).get(index), (mem_total_mib or {}).get(index))
        for index, fields in sorted(per_gpu.items())
    )
    return GpuSnapshot(host, now, gpus, STATUS_OK)


def _sample(index: int, fields: dict[str, float], name: str | None, total: float | None) -> GpuSample:
    used_bytes = fields.get("memoryAllocatedBytes")
    used = None if used_bytes is None else used_bytes / _MIB
    pct = fields.get("memoryAllocated")
    if total is None and "memoryTotalBytes" in fields:
        total = fields["memoryTotalBytes"] / _MIB
    if total is None and used is not None and pct:
        total = used * 100.0 / pct
    if used is None and total is not None and pct is not None:
        used = total * pct / 100.0
    return GpuSample(
        index=index,
        name=name,
        util_pct=fields.get("gpu"),
        mem_used_mib=used,
        mem_total_mib=total,
        temp_c=fields.get("temp"),
        power_w=fields.get("powerWatts"),
    )


def _number(raw: Any) -> float | None:
    """A finite float from a stats value (numbers or numeric strings), else None."""
    if isinstance(raw, bool):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
