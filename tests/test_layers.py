"""Per-layer gradients (detectors/layers.py): dead, exploding and vanishing layers, from per-layer grad-norm
scalars and from W&B gradient histograms in a real offline `.wandb` written by the SDK."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from detectors.layers import layer_of
from detectors.run import RunDetectors
from monitor.analysis import RunAnalysis, RunInfo
from monitor.check import check_target
from monitor.config import Config
from monitor.diagnosis import Confidence, Hypothesis, diagnose_analysis
from monitor.model import Finding, Role, Row, Severity, Verdict
from monitor.roles import RoleMap, classify
from monitor.wandb.reader import histogram_norm, read_wandb_file
from tests.test_wandb_log import write_offline_run

LAYERS = [f"layer{i}.weight" for i in range(6)]


def _layer_findings(rd: RunDetectors) -> list[Finding]:
    return [f for f in rd.findings() if layer_of(f.metric, Role.OTHER) is not None and f.severity >= Severity.WARN]


def _run(norm: object, n: int = 120, seed: int = 0, noise: float = 0.2, prefix: str = "grad_norm/") -> RunDetectors:
    rnd = random.Random(seed)
    rd = RunDetectors(RoleMap())
    for i in range(n):
        values = {"loss": 2.0 / (1 + i / 20) * (1 + rnd.gauss(0, 0.02)), "grad_norm": 1.0 + rnd.gauss(0, 0.05)}
        for j, name in enumerate(LAYERS):
            values[prefix + name] = norm(i, j) * math.exp(rnd.gauss(0, noise))  # type: ignore[operator]
        rd.ingest(Row(float(i), values), 0.0)
    return rd


@pytest.mark.parametrize("noise", (0.05, 0.2, 0.5))
def test_healthy_layers_raise_nothing(noise: float) -> None:
    rd = _run(lambda i, j: 0.1 * 2**j, noise=noise)
    assert _layer_findings(rd) == []
    assert rd.judgement().verdict is Verdict.HEALTHY


@pytest.mark.parametrize("noise", (0.05, 0.2, 0.5))
def test_a_layer_whose_gradients_go_to_zero_is_dead(noise: float) -> None:
    rd = _run(lambda i, j: 0.0 if j == 2 and i >= 40 else 0.1, noise=noise)
    got = _layer_findings(rd)
    assert len(got) == 1 and got[0].metric == "grad_norm/layer2.weight" and got[0].evidence["dead_layer"]
    assert got[0].kind == "grad_vanishing" and got[0].onset_step == 40 and got[0].severity is Severity.WARN
    assert rd.judgement().verdict is Verdict.UNSURE


def test_every_layer_zero_is_not_one_dead_layer() -> None:
    """All gradients zero at once (a logging artefact, or a frozen model) is not a dead layer."""
    rd = _run(lambda i, j: 0.0)
    assert _layer_findings(rd) == []


@pytest.mark.parametrize("noise", (0.05, 0.2))
def test_one_layer_exploding(noise: float) -> None:
    rd = _run(lambda i, j: 0.1 * (300.0 if j == 5 and i >= 80 else 1.0), noise=noise)
    got = _layer_findings(rd)
    assert [f.kind for f in got] == ["grad_explosion"] and got[0].metric == "grad_norm/layer5.weight"


def test_one_layer_vanishing() -> None:
    rd = _run(lambda i, j: 0.1 * (1e-5 if j == 0 and i >= 60 else 1.0), noise=0.1)
    got = _layer_findings(rd)
    # Said of the layer over time, and (it is the input layer) across depth.
    assert {f.kind for f in got} == {"grad_vanishing"} and {f.metric for f in got} == {"grad_norm/layer0.weight"}
    assert any("vanishing" in f.message for f in got) and any("towards the input" in f.message for f in got)


@pytest.mark.parametrize("noise", (0.05, 0.2, 0.5))
def test_gradients_vanishing_towards_the_input_layers(noise: float) -> None:
    """Norms 10x smaller per layer from the output (layer5) to the input (layer0): 1e5 across the stack."""
    rd = _run(lambda i, j: 0.1 * 10.0 ** (j - 5), noise=noise)
    got = _layer_findings(rd)
    assert [f.kind for f in got] == ["grad_vanishing"], [f.message for f in got]
    assert got[0].metric == "grad_norm/layer0.weight" and "towards the input" in got[0].message
    assert got[0].evidence["output_layer"] == "grad_norm/layer5.weight" and got[0].onset_step <= 3


def test_a_steep_but_normal_depth_profile_is_fine() -> None:
    rd = _run(lambda i, j: 0.1 * 3.0 ** (j - 5), noise=0.3)  # 243x across six layers: within bounds
    assert _layer_findings(rd) == []


@pytest.mark.parametrize(
    ("key", "layer"),
    [
        ("gradients/encoder.0.weight", "encoder.0.weight"),
        ("grad_2.0_norm/layer.weight", "layer.weight"),
        ("grad_norm/fc1.bias", "fc1.bias"),
        ("grad_norm", None),
        ("train/grad_norm", None),
        ("parameters/fc1.weight", None),
    ],
)
def test_per_layer_keys(key: str, layer: str | None) -> None:
    assert layer_of(key, classify(key)) == layer


def test_histogram_norm() -> None:
    # values 1 at -2, 2 at 0, 1 at +2 (bin centres): sqrt(4 + 0 + 4)
    assert histogram_norm({"_type": "histogram", "values": [1, 2, 1], "bins": [-3, -1, 1, 3]}) == pytest.approx(8**0.5)
    # wandb.watch's histogram of an all-zero gradient: one bin [0, 0]
    assert histogram_norm({"_type": "histogram", "values": [100], "bins": [0.0, 0.0]}) == 0.0
    assert histogram_norm({"_type": "histogram", "packedBins": {"min": -1, "size": 1, "count": 2}, "values": [1, 1]})
    assert histogram_norm({"_type": "table", "values": [1]}) is None
    assert histogram_norm({"_type": "histogram", "values": [1, 2], "bins": [0, 1]}) is None


# What `wandb.watch(model, log="gradients")` logs (its torch hook, without needing torch here): per
# parameter, a wandb.Histogram of the gradient (64 bins between its min and max; one bin [v, v] when all
# values are equal). Layer `fc1.weight` stops getting gradients at step 30 (a dead layer).
WATCH_HIST = """
def hist(g):
    lo, hi = float(g.min()), float(g.max())
    if lo == hi:
        return wandb.Histogram(np_histogram=([g.size], [lo, hi]))
    counts, edges = np.histogram(g, bins=64, range=(lo, hi))
    return wandb.Histogram(np_histogram=(counts.tolist(), edges.tolist()))
"""
WATCH = (
    """
import numpy as np, wandb
rng = np.random.default_rng(0)
run = wandb.init(mode="offline", project="runwatch-test", config={"lr": 0.001})
"""
    + WATCH_HIST
    + """
for i in range(80):
    row = {"train/loss": 2.0 / (1 + i / 10) * (1 + 0.02 * rng.standard_normal())}
    for name, scale in (("fc0.weight", 1e-2), ("fc1.weight", 1e-2), ("fc2.weight", 1e-1), ("fc2.bias", 1e-1)):
        g = rng.standard_normal(256) * scale
        if name == "fc1.weight" and i >= 30:
            g = np.zeros(256)
        row["gradients/" + name] = hist(g)
    run.log(row)
run.finish()
"""
)


@pytest.fixture(scope="module")
def watched_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_offline_run(tmp_path_factory.mktemp("wandb-watch"), WATCH)


def test_real_wandb_histograms_become_per_layer_norms(watched_run: Path) -> None:
    events, _ = read_wandb_file(watched_run)
    rows = [e for e in events if isinstance(e, Row)]
    assert len(rows) == 80
    first, late = rows[0].values, rows[-1].values
    assert 0.05 < first["gradients/fc0.weight"] < 0.3  # ~ 1e-2 * sqrt(256)
    assert 0.5 < first["gradients/fc2.weight"] < 3.0
    assert late["gradients/fc1.weight"] == 0.0 and first["gradients/fc1.weight"] > 0
    # The SDK writes each histogram as nested items (`K/_type` = "histogram", `K/values`, `K/bins`).
    assert b'"histogram"' in watched_run.read_bytes()


def test_real_wandb_dead_layer_is_found(watched_run: Path) -> None:
    a = check_target(str(watched_run), Config())
    j = a.judgement()
    dead = [f for f in j.findings if f.metric == "gradients/fc1.weight" and f.evidence.get("dead_layer")]
    assert dead and dead[0].onset_step == 30 and dead[0].severity is Severity.WARN
    others = [f for f in j.findings if f.metric.startswith("gradients/") and f.metric != "gradients/fc1.weight"]
    assert [f for f in others if f.severity >= Severity.WARN] == []
    assert j.verdict is Verdict.UNSURE


def test_api_history_histograms_become_per_layer_norms() -> None:
    from monitor.sources.wandb_poller import _numeric_values

    row = {
        "_step": 3,
        "loss": 0.5,
        "gradients/fc.weight": {"_type": "histogram", "values": [1, 2, 1], "bins": [-3, -1, 1, 3]},
        "media": {"_type": "image-file", "path": "x.png"},
    }
    assert _numeric_values(row) == {"loss": 0.5, "gradients/fc.weight": pytest.approx(8**0.5)}


def _diagnosis(rd_norm: object) -> list[Hypothesis]:
    a = RunAnalysis(RunInfo(target="t", name="t"))
    rnd = random.Random(0)
    rows = []
    for i in range(120):
        values = {"loss": 2.0 / (1 + i / 20) * (1 + rnd.gauss(0, 0.02)), "grad_norm": 1.0 + rnd.gauss(0, 0.05)}
        for j, name in enumerate(LAYERS):
            values["gradients/" + name] = rd_norm(i, j) * math.exp(rnd.gauss(0, 0.1))  # type: ignore[operator]
        rows.append(Row(float(i), values, 1_700_000_000.0 + i))
    a.add_rows(rows, 1_700_000_200.0)
    return list(diagnose_analysis(a))


def test_diagnosis_names_the_dead_layer_not_vanishing_gradients() -> None:
    hs = _diagnosis(lambda i, j: 0.0 if j == 2 and i >= 40 else 0.1)
    assert hs and hs[0].cause_id == "dead_layers" and "layer2.weight" in hs[0].evidence
    assert hs[0].confidence is Confidence.MEDIUM and hs[0].fix and hs[0].verify
    assert "vanishing_gradients" not in [h.cause_id for h in hs]


def test_diagnosis_of_one_exploding_layer() -> None:
    hs = _diagnosis(lambda i, j: 0.1 * (300.0 if j == 5 and i >= 80 else 1.0))
    ids = [h.cause_id for h in hs]
    assert "layer_grad_exploding" in ids and "exploding_gradients" not in ids
