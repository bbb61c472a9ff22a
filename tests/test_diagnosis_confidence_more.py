"""Confidence rules found on the widened dev families (sparse logistic regression, attention, RNN): a grad
burst that came back, fp16 skips as growing gradients' first symptom, a declared restarting schedule, and
the declared config beside the metrics file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from detectors.lr import Schedule
from monitor.analysis import RunAnalysis, RunInfo
from monitor.diagnosis import Confidence, Hypothesis, diagnose, facts_of
from monitor.diagnosis.facts import RunFacts, curve
from monitor.model import Finding, Severity
from tests.test_diagnosis import _flagged, healthy_loss


def _of(hs: tuple[Hypothesis, ...], cause: str) -> Hypothesis:
    return next(h for h in hs if h.cause_id == cause)


def test_a_grad_norm_burst_that_came_back_is_not_certain_to_be_exploding_gradients() -> None:
    rng = np.random.default_rng(21)
    n = 600
    loss = list(healthy_loss(n, rng))
    lr = list(np.minimum(np.arange(n) / 20, 1.0) * 1e-3)
    grad = 1.0 + rng.normal(0, 0.03, n)
    stays = grad.copy()
    stays[400:] *= 20
    h = _of(diagnose(_flagged({"loss": loss, "grad_norm": list(stays), "lr": lr}, n)), "exploding_gradients")
    assert h.confidence is Confidence.HIGH
    burst = grad.copy()
    burst[400:440] *= 20  # an RNN's gradient cliff: x20 for 40 steps, then back in the band
    h2 = _of(diagnose(_flagged({"loss": loss, "grad_norm": list(burst), "lr": lr}, n)), "exploding_gradients")
    assert h2.confidence is Confidence.LOW and "transient burst" in h2.evidence and h2.settle
    assert h2.incidental  # the loss never went wrong: the burst did no harm


def test_fp16_skips_as_the_grad_norm_grows_out_of_its_band_are_not_certain_overflow() -> None:
    rng = np.random.default_rng(22)
    n = 400
    loss = list(healthy_loss(n, rng))
    grad = 1.0 + rng.normal(0, 0.03, n)
    grad[200] = math.nan
    scale = [65536.0] * 200 + [32768.0] * 200
    h = _of(diagnose(_flagged({"loss": loss, "grad_norm": list(grad), "loss_scale": scale}, n)), "fp16_overflow")
    assert h.confidence is Confidence.HIGH
    growing = grad.copy()
    growing[201:] *= np.exp(np.arange(n - 201) / 15)  # the gradients grow by orders of magnitude from the skip
    hs = diagnose(_flagged({"loss": loss, "grad_norm": list(growing), "loss_scale": scale}, n))
    h2 = _of(hs, "fp16_overflow")
    assert h2.confidence is Confidence.MEDIUM and "growing gradients overflow too" in h2.evidence


def _warmup_finding() -> Finding:
    return Finding(
        "lr_anomaly",
        Severity.WARN,
        "lr",
        195.0,
        190.0,
        "learning rate still rising at step 195 although the warm-up was 24 steps: the warm-up never ended",
        {"anomaly": "warmup_never_ends", "declared": "warmup", "warmup": 24.0},
    )


def test_a_rising_lr_under_a_declared_restarting_schedule_is_not_certainly_a_warmup_that_never_ends() -> None:
    lr = curve(np.arange(0, 400, 5), np.linspace(1e-3, 1e-2, 80), "lr")
    plain = {"lr_scheduler_type": "cosine", "warmup_steps": 24, "max_steps": 1200}
    f = RunFacts(findings=(_warmup_finding(),), lr=lr, config=plain, verdict_healthy=False)
    assert _of(diagnose(f), "warmup_never_ends").confidence is Confidence.HIGH
    restarts = {**plain, "lr_scheduler_type": "cosine_with_restarts"}
    assert Schedule.from_config(restarts) is not None
    f2 = RunFacts(findings=(_warmup_finding(),), lr=lr, config=restarts, verdict_healthy=False)
    h = _of(diagnose(f2), "warmup_never_ends")
    assert h.confidence is Confidence.MEDIUM and "warm restart" in h.evidence


def test_the_diagnosis_reads_the_config_saved_beside_the_metrics_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"lr_scheduler": "restarts", "warmup_steps": 24}))
    target = tmp_path / "metrics.jsonl"
    target.write_text("")
    a = RunAnalysis(RunInfo(target=str(target), name="t"))
    a.info.config = {"logging_steps": 5, "warmup_steps": 30}
    cfg = facts_of(a).config
    # the detectors were declared both; what the log printed wins over the file beside it
    assert cfg["lr_scheduler"] == "restarts" and cfg["logging_steps"] == 5 and cfg["warmup_steps"] == 30


def test_a_jump_the_loss_never_came_back_from_reads_first_as_a_jolt_when_the_lr_was_flat() -> None:
    rng = np.random.default_rng(23)
    n = 600
    loss = healthy_loss(n, rng)
    loss[400:] += 1.5  # one step knocked the weights off; the loss never recovers
    grad = 1.0 + rng.normal(0, 0.03, n)
    grad[400] = 8.0
    flat = [1e-3] * n
    hs = diagnose(_flagged({"loss": list(loss), "grad_norm": list(grad), "lr": flat}, n))
    h = _of(hs, "bad_batch")
    assert h.confidence is Confidence.MEDIUM
    assert "never came back" in h.evidence or "went wrong after" in h.evidence
    assert next(x.cause_id for x in hs if not x.incidental) == "bad_batch"
    # without the grad-norm spike at the jump, nothing ties it to one batch
    grad[400] = 1.0
    h2 = _of(diagnose(_flagged({"loss": list(loss), "grad_norm": list(grad), "lr": flat}, n)), "bad_batch")
    assert h2.confidence is Confidence.LOW


def test_a_grad_norm_up_by_a_raw_factor_inside_its_noise_does_not_make_lr_too_high_medium() -> None:
    rng = np.random.default_rng(24)
    n = 600
    loss = healthy_loss(n, rng)
    loss[400:] += np.exp(np.arange(n - 400) / 40) - 1
    lr = list(np.minimum(np.arange(n) / 20, 1.0) * 1e-3)  # peaked at step 20, long before
    noisy = np.exp(rng.normal(0, 0.4, n))  # a small-batch grad norm: x2 moves are its everyday noise
    noisy[380:] *= 2.0
    h = _of(diagnose(_flagged({"loss": list(loss), "grad_norm": list(noisy), "lr": lr}, n)), "lr_too_high")
    assert h.confidence is Confidence.LOW and h.settle
    clean = 1.0 + rng.normal(0, 0.03, n)
    clean[380:] *= np.exp(np.arange(n - 380) / 20)  # out of its band, beyond noise
    h2 = _of(diagnose(_flagged({"loss": list(loss), "grad_norm": list(clean), "lr": lr}, n)), "lr_too_high")
    assert h2.confidence is Confidence.MEDIUM


def test_a_nan_grad_norm_that_came_back_with_a_finite_loss_is_not_a_nan_in_the_weights() -> None:
    rng = np.random.default_rng(25)
    n = 400
    loss = list(healthy_loss(n, rng))
    grad = list(1.0 + rng.normal(0, 0.03, n))
    for s in range(200, 212):
        grad[s] = math.nan
    h = _of(diagnose(_flagged({"loss": loss, "grad_norm": grad}, n)), "nonfinite")
    assert h.confidence is Confidence.LOW and h.incidental and "never held it" in h.evidence
    for s in range(200, n):  # the grad norm never comes back: that is a NaN that stays
        grad[s] = math.nan
    h2 = _of(diagnose(_flagged({"loss": loss, "grad_norm": grad}, n)), "nonfinite")
    assert h2.confidence is Confidence.MEDIUM and not h2.incidental


def test_an_lr_that_jumps_from_a_decayed_level_past_its_old_peak_is_a_jump_not_a_restart() -> None:
    n = 100
    s = np.arange(n) * 10.0
    decay = 1e-3 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * np.arange(n) / n)))
    jumped = decay.copy()
    jumped[70:] *= 8  # from ~20% of the peak to ~1.7x the peak, at once
    causes = {h.cause_id for h in diagnose(RunFacts(findings=(), lr=curve(s, jumped, "lr"), verdict_healthy=False))}
    assert "lr_jump" in causes and "schedule_reset" not in causes
    restarted = decay.copy()
    restarted[70:] = decay[: n - 70]  # the schedule from its start again: back to the old peak, no further
    causes2 = {h.cause_id for h in diagnose(RunFacts(findings=(), lr=curve(s, restarted, "lr"), verdict_healthy=False))}
    assert "schedule_reset" in causes2 and "lr_jump" not in causes2
