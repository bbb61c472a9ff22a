"""`runwatch report` and `runwatch check` on W&B projects served by the local GraphQL test server:
several runs of different states, tags and configs, selected with `--last/--state/--tag`, ranked, with
their config diff (the API source fetches each run's config and summary)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from monitor.config import Config
from monitor.report import build, write
from tests.test_wandb_api import server  # noqa: F401  (fixture)
from tests.wandb_server import FakeWandbServer
from tui.cli import main


@pytest.mark.timeout(120)
def test_report_ranks_the_runs_of_a_wandb_project(server: FakeWandbServer, tmp_path: Path) -> None:  # noqa: F811
    for name, lr, acc in (("lr-small", 1e-4, 0.6), ("lr-mid", 3e-4, 0.8), ("lr-big", 1e-3, 0.7)):
        rows = []
        for i in range(60):
            row = {"train/loss": 2.0 * math.exp(-i / 20) + 0.5, "train/global_step": i * 10, "trainer/lr": lr}
            if i % 10 == 9:
                row["eval/accuracy"] = acc * (i + 1) / 60
            rows.append(row)
        server.add_run("ent", "sweep", name, rows=rows, config={"learning_rate": lr, "batch_size": 32, "seed": 1})
    rep = build(["wandb://ent/sweep"], Config())
    assert len(rep.runs) == 3 and all(r.error is None for r in rep.runs), [r.error for r in rep.runs]
    assert rep.primary is not None and rep.primary.key == "eval/accuracy"
    assert [x.run.target.rsplit("/", 1)[-1] for x in rep.ranked] == ["lr-mid", "lr-big", "lr-small"]
    assert list(rep.diff) == ["learning_rate"]  # batch_size and seed are the same everywhere
    md = write(rep, tmp_path).markdown.read_text()
    assert "## Ranking by `eval/accuracy`" in md and "## Next experiments" in md
    assert "train/global_step" in md  # the step axis used is named
    assert (tmp_path / "overlay.svg").exists()


def _curve_rows(acc: float, *, eval_in_history: bool = True) -> list[dict[str, float]]:
    rows = []
    for i in range(60):
        row = {"train/loss": 2.0 * math.exp(-i / 20) + 0.5, "train/global_step": i * 10}
        if eval_in_history and i % 10 == 9:
            row["eval/accuracy"] = acc * (i + 1) / 60
        rows.append(row)
    return rows


def _sweep(server: FakeWandbServer) -> None:  # noqa: F811
    """Six runs of project ent/sweep; created on days 1..6 (f oldest), only a, b, e match all flags."""
    spec = [  # name, day, state, tags, learning rate, final accuracy
        ("f", 1, "finished", ["sweep1"], 3e-5, 0.5),
        ("a", 2, "finished", ["sweep1"], 1e-4, 0.6),
        ("b", 3, "finished", ["sweep1"], 3e-4, 0.8),
        ("c", 4, "crashed", ["sweep1"], 3e-3, 0.2),
        ("d", 5, "finished", ["sweep0"], 1e-3, 0.9),
        ("e", 6, "finished", ["sweep1", "long"], 1e-3, 0.7),
    ]
    for name, day, state, tags, lr, acc in spec:
        server.add_run(
            "ent",
            "sweep",
            name,
            state=state,
            tags=tags,
            created_at=f"2024-03-0{day}T12:00:00",
            rows=_curve_rows(acc),
            config={"learning_rate": lr, "batch_size": 32, "optimizer": {"name": "adamw", "eps": 1e-8}},
        )


@pytest.mark.timeout(120)
def test_report_selects_with_last_state_tag_ranks_and_diffs_configs(
    server: FakeWandbServer,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _sweep(server)
    out = tmp_path / "rep"
    argv = ["report", "wandb://ent/sweep", "--last", "3", "--state", "finished", "--tag", "sweep1", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    md = (out / "report.md").read_text()
    table = md.split("## Ranking by `eval/accuracy`", 1)[1].split("###", 1)[0]
    ranked = [ln.split("|")[2].strip() for ln in table.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert ranked == ["b", "e", "a"]  # newest 3 finished sweep1 runs (not f: older; c crashed; d sweep0)
    diff = md.split("### Config differences", 1)[1].split("\n\n", 2)[1]
    assert "`learning_rate`" in diff and "| 0.0003 | 0.001 | 0.0001 |" in diff
    assert "batch_size" not in diff and "optimizer" not in diff  # the same in every run
    assert "wandb://ent/sweep?last=3&state=finished&tag=sweep1" in md  # the selection is named
    assert server.problems == []


@pytest.mark.timeout(120)
def test_report_mixes_a_selection_an_explicit_run_and_a_local_file(
    server: FakeWandbServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    _sweep(server)
    local = tmp_path / "local" / "metrics.jsonl"
    local.parent.mkdir()
    local.write_text(
        "".join(json.dumps({"step": i * 10, "loss": 2.0 * math.exp(-i / 20) + 0.6}) + "\n" for i in range(50))
    )
    targets = ["wandb://ent/sweep?state=crashed", "wandb://ent/sweep/d", str(local)]
    rep = build(targets, Config())
    assert all(r.error is None for r in rep.runs), [r.error for r in rep.runs]
    assert sorted(r.name for r in rep.runs) == ["c", "d", "local/metrics.jsonl"]
    assert rep.primary is not None and rep.primary.key == "eval/accuracy"
    assert [x.run.name for x in rep.ranked][:2] == ["d", "c"]  # the local run has no eval metric: last
    assert rep.diff["learning_rate"] == [3e-3, 1e-3, None]  # explicit run ids get their config too


@pytest.mark.timeout(120)
def test_ranking_reads_the_primary_metric_from_the_summary(server: FakeWandbServer) -> None:  # noqa: F811
    for name, acc in (("x", 0.71), ("y", 0.93), ("z", 0.42)):
        server.add_run(
            "ent",
            "final",
            name,
            state="finished",
            rows=_curve_rows(acc, eval_in_history=False),
            config={"dropout": acc / 10},
            summary={"eval/accuracy": acc},
        )
    rep = build(["wandb://ent/final?state=finished"], Config())
    assert rep.primary is not None and rep.primary.key == "eval/accuracy"
    assert [(x.run.name, x.best) for x in rep.ranked] == [("y", 0.93), ("x", 0.71), ("z", 0.42)]
    assert any("`dropout`: higher values went with a better eval/accuracy" in s for s in rep.helped)


@pytest.mark.timeout(120)
def test_check_takes_the_same_selection_flags(
    server: FakeWandbServer,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    _sweep(server)
    code = main(["check", "--json", "wandb://ent/sweep", "--state", "crashed,finished", "--tag", "long"])
    doc = json.loads(capsys.readouterr().out)
    assert [r["target"] for r in doc["runs"]] == ["wandb://ent/sweep/e"] and code in (0, 1)
    assert main(["check", "wandb://ent/sweep", "--tag", "nope"]) == 3
    assert "no run matches the selection" in capsys.readouterr().err
    assert main(["check", "wandb://ent/sweep/a", "--last", "2"]) == 3  # flags need a project to select from
    assert "Bad selection: --last, --state and --tag select runs of a W&B project" in capsys.readouterr().err
    assert main(["check", "wandb://ent/sweep", "--state", "done"]) == 3
    assert "unknown run state 'done'" in capsys.readouterr().err
