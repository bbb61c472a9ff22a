"""A warm restart back to the LR's peak, after a declared warm-up, is not a warm-up that never ended;
an LR that then climbs point after point still is an anomaly."""

from __future__ import annotations

import math
import random

import pytest

from detectors.lr import LrDetector, Schedule
from detectors.thresholds import DEFAULT


def _sgdr(step: float, peak: float, jitter: float, rnd: random.Random) -> float:
    """Linear warm-up over 24 steps, then cosine cycles of 171, 342, ... steps, each restarting at
    the peak (give or take `jitter`, relative: float round-off or a restart a little above it)."""
    if step <= 24:
        return peak * step / 24
    t, length = step - 24, 171.0
    while t >= length:
        t -= length
        length *= 2
    lr = 0.1 * peak + 0.9 * peak * 0.5 * (1 + math.cos(math.pi * t / length))
    return lr * (1 + jitter * rnd.random()) if t == 0 or t < 5 else lr


def _detector() -> LrDetector:
    lr = LrDetector("lr", DEFAULT)
    lr.declare(Schedule.from_config({"lr_scheduler": "restarts", "warmup_steps": 24, "max_steps": 1200}))
    lr.total_steps = 1200
    return lr


@pytest.mark.parametrize("jitter", [0.0, 1e-9, 0.05])
@pytest.mark.parametrize("seed", range(3))
def test_warm_restarts_to_the_peak_raise_nothing(jitter: float, seed: int) -> None:
    rnd = random.Random(seed)
    peak = 0.01 * (1 + rnd.random())
    lr = _detector()
    for step in range(5, 1205, 5):
        lr.update(float(step), _sgdr(step, peak, jitter, rnd))
    assert not lr.findings(), lr.findings()


@pytest.mark.parametrize("jitter", [0.0, 1e-9, 0.05])
@pytest.mark.parametrize("seed", range(3))
def test_a_climb_after_warm_restarts_is_still_an_anomaly(jitter: float, seed: int) -> None:
    rnd = random.Random(seed)
    peak = 0.01 * (1 + rnd.random())
    lr = _detector()
    x = 0.0
    for step in range(5, 1205, 5):
        x = _sgdr(step, peak, jitter, rnd) if step < 700 else x * 1.03
        lr.update(float(step), x)
    found = [f for f in lr.findings() if f.active]
    assert found and found[0].evidence["anomaly"] == "rising_again" and 695 <= found[0].onset_step <= 720


@pytest.mark.parametrize("factor", [2.0, 5.0, 20.0])
@pytest.mark.parametrize("seed", range(3))
def test_a_jump_far_past_the_peak_under_warm_restarts_is_a_jump(factor: float, seed: int) -> None:
    rnd = random.Random(seed)
    peak = 0.01 * (1 + rnd.random())
    lr = _detector()
    # Late in a cycle (the LR near its floor) it jumps to `factor` x its peak in one point.
    for step in range(5, 505, 5):
        x = _sgdr(step, peak, 0.0, rnd) if step < 480 else factor * peak
        lr.update(float(step), x)
    found = [f for f in lr.findings() if f.active]
    assert found and found[0].evidence["anomaly"] == "jump" and found[0].onset_step == 480, lr.findings()
