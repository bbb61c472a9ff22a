"""Detectors fed labelled synthetic series: each case says what a careful reader would call it."""

from __future__ import annotations

import math
import random

import pytest

from detectors.judge import judge
from detectors.run import RunDetectors
from detectors.series import SeriesStats, mann_kendall_z
from detectors.thresholds import DEFAULT
from monitor.model import Decision, Finding, Row, Severity, Verdict
from monitor.roles import RoleMap


def _run(rows: list[Row], **kw: object) -> RunDetectors:
    rd = RunDetectors(RoleMap(), **kw)  # type: ignore[arg-type]
    for r in rows:
        rd.ingest(r, 0.0)
    return rd


def _decaying(n: int, seed: int = 0, noise: float = 0.02, start: float = 4.0, floor: float = 1.5) -> list[float]:
    rnd = random.Random(seed)
    return [floor + (start - floor) * math.exp(-i / (n / 4)) * (1 + rnd.gauss(0, noise)) for i in range(n)]


def _active(rd: RunDetectors) -> set[str]:
    return {f.kind for f in rd.findings() if f.active and f.severity >= Severity.WARN}


def _kinds(rd: RunDetectors) -> set[str]:
    return {f.kind for f in rd.findings()}


def test_healthy_decaying_loss_with_lr_and_grad_norm_is_healthy() -> None:
    n = 2000
    loss = _decaying(n, seed=1)
    rows = [
        Row(
            float(i),
            {
                "loss": loss[i],
                "lr": 1e-3 * min(1, i / 100) * (1 - i / n / 1.1),
                "grad_norm": 1.0 + 0.1 * math.sin(i),
            },
        )
        for i in range(n)
    ]
    rd = _run(rows)
    assert rd.judgement().verdict is Verdict.HEALTHY, rd.findings()


@pytest.mark.parametrize("seed", range(5))
def test_noisy_healthy_runs_raise_no_alarm(seed: int) -> None:
    loss = _decaying(1500, seed=seed, noise=0.05)
    rd = _run([Row(float(i), {"train/loss": v}) for i, v in enumerate(loss)])
    assert not _active(rd), rd.findings()


def test_nan_loss_is_bad_at_once_and_says_where() -> None:
    loss = [*_decaying(100), math.nan, math.nan]
    rd = RunDetectors(RoleMap())
    for i, v in enumerate(loss):
        rd.ingest(Row(float(i * 10), {"loss": v}), 0.0)
        if i == 100:
            j = rd.judgement()
            assert (j.verdict, j.decision) == (Verdict.BAD, Decision.STOP)
            assert j.worst is not None and j.worst.kind == "nan" and j.worst.onset_step == 1000
            assert "1000" in j.reason


def test_transient_nan_in_eval_loss_is_kept_but_inactive() -> None:
    rows = [Row(1.0, {"val_loss": math.nan}), *[Row(float(i), {"val_loss": 1 / i}) for i in range(2, 20)]]
    rd = _run(rows)
    nans = [f for f in rd.findings() if f.kind == "nan"]
    assert nans and not nans[0].active
    assert rd.judgement().verdict is Verdict.HEALTHY


def test_one_spike_that_recovers_is_not_a_stop() -> None:
    loss = _decaying(400, seed=3, noise=0.01)
    loss[200] *= 3.0
    rd = RunDetectors(RoleMap())
    verdicts = []
    for i, v in enumerate(loss):
        rd.ingest(Row(float(i), {"loss": v}), 0.0)
        verdicts.append(rd.judgement().verdict)
    assert verdicts[200] is Verdict.UNSURE
    assert Verdict.BAD not in verdicts
    assert verdicts[-1] is Verdict.HEALTHY
    spikes = [f for f in rd.findings() if f.kind == "spike"]
    assert len(spikes) == 1 and spikes[0].onset_step == 200 and not spikes[0].active


def test_repeated_spikes_are_bad() -> None:
    loss = _decaying(400, seed=4, noise=0.01)
    for k in (200, 230, 260):
        loss[k] *= 3.0
    rd = _run([Row(float(i), {"loss": v}) for i, v in enumerate(loss)][:261])
    j = rd.judgement()
    assert j.verdict is Verdict.BAD
    assert j.worst is not None and j.worst.kind == "spike"


def test_small_batch_noise_bumps_are_not_spikes() -> None:
    # llm.c-like: +0.25 bumps on a loss of ~3.3 are batch noise.
    rnd = random.Random(5)
    loss = [3.3 + rnd.gauss(0, 0.03) + (0.25 if i % 97 == 0 else 0) for i in range(3000)]
    rd = _run([Row(float(i), {"trl": v}) for i, v in enumerate(loss)])
    assert "spike" not in _kinds(rd)


def test_sustained_rise_is_divergence_with_onset() -> None:
    loss = _decaying(300, seed=6, noise=0.01)
    loss += [loss[-1] * (1 + 0.01 * k) for k in range(1, 80)]
    rd = _run([Row(float(i), {"loss": v}) for i, v in enumerate(loss)])
    div = [f for f in rd.findings() if f.kind == "divergence"]
    assert div and div[0].severity is Severity.BAD
    assert 300 <= div[0].onset_step <= 320
    assert rd.judgement().decision is Decision.STOP


def test_flat_loss_with_high_lr_is_plateau_but_with_decayed_lr_is_converged() -> None:
    rnd = random.Random(7)
    flat = [2.0 * (1 + rnd.gauss(0, 0.005)) for _ in range(200)]
    head = [4.0 - 2.0 * i / 50 for i in range(50)]
    loss = head + flat
    rd = _run([Row(float(i), {"loss": v, "lr": 1e-3}) for i, v in enumerate(loss)])
    assert "plateau" in _active(rd)
    assert rd.judgement().verdict is Verdict.UNSURE
    rd2 = _run([Row(float(i), {"loss": v, "lr": 1e-3 if i < 60 else 1e-6}) for i, v in enumerate(loss)])
    assert "converged" in _kinds(rd2) and rd2.judgement().verdict is Verdict.HEALTHY


def test_constant_zero_loss_component_is_not_judged() -> None:
    rd = _run([Row(float(i), {"train/cls_loss": 0.0, "grad norm": 0.0}) for i in range(300)])
    assert not rd.findings()


def test_overfit_when_eval_turns_up_while_train_falls() -> None:
    rows = []
    for e in range(1, 21):
        rows.append(Row(float(e), {"loss": 1.0 / e}))
        ev = 0.5 - 0.03 * e if e <= 10 else 0.2 + 0.02 * (e - 10)
        rows.append(Row(float(e), {"eval_loss": ev}))
    rd = _run(rows)
    over = [f for f in rd.findings() if f.kind == "overfit"]
    assert over and over[-1].onset_step == 11.0
    assert rd.judgement().verdict is Verdict.BAD


def test_eval_degradation_without_train_is_its_own_kind_and_clears_on_recovery() -> None:
    ppl = [60, 59.9, 62, 66, 70, 80, 90, 80, 60, 55]
    rd = _run([Row(float(i * 10), {"eval/ppl": v}) for i, v in enumerate(ppl)])
    f = [x for x in rd.findings() if x.kind == "eval_degradation"]
    assert f and f[0].onset_step == 20.0 and not f[0].active


def test_eval_worse_than_baseline_is_bad() -> None:
    rows = [Row(float(i), {"eval/loss": 2.0 - 0.01 * i}) for i in range(5)]
    rd = _run(rows, baselines={"eval/loss": 1.5})
    j = rd.judgement()
    assert j.verdict is Verdict.BAD and "baseline" in j.reason


def test_lone_overflow_skip_is_information_but_repeated_nan_grad_is_bad() -> None:
    rows = [Row(float(i), {"loss": 2.0 - i * 0.01, "grad_norm": math.nan if i == 3 else 1.0}) for i in range(20)]
    rd = _run(rows)
    assert rd.judgement().verdict is Verdict.HEALTHY
    assert "overflow_skip" in _kinds(rd)
    # A burst of skips while the loss scaler backs off is ordinary; ten logged points in a row is not.
    rows = [Row(float(i), {"loss": 2.0, "grad_norm": math.nan if i >= 10 else 1.0}) for i in range(14)]
    assert _run(rows).judgement().verdict is Verdict.HEALTHY
    rows = [Row(float(i), {"loss": 2.0, "grad_norm": math.nan if i >= 10 else 1.0}) for i in range(20)]
    assert _run(rows).judgement().verdict is Verdict.BAD


def test_grad_explosion_sustained() -> None:
    rows = [Row(float(i), {"grad_norm": 1.0 + 0.05 * math.sin(i) if i < 50 else 40.0}) for i in range(60)]
    assert "grad_explosion" in _active(_run(rows))


def test_lr_warmup_and_decay_are_fine_but_a_jump_after_decay_is_not() -> None:
    sched = [min(1.0, i / 20) * (1 - i / 200) for i in range(180)]
    assert not _run([Row(float(i), {"lr": v}) for i, v in enumerate(sched)]).findings()
    sched[150] = sched[149] * 5
    assert "lr_anomaly" in _active(_run([Row(float(i), {"lr": v}) for i, v in enumerate(sched)][:151]))


def test_lr_warmup_forever_with_known_total() -> None:
    rd = _run([Row(float(i), {"lr": i * 1e-5}) for i in range(1, 700)], total_steps=1000.0)
    assert "lr_anomaly" in _active(rd)


def test_stall_uses_the_runs_own_interval_and_time_passed_in() -> None:
    rd = RunDetectors(RoleMap())
    for i in range(50):
        rd.ingest(Row(float(i), {"loss": 1.0}, time=1000.0 + 30 * i), 0.0)
    last = 1000.0 + 30 * 49
    assert not rd.tick(last + 200)
    assert rd.tick(last + 400)
    assert "stalled" in _active(rd)
    rd.ingest(Row(50.0, {"loss": 1.0}, time=last + 500), 0.0)
    assert "stalled" not in _active(rd)
    rd.finish()
    assert not rd.tick(last + 10_000)


def test_judge_table() -> None:
    def f(kind: str, sev: Severity, active: bool = True) -> Finding:
        return Finding(kind, sev, "loss", 1.0, 1.0, kind, {}, active)

    assert judge([]).verdict is Verdict.HEALTHY
    assert judge([f("nan", Severity.BAD)]).decision is Decision.STOP
    assert judge([f("plateau", Severity.WARN)]).decision is Decision.WAIT
    assert judge([f("nan", Severity.BAD, active=False)]).verdict is Verdict.HEALTHY
    # Unreachable is not broken.
    assert judge([f("source_error", Severity.BAD)]).verdict is Verdict.HEALTHY
    assert judge([f("converged", Severity.INFO)]).verdict is Verdict.HEALTHY


def test_series_stats_and_trend_test() -> None:
    s = SeriesStats()
    for i in range(100):
        s.update(float(i), 2.0)
    assert s.constant and abs(s.inverse(s.level) - 2.0) < 1e-9
    assert mann_kendall_z(list(range(16))) > DEFAULT.trend_z
    assert mann_kendall_z(list(range(16, 0, -1))) < -DEFAULT.trend_z
    assert abs(mann_kendall_z([1.0, 2.0] * 8)) < 1.0


def test_eval_finding_shows_the_latest_evaluation_and_does_not_flap() -> None:
    rows = [Row(float(e), {"loss": 1.0 / e}) for e in range(1, 30)]
    evals = [0.5, 0.4, 0.3, 0.2, 0.24, 0.26, 0.3, 0.25, 0.35, 0.5]
    rd = RunDetectors(RoleMap())
    rd.ingest_many(rows[:3], 0.0)
    verdicts = []
    for i, v in enumerate(evals):
        rd.ingest(Row(float(i + 3), {"eval_loss": v}), 0.0)
        verdicts.append(rd.judgement().verdict)
    f = next(x for x in rd.findings() if x.kind in ("overfit", "eval_degradation"))
    assert "0.5 at step 12" in f.message and f.onset_step == 7.0
    # Once bad, a slightly better evaluation (0.25) does not bring the verdict back to unsure.
    first_bad = verdicts.index(Verdict.BAD)
    assert all(v is Verdict.BAD for v in verdicts[first_bad:])


@pytest.mark.parametrize(
    ("config", "axis", "steps", "stalled"),
    [
        ({"max_steps": 800}, "step", range(0, 800, 2), False),  # a 0-based counter ends at 798
        ({"max_steps": 800}, "step", range(0, 801, 10), False),
        ({"max_steps": 800}, "step", range(0, 400, 2), True),  # stopped half way
        ({"epochs": "127", "max_steps": 1016}, "epoch", range(127), False),  # YOLO opt.yaml, epochs 0..126
        ({"epochs": "127", "max_steps": 1016}, "epoch", range(60), True),
        ({}, "step", range(0, 800, 2), True),  # no declared length: nothing says it ended
    ],
)
def test_a_run_that_reached_its_declared_length_finished_and_is_not_stalled(
    config: dict[str, object], axis: str, steps: range, stalled: bool
) -> None:
    rd = RunDetectors(RoleMap())
    rd.declare(config)
    rd.set_axis(axis)
    t = 1000.0
    for s in steps:
        t += 30.0
        rd.ingest(Row(float(s), {"loss": 1.0 / (1 + s)}, time=t), 0.0)
    rd.tick(t + 3600.0)
    assert ("stalled" in _active(rd)) is stalled


def test_a_source_stuck_before_its_first_step_is_stalled_at_step_0_not_minus_inf() -> None:
    from detectors.stall import StallDetector

    stall = StallDetector(DEFAULT)
    stall.touch(1000.0)
    assert not stall.tick(1000.0 + DEFAULT.stall_min_seconds / 2)
    assert stall.tick(1000.0 + 3600.0)
    f = stall.current
    assert f is not None and f.kind == "stalled" and f.step == 0.0
    assert "no step logged" in f.message and "inf" not in f.message.lower()
