"""Detectors on labelled synthetic runs at many noise levels: what generalises, not what fits one log.

Every series is seeded. Noise is multiplicative (log space) with a standard deviation `sigma` per
logged point: 0.01 is a large-batch LLM, 1.0 a batch of 4 where a healthy loss jumps 10x between
single steps; `heavy` noise is Student-t with 3 degrees of freedom (real small-batch losses).
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from detectors.run import RunDetectors
from monitor.analysis import config_beside
from monitor.check import check_target
from monitor.columns import to_columns
from monitor.config import Config
from monitor.model import Finding, Row, Severity, Verdict
from monitor.roles import RoleMap


def _noise(rnd: random.Random, sigma: float, heavy: bool) -> float:
    if not heavy:
        return rnd.gauss(0.0, sigma)
    chi = math.sqrt(sum(rnd.gauss(0.0, 1.0) ** 2 for _ in range(3)) / 3)
    return rnd.gauss(0.0, 1.0) / chi * sigma / 1.7


def _loss(
    n: int,
    sigma: float,
    seed: int,
    heavy: bool = False,
    diverge_at: int | None = None,
    rate: float = 0.02,
) -> list[float]:
    """A decaying loss (10 -> 2) with noise; from `diverge_at` its log level rises by `rate` a point."""
    rnd = random.Random(seed)
    out = []
    for t in range(n):
        level = math.log(2.0 + 8.0 * math.exp(-t / (n / 6)))
        if diverge_at is not None and t >= diverge_at:
            level += rate * (t - diverge_at)
        out.append(math.exp(level + _noise(rnd, sigma, heavy)))
    return out


def _feed(rows: list[Row], **kw: object) -> tuple[RunDetectors, list[Finding]]:
    """Feed row by row; also return every finding that was ever active and bad (cleared ones too)."""
    rd = RunDetectors(RoleMap(), **kw)  # type: ignore[arg-type]
    bad: dict[tuple[str, str, float], Finding] = {}
    for r in rows:
        if rd.ingest(r, 0.0):
            for f in rd.findings():
                if f.active and f.severity is Severity.BAD:
                    bad.setdefault((f.kind, f.metric, f.onset_step), f)
    return rd, list(bad.values())


def _rows(values: list[float], key: str = "loss", every: int = 1) -> list[Row]:
    return [Row(float(i * every), {key: v}) for i, v in enumerate(values)]


# --- noise: a healthy run is never bad, whatever its batch size ---


@pytest.mark.parametrize("heavy", [False, True])
@pytest.mark.parametrize("sigma", [0.01, 0.05, 0.2, 0.5, 1.0, 1.5])
def test_healthy_noisy_runs_are_never_bad(sigma: float, heavy: bool) -> None:
    for seed in range(2):
        _, bad = _feed(_rows(_loss(6000, sigma, seed, heavy)))
        assert not bad, (sigma, heavy, seed, bad)


def test_batch_of_four_jumping_tenfold_between_steps_does_not_diverge() -> None:
    rnd = random.Random(11)
    loss = [2.5 * math.exp(rnd.gauss(0.0, 1.2)) for _ in range(5000)]
    ratios = [max(a, b) / min(a, b) for a, b in itertools.pairwise(loss)]
    assert sum(r > 10 for r in ratios) > 100  # the premise: 10x jumps between single steps are ordinary
    rd, bad = _feed(_rows(loss))
    assert not bad and rd.judgement().verdict is not Verdict.BAD


# --- divergence: found soon after it begins, at every noise level ---


@pytest.mark.parametrize(
    ("sigma", "rate", "within"),
    [(0.01, 0.005, 40), (0.01, 0.05, 20), (0.05, 0.02, 40), (0.2, 0.02, 60), (0.5, 0.02, 100), (1.0, 0.1, 60)],
)
def test_divergence_is_found_soon_with_its_onset(sigma: float, rate: float, within: int) -> None:
    for seed in range(3):
        _, bad = _feed(_rows(_loss(3000, sigma, seed, diverge_at=2000, rate=rate)))
        div = [f for f in bad if f.kind == "divergence"]
        assert div, (sigma, rate, seed, bad)
        assert all(f.step >= 2000 for f in bad), bad
        assert 2000 <= div[0].step <= 2000 + within, div[0]
        assert 1900 <= div[0].onset_step <= div[0].step


def test_a_jump_that_never_comes_back_is_a_divergence_from_the_jump() -> None:
    loss = _loss(600, 0.02, 1)
    loss[400:] = [v * 4.0 for v in loss[400:]]
    rd, bad = _feed(_rows(loss))
    assert [f.kind for f in bad] == ["divergence"]
    assert bad[0].onset_step == 400 and bad[0].step <= 420
    assert rd.judgement().verdict is Verdict.BAD


def test_a_big_spike_that_recovers_slowly_is_a_spike_not_a_divergence() -> None:
    # BigScience tr1-13B: 2.77 -> 7.3 -> 8.7, then back over ~50 logged points.
    loss = _loss(
        400,
        0.01,
        2,
    )[:200]
    base = loss[-1]
    loss += [base * 3.1 * math.exp(-k / 15) + base * (1 - math.exp(-k / 15)) for k in range(80)]
    rd, bad = _feed(_rows(loss))
    assert not bad, bad
    spikes = [f for f in rd.findings() if f.kind == "spike"]
    assert spikes and spikes[0].onset_step == 200


def test_spike_is_found_at_its_step_at_every_noise_level() -> None:
    for sigma in (0.01, 0.05, 0.2):
        loss = _loss(800, sigma, 3)
        loss[500] *= math.exp(max(1.2, 8 * sigma))
        rd, bad = _feed(_rows(loss))
        spikes = [f for f in rd.findings() if f.kind == "spike"]
        assert spikes and spikes[0].step == 500, (sigma, rd.findings())
        assert not bad


# --- NaN/Inf on any metric, at its onset; the fp16 trap; timing fields ---


@pytest.mark.parametrize("key", ["loss", "train/box_loss", "eval_loss", "eval/accuracy", "val_ppl", "valid/wer"])
def test_nan_on_any_training_or_eval_metric_is_bad_at_its_onset(key: str) -> None:
    rows = [Row(float(i), {key: 1.0 / (i + 1) + 0.5}) for i in range(50)]
    rows += [Row(50.0, {key: math.nan}), Row(51.0, {key: math.inf})]
    rd, bad = _feed(rows)
    assert [(f.kind, f.onset_step) for f in bad] == [("nan", 50.0)]
    assert rd.judgement().verdict is Verdict.BAD


def test_nan_grad_norm_with_finite_loss_is_a_note_but_with_nan_loss_is_bad_at_onset() -> None:
    rows = [Row(float(i), {"loss": 2.0 - i * 0.01, "grad_norm": math.nan if i == 30 else 1.0}) for i in range(60)]
    rd, bad = _feed(rows)
    assert not bad and "overflow_skip" in {f.kind for f in rd.findings()}
    rows = [Row(float(i), {"loss": 2.0, "grad_norm": math.nan if i >= 30 else 1.0}) for i in range(40)]
    _, bad = _feed(rows)
    assert bad and min(f.onset_step for f in bad) == 30.0


@pytest.mark.parametrize("key", ["mfu", "time", "iter_time_ms", "samples_per_second", "train_runtime"])
def test_timing_fields_are_not_training_metrics(key: str) -> None:
    rows = [Row(float(i), {"loss": 2.0 - i * 0.01, key: math.nan if i % 3 else -100.0}) for i in range(60)]
    rd, bad = _feed(rows)
    assert not bad and rd.judgement().verdict is Verdict.HEALTHY


# --- the judge names the cause ---


def test_headline_is_the_earliest_bad_finding_with_the_rest_after_it() -> None:
    loss = _loss(425, 0.01, 4)
    loss += [loss[-1] * math.exp(0.05 * k) for k in range(1, 16)]
    rows = _rows(loss)
    rows += [Row(441.0, {"loss": math.nan}), Row(450.0, {"eval_loss": math.nan})]
    rd, _ = _feed(rows)
    j = rd.judgement()
    assert j.verdict is Verdict.BAD
    assert j.worst is not None and j.worst.kind == "divergence" and j.worst.onset_step <= 426
    assert j.reason.startswith("loss is diverging") and "then: nan in loss from 441" in j.reason
    assert "nan in eval_loss from 450" in j.reason


def test_one_eval_metric_is_never_both_overfit_and_eval_degradation() -> None:
    rows = []
    for e in range(1, 40):
        # Eval worsens early while train is flat (degradation), recovers, then overfits.
        rows.append(Row(float(e), {"loss": 1.0 if e < 15 else 1.0 / (e - 13)}))
        ev = [0.5, 0.45, 0.4, 0.48, 0.55, 0.6, 0.62, 0.3, 0.28, 0.27][e - 1] if e <= 10 else 0.27 - 0.001 * e
        if e > 20:
            ev = 0.25 + 0.03 * (e - 20)
        rows.append(Row(float(e), {"eval_loss": ev}))
    rd, _ = _feed(rows)
    kinds = {f.kind for f in rd.findings() if f.metric == "eval_loss" and f.kind != "nan"}
    assert len(kinds) == 1, rd.findings()


# --- the step axis is named ---


def test_findings_say_epoch_where_the_axis_is_epochs() -> None:
    rows = [Row(i / 10, {"loss": 2.0}) for i in range(10)] + [Row(1.0, {"loss": math.nan})]
    _, bad = _feed(rows, axis="epoch")
    assert "at epoch 1" in bad[0].message
    rd2, _ = _feed(rows)
    rd2.set_axis("epoch")
    assert "at epoch 1" in rd2.findings()[0].message and "step" not in rd2.findings()[0].message


# --- the column path judges as the row path does ---


def test_column_blocks_and_rows_give_the_same_findings() -> None:
    rnd = random.Random(9)
    loss = _loss(3000, 0.1, 5, diverge_at=2500)
    loss[1200] *= 5
    loss[2000] = math.nan
    rows = [
        Row(float(i), {"loss": v, "grad_norm": math.nan if i == 700 else 1.0 + 0.1 * rnd.random()})
        for i, v in enumerate(loss)
    ]
    by_rows = RunDetectors(RoleMap())
    for r in rows:
        by_rows.ingest(r, 0.0)
    by_cols = RunDetectors(RoleMap())
    for k in range(0, len(rows), 777):
        by_cols.ingest_columns(to_columns(rows[k : k + 777]), 0.0)
    assert by_rows.findings() == by_cols.findings()
    assert [f.message for f in by_rows.findings()] == [f.message for f in by_cols.findings()]


# --- the learning rate against the schedule the run declared ---


def _cosine(step: int, peak: float = 3e-4, warmup: int = 100, total: int = 2000) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / (total - warmup))))


_HF = {"lr_scheduler_type": "cosine", "warmup_steps": 100, "max_steps": 2000}


@pytest.mark.parametrize(
    ("name", "lr", "config", "anomaly"),
    [
        ("cosine as declared", _cosine, _HF, False),
        ("constant though cosine was declared", lambda s: 3e-4 * min(1.0, (s + 1) / 100), _HF, True),
        ("warm-up that never ends", lambda s: 3e-4 * (s + 1) / 5000, _HF, True),
        (
            "Megatron args, linear decay",
            lambda s: 1e-4 * (1 - s / 2000),
            {"lr_decay_style": "linear", "train_iters": 2000},
            False,
        ),
        ("W&B config values, constant", lambda s: 1e-3, {"lr_scheduler": {"value": "constant"}}, False),
        ("step decay (scheduled drops)", lambda s: 0.1 * 0.1 ** (s // 600), {}, False),
        ("ReduceLROnPlateau cuts", lambda s: 1e-3 / 2 ** (s // 333), {"scheduler": "ReduceLROnPlateau"}, False),
        (
            "warm restarts to the same peak",
            lambda s: 1e-3 * (0.5 + 0.5 * math.cos(math.pi * (s % 400) / 400)),
            {"lr_scheduler_type": "cosine_with_restarts"},
            False,
        ),
        (
            "warm restarts, nothing declared",
            lambda s: 1e-3 * (0.5 + 0.5 * math.cos(math.pi * (s % 400) / 400)),
            {},
            False,
        ),
        (
            "warm restarts to a decayed peak (timm cycle_decay)",
            lambda s: 1e-3 * 0.5 ** (s // 400) * (0.5 + 0.5 * math.cos(math.pi * (s % 400) / 400)),
            {"lr_scheduler": "CosineAnnealingWarmRestarts"},
            False,
        ),
        (
            "warm restarts declared, a warm-up run again after a resume",
            lambda s: (
                1e-3
                * (0.5 + 0.5 * math.cos(math.pi * (s % 400) / 400))
                * (min(1.0, (s - 1030 + 5) / 100) if 1030 <= s < 1130 else 1.0)
            ),
            {"lr_scheduler_type": "cosine_with_restarts"},
            True,
        ),
        (
            "one-cycle declared: climbs point after point by design",
            lambda s: 1e-3 * (s / 600 if s < 600 else max(0.0, (2000 - s) / 1400)) * (1 if s < 1000 else 0.5),
            {"scheduler": "OneCycleLR"},
            False,
        ),
        ("sudden jump above the peak", lambda s: _cosine(s) * (20 if s >= 1500 else 1), _HF, True),
        ("schedule reset after a resume", lambda s: _cosine(s if s < 1200 else s - 1200), _HF, True),
        ("warm-up still running under step decays", lambda s: 1e-5 * (s + 1) * (0.1 if s >= 1600 else 1.0), {}, True),
    ],
)
def test_lr_against_the_declared_schedule(
    name: str, lr: Callable[[int], float], config: dict[str, object], anomaly: bool
) -> None:
    rd = RunDetectors(RoleMap())
    rd.declare(config)
    for s in range(0, 2000, 5):
        rd.ingest(Row(float(s), {"learning_rate": lr(s)}), 0.0)
    found = [f for f in rd.findings() if f.kind == "lr_anomaly"]
    assert bool(found) is anomaly, (name, found)


def test_declared_schedule_learned_after_the_rows_still_counts() -> None:
    # `check` learns a log's TrainingArguments when it has read the whole file.
    rd = RunDetectors(RoleMap())
    for s in range(0, 2000, 5):
        rd.ingest(Row(float(s), {"learning_rate": 3e-4}), 0.0)
    assert not rd.findings()
    assert rd.declare(_HF)
    assert "not decaying" in rd.judgement().reason


# --- judged as a whole run: components of a loss, quality metrics beside an eval loss ---


def test_a_rising_loss_component_beside_a_falling_total_only_warns() -> None:
    rows = [
        Row(float(s), {"total_loss": 0.4 * math.exp(-s / 300), "loss_rpn_cls": 0.01 * (1 + min(s, 100) / 200)})
        for s in range(400)
    ]
    rd, bad = _feed(rows)
    assert not bad
    assert any(f.kind == "divergence" and f.metric == "loss_rpn_cls" for f in rd.findings())
    _, bad = _feed([Row(r.step, {"loss_rpn_cls": r.values["loss_rpn_cls"]}) for r in rows])
    assert bad and bad[0].kind == "divergence"


def test_a_worse_eval_loss_while_accuracy_still_improves_is_a_warning_not_a_stop() -> None:
    # DNABERT-2: eval_loss 0.23 -> 0.29 (over-confidence) while accuracy keeps rising.
    evals = [0.314, 0.255, 0.266, 0.232, 0.303, 0.272, 0.254, 0.283, 0.294, 0.294, 0.288]
    rows = []
    for i, ev in enumerate(evals):
        step = float(200 * (i + 1))
        rows.append(Row(step, {"loss": 0.46 * math.exp(-i / 4)}))
        rows.append(Row(step, {"eval_loss": ev, "eval_accuracy": 0.89 + 0.005 * i}))
    rd, bad = _feed(rows)
    assert not bad
    assert any(f.kind == "overfit" and "eval_accuracy has improved since" in f.message for f in rd.findings())
    rows = [Row(r.step, {k: v for k, v in r.values.items() if k != "eval_accuracy"}) for r in rows]
    _, bad = _feed(rows)
    assert bad and bad[0].kind == "overfit"


def test_flat_at_the_lr_floor_is_converged_only_if_the_loss_learned_first() -> None:
    rnd = random.Random(8)
    lr = [1e-3 * (1 - i / 300) if i < 280 else 1e-5 for i in range(400)]
    learned = [2.0 + 3.0 * math.exp(-i / 40) + rnd.gauss(0, 0.005) for i in range(400)]
    rd = RunDetectors(RoleMap())
    rd.ingest_many([Row(float(i), {"loss": v, "lr": lr[i]}) for i, v in enumerate(learned)], 0.0)
    assert "converged" in {f.kind for f in rd.findings()} and rd.judgement().verdict is Verdict.HEALTHY
    stuck = [5.0 + rnd.gauss(0, 0.005) for _ in range(400)]
    rd = RunDetectors(RoleMap())
    rd.ingest_many([Row(float(i), {"loss": v, "lr": lr[i]}) for i, v in enumerate(stuck)], 0.0)
    assert "plateau" in {f.kind for f in rd.findings() if f.active}


def test_the_schedule_saved_beside_a_metrics_file_is_the_declared_one(tmp_path: Path) -> None:
    # A run folder: metrics.jsonl and the config.json the training script saved next to it.
    (tmp_path / "config.json").write_text(
        json.dumps({"lr_scheduler": "linear", "warmup_steps": 30, "max_steps": 600, "learning_rate": 0.2})
    )
    rows = [{"step": s, "train/loss": 2.0 - s / 1000, "train/lr": 0.2 * min(1.0, (s + 1) / 30)} for s in range(600)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    a = check_target(str(tmp_path / "metrics.jsonl"), Config())
    assert "lr_anomaly" in {f.kind for f in a.findings()}
    assert config_beside(str(tmp_path / "metrics.jsonl"))["lr_scheduler"] == "linear"


def test_a_total_loss_that_reads_exactly_zero_beside_nan_gradients_is_nan_at_its_first_zero() -> None:
    # HF Trainer's nan_inf_filter: NaN steps are left out of the logged average, which then reads 0.0.
    rows = [Row(float(s), {"loss": 1.0 - s / 400, "grad_norm": 0.3}) for s in range(200)]
    rows += [Row(float(s), {"loss": 0.0, "grad_norm": math.nan}) for s in range(200, 230)]
    _, bad = _feed(rows)
    assert bad and min(f.onset_step for f in bad) == 200.0 and {f.kind for f in bad} == {"nan"}
    # A loss component may be exactly 0 (no objects in a batch); that is not NaN.
    rows = [Row(float(s), {"loss_mask": 0.0 if s % 7 == 0 and s > 20 else 0.5 - s / 1000}) for s in range(200)]
    _, bad = _feed(rows)
    assert not bad


def test_a_gradient_norm_climbing_steadily_far_above_its_usual_level_is_an_explosion() -> None:
    rnd = random.Random(12)
    gn = [0.5 * math.exp(rnd.gauss(0, 0.1)) for _ in range(400)]
    gn += [0.5 * math.exp(0.15 * k + rnd.gauss(0, 0.1)) for k in range(1, 60)]
    rd, _ = _feed([Row(float(i), {"grad_norm": v}) for i, v in enumerate(gn)])
    boom = [f for f in rd.findings() if f.kind == "grad_explosion"]
    assert boom and boom[0].onset_step >= 400 and boom[0].step <= 430
    rnd = random.Random(13)
    drift = [0.3 * math.exp(i / 2000 + rnd.gauss(0, 0.2)) for i in range(4000)]  # healthy slow growth
    rd, _ = _feed([Row(float(i), {"grad_norm": v}) for i, v in enumerate(drift)])
    assert not [f for f in rd.findings() if f.kind == "grad_explosion"]


def test_reinforcement_learning_losses_are_judged_for_nan_only() -> None:
    # PPO: the value loss follows the returns' scale; it jumps when rewards change sign.
    rows = [
        Row(
            float(s),
            {
                "train/value_loss": 9000.0 * math.exp(-s / 20) + (18000.0 if s > 80 else 0.0),
                "train/policy_gradient_loss": -0.01 * math.sin(s),
                "rollout/ep_rew_mean": -90.0 + s,
            },
        )
        for s in range(120)
    ]
    rd, bad = _feed(rows)
    assert not bad and rd.judgement().verdict is Verdict.HEALTHY
    rd, bad = _feed([*rows, Row(120.0, {"train/value_loss": math.nan})])
    assert [f.kind for f in bad] == ["nan"]


@pytest.mark.parametrize(
    ("config", "lr", "anomaly"),
    [
        # YOLO opt.yaml beside results.csv: the axis counts epochs, the config both epochs and steps.
        ({"epochs": "171", "cos_lr": "true", "max_steps": 1368}, lambda e: 4e-3 * min(1.0, (e + 1) / 2), True),
        (
            {"epochs": "171", "cos_lr": "true", "max_steps": 1368},
            lambda e: 4e-3 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * e / 171))),
            False,
        ),
        ({"epochs": "171", "cos_lr": "false"}, lambda e: 4e-3 * ((1 - e / 171) * 0.99 + 0.01), False),
        ({"epochs": "171", "cos_lr": "false"}, lambda e: 4e-3, True),  # YOLO decays linearly to lrf
    ],
)
def test_an_epoch_axis_is_judged_against_the_declared_epochs(
    config: dict[str, object], lr: Callable[[int], float], anomaly: bool
) -> None:
    rd = RunDetectors(RoleMap())
    rd.declare(config)
    rd.set_axis("epoch")
    for e in range(171):
        rd.ingest(Row(float(e), {"x/lr0": lr(e)}), 0.0)
    found = [f for f in rd.findings() if f.kind == "lr_anomaly"]
    assert bool(found) is anomaly, found
    if found:
        assert found[0].step < 0.4 * 171 and "171 epochs" in found[0].message


@pytest.mark.parametrize("noise", [0.02, 0.1, 0.3])
def test_an_eval_worse_than_its_best_during_the_lr_warmup_is_no_stop(noise: float) -> None:
    # A tiny validation set evaluated every epoch while the LR warms up for 20 epochs: an early lucky
    # eval is no reference; after the warm-up the eval improves on its operating point.
    rnd = random.Random(int(noise * 100))
    rows = []
    for e in range(80):
        lr = 2e-3 * min(1.0, (e + 1) / 20) * (1 - max(0, e - 20) / 100)
        ev = (1.4 if e == 1 else 3.5 - 2.0 * max(0, e - 20) / 60) * math.exp(rnd.gauss(0, noise))
        rows.append(Row(float(e), {"train/loss": 3.0 * math.exp(-e / 40), "lr/pg0": lr, "val/loss": ev}))
    _, bad = _feed(rows)
    assert not bad, bad
    # The same eval rise after the warm-up (the LR decaying, the early best made at the operating
    # point) is bad.
    rows = [Row(r.step, {**r.values, "lr/pg0": 2e-3 * (1 - r.step / 100)}) for r in rows]
    _, bad = _feed(rows)
    assert bad and bad[0].kind in ("overfit", "eval_degradation")


@pytest.mark.parametrize("noise", [0.01, 0.05, 0.2])
def test_a_loss_rising_while_the_lr_climbs_through_warmup_warns_then_is_bad_if_it_stays_up(noise: float) -> None:
    # A detection head's loss grows from near zero during a 300-step warm-up, then falls: no stop.
    rnd = random.Random(int(noise * 1000))
    rows = []
    for s in range(0, 1500, 5):
        lr = 4e-3 * min(1.0, (s + 5) / 300)
        loss = (0.07 + 1.4 * s / 100 if s < 100 else 1.5 * math.exp(-(s - 100) / 800)) * math.exp(rnd.gauss(0, noise))
        rows.append(Row(float(s), {"loss": loss, "lr": lr}))
    _, bad = _feed(rows)
    assert not bad, bad
    # A loss that learned, then rose during the warm-up and stays up is a divergence: bad once the
    # LR stops rising (it was only a warning while the LR climbed).
    rows = [
        Row(r.step, {**r.values, "loss": (2.0 - r.step / 100 if r.step < 100 else 6.0) * math.exp(rnd.gauss(0, noise))})
        for r in rows
    ]
    _, bad = _feed(rows)
    assert bad and bad[0].kind == "divergence" and bad[0].evidence.get("escalated_step", bad[0].step) >= 300 - 5


def test_a_total_loss_printed_with_few_decimals_that_rounds_to_zero_is_not_hidden_nan() -> None:
    # A PaiNN job's stdout ('Train Loss: 0.0000', bench/corpus/real/painn-...-rounds-to-zero-healthy):
    # the loss is below the 4th decimal, so it prints 0 between 0.0001 and 0.0004 values.
    vals = [0.0212, 0.0, 0.0, 0.0, 0.0001, 0.0001, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0004]
    vals += [0.0001 if k % 9 == 8 else 0.0 for k in range(120)]
    _, bad = _feed([Row(float(i), {"Train Loss": v}) for i, v in enumerate(vals)])
    assert not [f for f in bad if f.kind == "nan"]
    # the HF nan_inf_filter 0 still is NaN, and so is a 0 after a NaN that never recovered
    rows = [Row(float(s), {"loss": 1.0 - s / 400}) for s in range(60)] + [Row(60.0, {"loss": 0.0})]
    _, bad = _feed(rows)
    assert [f.kind for f in bad] == ["nan"]


def test_an_eval_wobbling_just_above_its_best_then_one_noisy_eval_is_not_bad() -> None:
    # A PaiNN run's per-epoch validation loss (bench/corpus/real/painn-...-frozen-tail-healthy): best
    # 0.0291, then evaluations 1-15% above it and one at +40%; the training loss keeps falling.
    evals = [0.102, 0.073, 0.082, 0.091, 0.054, 0.039, 0.038, 0.040, 0.041, 0.034, 0.032, 0.033, 0.034]
    evals += [0.033, 0.030, 0.033, 0.0291, 0.032, 0.0427, 0.0336, 0.0307, 0.0315, 0.0317, 0.0316, 0.0408, 0.0348]
    rows = []
    for e, ev in enumerate(evals):
        rows.append(Row(float(e), {"train_loss": 0.17 * math.exp(-e / 8) + 0.02, "eval_loss": ev}))
    _, bad = _feed(rows)
    assert not bad
    # the same run overfitting for real: every evaluation beyond the margin is bad after the patience
    rising = [Row(float(17 + k), {"train_loss": 0.02, "eval_loss": 0.0291 * (1.15 + 0.1 * k)}) for k in range(6)]
    rows = rows[:17] + rising
    _, bad = _feed(rows)
    assert bad and bad[0].kind == "overfit"
