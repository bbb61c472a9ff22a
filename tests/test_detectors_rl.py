"""The RL / LLM lens (detectors/rl.py): labelled seeded synthetic series at several noise levels, and real runs."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from detectors.rl import kind_of
from detectors.run import RunDetectors
from monitor.analysis import RunAnalysis, RunInfo
from monitor.check import check_target
from monitor.config import Config
from monitor.diagnosis import Confidence, Hypothesis, diagnose_analysis
from monitor.model import Finding, Role, Row, Severity, Verdict
from monitor.roles import RoleMap, classify

RL_KINDS = {"kl_anomaly", "entropy_collapse", "clip_anomaly", "reward_hacking"}
NOISES = (0.05, 0.2, 0.5)
T0 = 1_700_000_000.0
CORPUS = Path(__file__).resolve().parents[1] / "bench" / "corpus" / "real"

Series = Callable[[random.Random, int, float], dict[str, float]]


def _run(series: Series, noise: float, seed: int, n: int = 200, evals: int = 0) -> RunDetectors:
    rnd = random.Random(seed)
    rd = RunDetectors(RoleMap())
    for i in range(n):
        values = series(rnd, i, noise)
        if evals and i % evals:
            values = {k: v for k, v in values.items() if not k.startswith("eval/")}
        rd.ingest(Row(float(i + 1), values), 0.0)
    return rd


def _ln(rnd: random.Random, noise: float) -> float:
    """Multiplicative log-normal noise."""
    return math.exp(rnd.gauss(0.0, noise))


def _grpo(rnd: random.Random, i: int, noise: float) -> dict[str, float]:
    """A healthy GRPO run: reward and accuracy improve, the KL to the reference grows, entropy eases down."""
    t = i / 200
    return {
        "loss": rnd.gauss(0.0, 0.02),
        "reward": 0.2 + 0.5 * t + rnd.gauss(0.0, noise * 0.3),
        "reward_std": 0.3 * _ln(rnd, noise),
        "frac_reward_zero_std": min(1.0, max(0.0, 0.25 + rnd.gauss(0.0, noise * 0.2))),
        "kl": 1e-4 * 10 ** (2.5 * min(1.0, 2 * t)) * _ln(rnd, noise),
        "entropy": (0.6 - 0.3 * t) * _ln(rnd, noise * 0.5),
        "clip_ratio/region_mean": min(1.0, 0.02 * _ln(rnd, noise)),
        "grad_norm": 0.3 * _ln(rnd, noise),
        "learning_rate": 1e-6,
        "eval/accuracy": 0.3 + 0.3 * t + rnd.gauss(0.0, noise * 0.03),
    }


def _rl_findings(rd: RunDetectors, kind: str | None = None) -> list[Finding]:
    return [
        f
        for f in rd.findings()
        if (f.kind in RL_KINDS or f.metric == "frac_reward_zero_std")
        and (kind is None or f.kind == kind)
        and f.severity >= Severity.WARN
    ]


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("seed", range(3))
def test_healthy_grpo_run_raises_nothing(noise: float, seed: int) -> None:
    rd = _run(_grpo, noise, seed, evals=20)
    assert _rl_findings(rd) == []
    assert rd.judgement().verdict is Verdict.HEALTHY, rd.judgement().reason


@pytest.mark.parametrize("noise", NOISES)
def test_kl_flat_near_zero_is_too_conservative(noise: float) -> None:
    def s(rnd: random.Random, i: int, nz: float) -> dict[str, float]:
        return {**_grpo(rnd, i, nz), "kl": 2e-4 * _ln(rnd, nz)}

    rd = _run(s, noise, 1)
    got = _rl_findings(rd, "kl_anomaly")
    assert got and got[-1].active and got[-1].severity is Severity.WARN
    assert "conservative" in got[-1].message
    assert rd.judgement().verdict is Verdict.UNSURE


@pytest.mark.parametrize("noise", NOISES)
def test_kl_spiking_repeatedly_is_too_aggressive(noise: float) -> None:
    def s(rnd: random.Random, i: int, nz: float) -> dict[str, float]:
        kl = 0.02 * _ln(rnd, nz) * (60.0 if i in (120, 131, 140, 152) else 1.0)
        return {**_grpo(rnd, i, nz), "kl": kl}

    rd = _run(s, noise, 2, n=160)
    got = _rl_findings(rd, "kl_anomaly")
    assert got and "spiked" in got[-1].message and got[-1].severity is Severity.WARN
    assert rd.judgement().verdict is not Verdict.BAD


def test_one_kl_spike_is_not_a_finding() -> None:
    def s(rnd: random.Random, i: int, nz: float) -> dict[str, float]:
        return {**_grpo(rnd, i, nz), "kl": 0.02 * _ln(rnd, nz) * (60.0 if i == 120 else 1.0)}

    assert _rl_findings(_run(s, 0.2, 2)) == []


@pytest.mark.parametrize("noise", NOISES)
def test_ppo_update_kl_far_above_target_is_too_aggressive(noise: float) -> None:
    def s(rnd: random.Random, i: int, nz: float) -> dict[str, float]:
        return {
            "actor/ppo_kl": (0.01 if i < 100 else 0.4) * _ln(rnd, nz),
            "actor/pg_clipfrac": 0.05 * _ln(rnd, nz),
            "critic/score/mean": rnd.gauss(1.0, nz),
        }

    got = _rl_findings(_run(s, noise, 3), "kl_anomaly")
    assert got and "above" in got[-1].message and got[-1].onset_step > 100


@pytest.mark.parametrize("noise", NOISES)
def test_entropy_collapse_to_nothing_is_bad(noise: float) -> None:
    def s(rnd: random.Random, i: int, nz: float) -> dict[str, float]:
        ent = 0.6 * math.exp(-max(0, i - 40) / 8) if i < 100 else 3e-5
        return {**_grpo(rnd, i, nz), "entropy": max(ent, 3e-5) * _ln(rnd, nz)}

    rd = _run(s, noise, 4)
    got = _rl_findings(rd, "entropy_collapse")
    assert got and got[-1].severity is Severity.BAD and "collapsed" in got[-1].message
    assert 40 <= got[-1].onset_step <= 100
    assert rd.judgement().verdict is Verdict.BAD


@pytest.mark.parametrize("noise", NOISES)
def test_entropy_collapsing_briefly_is_only_a_warning(noise: float) -> None:
    """Down 30x for a few points, then back: a warning while it lasts, never bad."""

    def s(rnd: random.Random, i: int, nz: float) -> dict[str, float]:
        ent = 0.02 if 120 <= i < 135 else 0.6
        return {**_grpo(rnd, i, nz), "entropy": ent * _ln(rnd, nz * 0.3)}

    rd = _run(s, noise, 5, n=180)
    got = _rl_findings(rd, "entropy_collapse")
    assert got and all(f.severity is Severity.WARN for f in got)
    assert not got[-1].active
    assert rd.judgement().verdict is Verdict.HEALTHY


def test_negative_entropy_is_differential_and_not_judged() -> None:
    def s(rnd: random.Random, i: int, nz: float) -> dict[str, float]:
        return {**_grpo(rnd, i, nz), "entropy": -1.0 - i * 0.1}

    assert _rl_findings(_run(s, 0.2, 0), "entropy_collapse") == []


@pytest.mark.parametrize("noise", NOISES)
def test_clip_fraction_far_above_its_usual_range(noise: float) -> None:
    def s(rnd: random.Random, i: int, nz: float) -> dict[str, float]:
        frac = 0.05 if i < 120 else 0.6
        return {**_grpo(rnd, i, nz), "clip_ratio/region_mean": min(1.0, frac * _ln(rnd, nz * 0.5))}

    got = _rl_findings(_run(s, noise, 6), "clip_anomaly")
    assert got and got[-1].severity is Severity.WARN and got[-1].onset_step >= 120


def test_clip_fraction_steadily_at_ppo_usual_level_is_fine() -> None:
    def s(rnd: random.Random, i: int, nz: float) -> dict[str, float]:
        return {**_grpo(rnd, i, nz), "clip_ratio/region_mean": min(1.0, 0.25 * _ln(rnd, nz))}

    assert _rl_findings(_run(s, 0.5, 7), "clip_anomaly") == []


@pytest.mark.parametrize("noise", NOISES)
def test_no_reward_spread_in_groups_is_a_plateau(noise: float) -> None:
    def s(rnd: random.Random, i: int, nz: float) -> dict[str, float]:
        zero = 1.0 if rnd.random() < 0.85 + 0.1 * (1 - nz) else 0.75
        return {**_grpo(rnd, i, nz), "frac_reward_zero_std": zero, "reward": 0.01 * rnd.random()}

    got = _rl_findings(_run(s, noise, 8), "plateau")
    assert got and "no learning signal" in got[-1].message and got[-1].severity is Severity.WARN


@pytest.mark.parametrize("noise", NOISES)
def test_reward_up_while_accuracy_down_is_reward_hacking(noise: float) -> None:
    def s(rnd: random.Random, i: int, nz: float) -> dict[str, float]:
        acc = 0.3 + 0.3 * i / 100 if i < 100 else 0.6 - 0.3 * (i - 100) / 100
        return {**_grpo(rnd, i, nz), "reward": 0.2 + 0.8 * i / 200 + rnd.gauss(0, nz * 0.3), "eval/accuracy": acc}

    rd = _run(s, noise, 9, evals=20)
    got = _rl_findings(rd, "reward_hacking")
    assert got and got[-1].severity is Severity.WARN and got[-1].metric == "eval/accuracy"
    assert "reward hacking" in got[-1].message and got[-1].evidence["reward_key"] == "reward"
    assert rd.judgement().verdict is not Verdict.BAD


def test_accuracy_down_with_reward_down_is_not_reward_hacking() -> None:
    def s(rnd: random.Random, i: int, nz: float) -> dict[str, float]:
        acc = 0.3 + 0.3 * i / 100 if i < 100 else 0.6 - 0.3 * (i - 100) / 100
        rew = 0.2 + 0.5 * i / 100 if i < 100 else 0.7 - 0.5 * (i - 100) / 100
        return {**_grpo(rnd, i, nz), "reward": rew + rnd.gauss(0, 0.02), "eval/accuracy": acc}

    assert _rl_findings(_run(s, 0.2, 9, evals=20), "reward_hacking") == []


def test_kl_and_entropy_without_any_policy_metric_say_nothing() -> None:
    """A VAE's `kl` and a classifier's `entropy` are not a policy's: the lens stays silent."""

    def s(rnd: random.Random, i: int, nz: float) -> dict[str, float]:
        return {"loss": 2.0 * _ln(rnd, nz), "kl": 1e-5 * _ln(rnd, nz), "entropy": 1e-6 if i > 50 else 1.0}

    rd = _run(s, 0.2, 0)
    assert _rl_findings(rd) == []


def test_restart_keeps_rl_findings_as_history() -> None:
    rd = _run(lambda rnd, i, nz: {**_grpo(rnd, i, nz), "kl": 2e-4 * _ln(rnd, nz)}, 0.1, 1)
    assert any(f.active for f in _rl_findings(rd, "kl_anomaly"))
    rd.ingest(Row(5.0, {"kl": 0.01, "reward": 0.3, "loss": 0.0}), 0.0)
    got = _rl_findings(rd, "kl_anomaly")
    assert got and not any(f.active for f in got) and "restarted" in got[-1].message
    rd.set_axis("epoch")


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("kl", "kl_ref"),
        ("objective/kl", "kl_ref"),
        ("actor/ppo_kl", "kl_update"),
        ("train/approx_kl", "kl_update"),
        ("entropy", "entropy"),
        ("actor/entropy", "entropy"),
        ("policy/entropy_avg", "entropy"),
        ("train/entropy_loss", None),
        ("clipfrac", "clip"),
        ("train/clip_fraction", "clip"),
        ("clip_ratio/region_mean", "clip"),
        ("actor/pg_clipfrac", "clip"),
        ("completions/clipped_ratio", None),
        ("reward", "reward"),
        ("objective/rlhf_reward", "reward"),
        ("rewards/accuracies", None),
        ("frac_reward_zero_std", "zero_std"),
        ("eval/accuracy", "task"),
        ("kl_coef", None),
        ("loss", None),
    ],
)
def test_rl_keys_by_framework_naming(key: str, kind: str | None) -> None:
    assert kind_of(key, classify(key)) == kind


def test_role_of_task_keys() -> None:
    assert kind_of("success_rate", Role.OTHER) == "task"


def _cases(pattern: str) -> list[Path]:
    return sorted(p for p in CORPUS.glob(pattern) if (p / "label.toml").is_file())


@pytest.mark.parametrize("case", _cases("trl-*"), ids=lambda p: p.name)
def test_real_trl_runs_are_not_judged_bad(case: Path) -> None:
    files = [p for p in case.iterdir() if p.name != "label.toml"]
    for f in files:
        a = check_target(str(f), Config(), now=f.stat().st_mtime + 60)
        j = a.judgement()
        assert j.verdict is not Verdict.BAD, j.reason
        bad = [x for x in j.findings if x.kind in RL_KINDS and x.severity is Severity.BAD]
        assert bad == []
        if "healthy" in case.name:
            assert [x for x in j.findings if x.kind in RL_KINDS] == []


def test_real_sparse_reward_grpo_run_shows_no_learning_signal() -> None:
    (case,) = _cases("trl-grpo-trainer-state-sparse-reward*")
    a = check_target(str(case / "trainer_state.json"), Config())
    fs = [f for f in a.judgement().findings if f.metric == "frac_reward_zero_std"]
    assert fs and fs[0].kind == "plateau" and fs[0].severity is Severity.WARN and fs[0].onset_step <= 30


# Diagnosis (monitor/diagnosis/rl.py): the lens's findings become hypotheses with evidence and a fix.


def _diagnose(series: Series, noise: float, seed: int, n: int = 200, evals: int = 0) -> tuple[Hypothesis, ...]:
    rnd = random.Random(seed)
    a = RunAnalysis(RunInfo(target="t", name="t"))
    rows = []
    for i in range(n):
        values = series(rnd, i, noise)
        if evals and i % evals:
            values = {k: v for k, v in values.items() if not k.startswith("eval/")}
        rows.append(Row(float(i + 1), values, T0 + i))
    a.add_rows(rows, T0 + n)
    return diagnose_analysis(a)


def _ids(hs: tuple[Hypothesis, ...]) -> list[str]:
    return [h.cause_id for h in hs]


def test_diagnosis_of_a_healthy_grpo_run_is_empty() -> None:
    assert [h for h in _diagnose(_grpo, 0.2, 0, evals=20) if h.cause_id.startswith("rl_")] == []


def test_diagnosis_no_learning_signal_is_high_with_a_flat_reward() -> None:
    def s(rnd: random.Random, i: int, nz: float) -> dict[str, float]:
        zero = 1.0 if rnd.random() < 0.9 else 0.75
        return {**_grpo(rnd, i, nz), "frac_reward_zero_std": zero, "reward": 0.05 * (rnd.random() < 0.1)}

    hs = _diagnose(s, 0.2, 1)
    h = next(h for h in hs if h.cause_id == "rl_no_learning_signal")
    assert h.confidence is Confidence.HIGH and "frac_reward_zero_std" in h.evidence
    assert h.fix and h.expect and h.verify and h.steps


def test_diagnosis_entropy_collapse() -> None:
    def s(rnd: random.Random, i: int, nz: float) -> dict[str, float]:
        ent = 0.6 * math.exp(-max(0, i - 40) / 8) if i < 100 else 3e-5
        return {**_grpo(rnd, i, nz), "entropy": max(ent, 3e-5) * _ln(rnd, nz), "reward": 0.3 + rnd.gauss(0, 0.02)}

    hs = _diagnose(s, 0.2, 4)
    assert hs[0].cause_id == "rl_entropy_collapse" and hs[0].confidence is Confidence.HIGH
    assert "collapsed" in hs[0].cause


def test_diagnosis_reward_hacking_is_never_high() -> None:
    def s(rnd: random.Random, i: int, nz: float) -> dict[str, float]:
        acc = 0.3 + 0.3 * i / 100 if i < 100 else 0.6 - 0.3 * (i - 100) / 100
        return {**_grpo(rnd, i, nz), "reward": 0.2 + 0.8 * i / 200 + rnd.gauss(0, 0.05), "eval/accuracy": acc}

    hs = _diagnose(s, 0.2, 9, evals=20)
    h = next(h for h in hs if h.cause_id == "rl_reward_hacking")
    assert h.confidence is Confidence.MEDIUM and "eval/accuracy" in h.evidence and h.settle


def test_diagnosis_kl_too_low_and_too_high() -> None:
    low = _diagnose(lambda rnd, i, nz: {**_grpo(rnd, i, nz), "kl": 2e-4 * _ln(rnd, nz), "reward": 0.3}, 0.2, 1)
    assert "rl_updates_too_conservative" in _ids(low)

    def spiky(rnd: random.Random, i: int, nz: float) -> dict[str, float]:
        return {**_grpo(rnd, i, nz), "kl": 0.02 * _ln(rnd, nz) * (60.0 if i in (120, 131, 140, 152) else 1.0)}

    assert "rl_updates_too_aggressive" in _ids(_diagnose(spiky, 0.2, 2, n=160))
