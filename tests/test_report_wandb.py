"""`runwatch report` on a W&B project served by the local GraphQL test server: several runs ranked.

(The API source does not fetch run configs yet, so the config diff of API runs is empty; local `.wandb`
runs and logs carry theirs.)"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from monitor.config import Config
from monitor.report import build, write
from tests.test_wandb_api import server  # noqa: F401  (fixture)
from tests.wandb_server import FakeWandbServer


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
    md = write(rep, tmp_path).markdown.read_text()
    assert "## Ranking by `eval/accuracy`" in md and "## Next experiments" in md
    assert "train/global_step" in md  # the step axis used is named
    assert (tmp_path / "overlay.svg").exists()
