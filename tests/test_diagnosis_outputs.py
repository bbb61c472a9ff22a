"""The diagnosis travels: `check --json`, evidence bundles (with the overview picture) and the reviewer prompt."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from monitor.actions.evidence import collect_evidence, write_bundle
from monitor.actions.prompt import build_prompt
from monitor.actions.runref import make_ref
from monitor.analysis import RunAnalysis, RunInfo
from monitor.check import check, to_json
from monitor.config import Config
from monitor.model import Row


def _lr_blowup_rows() -> list[Row]:
    """Warm-up to a peak that keeps growing; grad norm rises at 370, the loss diverges from 400."""
    rng = np.random.default_rng(0)
    n = 600
    s = np.arange(n)
    lr = np.minimum(s / 200, 1.0) * 3e-3 * (1 + np.maximum(s - 200, 0) / 50)
    loss = 0.4 + 1.9 * np.exp(-s / 150) + rng.normal(0, 0.01, n)
    grad = 1.0 + rng.normal(0, 0.03, n)
    grad[370:] *= np.exp(np.arange(n - 370) / 25)
    loss[400:] += np.exp(np.arange(n - 400) / 40) - 1
    return [
        Row(float(i), {"loss": float(loss[i]), "learning_rate": float(lr[i]), "grad_norm": float(grad[i])}, 1e9 + i)
        for i in range(n)
    ]


def _analysis(path: Path) -> RunAnalysis:
    a = RunAnalysis(RunInfo(target=str(path), name="lr-blowup"))
    a.add_rows(_lr_blowup_rows(), 1e9 + 600)
    return a


def test_check_json_has_a_diagnosis_per_run(tmp_path: Path) -> None:
    p = tmp_path / "m.jsonl"
    p.write_text("".join(json.dumps({"step": r.step, **r.values}) + "\n" for r in _lr_blowup_rows()))
    doc = to_json(check([str(p)], Config()))
    (run,) = doc["runs"]
    diag = run["diagnosis"]
    assert diag and diag[0]["cause_id"] == "lr_too_high"
    for h in diag:
        assert {"cause", "confidence", "evidence", "fix", "expect", "verify"} <= h.keys()
        assert h["confidence"] in ("high", "medium", "low")
    json.dumps(doc, allow_nan=False)


def test_a_healthy_run_has_an_empty_diagnosis(tmp_path: Path) -> None:
    p = tmp_path / "ok.jsonl"
    rows = [{"step": i, "loss": 2.0 * np.exp(-i / 200) + 0.3} for i in range(400)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run,) = to_json(check([str(p)], Config()))["runs"]
    assert run["verdict"] == "healthy" and run["diagnosis"] == []


def test_evidence_bundle_carries_the_hypotheses_and_the_overview_picture(tmp_path: Path) -> None:
    a = _analysis(tmp_path / "run.log")
    ev = collect_evidence(make_ref(a.info.target, a), now=time.time(), why="test")
    bundle = write_bundle(ev, tmp_path / "ev")
    findings = json.loads((bundle.path / "findings.json").read_text())
    assert findings["diagnosis"][0]["cause_id"] == "lr_too_high"
    summary = (bundle.path / "summary.md").read_text()
    assert "## Likely causes" in summary and "learning rate is likely too high" in summary
    svg = (bundle.path / "overview.svg").read_text()
    ET.fromstring(svg)
    assert "overview.svg" in json.loads((bundle.path / "manifest.json").read_text())["files"]


def test_reviewer_prompt_carries_the_hypotheses(tmp_path: Path) -> None:
    a = _analysis(tmp_path / "run.log")
    prompt = build_prompt(make_ref(a.info.target, a))
    assert "root-cause hypotheses" in prompt
    assert "[high] the learning rate is likely too high" in prompt
