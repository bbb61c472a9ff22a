"""Eval degradation / overfit rules on seeded synthetic runs: sign-safe comparison and warm-up bests."""

from __future__ import annotations

import math
import random

import pytest

from detectors.evals import EvalDetector
from detectors.run import RunDetectors
from detectors.thresholds import Thresholds
from monitor.model import Finding, Row, Severity
from monitor.roles import RoleMap

_EVAL_KINDS = ("overfit", "eval_degradation")


def _feed(rows: list[Row]) -> tuple[list[Finding], list[Finding]]:
    """Feed row by row; every eval finding ever raised (warn or bad), and the bad ones."""
    rd = RunDetectors(RoleMap())
    seen: dict[tuple[str, str, float], Finding] = {}
    for r in rows:
        if rd.ingest(r, 0.0):
            for f in rd.findings():
                if f.active and f.kind in _EVAL_KINDS:
                    key = (f.kind, f.metric, f.onset_step)
                    if f.severity is Severity.BAD or key not in seen:
                        seen[key] = f
    found = list(seen.values())
    return found, [f for f in found if f.severity is Severity.BAD]


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e5])
@pytest.mark.parametrize("noise", [0.0, 0.02, 0.1])
def test_a_loss_running_away_to_minus_infinity_is_no_overfit(scale: float, noise: float) -> None:
    # An objective without a lower bound (BCE fed targets outside [0, 1]): train and val losses grow
    # ever more negative. A log of |x| reads that as an eval getting worse while train falls.
    rnd = random.Random(int(noise * 100))
    rows = []
    for e in range(70):
        train = -scale * 3.4 * 1.1**e * (1 + rnd.gauss(0, noise))
        val = -scale * 15.0 * 1.1**e * (1 + rnd.gauss(0, noise))
        rows.append(Row(float(e), {"loss": train, "val_loss": val}))
    found, _ = _feed(rows)
    assert not found, found


@pytest.mark.parametrize("scale", [1e-2, 1.0, 1e4])
@pytest.mark.parametrize("noise", [0.0, 0.01, 0.03])
def test_a_negative_eval_loss_that_rises_again_is_flagged(scale: float, noise: float) -> None:
    # A log-likelihood style loss (negative) that improves to -10, then climbs back towards -5 while the
    # training loss keeps falling: overfitting, whatever the sign and the units.
    rnd = random.Random(int(noise * 1000))
    rows = []
    for e in range(60):
        train = scale * (-2.0 - 10.0 * e / 60) * (1 + rnd.gauss(0, noise))
        val = scale * (-10.0 + 5.0 * max(0, e - 20) / 40 + 8.0 * math.exp(-e / 5)) * (1 + rnd.gauss(0, noise))
        rows.append(Row(float(e), {"loss": train, "val_loss": val}))
    found, bad = _feed(rows)
    assert bad and bad[0].kind == "overfit", found
    assert 18 <= bad[0].onset_step <= 35


def test_an_eval_that_crosses_zero_is_compared_linearly() -> None:
    # Positive, then negative: the state carries over to the linear scale without a false alarm, and a
    # later rise is measured against the best in linear units.
    d = EvalDetector("val", Thresholds())
    for s, v in enumerate([2.0, 1.0, 0.5, 0.2, -0.1, -0.4, -0.8, -1.2, -1.5, -1.6]):
        d.update(float(s), v, None)
    assert d.current is None
    assert d.best_y is not None and d.best_y < 0.0
    for s in range(10, 20):
        d.update(float(s), 1.0, None)
    cur = d.current
    assert cur is not None and cur.severity is Severity.BAD and cur.kind == "eval_degradation"
    assert cur.onset_step == 10


def _warmup_run(noise: float, warmup: int, seed: int) -> list[Row]:
    """Evaluations every 100 steps; the eval's best comes early and the eval then rises for good while
    the training loss keeps falling (memorisation)."""
    rnd = random.Random(seed)
    rows = []
    for s in range(0, 2400, 10):
        lr = 5e-5 * (min(1.0, (s + 10) / warmup) if warmup else 1.0) * (1 - s / 2400)
        vals = {"loss": 9.8 - 2.4 * (s / 2400) ** 2 + rnd.gauss(0, 0.05), "learning_rate": lr}
        if s % 100 == 0 and s:
            e = s / 100
            vals["eval_loss"] = (9.75 + 1.5 * min(1.0, max(0.0, e - 2) / 7)) * math.exp(rnd.gauss(0, noise))
        rows.append(Row(float(s), vals))
    return rows


@pytest.mark.parametrize("noise", [0.002, 0.005])
def test_a_rise_from_a_best_made_during_the_warmup_only_warns(noise: float) -> None:
    # A 1000-step warm-up: the eval's best (step 100-200) is made on the way up. The rise from it is
    # worth a warning, but is no reason to stop by itself.
    found, bad = _feed(_warmup_run(noise, 1000, 7))
    assert not bad, bad
    assert found and found[0].kind in _EVAL_KINDS and 200 <= found[0].onset_step <= 500
    # Without a warm-up the same best is an operating point: the same rise is bad.
    found, bad = _feed(_warmup_run(noise, 0, 7))
    assert bad and bad[0].kind == "overfit" and 200 <= bad[0].onset_step <= 500


def test_a_negative_higher_is_better_metric_is_compared_by_sign() -> None:
    # An evaluation return of -200 improving to -100 is better (a log of |x| read it as worse); one
    # that falls back to -200 is worse (higher-is-better metrics only ever warn).
    d = EvalDetector("eval/mean_reward", Thresholds(), higher_better=True)
    for s in range(20):
        d.update(float(s), -200.0 + 5.0 * s, None)
    assert d.current is None
    for s in range(20, 30):
        d.update(float(s), -200.0, None)
    cur = d.current
    assert cur is not None and cur.severity is Severity.WARN and cur.onset_step == 20.0
