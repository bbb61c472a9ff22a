"""Confidence rules: high only with direct evidence at the right step, and only where it separates competing causes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.lr import LrDetector
from detectors.thresholds import Thresholds
from monitor.diagnosis import Confidence, Hypothesis, diagnose, diagnose_analysis
from monitor.diagnosis.bands import band, left_band, resolution
from monitor.diagnosis.facts import RunFacts, curve
from monitor.model import Finding, Severity
from tests.test_diagnosis import _flagged, healthy_loss, run_of


def _of(hs: tuple[Hypothesis, ...], cause: str) -> Hypothesis:
    return next(h for h in hs if h.cause_id == cause)


def _diverging(grad_from: int, lr: np.ndarray, n: int = 600, seed: int = 0) -> tuple[Hypothesis, ...]:
    """A run whose loss leaves its band at 400, its grad norm growing from `grad_from`."""
    rng = np.random.default_rng(seed)
    loss = healthy_loss(n, rng)
    grad = 1.0 + rng.normal(0, 0.03, n)
    grad[grad_from:] *= np.exp(np.arange(n - grad_from) / 25)
    loss[400:] += np.exp(np.arange(n - 400) / 40) - 1
    return diagnose_analysis(run_of({"loss": list(loss), "lr": list(lr), "grad_norm": list(grad)}, list(range(n))))


def _warmup_then_rising(n: int = 600) -> np.ndarray:
    return np.minimum(np.arange(n) / 200, 1.0) * 3e-3 * (1 + np.maximum(np.arange(n) - 200, 0) / 50)


def test_band_is_scale_free_and_knows_the_logging_precision() -> None:
    rng = np.random.default_rng(0)
    v = 1.0 + rng.normal(0, 0.03, 50)
    b1, b2 = band(v), band(v * 1e-6)
    assert b1 is not None and b2 is not None
    assert b1.spread == pytest.approx(b2.spread) and b2.level == pytest.approx(b1.level * 1e-6)
    # A grad norm printed with two decimals around 0.01-0.02: one quantum is a 50-100% move, so x5 is noise.
    coarse = np.array([0.01, 0.02, 0.01, 0.01, 0.02, 0.01, 0.02, 0.01, 0.05, 0.01])
    assert resolution(coarse) == pytest.approx(0.01)
    c = curve(np.arange(10), coarse, "grad_norm")
    assert left_band(c, 8, 9) is None
    fine = curve(np.arange(10), np.r_[np.full(8, 1.0) + rng.normal(0, 0.01, 8), [5.0, 1.0]], "grad_norm")
    ex = left_band(fine, 8, 9)
    assert ex is not None and ex.step == 8 and ex.ratio == pytest.approx(5.0, rel=0.05)


def test_lr_too_high_is_high_when_the_grad_norm_leaves_its_band_just_before_the_loss() -> None:
    h = _of(_diverging(370, _warmup_then_rising()), "lr_too_high")
    assert h.confidence is Confidence.HIGH
    assert "rose out of its band" in h.evidence and "before the loss" in h.evidence


def test_lr_too_high_is_medium_when_the_grad_norm_rose_long_before() -> None:
    # The grad norm grew from step 150 while the LR was still warming up: that is not "just before" a
    # divergence at 400, and exploding gradients read the same.
    h = _of(_diverging(150, _warmup_then_rising()), "lr_too_high")
    assert h.confidence is Confidence.MEDIUM and h.settle


def test_lr_too_high_without_a_grad_norm_is_at_most_medium_and_says_what_would_settle_it() -> None:
    rng = np.random.default_rng(1)
    n = 600
    loss = healthy_loss(n, rng)
    loss[400:] += np.exp(np.arange(n - 400) / 40) - 1
    a = run_of({"loss": list(loss), "lr": list(_warmup_then_rising(n))}, list(range(n)))
    h = _of(diagnose_analysis(a), "lr_too_high")
    assert h.confidence is Confidence.MEDIUM and "gradient norm" in h.settle


def test_lr_back_at_a_level_it_trained_at_does_not_make_lr_too_high_certain() -> None:
    # Cosine decay, then the warm-up runs again (a resume that lost the scheduler) back to the same peak,
    # and the loss diverges with the grad norm: the run had trained at that LR before.
    rng = np.random.default_rng(2)
    n = 800
    s = np.arange(n)
    lr = np.where(s < 50, s / 50, 0.5 * (1 + np.cos(np.pi * np.minimum(s - 50, 300) / 300))) * 1e-2
    lr[350:] = np.minimum((s[350:] - 350) / 50, 1.0) * 1e-2 + 1e-5
    loss = healthy_loss(n, rng)
    grad = 1.0 + rng.normal(0, 0.03, n)
    grad[420:] *= np.exp(np.arange(n - 420) / 25)
    loss[430:] += np.exp(np.arange(n - 430) / 40) - 1
    hs = diagnose_analysis(run_of({"loss": list(loss), "lr": list(lr), "grad_norm": list(grad)}, list(s)))
    h = _of(hs, "lr_too_high")
    assert h.confidence is Confidence.MEDIUM and "schedule break" in h.evidence
    assert any(x.cause_id == "schedule_reset" for x in hs)


def test_exploding_gradients_is_high_only_with_a_flat_lr() -> None:
    rng = np.random.default_rng(3)
    n = 600
    loss = healthy_loss(n, rng)
    grad = 1.0 + rng.normal(0, 0.03, n)
    grad[400:] *= np.exp(np.arange(n - 400) / 20)
    loss[420:] += np.exp(np.arange(n - 420) / 40) - 1
    flat = np.minimum(np.arange(n) / 20, 1.0) * 1e-3
    h = _of(
        diagnose(_flagged({"loss": list(loss), "grad_norm": list(grad), "lr": list(flat)}, n)), "exploding_gradients"
    )
    assert h.confidence is Confidence.HIGH
    jumped = flat.copy()
    jumped[390:] *= 8  # the LR jumped to a new peak just before the growth: the LR reads the same
    h2 = _of(
        diagnose(_flagged({"loss": list(loss), "grad_norm": list(grad), "lr": list(jumped)}, n)), "exploding_gradients"
    )
    assert h2.confidence is Confidence.MEDIUM and "the LR rose before it" in h2.evidence


def test_a_bad_batch_needs_a_grad_spike_beyond_the_logging_precision() -> None:
    rng = np.random.default_rng(4)
    n = 500
    loss = healthy_loss(n, rng)
    loss[300] *= 3.0
    grad = np.round(0.015 + rng.normal(0, 0.004, n), 2)  # printed with two decimals: 0.01 or 0.02
    grad[300] = 0.05
    h = _of(diagnose(_flagged({"loss": list(loss), "grad_norm": list(grad), "lr": [1e-3] * n}, n)), "bad_batch")
    assert h.confidence is Confidence.MEDIUM
    grad2 = 1.0 + rng.normal(0, 0.03, n)
    grad2[300] = 5.0
    h2 = _of(diagnose(_flagged({"loss": list(loss), "grad_norm": list(grad2), "lr": [1e-3] * n}, n)), "bad_batch")
    assert h2.confidence is Confidence.HIGH and "spiked out of its band" in h2.evidence


def test_fp16_overflow_is_high_only_when_the_loss_scale_drops_at_the_skip() -> None:
    rng = np.random.default_rng(5)
    n = 400
    loss = list(healthy_loss(n, rng))
    grad = list(1.0 + rng.normal(0, 0.03, n))
    grad[200] = math.nan
    h = _of(diagnose(_flagged({"loss": loss, "grad_norm": grad}, n)), "fp16_overflow")
    assert h.confidence is Confidence.MEDIUM and "no loss scale is logged" in h.evidence
    late = [65536.0] * 300 + [32768.0] * 100  # the scale dropped, but 100 steps after the skip
    h2 = _of(diagnose(_flagged({"loss": loss, "grad_norm": grad, "loss_scale": late}, n)), "fp16_overflow")
    assert h2.confidence is Confidence.MEDIUM and "did not drop at them" in h2.evidence
    at = [65536.0] * 200 + [32768.0] * 200
    h3 = _of(diagnose(_flagged({"loss": loss, "grad_norm": grad, "loss_scale": at}, n)), "fp16_overflow")
    assert h3.confidence is Confidence.HIGH


def test_two_competing_causes_both_high_are_both_capped_and_name_each_other() -> None:
    spike = Finding(
        "spike", Severity.WARN, "loss", 300.0, 300.0, "loss spike at step 300", {"cleared_step": 305.0}, active=False
    )
    rng = np.random.default_rng(6)
    n = 500
    steps = np.arange(n, dtype=float)
    grad = 1.0 + rng.normal(0, 0.03, n)
    grad[300] = 9.0
    grad[400:] *= np.exp(np.arange(n - 400) / 10)  # and an unrelated sustained growth later
    f = RunFacts(
        findings=(spike,),
        loss=curve(steps, healthy_loss(n, rng), "loss"),
        grad=curve(steps, grad, "grad_norm"),
        lr=curve(steps, np.full(n, 1e-3), "lr"),
        verdict_healthy=False,
    )
    hs = {h.cause_id: h for h in diagnose(f)}
    assert hs["bad_batch"].confidence is Confidence.MEDIUM and hs["exploding_gradients"].confidence is Confidence.MEDIUM
    assert "gradients are likely exploding" in hs["bad_batch"].evidence
    assert "bad batch" in hs["exploding_gradients"].evidence


@pytest.mark.parametrize(
    ("lrs", "anomaly", "extra"),
    [
        # warm-up 0 -> peak, cosine down, then a jump above the old peak
        (
            [0.1 * i for i in range(1, 11)] + [1.0 - 0.05 * i for i in range(1, 11)] + [3.0] * 3,
            "jump",
            {"above_peak": True},
        ),
        # down to 0.1 of the peak, then a jump x5 to half of it (not a warm restart to the same peak)
        (
            [0.1 * i for i in range(1, 11)] + [1.0 - 0.09 * i for i in range(1, 11)] + [0.5] * 3,
            "jump",
            {"above_peak": False},
        ),
        # decayed, then rising again point after point
        (
            [0.1 * i for i in range(1, 11)]
            + [1.0 - 0.05 * i for i in range(1, 11)]
            + [0.5 + 0.01 * i for i in range(1, 6)],
            "rising_again",
            {},
        ),
        # decayed to near zero, then a fresh warm-up from near zero
        ([0.01 * i for i in range(1, 101)] + [1.0 - 0.0099 * i for i in range(1, 101)] + [0.015, 0.02], "reset", {}),
    ],
)
def test_lr_findings_say_their_anomaly_in_evidence(lrs: list[float], anomaly: str, extra: dict) -> None:
    d = LrDetector("lr", Thresholds())
    for i, x in enumerate(lrs):
        d.update(float(i), x)
    found = [x for x in d.findings() if x.kind == "lr_anomaly"]
    assert found and found[-1].evidence["anomaly"] == anomaly and found[-1].evidence["decayed"] is True
    for k, v in extra.items():
        assert found[-1].evidence[k] == v


def test_an_lr_at_its_peak_because_it_keeps_rising_is_not_a_schedule_left_flat() -> None:
    rng = np.random.default_rng(7)
    n = 400
    cfg = {"lr_scheduler_type": "cosine", "max_steps": 600}
    flat = np.minimum(np.arange(n) / 20, 1.0) * 1e-3
    rising = 1e-4 * (1 + np.arange(n) / 20)
    loss = list(healthy_loss(n, rng))
    h = _of(diagnose(_flagged({"loss": loss, "lr": list(flat)}, n, config=cfg)), "no_decay")
    assert h.confidence is Confidence.HIGH
    hs = diagnose(_flagged({"loss": loss, "lr": list(rising)}, n, config=cfg))
    assert not any(x.cause_id == "no_decay" for x in hs)
    assert _of(hs, "warmup_never_ends").confidence is Confidence.MEDIUM


def test_a_short_log_at_chance_level_is_read_as_not_learning_but_not_with_certainty() -> None:
    # Four epochs of a binary classifier pinned at ln 2 (the loss of always answering 0.5).
    loss = [0.6957, 0.6926, 0.6918, 0.6912]
    f = RunFacts(findings=(), loss=curve([1, 2, 3, 4], loss, "loss"), verdict_healthy=False)
    h = _of(diagnose(f), "not_learning")
    assert h.confidence is Confidence.MEDIUM and "ln(2)" in h.evidence
    with_k = RunFacts(findings=(), loss=f.loss, config={"num_labels": 2}, verdict_healthy=False)
    assert _of(diagnose(with_k), "not_learning").confidence is Confidence.MEDIUM
    # One epoch clearly below chance: it did learn something.
    learned = RunFacts(findings=(), loss=curve([1, 2, 3, 4], [0.69, 0.6, 0.5, 0.45], "loss"), verdict_healthy=False)
    assert not any(x.cause_id == "not_learning" for x in diagnose(learned))


def test_no_decay_under_a_step_schedule_needs_its_declared_first_decay() -> None:
    rng = np.random.default_rng(8)
    n = 400
    flat = np.minimum(np.arange(n) / 20, 1.0) * 1e-3
    loss = list(healthy_loss(n, rng))
    step = {"lr_scheduler": "step", "max_steps": 600}
    h = _of(diagnose(_flagged({"loss": loss, "lr": list(flat)}, n, config=step)), "no_decay")
    assert h.confidence is Confidence.MEDIUM and "first decay is later" in h.evidence
    passed = {**step, "step_size": 150}
    assert _of(diagnose(_flagged({"loss": loss, "lr": list(flat)}, n, config=passed)), "no_decay").confidence is (
        Confidence.HIGH
    )
    ahead = {**step, "milestones": [500]}
    assert not any(
        x.cause_id == "no_decay" for x in diagnose(_flagged({"loss": loss, "lr": list(flat)}, n, config=ahead))
    )


def test_a_bad_batch_is_an_outlier_against_the_grad_norms_own_history() -> None:
    rng = np.random.default_rng(9)
    n = 500
    loss = healthy_loss(n, rng)
    loss[300] *= 3.0
    grad = 1.0 + rng.normal(0, 0.03, n)
    grad[[60, 120, 180, 240]] = 6.0  # the run's grad norm jumps x6 now and then without any loss spike
    grad[300] = 5.0
    h = _of(diagnose(_flagged({"loss": list(loss), "grad_norm": list(grad), "lr": [1e-3] * n}, n)), "bad_batch")
    assert h.confidence is Confidence.MEDIUM


def test_a_loss_scale_collapsed_by_a_non_finite_loss_is_not_fp16_overflow_for_certain() -> None:
    rng = np.random.default_rng(10)
    n = 400
    loss = list(healthy_loss(n, rng))
    grad = list(1.0 + rng.normal(0, 0.03, n))
    scale = [65536.0] * n
    for s in range(300, 310):
        loss[s] = math.inf
        grad[s] = math.nan
        scale[s:] = [x / 2 for x in scale[s:]]
    h = _of(diagnose(_flagged({"loss": loss, "grad_norm": grad, "loss_scale": scale}, n)), "fp16_overflow")
    assert h.confidence is Confidence.MEDIUM and "went non-finite" in h.evidence


def test_exploding_gradients_that_begin_with_a_loss_spike_are_not_certain() -> None:
    rng = np.random.default_rng(11)
    n = 600
    loss = healthy_loss(n, rng)
    loss[400] *= 4.0
    grad = 1.0 + rng.normal(0, 0.03, n)
    grad[400:] *= np.exp(np.arange(n - 400) / 20)
    lr = np.minimum(np.arange(n) / 20, 1.0) * 1e-3
    hs = diagnose(_flagged({"loss": list(loss), "grad_norm": list(grad), "lr": list(lr)}, n))
    h = _of(hs, "exploding_gradients")
    assert h.confidence is Confidence.MEDIUM and "a bad batch reads the same" in h.evidence


def test_a_loss_that_learned_and_collapsed_back_is_not_read_as_never_learning() -> None:
    rng = np.random.default_rng(12)
    n = 60
    loss = np.r_[np.linspace(8.5, 2.1, 25), np.linspace(2.1, 8.5, 15), np.full(20, 8.5)] + rng.normal(0, 0.02, n)
    f = RunFacts(findings=(), loss=curve(np.arange(n) * 50.0, loss, "loss"), verdict_healthy=False)
    assert not any(h.cause_id == "not_learning" for h in diagnose(f))
    flat = RunFacts(
        findings=(), loss=curve(np.arange(n) * 50.0, 8.5 + rng.normal(0, 0.02, n), "loss"), verdict_healthy=False
    )
    assert any(h.cause_id == "not_learning" for h in diagnose(flat))
