"""A loss burst that decays back (heavy-tailed batches, BPTT gradients past clipping) is not a
divergence; the same jump that stays up, or a jump on a loss already climbing, still is."""

from __future__ import annotations

import math
import random

import pytest

from detectors.run import RunDetectors
from monitor.model import Finding, Row, Severity
from monitor.roles import RoleMap


def _loss(n: int, seed: int, noise: float) -> list[float]:
    """A decaying loss with log-normal noise of `noise` (in log units: 0.4 is a ±50 % batch-to-batch loss)."""
    rnd = random.Random(seed)
    return [(0.1 + 1.0 * math.exp(-i / 150)) * math.exp(rnd.gauss(0, noise)) for i in range(n)]


def _divergences(loss: list[float]) -> list[Finding]:
    rd = RunDetectors(RoleMap())
    for i, v in enumerate(loss):
        rd.ingest(Row(float(i), {"loss": v}), 0.0)
    return [f for f in rd.findings() if f.kind == "divergence" and f.severity is Severity.BAD]


@pytest.mark.parametrize("noise", [0.05, 0.2, 0.4])
@pytest.mark.parametrize("seed", range(3))
def test_burst_that_decays_back_is_not_a_divergence(noise: float, seed: int) -> None:
    loss = _loss(700, seed, noise)
    # 40x up at once, then back down with a time constant of 4 points (about 15 points to recover).
    for i in range(500, 540):
        loss[i] *= 1.0 + 40.0 * math.exp(-(i - 500) / 4.0)
    assert not _divergences(loss)


@pytest.mark.parametrize("noise", [0.05, 0.2, 0.4])
@pytest.mark.parametrize("seed", range(3))
def test_same_jump_that_stays_up_is_a_divergence(noise: float, seed: int) -> None:
    loss = _loss(700, seed, noise)
    for i in range(500, 700):
        loss[i] *= 1.0 + 40.0 * math.exp(-(i - 500) / 4.0) + 8.0
    div = _divergences(loss)
    assert div and 490 <= div[0].onset_step <= 520, div


@pytest.mark.parametrize("noise", [0.05, 0.2])
@pytest.mark.parametrize("seed", range(3))
def test_jump_on_a_loss_already_climbing_is_a_divergence(noise: float, seed: int) -> None:
    loss = _loss(700, seed, noise)
    # The loss climbs 2 % a point from step 450 (2.7x by 500), then a burst lands on top and decays
    # back to the climbing curve, which goes on climbing.
    for i in range(450, 700):
        loss[i] *= math.exp(0.02 * (i - 450))
    for i in range(500, 540):
        loss[i] *= 1.0 + 40.0 * math.exp(-(i - 500) / 4.0)
    div = _divergences(loss)
    assert div and div[0].onset_step <= 520, div


def _spikes(loss: list[float]) -> list[Finding]:
    rd = RunDetectors(RoleMap())
    for i, v in enumerate(loss):
        rd.ingest(Row(float(i), {"loss": v}), 0.0)
    return [f for f in rd.findings() if f.kind == "spike"]


@pytest.mark.parametrize("noise", [0.02, 0.1, 0.2])
@pytest.mark.parametrize("seed", range(3))
def test_spikes_by_habit_stop_warning_but_a_higher_one_still_warns(noise: float, seed: int) -> None:
    loss = _loss(1500, seed, noise)
    rnd = random.Random(seed + 100)
    # A one-point burst of 3-5x every 40-60 points: this series spikes by habit...
    i = 100
    while i < 1400:
        loss[i] *= 3.0 + 2.0 * rnd.random()
        i += rnd.randint(40, 60)
    # ...and once 30x, far past any burst before it.
    loss[1450] *= 30.0
    spikes = _spikes(loss)
    assert 1 <= sum(1 for f in spikes if f.onset_step < 1400) <= 6, spikes
    assert any(f.onset_step == 1450 for f in spikes), spikes
    assert not any(f.severity is Severity.BAD for f in spikes), spikes
