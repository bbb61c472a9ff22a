"""Root-cause hypotheses on labelled series: each cause from a run built to show it, read by the real detectors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.analysis import RunAnalysis, RunInfo
from monitor.diagnosis import Confidence, Hypothesis, diagnose, diagnose_analysis
from monitor.diagnosis.facts import RunFacts, curve
from monitor.model import Finding, Row, Severity

T0 = 1_700_000_000.0


def run_of(columns: dict[str, list[float]], steps: list[float], config: dict | None = None, dt: float = 1.0):
    """A RunAnalysis fed rows of these columns (NaN where a column has no value at a step)."""
    a = RunAnalysis(RunInfo(target="t", name="t"))
    if config:
        a.info.config = config
    rows = []
    for i, s in enumerate(steps):
        vals = {k: v[i] for k, v in columns.items() if not (isinstance(v[i], float) and v[i] is None)}
        rows.append(Row(float(s), vals, T0 + dt * s))
    a.add_rows(rows, T0 + dt * steps[-1])
    a.tick(T0 + dt * steps[-1] + 1)
    return a


def healthy_loss(n: int, rng: np.random.Generator, start: float = 2.3, floor: float = 0.4) -> np.ndarray:
    s = np.arange(n)
    return floor + (start - floor) * np.exp(-s / (n / 4)) + rng.normal(0, 0.01, n)


def top(hs: tuple[Hypothesis, ...]) -> Hypothesis:
    assert hs, "no hypothesis"
    return hs[0]


def test_lr_too_high_names_the_learning_rate_with_its_steps() -> None:
    rng = np.random.default_rng(0)
    n = 600
    steps = list(range(n))
    lr = np.minimum(np.arange(n) / 200, 1.0) * 3e-3 * (1 + np.maximum(np.arange(n) - 200, 0) / 50)
    loss = healthy_loss(n, rng)
    grad = 1.0 + rng.normal(0, 0.03, n)
    grad[370:] *= np.exp((np.arange(n - 370)) / 25)
    loss[400:] += np.exp((np.arange(n - 400)) / 40) - 1
    a = run_of({"loss": list(loss), "learning_rate": list(lr), "grad_norm": list(grad)}, steps)
    h = top(diagnose_analysis(a))
    assert h.cause_id == "lr_too_high"
    assert h.confidence is Confidence.HIGH
    assert "learning rate" in h.cause
    assert "LR was" in h.evidence and "grad norm rose" in h.evidence
    assert any(380 <= s <= 460 for s in h.steps)
    assert h.fix and h.expect and h.verify


def test_one_bad_batch_that_recovered() -> None:
    rng = np.random.default_rng(1)
    n = 500
    loss = healthy_loss(n, rng)
    grad = 1.0 + rng.normal(0, 0.03, n)
    loss[300] *= 3.0
    grad[300] = 9.0
    a = run_of({"loss": list(loss), "grad_norm": list(grad), "lr": [1e-3] * n}, list(range(n)))
    hs = diagnose_analysis(a)
    h = next(h for h in hs if h.cause_id == "bad_batch")
    assert h.confidence is Confidence.HIGH and h.incidental
    assert 300 in h.steps and "grad norm spiked" in h.evidence


def test_fp16_overflow_skips_with_a_finite_loss() -> None:
    rng = np.random.default_rng(2)
    n = 400
    loss = list(healthy_loss(n, rng))
    grad = list(1.0 + rng.normal(0, 0.03, n))
    scale = [65536.0] * n
    for s in (120, 260):
        grad[s] = math.nan
        scale[s:] = [x / 2 for x in scale[s:]]
    a = run_of({"loss": loss, "grad_norm": grad, "loss_scale": scale}, list(range(n)))
    h = next(h for h in diagnose_analysis(a) if h.cause_id == "fp16_overflow")
    assert h.confidence is Confidence.HIGH
    assert "120" in h.evidence and "loss scale dropped" in h.evidence


def test_not_learning_at_chance_level_from_the_config() -> None:
    rng = np.random.default_rng(3)
    n = 300
    loss = math.log(10) + rng.normal(0, 0.01, n)
    a = run_of({"loss": list(loss), "lr": [1e-3] * n}, list(range(n)), config={"num_labels": 10})
    h = next(h for h in diagnose(_facts(a)) if h.cause_id == "not_learning")
    assert h.confidence is Confidence.HIGH and "ln(num_labels=10)" in h.evidence


def _facts(a: RunAnalysis) -> RunFacts:
    from dataclasses import replace

    from monitor.diagnosis import facts_of

    return replace(facts_of(a), verdict_healthy=False)  # judge it as if it were flagged


def test_overfitting_names_where_eval_was_best() -> None:
    rng = np.random.default_rng(4)
    n = 1000
    loss = healthy_loss(n, rng, floor=0.05)
    ev = [None] * n
    cols: dict[str, list] = {"loss": list(loss)}
    evsteps = list(range(49, n, 50))
    evvals = [1.0 - 0.05 * i if i < 8 else 0.6 + 0.06 * (i - 8) for i in range(len(evsteps))]
    rows_steps = list(range(n))
    a = RunAnalysis(RunInfo(target="t", name="t"))
    rows = []
    for s in rows_steps:
        vals = {"loss": float(cols["loss"][s])}
        if s in evsteps:
            vals["eval_loss"] = evvals[evsteps.index(s)]
        rows.append(Row(float(s), vals, T0 + s))
    a.add_rows(rows, T0 + n)
    del ev
    h = next(h for h in diagnose(_facts(a)) if h.cause_id == "overfitting")
    assert h.confidence >= Confidence.MEDIUM
    assert "best 0.6 at step 449" in h.evidence


def test_crash_out_of_memory_suggests_a_smaller_batch() -> None:
    oom = Finding(
        "crashed",
        Severity.BAD,
        "process",
        890.0,
        890.0,
        "run crashed at step 890: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        {},
    )
    f = RunFacts(findings=(oom,), loss=curve(range(10), np.linspace(2, 1, 10), "loss"), verdict_healthy=False)
    h = top(diagnose(f))
    assert h.cause_id == "crash" and "out of memory" in h.cause
    assert "batch size" in h.fix and "checkpointing" in h.fix


def test_abrupt_nan_without_build_up() -> None:
    rng = np.random.default_rng(5)
    n = 400
    loss = list(healthy_loss(n, rng))
    grad = list(1.0 + rng.normal(0, 0.03, n))
    for s in range(250, n):
        loss[s] = math.nan
        grad[s] = math.nan
    a = run_of({"loss": loss, "grad_norm": grad, "lr": [1e-3] * n}, list(range(n)))
    h = top(diagnose_analysis(a))
    assert h.cause_id == "nonfinite" and h.confidence is Confidence.MEDIUM
    assert "250" in h.evidence and "abruptly" in h.evidence


def test_exploding_gradients_with_a_flat_lr() -> None:
    rng = np.random.default_rng(6)
    n = 600
    loss = healthy_loss(n, rng)
    grad = 1.0 + rng.normal(0, 0.03, n)
    grad[350:] *= np.exp(np.arange(n - 350) / 30)
    loss[420:] += np.exp(np.arange(n - 420) / 60) - 1
    a = run_of({"loss": list(loss), "grad_norm": list(grad), "lr": [1e-3] * n}, list(range(n)))
    hs = diagnose_analysis(a)
    ids = [h.cause_id for h in hs]
    assert ids[0] == "exploding_gradients", [h.one_line() for h in hs]
    assert "no gradient clipping" in hs[0].evidence
    lr = next((h for h in hs if h.cause_id == "lr_too_high"), None)
    assert lr is None or lr.confidence < Confidence.HIGH  # the LR never moved: no direct evidence


def test_schedule_reset_on_resume() -> None:
    rng = np.random.default_rng(7)
    n = 800
    s = np.arange(n)
    lr = 1e-3 * (1 - s / 1000)
    lr[500:] = 1e-3 * (1 - (s[500:] - 500) / 1000)
    a = run_of({"loss": list(healthy_loss(n, rng)), "lr": list(lr)}, list(s))
    h = next(h for h in diagnose(_facts(a)) if h.cause_id == "schedule_reset")
    assert 500 in h.steps


def test_a_healthy_run_has_no_hypothesis() -> None:
    rng = np.random.default_rng(8)
    n = 600
    a = run_of(
        {"loss": list(healthy_loss(n, rng)), "grad_norm": list(1.0 + rng.normal(0, 0.03, n)), "lr": [1e-3] * n},
        list(range(n)),
    )
    assert str(a.judgement().verdict) == "healthy"
    assert diagnose_analysis(a) == ()


def test_json_keys() -> None:
    h = Hypothesis("x", "possibly x", Confidence.LOW, "ev", "fix", "exp", "ver", steps=(3.0,), settle="more data")
    j = h.to_json()
    assert {"cause", "confidence", "evidence", "fix", "expect", "verify"} <= j.keys()
    assert j["confidence"] == "low" and j["settle"] == "more data" and j["steps"] == [3]


@pytest.mark.parametrize("conf", list(Confidence))
def test_ranking_puts_problems_before_incidents(conf: Confidence) -> None:
    a = Hypothesis("a", "a", Confidence.HIGH, "", "", "", "", incidental=True)
    b = Hypothesis("b", "b", conf, "", "", "", "")
    assert sorted([a, b], key=Hypothesis.rank_key, reverse=True)[0] is b


def _flagged(cols: dict[str, list], n: int, config: dict | None = None, dt: float = 1.0) -> RunFacts:
    return _facts(run_of(cols, list(range(n)), config=config, dt=dt))


def test_vanishing_gradients_while_the_loss_stalls() -> None:
    rng = np.random.default_rng(9)
    n = 600
    loss = healthy_loss(n, rng)
    loss[250:] = loss[250] + rng.normal(0, 0.002, n - 250)
    grad = 1.0 + rng.normal(0, 0.03, n)
    grad[250:] *= np.exp(-np.arange(n - 250) / 20)
    h = next(
        h
        for h in diagnose(_flagged({"loss": list(loss), "grad_norm": list(grad), "lr": [1e-3] * n}, n))
        if h.cause_id == "vanishing_gradients"
    )
    assert h.confidence is Confidence.HIGH and "grad norm fell" in h.evidence


def test_lr_jump_above_its_peak() -> None:
    rng = np.random.default_rng(10)
    n = 500
    lr = np.full(n, 1e-3)
    lr[300:] = 1e-2
    h = next(
        h
        for h in diagnose(_flagged({"loss": list(healthy_loss(n, rng)), "lr": list(lr)}, n))
        if h.cause_id == "lr_jump"
    )
    assert 300 in h.steps and "x10" in h.evidence


def test_lr_that_never_stops_rising() -> None:
    rng = np.random.default_rng(11)
    n = 500
    lr = 1e-5 * np.exp(np.arange(n) / 100)
    h = next(
        h
        for h in diagnose(_flagged({"loss": list(healthy_loss(n, rng)), "lr": list(lr)}, n))
        if h.cause_id == "warmup_never_ends"
    )
    assert "rising all the way" in h.evidence


def test_warm_up_then_flat_lr_is_a_possible_missing_decay() -> None:
    rng = np.random.default_rng(12)
    n = 500
    lr = np.minimum(np.arange(n) / 50, 1.0) * 1e-3
    h = next(
        h
        for h in diagnose(_flagged({"loss": list(healthy_loss(n, rng)), "lr": list(lr)}, n))
        if h.cause_id == "no_decay"
    )
    assert h.confidence is Confidence.MEDIUM and "possibly" in h.cause and h.settle


def test_eval_only_nan_points_at_the_validation_set() -> None:
    nan = Finding("nan", Severity.BAD, "eval_loss", 500.0, 500.0, "eval_loss is NaN at step 500", {})
    loss = curve(range(0, 1000, 10), np.linspace(2, 1, 100), "loss")
    # NaN at every evaluation since step 500: a bad sample is bad every time.
    every = curve([300, 400, 500, 600, 700], [1.2, 1.1, math.nan, math.nan, math.nan], "eval_loss")
    h = top(diagnose(RunFacts(findings=(nan,), loss=loss, others={"eval_loss": every}, verdict_healthy=False)))
    assert h.cause_id == "eval_data_bad" and h.confidence is Confidence.HIGH
    # One NaN evaluation so far cannot tell a bad sample from transient eval numerics.
    once = curve([300, 400, 500], [1.2, 1.1, math.nan], "eval_loss")
    h1 = top(diagnose(RunFacts(findings=(nan,), loss=loss, others={"eval_loss": once}, verdict_healthy=False)))
    assert h1.cause_id == "eval_data_bad" and h1.confidence is Confidence.MEDIUM and "next one" in h1.evidence
    cleared = Finding("nan", Severity.BAD, "eval_loss", 500.0, 500.0, "eval_loss was NaN at step 500", {}, active=False)
    h2 = top(diagnose(RunFacts(findings=(cleared,), loss=loss, verdict_healthy=False)))
    assert h2.cause_id == "eval_numerics" and h2.confidence is Confidence.LOW


def test_throughput_regression_from_arrival_times() -> None:
    steps = np.arange(200.0)
    times = np.cumsum(np.where(steps < 120, 1.0, 3.0))
    f = RunFacts(
        findings=(),
        loss=curve(steps, np.linspace(2, 1, 200), "loss"),
        times=curve(steps, times, "time"),
        verdict_healthy=False,
    )
    h = next(h for h in diagnose(f) if h.cause_id == "throughput_regression")
    assert h.confidence is Confidence.MEDIUM and "x3" in h.evidence and 120 in h.steps


def test_stalled_job_is_a_possibility_not_a_certainty() -> None:
    stall = Finding("stalled", Severity.WARN, "steps", 150.0, 150.0, "no new step for 61 min after step 150", {})
    f = RunFacts(findings=(stall,), loss=curve(range(150), np.linspace(2, 1, 150), "loss"), verdict_healthy=False)
    h = top(diagnose(f))
    assert h.cause_id == "stalled" and h.confidence is Confidence.MEDIUM and "possibly" in h.cause and h.settle


def test_not_learning_at_chance_level_from_the_first_loss() -> None:
    rng = np.random.default_rng(13)
    n = 300
    loss = math.log(50257) + rng.normal(0, 0.02, n)
    h = next(h for h in diagnose(_flagged({"loss": list(loss), "lr": [1e-3] * n}, n)) if h.cause_id == "not_learning")
    assert h.confidence is Confidence.MEDIUM and "ln(50257)" in h.evidence and "inferred" in h.evidence
