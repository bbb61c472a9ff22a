"""Detectors never raise on any float or step order, and keep O(1) state per metric."""

from __future__ import annotations

import math
import random
import sys

import pytest

from detectors.base import fmt, pct
from detectors.run import RunDetectors
from monitor.model import Row, Verdict
from monitor.roles import RoleMap

_ODD = [
    math.inf,
    -math.inf,
    math.nan,
    1e308,
    -1e308,
    sys.float_info.max,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    0.0,
    -0.0,
    1.0,
    -1.0,
    1e-300,
    123456789.0,
]
_KEYS = ["loss", "eval_loss", "eval/accuracy", "val_ppl", "grad_norm", "lr", "loss_scale", "mfu"]


def test_negative_losses_then_a_jump_do_not_overflow() -> None:
    rd = RunDetectors(RoleMap())
    for i, v in enumerate([-2.0, -1.9, 1e4, -1e308, 1e308]):
        rd.ingest(Row(float(i), {"loss": v}), 0.0)
    rd.judgement()


@pytest.mark.parametrize("seed", range(6))
def test_any_float_and_any_step_order_never_raises(seed: int) -> None:
    rnd = random.Random(seed)
    rd = RunDetectors(RoleMap(), total_steps=50.0)
    step = 0.0
    for _ in range(3000):
        r = rnd.random()
        # Steps that go forward, repeat, go backwards (a resumed run) or jump.
        step = step + 1 if r < 0.7 else (step if r < 0.8 else (rnd.uniform(-10, step) if r < 0.9 else step * 1e6 + 1))
        values = {}
        for key in rnd.sample(_KEYS, rnd.randint(1, 4)):
            values[key] = rnd.choice(_ODD) if rnd.random() < 0.4 else rnd.uniform(-3.0, 10.0) * 10 ** rnd.randint(-5, 5)
        rd.ingest(Row(step, values), 0.0)
        if rnd.random() < 0.05:
            rd.set_axis(rnd.choice(["step", "epoch"]))
    for f in rd.findings():
        assert isinstance(f.message, str) and f.to_json()
    assert rd.judgement().verdict in tuple(Verdict)


def test_numbers_format_for_any_float() -> None:
    for x in _ODD:
        assert fmt(x)
        assert pct(x)
    assert pct(math.log(1.35)) == "+35%"
    assert pct(1e6).startswith("x")


def test_state_per_metric_stays_bounded() -> None:
    rd = RunDetectors(RoleMap())
    rnd = random.Random(3)

    def size() -> int:
        mon = rd._train
        assert mon is not None
        spike = mon.spike
        return len(mon.stats.ring) + len(spike._onsets) + sum(len(d.past) for d in mon.detectors())

    for i in range(2000):
        rd.ingest(Row(float(i), {"loss": 2.0 * math.exp(rnd.gauss(0, 0.5)) * (5 if i % 50 == 0 else 1)}), 0.0)
    early = size()
    for i in range(2000, 40000):
        rd.ingest(Row(float(i), {"loss": 2.0 * math.exp(rnd.gauss(0, 0.5)) * (5 if i % 50 == 0 else 1)}), 0.0)
    assert size() <= max(early, 40)


def test_a_relaunch_appended_to_the_same_log_starts_the_statistics_again() -> None:
    # Detectron2 appends every launch to metrics.json: 19..299, then 19..299 again from a higher loss.
    def launch(start: float) -> list[Row]:
        return [
            Row(float(s), {"total_loss": start * math.exp(-s / 200), "lr": 5e-6 * (s + 1) / 20})
            for s in range(19, 300, 20)
        ]

    rows = launch(2.1) + launch(2.9) + launch(2.7)
    rd = RunDetectors(RoleMap())
    for r in rows:
        rd.ingest(r, 0.0)
    assert rd.restarts == 2 and not rd.findings(), rd.findings()
    rd2 = RunDetectors(RoleMap())
    from monitor.columns import to_columns

    rd2.ingest_columns(to_columns(rows), 0.0)
    assert rd2.restarts == 2 and not rd2.findings()


def test_problems_before_a_relaunch_are_kept_but_cleared() -> None:
    rows = [Row(float(s), {"loss": 2.0}) for s in range(100)] + [Row(100.0, {"loss": math.nan})]
    rows += [Row(float(s), {"loss": 2.0 - s / 1000}) for s in range(100)]
    rd = RunDetectors(RoleMap())
    for r in rows:
        rd.ingest(r, 0.0)
    nan = [f for f in rd.findings() if f.kind == "nan"]
    assert nan and not nan[0].active and "restarted" in nan[0].message
    assert rd.judgement().verdict is Verdict.HEALTHY
