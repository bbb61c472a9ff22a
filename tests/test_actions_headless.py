"""Headless actions: `runwatch check --escalate` and `runwatch watch --on-bad evidence|stop`."""

from __future__ import annotations

import asyncio
import io
import json
import math
import sys
import time
from pathlib import Path

import pytest

from monitor import demo
from monitor.actions.audit import AUDIT_FILE
from monitor.actions.evidence import verify_bundle
from monitor.config import Config, ReviewerConfig
from monitor.watch import watch
from tui import cli

pytestmark = pytest.mark.timeout(60)  # every test here is bounded; slower ones say so

REVIEWER = """\
import sys
prompt = sys.stdin.read()
assert "Last 10 values of" in prompt, prompt
print("WAIT")
print("flat but not diverging; look again after the next eval")
"""


def _config(tmp_path: Path, reviewer: Path) -> Path:
    cfg = tmp_path / "runwatch.toml"
    cfg.write_text(
        f'evidence_dir = "{tmp_path / "ev"}"\n'
        "[reviewer]\n"
        'backend = "command"\n'
        f"command = [{json.dumps(sys.executable)}, {json.dumps(str(reviewer))}]\n"
        "timeout = 20\n"
    )
    return cfg


@pytest.mark.timeout(60)
def test_check_escalate_adds_the_reviewers_answer_to_unsure_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = demo.write_all(tmp_path / "runs")
    script = tmp_path / "reviewer.py"
    script.write_text(REVIEWER)
    cfg = _config(tmp_path, script)
    targets = [str(runs["plateau"]), str(runs["nan"]), str(runs["healthy"])]

    code = cli.main(["check", "--config", str(cfg), "--escalate", "--json", *targets])
    assert code == 2  # the verdicts stand: one run is bad
    doc = json.loads(capsys.readouterr().out)
    by_name = {Path(r["target"]).stem: r for r in doc["runs"]}
    assert by_name["plateau"]["verdict"] == "unsure"
    review = by_name["plateau"]["reviewer"]
    assert review["decision"] == "WAIT" and review["reason"].startswith("flat but not diverging")
    assert review["error"] is None and review["backend"].startswith("command: ")
    assert "reviewer" not in by_name["nan"] and "reviewer" not in by_name["healthy"]

    code = cli.main(["check", "--config", str(cfg), "--escalate", str(runs["plateau"])])
    assert code == 1
    out = capsys.readouterr().out
    assert "? unsure" in out and "reviewer (command: " in out
    assert "): WAIT: flat but not diverging; look again after the next eval" in out


@pytest.mark.timeout(60)
def test_check_escalate_with_a_broken_reviewer_says_so_and_keeps_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = demo.write_all(tmp_path / "runs")
    script = tmp_path / "reviewer.py"
    script.write_text("import sys; sys.stdin.read(); print('no idea')\n")
    code = cli.main(["check", "--config", str(_config(tmp_path, script)), "--escalate", str(runs["plateau"])])
    assert code == 1
    assert "no answer: the answer did not say STOP, CONTINUE or WAIT" in capsys.readouterr().out


def _jsonl(path: Path, start: int, stop: int, *, nan_from: int | None = None) -> None:
    with path.open("a") as f:
        for s in range(start, stop):
            loss = math.nan if nan_from is not None and s >= nan_from else 3.0 * math.exp(-s / 60) + 1.0
            f.write(json.dumps({"step": s, "loss": loss, "lr": 3e-4}) + "\n")


async def _wait_for(cond: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def _bundles(ev: Path) -> list[Path]:
    return sorted(p for p in ev.iterdir() if p.is_dir() and not p.name.startswith(".")) if ev.exists() else []


@pytest.mark.timeout(60)
def test_watch_on_bad_evidence_saves_a_bundle_when_a_file_run_goes_nan(tmp_path: Path) -> None:
    log = tmp_path / "train.jsonl"
    _jsonl(log, 1, 120)
    ev = tmp_path / "ev"
    out = io.StringIO()

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(watch([str(log)], Config(evidence_dir=ev), out=out, stop=stop, on_bad="evidence"))
        await asyncio.sleep(1.0)
        assert _bundles(ev) == []  # healthy: nothing saved
        _jsonl(log, 120, 130, nan_from=125)
        await _wait_for(lambda: _bundles(ev) and "evidence" in out.getvalue())
        stop.set()
        assert await task == 0

    asyncio.run(go())
    (bundle,) = _bundles(ev)
    assert verify_bundle(bundle) == []
    summary = (bundle / "summary.md").read_text()
    assert "the run turned bad" in summary and "**nan**" in summary
    assert "loss,125,nan" in (bundle / "metrics.csv").read_text()
    assert '"step": 129' in (bundle / "log_tail.txt").read_text()
    text = out.getvalue()
    assert "✗ bad" in text and f"# evidence {log.parent.name}/{log.name}  saved to {bundle}" in text
    assert not (ev / AUDIT_FILE).exists()  # nothing was stopped


@pytest.mark.timeout(60)
def test_watch_on_bad_stop_without_yes_only_rehearses(tmp_path: Path) -> None:
    log = tmp_path / "train.jsonl"
    _jsonl(log, 1, 130, nan_from=125)
    ev = tmp_path / "ev"
    out = io.StringIO()

    async def go() -> None:
        stop = asyncio.Event()
        cfg = Config(evidence_dir=ev, reviewer=ReviewerConfig())
        task = asyncio.create_task(watch([str(log)], cfg, out=out, stop=stop, on_bad="stop", jsonl=True))
        await _wait_for(lambda: '"event": "stop"' in out.getvalue())
        stop.set()
        await task

    asyncio.run(go())
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    (stop_rec,) = [r for r in records if r.get("event") == "stop"]
    # Nobody writes the log (the "job" already ended), so there is nothing to stop: said plainly.
    assert stop_rec["status"] == "impossible" and "no process on this machine" in stop_rec["detail"]
    audit = [json.loads(line) for line in (ev / AUDIT_FILE).read_text().splitlines()]
    assert [(e["result"], e["dry_run"]) for e in audit] == [("impossible", True)]
    (bundle,) = _bundles(ev)  # the run still turned bad: its evidence is kept
    assert "Cannot stop it: no process on this machine" in (bundle / "summary.md").read_text()
    assert any(r.get("event") == "evidence" and r["path"] == str(bundle) for r in records)


@pytest.mark.timeout(60)
def test_watch_escalates_unsure_runs_when_auto_is_on(tmp_path: Path) -> None:
    runs = demo.write_all(tmp_path / "runs")
    script = tmp_path / "reviewer.py"
    script.write_text(REVIEWER)
    out = io.StringIO()
    reviewer = ReviewerConfig(command=(sys.executable, str(script)), auto=True)

    async def go() -> None:
        stop = asyncio.Event()
        cfg = Config(evidence_dir=tmp_path / "ev", reviewer=reviewer)
        task = asyncio.create_task(watch([str(runs["plateau"])], cfg, out=out, stop=stop))
        await _wait_for(lambda: "? reviewer" in out.getvalue())
        stop.set()
        await task

    asyncio.run(go())
    assert "WAIT: flat but not diverging" in out.getvalue()


def test_cli_parses_the_headless_flags() -> None:
    ap = cli.build_parser()
    a = ap.parse_args(["watch", "x.log", "--on-bad", "stop", "--yes", "--dry-run", "--evidence-dir", "/tmp/e"])
    assert (a.on_bad, a.yes, a.dry_run, a.evidence_dir) == ("stop", True, True, Path("/tmp/e"))
    assert ap.parse_args(["check", "--escalate", "x.log"]).escalate
    with pytest.raises(SystemExit):
        ap.parse_args(["watch", "x.log", "--on-bad", "reboot"])
