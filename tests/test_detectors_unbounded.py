"""A loss running away to minus infinity (an objective without a lower bound) is a divergence."""

from __future__ import annotations

import math
import random

import pytest

from detectors.run import RunDetectors
from monitor.model import Finding, Row, Severity
from monitor.roles import RoleMap


def _bad(rows: list[Row]) -> list[Finding]:
    rd = RunDetectors(RoleMap())
    seen: dict[tuple[str, float], Finding] = {}
    for r in rows:
        if rd.ingest(r, 0.0):
            for f in rd.findings():
                if f.active and f.severity is Severity.BAD:
                    seen.setdefault((f.kind, f.onset_step), f)
    return list(seen.values())


@pytest.mark.parametrize("scale", [1e-2, 1.0, 3e4])
@pytest.mark.parametrize("noise", [0.0, 0.05, 0.3])
def test_a_negative_loss_growing_by_orders_of_magnitude_is_a_divergence(scale: float, noise: float) -> None:
    # BCE fed targets outside [0, 1] (bench/corpus/real/keras-csvlogger-ecg-...): negative from the
    # first epoch, about x2 every 10 epochs.
    rnd = random.Random(int(noise * 100))
    rows = [Row(float(e), {"loss": -scale * 2 ** (e / 10) * math.exp(rnd.gauss(0, noise))}) for e in range(80)]
    bad = _bad(rows)
    assert [f.kind for f in bad] == ["divergence"] and bad[0].onset_step == 0.0
    assert "minus infinity" in bad[0].message


@pytest.mark.parametrize("scale", [1e-2, 1.0, 3e4])
@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_a_bounded_negative_loss_or_one_that_crosses_zero_is_not(scale: float, noise: float) -> None:
    rnd = random.Random(int(noise * 100) + 1)
    # a log-likelihood that improves from -1 to -8 (a bounded objective)
    rows = [
        Row(float(s), {"loss": -scale * (8 - 7 * math.exp(-s / 50)) * (1 + rnd.gauss(0, noise))}) for s in range(400)
    ]
    assert not [f for f in _bad(rows) if "minus infinity" in f.message]
    # a critic-style loss that starts near 0 and settles at -50 of its first magnitude: not negative
    # from the start, so no claim about an unbounded objective
    rows = [Row(float(s), {"loss": scale * (0.01 - 0.5 * (1 - math.exp(-s / 40)))}) for s in range(400)]
    assert not [f for f in _bad(rows) if "minus infinity" in f.message]
