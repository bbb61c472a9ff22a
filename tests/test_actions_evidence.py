"""Evidence bundles: layout, redaction of planted secrets, manifest hashes, atomic writes."""

from __future__ import annotations

import json
import math
import os
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from monitor.actions import evidence as evidence_mod
from monitor.actions.evidence import EvidenceError, collect_evidence, verify_bundle, write_bundle
from monitor.actions.redact import MASK, Redactor, is_secret_key, redact_text
from monitor.actions.reviewer import ReviewerAnswer
from monitor.actions.runref import make_ref
from monitor.actions.textplot import text_plot
from monitor.analysis import RunAnalysis, RunInfo
from monitor.config import RunConfig
from monitor.model import Row

pytestmark = pytest.mark.timeout(60)  # every test here is bounded; slower ones say so

W_KEY = "0123456789abcdef0123456789abcdef01234567"
W_ENV_KEY = "fedcba9876543210fedcba9876543210fedcba98"
OPENAI = "sk-proj-Abc123Def456Ghi789Jkl012Mno345"
OPENAI_OLD = "sk-Zy8Xw7Vu6Ts5Rq4Po3Nm2Lk1Ji0Hg"
ANTHROPIC = "sk-ant-api03-QwErTyUiOpAsDfGhJkLz-XcVbNm_1234"
HF = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345"
AWS_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GITHUB = "ghp_1234567890abcdefghijABCDEFGHIJklmnop"
URL_PASSWORD = "pw-Secret-991"
URL_TOKEN = "tok-abc-123-xyz"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
PLAIN_PASSWORD = "hunter2-plain-pw"
ENV_ONLY = "plainvalue-xyz-987"
SVG_SECRET = "svgsecret-12345"
SECRETS = [
    W_KEY,
    W_ENV_KEY,
    OPENAI,
    OPENAI_OLD,
    ANTHROPIC,
    HF,
    AWS_ID,
    AWS_SECRET,
    GITHUB,
    URL_PASSWORD,
    URL_TOKEN,
    BEARER,
    PLAIN_PASSWORD,
    ENV_ONLY,
    SVG_SECRET,
]


def _run(target: str = "/data/run1/train.log") -> RunAnalysis:
    info = RunInfo(target=target, name="gpt-small", format="jsonl", step_key="step", total_steps=1000)
    a = RunAnalysis(info, RunConfig(target=target, baseline={"val_loss": 2.0}))
    rows = [
        Row(float(s), {"loss": 3.0 * math.exp(-s / 80) + 1.0, "lr": min(1.0, s / 20) * 3e-4, "grad_norm": 1.0})
        for s in range(1, 201)
    ]
    rows += [Row(float(s), {"val_loss": 2.5 - s / 1000}) for s in range(50, 201, 50)]
    rows += [Row(201.0, {"loss": math.nan, "grad_norm": math.inf})]
    a.add_rows(sorted(rows, key=lambda r: r.step), now=1000.0)
    return a


def _planted(a: RunAnalysis) -> RunConfig:
    """Secrets in the source's config, the run's config entry and the log."""
    a.info.config = {
        "optimizer": {"lr": 3e-4, "betas": [0.9, 0.95]},
        "wandb": {"api_key": W_KEY, "project": "p"},
        "hf_token": HF,
        "tokens_per_step": 524288,
        "db_url": f"postgres://trainer:{URL_PASSWORD}@db.internal/x",
        "env": {"OPENAI_API_KEY": OPENAI, "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "DB_PASSWORD": PLAIN_PASSWORD},
        "cmd": f"python train.py --hub_token {HF} --lr 3e-4",
    }
    a.store.add_log_lines(
        [
            "step 1 | loss 2.9 | tokens_per_sec 12345",
            f"export WANDB_API_KEY={W_KEY}",
            f"OPENAI_API_KEY={OPENAI_OLD}",
            f"using anthropic key {ANTHROPIC}",
            f"aws: {AWS_ID} / {AWS_SECRET}",
            f"git clone https://{GITHUB}@github.com/acme/model.git",
            f"fetching https://hub.example/ckpt.pt?rev=main&token={URL_TOKEN}&x=1",
            f"Authorization: Bearer {BEARER}",
            f"connecting as trainer with {PLAIN_PASSWORD}",
            f"service token is {ENV_ONLY}",
            f"W&B key from env {W_ENV_KEY}",
        ]
    )
    a.store.add(Row(5.0, {f"debug/{HF}": 1.0}), now=1000.0)  # even a metric's name
    return RunConfig(target=a.info.target, stop={"command": "scancel {job_id}", "job_id": "42", "api_token": "x" * 12})


@pytest.mark.timeout(30)
def test_bundle_from_a_run_full_of_secrets_contains_none_of_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", W_ENV_KEY)
    monkeypatch.setenv("MY_SERVICE_TOKEN", ENV_ONLY)
    a = _run()
    cfg = _planted(a)
    ref = make_ref(a.info.target, a, cfg)
    review = ReviewerAnswer(
        "r", "gpt-small", "command: llm", "WAIT", f"echoing {OPENAI}", None, f"prompt with {HF}", f"WAIT\n{OPENAI}"
    )
    svg = f"<svg><text>api_key:&#160;{SVG_SECRET}</text><text>loss&#160;2.1</text></svg>"
    ev = collect_evidence(ref, now=time.time(), why="test", review=review, screenshot_svg=svg)
    bundle = write_bundle(ev, tmp_path / "ev", archive=True)

    names = sorted(p.name for p in bundle.path.iterdir())
    assert {"summary.md", "findings.json", "metrics.csv", "log_tail.txt", "config.json", "manifest.json"} <= set(names)
    assert {"plot_loss.txt", "plot_lr.txt", "plot_grad_norm.txt", "screenshot.svg", "reviewer.md"} <= set(names)
    assert bundle.archive is not None and bundle.archive.exists()
    extracted = tmp_path / "x"
    with tarfile.open(bundle.archive) as tar:
        tar.extractall(extracted, filter="data")
    files = [p for p in (*bundle.path.iterdir(), *extracted.rglob("*")) if p.is_file()]
    assert len(files) == 2 * len(names)
    for f in files:
        text = f.read_text(encoding="utf-8")
        for secret in SECRETS:
            assert secret not in text, f"{f.name} leaks {secret}"
    config = json.loads((bundle.path / "config.json").read_text())
    assert config["source_config"]["optimizer"] == {"lr": 3e-4, "betas": [0.9, 0.95]}
    assert config["source_config"]["tokens_per_step"] == 524288
    assert config["source_config"]["wandb"] == {"api_key": MASK, "project": "p"}
    assert config["run_config"]["stop"]["job_id"] == "42"
    assert config["run_config"]["stop"]["api_token"] == MASK
    assert config["source_config"]["db_url"] == f"postgres://trainer:{MASK}@db.internal/x"
    log = (bundle.path / "log_tail.txt").read_text()
    assert "tokens_per_sec 12345" in log and "github.com/acme/model.git" in log
    assert "loss&#160;2.1" in (bundle.path / "screenshot.svg").read_text()  # rows without secrets as drawn


@pytest.mark.timeout(30)
def test_bundle_layout_summary_and_manifest(tmp_path: Path) -> None:
    a = _run()
    ref = make_ref(a.info.target, a, RunConfig(target=a.info.target))
    ev = collect_evidence(ref, now=1_750_000_000.0, why="the run turned bad", saved_by="alice@gpu1")
    bundle = write_bundle(ev, tmp_path)
    assert bundle.path.parent == tmp_path and bundle.path.name.endswith("-gpt-small")
    assert verify_bundle(bundle.path) == []
    manifest = json.loads((bundle.path / "manifest.json").read_text())
    assert set(manifest["files"]) == {p.name for p in bundle.path.iterdir()} - {"manifest.json"}
    assert manifest["saved_by"] == "alice@gpu1" and manifest["format"] == "runwatch-evidence/1"

    summary = (bundle.path / "summary.md").read_text()
    for words in ("gpt-small", "/data/run1/train.log", "alice@gpu1", "the run turned bad", "✗ bad", "STOP"):
        assert words in summary, words
    assert "**nan**" in summary and "from step 201" in summary
    assert "Last step: 201 of 1000 (20.1%)" in summary

    findings = json.loads((bundle.path / "findings.json").read_text())
    assert findings["verdict"] == "bad" and findings["decision"] == "stop"
    assert any(f["kind"] == "nan" and f["step"] == 201 for f in findings["findings"])

    rows = (bundle.path / "metrics.csv").read_text().splitlines()
    assert rows[0] == "metric,step,value"
    assert len(rows) - 1 == sum(s.count for s in a.store.metrics.values())
    assert "loss,201,nan" in rows and "grad_norm,201,inf" in rows and "lr,20,0.0003" in rows
    plot = (bundle.path / "plot_loss.txt").read_text()
    assert "loss" in plot and "val_loss" in plot and "non-finite value(s) at step 201" in plot

    (bundle.path / "metrics.csv").write_text("metric,step,value\n")
    assert verify_bundle(bundle.path) == ["metrics.csv: sha256 differs from the manifest"]

    second = write_bundle(ev, tmp_path)  # the same second: a new name, not an overwrite
    assert second.path != bundle.path and second.path.name.startswith(bundle.path.name)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_crash_mid_write_leaves_no_half_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    a = _run()
    ev = collect_evidence(make_ref(a.info.target, a), now=time.time())
    real = evidence_mod._write_file
    calls: list[str] = []

    def failing(path: Path, data: bytes) -> None:
        calls.append(path.name)
        if len(calls) == 3:
            raise error
        real(path, data)

    monkeypatch.setattr(evidence_mod, "_write_file", failing)
    with pytest.raises(EvidenceError if isinstance(error, OSError) else KeyboardInterrupt):
        write_bundle(ev, tmp_path / "ev")
    assert len(calls) == 3
    assert list((tmp_path / "ev").iterdir()) == []


@pytest.mark.timeout(30)
def test_stale_partial_bundles_of_a_dead_process_are_cleaned(tmp_path: Path) -> None:
    stale = tmp_path / ".partial-abc"
    stale.mkdir()
    (stale / "summary.md").write_text("half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = tmp_path / ".partial-def"  # maybe another process writing right now: left alone
    fresh.mkdir()
    a = _run()
    write_bundle(collect_evidence(make_ref(a.info.target, a), now=time.time()), tmp_path)
    assert not stale.exists() and fresh.exists()


REDACTIONS = [
    (f"export WANDB_API_KEY={W_KEY}", "export WANDB_API_KEY=[REDACTED]"),
    (f"key {OPENAI} end", "key [REDACTED] end"),
    (f"{ANTHROPIC}", "[REDACTED]"),
    (f"hf={HF}", "hf=[REDACTED]"),
    (f"id {AWS_ID} secret {AWS_SECRET}", "id [REDACTED] secret [REDACTED]"),
    ("https://alice:s3cret@host/x.git", "https://alice:[REDACTED]@host/x.git"),
    ("https://h/p?a=1&access_token=xyz&b=2", "https://h/p?a=1&access_token=[REDACTED]&b=2"),
    ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer [REDACTED]"),
    ('{"Authorization": "Basic YXBpOnNlY3JldA=="}', '{"Authorization": "[REDACTED]"}'),
    ("--hf_token=abc123 --lr 3e-4", "--hf_token=[REDACTED] --lr 3e-4"),
    ("--api-key k-123456 --epochs 3", "--api-key [REDACTED] --epochs 3"),
    ('"password": "two words"', '"password": "[REDACTED]"'),
    ("x-api-key: abcdefgh", "x-api-key: [REDACTED]"),
    (f"{GITHUB}", "[REDACTED]"),
    # Left alone: metrics and words that only look like secret names.
    ("iter 100: loss 2.345, lr 3e-4, grad_norm 1.2", None),
    ("tokens_per_sec=12345 max_tokens: 512 pad_token: <pad> step_key=global_step", None),
    ("Error: token expired", None),
    ("num_tokens=5 token_count: 9 secret_len: 3", None),
]


@pytest.mark.parametrize(("text", "want"), REDACTIONS)
def test_redact_text(text: str, want: str | None) -> None:
    assert redact_text(text) == (text if want is None else want)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("api_key", True),
        ("WANDB_API_KEY", True),
        ("hf_token", True),
        ("dbPassword", True),
        ("client_secret", True),
        ("Authorization", True),
        ("tokenizer", False),
        ("max_tokens", False),
        ("pad_token", False),
        ("api_key_env", False),
        ("token_file", False),
        ("key", False),
        ("monkey", False),
        ("PWD", False),
        ("SSH_AUTH_SOCK", False),
        ("DB_PWD", True),
    ],
)
def test_is_secret_key(name: str, secret: bool) -> None:
    assert is_secret_key(name) is secret


def test_environment_secrets_are_remembered_but_paths_and_working_dirs_are_not() -> None:
    r = Redactor()
    r.remember_env(
        {
            "PWD": "/home/me/project",
            "OLDPWD": "/home/me",
            "SSH_AUTH_SOCK": "/tmp/ssh-abc/agent.1",
            "HF_TOKEN_PATH": "/home/me/.cache/token",
            "MY_API_TOKEN": "tok-123456789",
        }
    )
    text = "cd /home/me/project; agent /tmp/ssh-abc/agent.1; token file /home/me/.cache/token; tok-123456789"
    assert r.text(text) == text.replace("tok-123456789", MASK)


def test_secret_values_found_in_config_are_scrubbed_from_later_text() -> None:
    r = Redactor()
    assert r.data({"db": {"password": "correct horse"}, "n": 3}) == {"db": {"password": MASK}, "n": 3}
    assert r.text("login with correct horse now") == f"login with {MASK} now"


def test_text_plot_keeps_a_spike_and_marks_non_finite_values() -> None:
    steps = np.arange(1.0, 5001.0)
    values = np.full_like(steps, 2.0)
    values[2500] = 50.0
    values[-1] = np.nan
    plot = text_plot([("loss", steps, values)], width=60, height=10)
    lines = plot.splitlines()
    assert lines[0].strip().startswith("50") and "*" in lines[0]
    assert "!" in lines[0] and "1 non-finite value(s) at step 5000" in plot
    assert all(len(line) <= 60 for line in lines[:10])
