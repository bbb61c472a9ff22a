"""Selecting runs of a W&B project (`wandb://E/P?last=&state=&tag=`, `--last/--state/--tag`) and
fetching run config and summary, against the local fake backend (tests/wandb_server.py).

The fake's filters and order are checked against the real `wandb` client in the slow test below:
what `wandb.Api().runs(filters=..., order=...)`, `run.config` and `run.summary` read from it is what
runwatch's own query reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from wandb_server import FakeWandbServer

from monitor.errors import RunwatchError, TargetError
from monitor.sources.wandb_api import WandbTarget, build_poll_query, parse_wandb_target
from monitor.sources.wandb_select import MAX_SELECT, Selection, apply_selection
from tests.test_wandb_api import E, FakeClock, P, Sink, make_poller, poll, server  # noqa: F401


def _sweep(server: FakeWandbServer) -> None:  # noqa: F811
    """Six runs created a day apart: states, tags and configs differ; `r6` is the newest."""
    spec = [
        ("r1", "finished", ["sweep1"], 1e-4),
        ("r2", "crashed", ["sweep1"], 3e-4),
        ("r3", "finished", ["sweep0"], 1e-3),
        ("r4", "finished", ["sweep1", "best"], 3e-3),
        ("r5", "running", ["sweep1"], 1e-2),
        ("r6", "finished", ["sweep1"], 3e-2),
    ]
    for day, (name, state, tags, lr) in enumerate(spec, start=1):
        server.add_run(
            E,
            P,
            name,
            state=state,
            tags=tags,
            created_at=f"2024-01-0{day}T00:00:00",
            rows=[{"loss": 1.0 / (i + 1), "eval": {"acc": lr * i}} for i in range(5)],
            config={"lr": lr, "batch_size": 32, "_wandb": {"cli_version": "0.31"}, "opt": {"name": "adamw"}},
            summary={"best/acc": 0.5 + day / 100},
        )


def _drain(poller: object, clock: FakeClock, limit: int = 20) -> int:
    polls = 0
    while not poller.done and polls < limit:  # type: ignore[attr-defined]
        clock.now += poll(poller)  # type: ignore[arg-type]
        polls += 1
    return polls


def test_parse_selection_in_a_target() -> None:
    t = parse_wandb_target("wandb://ent/proj?last=5&state=finished,crashed&tag=sweep1&tag=best")
    assert t == WandbTarget("ent", "proj", select=Selection(5, ("finished", "crashed"), ("sweep1", "best")))
    assert t is not None and t.select is not None
    assert t.select.filters() == {
        "$and": [
            {"state": {"$in": ["finished", "crashed"]}},
            {"tags": {"$in": ["sweep1"]}},
            {"tags": {"$in": ["best"]}},
        ]
    }
    assert parse_wandb_target(str(t)) == t  # the spelling round-trips
    assert Selection(3, ("finished",)).filters() == {"state": "finished"}
    assert Selection().filters() == {}
    for bad, why in (
        ("wandb://e/p?last=0", "between 1"),
        (f"wandb://e/p?last={MAX_SELECT + 1}", "between 1"),
        ("wandb://e/p?last=x", "whole number"),
        ("wandb://e/p?state=done", "unknown run state"),
        ("wandb://e/p?colour=red", "unknown selection"),
        ("wandb://e/p/run1?state=finished", "not a run"),
    ):
        with pytest.raises(TargetError, match=why):
            parse_wandb_target(bad)


def test_apply_selection_touches_only_project_targets() -> None:
    raws = ["wandb://e/p", "wandb://e/p/run9", "runs/", "wandb://e/q?tag=x"]
    out = apply_selection(raws, 4, ["finished"], ["a"])
    assert out == ["wandb://e/p?last=4&state=finished&tag=a", "wandb://e/p/run9", "runs/", "wandb://e/q?tag=x"]
    assert apply_selection(raws) == raws  # no flag: unchanged
    assert apply_selection(["wandb://e/p"], default=True) == ["wandb://e/p?last=20"]
    with pytest.raises(RunwatchError, match="W&B project"):
        apply_selection(["runs/", "wandb://e/p/run9"], last=3)


def test_poll_query_asks_for_the_selection_once_newest_first() -> None:
    from monitor.sources.wandb_api import ProjectQuery, RunCursor

    sel = Selection(2, ("finished",), ("sweep1",))
    q, v = build_poll_query([ProjectQuery(E, P, (RunCursor("r1", 0, 10, meta=True),), select=sel)], 10)
    assert 'runs(filters: $s0, first: $k0, order: "-created_at")' in q
    assert "config summaryMetrics tags" in q
    assert json.loads(v["s0"]) == sel.filters() and v["k0"] == 2


@pytest.mark.timeout(60)
def test_selection_lists_once_then_reads_the_runs_with_config_and_summary(server: FakeWandbServer) -> None:  # noqa: F811
    _sweep(server)
    clock, sink = FakeClock(), Sink()
    target = parse_wandb_target("wandb://ent/proj?last=2&state=finished&tag=sweep1")
    assert target is not None
    poller = make_poller([target], clock, sink)
    polls = _drain(poller, clock)
    assert poller.done and polls <= 4
    # The two newest finished runs tagged sweep1: r6 and r4 (r5 runs, r3 is sweep0, r1 is older).
    assert sorted(sink.rows) == ["r4", "r6"]
    assert [r.values["loss"] for r in sink.rows["r6"]] == [1.0 / (i + 1) for i in range(5)]
    st = sink.last("r4")
    assert st.state == "finished"
    assert st.config == {"lr": 3e-3, "batch_size": 32, "opt": {"name": "adamw"}}  # `_wandb` left out
    assert st.summary is not None and st.summary["best/acc"] == pytest.approx(0.54)
    assert st.summary["eval/acc"] == pytest.approx(3e-3 * 4) and "_step" not in st.summary
    assert set(st.tags) == {"sweep1", "best"}
    runs_asked = [r for r in server.graphql_requests("RunwatchPoll") if "s0" in r.variables]
    assert len(runs_asked) == 1, "a selection is listed once"
    # A run's config travels once: not again with its history when the listing already held it.
    later = [r.query for r in server.graphql_requests("RunwatchPoll")[1:]]
    assert later and not any("summaryMetrics" in q for q in later)


@pytest.mark.timeout(60)
def test_run_targets_get_config_with_first_rows_and_summary_again_once_ended(server: FakeWandbServer) -> None:  # noqa: F811
    run = server.add_run(E, P, "live", rows=[{"loss": 2.0}], config={"lr": 0.1})
    clock, sink = FakeClock(), Sink()
    poller = make_poller([WandbTarget(E, P, "live")], clock, sink)
    clock.now += poll(poller)
    first = sink.last("live")
    assert first.config == {"lr": 0.1} and first.summary == {"loss": 2.0}
    clock.now += poll(poller)  # running: no config asked again
    assert "summaryMetrics" not in server.graphql_requests("RunwatchPoll")[-1].query
    server.append(run, {"loss": 1.0})
    run.summary = {"final/acc": 0.9}
    server.set_state(run, "finished")
    _drain(poller, clock)
    assert poller.done
    assert sink.last("live").summary == {"loss": 1.0, "final/acc": 0.9}


@pytest.mark.timeout(60)
def test_selection_with_no_match_ends_the_poller(server: FakeWandbServer) -> None:  # noqa: F811
    _sweep(server)
    clock, sink = FakeClock(), Sink()
    poller = make_poller([WandbTarget(E, P, select=Selection(5, ("killed",)))], clock, sink)
    assert not poller.done  # not listed yet
    clock.now += poll(poller)
    assert poller.done and sink.rows == {} and poller.answered == 1


REAL_RUNS = textwrap.dedent(
    """
    import json, os, sys, wandb
    api = wandb.Api(overrides={"base_url": os.environ["WANDB_BASE_URL"]}, api_key=os.environ["WANDB_API_KEY"])
    filters, order, last = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    runs = list(api.runs("ent/proj", filters=filters, order=order, per_page=last))[:last]
    out = [{"name": r.id, "config": dict(r.config), "summary": {k: r.summary[k] for k in r.summary.keys()},
            "tags": r.tags} for r in runs]
    print("RESULT " + json.dumps(out, default=dict))  # nested summary values come as SummarySubDict
    """
)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_real_wandb_client_selects_the_same_runs_with_the_same_config_and_summary(
    server: FakeWandbServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    _sweep(server)
    sel = Selection(3, ("finished", "crashed"), ("sweep1",))
    script = tmp_path / "runs.py"
    script.write_text(REAL_RUNS)
    cmd = [sys.executable, str(script), sel.filters_json(), "-created_at", str(sel.last)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=80, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    real = json.loads(proc.stdout.split("RESULT ", 1)[1])

    clock, sink = FakeClock(), Sink()
    poller = make_poller([WandbTarget(E, P, select=sel)], clock, sink)
    _drain(poller, clock)
    ours = {s.target.run_id: s for s in poller.statuses.values()}
    assert [r["name"] for r in real] == ["r6", "r4", "r2"]
    assert set(ours) == {"r6", "r4", "r2"}
    for r in real:
        st = ours[r["name"]]
        assert dict(st.config or {}) == {k: v for k, v in r["config"].items() if not k.startswith("_wandb")}
        numeric = {k: v for k, v in r["summary"].items() if not k.startswith("_") and isinstance(v, int | float)}
        summary = dict(st.summary or {})
        assert {k: summary.get(k) for k in numeric} == numeric and "loss" in numeric
        assert summary["eval/acc"] == r["summary"]["eval"]["acc"]  # nested keys joined with "/"
        assert set(st.tags) == set(r["tags"])
