"""The idle-GPU rule, pure: utilisation samples and times in, a `gpu_idle` warning or nothing out."""

from __future__ import annotations

import pytest

from detectors.gpu_idle import gpu_idle
from detectors.thresholds import DEFAULT
from monitor.model import Severity

NOW = 10_000.0


def samples(util: float | None, n: int = 12, every: float = 5.0) -> list[tuple[float, list[float | None]]]:
    return [(NOW - every * (n - 1 - i), [util, util]) for i in range(n)]


@pytest.mark.parametrize(
    ("snaps", "last_update", "fires"),
    [
        (samples(1.0), NOW - 3, True),  # idle GPUs under a run that logs
        (samples(80.0), NOW - 3, False),  # busy
        (samples(1.0), NOW - 600, False),  # the run itself is quiet: a stall's business, not this rule's
        (samples(1.0, n=4), NOW - 3, False),  # too few samples to say
        (samples(None), NOW - 3, False),  # utilisation not known (N/A)
        (samples(1.0, every=60.0), NOW - 3, False),  # most samples older than the window
    ],
)
def test_gpu_idle_table(snaps: list[tuple[float, list[float | None]]], last_update: float, fires: bool) -> None:
    f = gpu_idle(snaps, "gpu1", last_update, 42.0, NOW)
    assert (f is not None) == fires
    if f is not None:
        assert f.kind == "gpu_idle" and f.severity is Severity.WARN and f.step == 42.0 and "gpu1" in f.message


def test_gpu_idle_thresholds_come_from_the_config() -> None:
    th = DEFAULT.with_overrides({"gpu_idle_util_pct": 0.5, "gpu_idle_seconds": 600.0})
    assert gpu_idle(samples(1.0), "gpu1", NOW - 3, 1.0, NOW, th) is None
    assert gpu_idle(samples(0.1, every=50.0), "gpu1", NOW - 300, 1.0, NOW, th) is not None
