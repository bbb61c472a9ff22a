"""The run actions from the keyboard, for real: `b` writes a bundle, `s` stops a process this test
started (after the dialog), `e` asks a command reviewer; asserted on the app's message flow."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.message import Message
from textual.widgets import Button, Static

from monitor.actions.audit import AUDIT_FILE
from monitor.config import Config, ReviewerConfig
from monitor.hub import Hub, HubEvent
from monitor.model import Decision, Verdict
from tests.test_tui_app import NOW, Recorder, run_async, until
from tui.app import RunwatchApp, make_app
from tui.messages import (
    EscalationRequested,
    EvidenceFailed,
    EvidenceRequested,
    EvidenceSaved,
    ReviewerAnswered,
    ReviewerFailed,
    StopCancelled,
    StopConfirmed,
    StopFailed,
    StopPlanned,
    StopRequested,
    StopSent,
)
from tui.screens.confirm_stop import ConfirmStopScreen
from tui.screens.detail import DetailScreen
from tui.screens.main import MainScreen
from tui.scripted import sample_scene

FLOW = (
    EvidenceRequested,
    EvidenceSaved,
    EvidenceFailed,
    StopRequested,
    StopPlanned,
    StopConfirmed,
    StopCancelled,
    StopSent,
    StopFailed,
    EscalationRequested,
    ReviewerAnswered,
    ReviewerFailed,
)

WRITER = """\
import sys, time
with open(sys.argv[1], "a") as f:
    i = 0
    while True:
        i += 1
        f.write(f"step={i} loss={3.0 / (1 + i / 50):.4f}\\n")
        f.flush()
        time.sleep(0.05)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    """A real training-like process appending `step=… loss=…` lines to a log; killed at the end if alive."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    log = tmp_path / "train.log"
    proc = subprocess.Popen([sys.executable, str(script), str(log)])
    deadline = time.monotonic() + 10
    while (not log.exists() or log.read_text().count("\n") < 5) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield proc, script, log
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait(timeout=10)


def _reviewer(tmp_path: Path, answer: str, **kw: Any) -> ReviewerConfig:
    """A `command` reviewer: a script that reads the prompt and prints `answer`."""
    script = tmp_path / "reviewer.py"
    script.write_text(f"import sys\nsys.stdin.read()\nprint({answer!r})\n")
    return ReviewerConfig(backend="command", command=(sys.executable, str(script)), timeout=20, retries=0, **kw)


def _live_app(log: Path, config: Config) -> tuple[RunwatchApp, Hub]:
    hub = Hub([str(log)], config, gpu=False)
    return make_app(config, hub=hub, redraw_interval=0.0), hub


def _notes(app: RunwatchApp) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app.notices]


def _dialog_text(app: RunwatchApp) -> str:
    assert isinstance(app.screen, ConfirmStopScreen)
    return str(app.screen.query_one("#plan", Static).render())


def _buttons(app: RunwatchApp) -> list[str]:
    return [str(b.label) for b in app.screen.query(Button)]


def _recorder() -> Recorder:
    return Recorder(*FLOW)


def _seen(rec: Recorder, kind: type[Message]) -> Callable[[], bool]:
    return lambda: any(isinstance(m, kind) for m in rec.seen)


# ---- b: evidence --------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@run_async
async def test_b_writes_a_real_bundle_with_the_screenshot(tmp_path: Path) -> None:
    hub, _ = sample_scene(NOW)
    rec = _recorder()
    app = make_app(Config(evidence_dir=tmp_path / "ev"), hub=hub, clock=lambda: NOW + 5, redraw_interval=0.0)
    async with app.run_test(size=(120, 40), message_hook=rec) as pilot:
        await pilot.pause()
        await pilot.press("b")  # the worst run is selected: gpt-fp16, which went NaN
        await until(pilot, _seen(rec, EvidenceSaved), what="EvidenceSaved")
        assert rec.names() == ["EvidenceRequested", "EvidenceSaved"]
        bundle = rec.seen[-1].bundle  # type: ignore[attr-defined]
        assert bundle.path.parent == tmp_path / "ev"
        assert any(f"gpt-fp16: {bundle.path}" in n and n.startswith("Evidence saved") for n in _notes(app))
    svg = (bundle.path / "screenshot.svg").read_text()
    assert svg.startswith("<svg") and "gpt-fp16" in svg.replace("&#160;", " ").replace("\u00a0", " ")
    manifest = json.loads((bundle.path / "manifest.json").read_text())
    assert {"summary.md", "metrics.csv", "screenshot.svg"} <= set(manifest["files"])
    assert "loss is NaN at step 260" in (bundle.path / "summary.md").read_text()


@pytest.mark.timeout(30)
@run_async
async def test_b_that_cannot_write_says_why_in_one_line(tmp_path: Path) -> None:
    hub, _ = sample_scene(NOW)
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the evidence directory should be")
    rec = _recorder()
    app = make_app(Config(evidence_dir=blocked), hub=hub, clock=lambda: NOW + 5, redraw_interval=0.0)
    async with app.run_test(size=(120, 40), message_hook=rec) as pilot:
        await pilot.pause()
        await pilot.press("b")
        await until(pilot, _seen(rec, EvidenceFailed), what="EvidenceFailed")
        assert rec.names() == ["EvidenceRequested", "EvidenceFailed"]
        note = next(n for n in _notes(app) if n.startswith("Evidence not saved"))
        assert f"cannot create {blocked}" in note and "\n" not in note


# ---- s: stop ------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@run_async
async def test_s_asks_first_cancel_keeps_the_process_and_y_stops_it(
    tmp_path: Path, writer: tuple[subprocess.Popen[bytes], Path, Path]
) -> None:
    proc, script, log = writer
    ev_dir = tmp_path / "ev"
    rec = _recorder()
    app, _hub = _live_app(log, Config(evidence_dir=ev_dir))
    async with app.run_test(size=(120, 40), message_hook=rec) as pilot:
        await until(pilot, lambda: app.snapshot is not None and app.snapshot.runs, what="the run in a snapshot")

        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStopScreen), what="the dialog")
        text = _dialog_text(app)
        assert f"{proc.pid}: {sys.executable} {script}" in text  # the process, by its command line
        assert "this machine" in text and "Evidence is saved first" in text
        assert _buttons(app) == ["Stop (y)", "Cancel (n/esc)"]
        assert app.screen.focused is not None and app.screen.focused.id == "cancel"
        await pilot.press("n")
        await until(pilot, _seen(rec, StopCancelled), what="StopCancelled")
        assert isinstance(app.screen, MainScreen)
        await pilot.pause(0.5)
        assert _alive(proc.pid) and proc.poll() is None
        assert not ev_dir.exists()  # nothing was saved, nothing audited

        await pilot.press("s")  # Enter alone takes the default: cancel
        await until(pilot, lambda: isinstance(app.screen, ConfirmStopScreen), what="the dialog again")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MainScreen), what="the dialog closed")
        assert _alive(proc.pid)

        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStopScreen), what="the dialog, third time")
        await pilot.press("y")
        await until(pilot, lambda: _seen(rec, StopSent)() or _seen(rec, StopFailed)(), what="the outcome")
        assert rec.names() == [
            *["StopRequested", "StopPlanned", "StopCancelled"] * 2,
            "StopRequested",
            "StopPlanned",
            "StopConfirmed",
            "StopSent",
        ], _notes(app)
        outcome = rec.seen[-1].outcome  # type: ignore[attr-defined]
        assert any(n.startswith("■ Stop sent") and str(outcome.evidence.path) in n for n in _notes(app))
    assert proc.wait(timeout=5) is not None
    audit = [json.loads(line) for line in (ev_dir / AUDIT_FILE).read_text().splitlines()]
    assert [(e["action"], e["result"], e["dry_run"]) for e in audit] == [("stop", "sent", False)]
    assert audit[0]["processes"][0]["pid"] == proc.pid
    bundle = Path(audit[0]["evidence"])
    assert bundle.parent == ev_dir and (bundle / "screenshot.svg").exists() and (bundle / "action.json").exists()


@pytest.mark.timeout(30)
@run_async
async def test_a_run_that_cannot_be_stopped_shows_why_and_offers_only_close(tmp_path: Path) -> None:
    hub, _ = sample_scene(NOW)  # its runs' logs are not files on this machine
    rec = _recorder()
    app = make_app(Config(evidence_dir=tmp_path / "ev"), hub=hub, clock=lambda: NOW + 5, redraw_interval=0.0)
    async with app.run_test(size=(120, 40), message_hook=rec) as pilot:
        await pilot.pause()
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStopScreen), what="the dialog")
        assert "Cannot stop it:" in _dialog_text(app)
        assert _buttons(app) == ["Close (n/esc)"]
        await pilot.press("y")  # nothing to confirm
        await pilot.pause()
        assert isinstance(app.screen, ConfirmStopScreen)
        await pilot.press("escape")
        await until(pilot, _seen(rec, StopCancelled), what="StopCancelled")
        assert rec.names() == ["StopRequested", "StopPlanned", "StopCancelled"]
        assert any(n.startswith("Not stopped") and "Nothing was done" in n for n in _notes(app))
    assert not (tmp_path / "ev").exists()


# ---- e: reviewer --------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@run_async
async def test_e_stop_answer_is_shown_and_opens_the_confirmation(
    tmp_path: Path, writer: tuple[subprocess.Popen[bytes], Path, Path]
) -> None:
    proc, script, log = writer
    config = Config(evidence_dir=tmp_path / "ev", reviewer=_reviewer(tmp_path, "STOP: loss is NaN"))
    rec = _recorder()
    app, _hub = _live_app(log, config)
    async with app.run_test(size=(160, 50), message_hook=rec) as pilot:
        await until(pilot, lambda: app.snapshot is not None and app.snapshot.runs, what="the run in a snapshot")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen), what="the detail view")
        detail = app.screen
        assert not detail.query_one("#reviewer").display
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStopScreen), what="the stop dialog")
        assert rec.names() == ["EscalationRequested", "ReviewerAnswered", "StopRequested", "StopPlanned"]
        assert any(n.startswith("Reviewer") and "STOP: loss is NaN" in n for n in _notes(app))
        assert f"{proc.pid}: {sys.executable} {script}" in _dialog_text(app)
        await pilot.press("n")
        await until(pilot, lambda: app.screen is detail, what="back on the detail view")
        line = str(detail.query_one("#reviewer", Static).render())
        assert detail.query_one("#reviewer").display and "Reviewer STOP: loss is NaN" in line
        assert f"command: {sys.executable}" in line
        assert _alive(proc.pid)
    assert rec.names()[-1] == "StopCancelled"


@pytest.mark.timeout(30)
@run_async
async def test_e_garbage_answer_is_a_plain_notice_and_no_dialog(tmp_path: Path) -> None:
    hub, _ = sample_scene(NOW)
    config = Config(evidence_dir=tmp_path / "ev", reviewer=_reviewer(tmp_path, "the weather is nice today"))
    rec = _recorder()
    app = make_app(config, hub=hub, clock=lambda: NOW + 5, redraw_interval=0.0)
    async with app.run_test(size=(160, 50), message_hook=rec) as pilot:
        await pilot.pause()
        await pilot.press("down", "enter")  # the unsure plateau run
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen) and app.screen.run_id == "plateau"
        head = str(app.screen.query_one("#detail-head").render())
        await pilot.press("e")
        await until(pilot, _seen(rec, ReviewerFailed), what="ReviewerFailed")
        await pilot.pause(0.3)
        assert rec.names() == ["EscalationRequested", "ReviewerFailed"]
        assert isinstance(app.screen, DetailScreen)
        note = next(n for n in _notes(app) if n.startswith("Reviewer gave no answer"))
        assert "did not say STOP, CONTINUE or WAIT" in note and "verdict is unchanged" in note
        line = str(app.screen.query_one("#reviewer", Static).render())
        assert "no answer: the answer did not say STOP, CONTINUE or WAIT (verdict unchanged)" in line
        assert str(app.screen.query_one("#detail-head").render()) == head  # still ? unsure, WAIT
        assert "WAIT" in head


@pytest.mark.timeout(60)
@run_async
async def test_e_stop_answer_with_auto_stop_stops_without_the_dialog(
    tmp_path: Path, writer: tuple[subprocess.Popen[bytes], Path, Path]
) -> None:
    proc, _script, log = writer
    reviewer = _reviewer(tmp_path, "STOP\nthe loss is NaN", auto_stop=True)
    config = Config(evidence_dir=tmp_path / "ev", reviewer=reviewer)
    rec = _recorder()
    app, _hub = _live_app(log, config)
    pushed: list[str] = []
    push = app.push_screen

    def spy(screen: Any, *args: Any, **kw: Any) -> Any:
        pushed.append(type(screen).__name__)
        return push(screen, *args, **kw)

    app.push_screen = spy  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40), message_hook=rec) as pilot:
        await until(pilot, lambda: app.snapshot is not None and app.snapshot.runs, what="the run in a snapshot")
        await pilot.press("e")
        await until(pilot, lambda: _seen(rec, StopSent)() or _seen(rec, StopFailed)(), what="the outcome")
        assert rec.names() == [
            "EscalationRequested",
            "ReviewerAnswered",
            "StopRequested",
            "StopPlanned",
            "StopConfirmed",
            "StopSent",
        ], _notes(app)
        assert "ConfirmStopScreen" not in pushed
    assert proc.wait(timeout=5) is not None
    assert (tmp_path / "ev" / AUDIT_FILE).exists()


@pytest.mark.parametrize("auto", [True, False])
@pytest.mark.timeout(30)
@run_async
async def test_unsure_verdicts_escalate_by_themselves_once_per_interval_when_auto(tmp_path: Path, auto: bool) -> None:
    hub, _ = sample_scene(NOW)
    config = Config(evidence_dir=tmp_path / "ev", reviewer=_reviewer(tmp_path, "WAIT: still improving", auto=auto))
    rec = _recorder()
    app = make_app(config, hub=hub, clock=lambda: NOW + 5, redraw_interval=0.0)
    unsure = HubEvent(NOW, "verdict", "plateau", "llmc-d12", Verdict.UNSURE, Decision.WAIT, "plateau", "live")
    async with app.run_test(size=(120, 40), message_hook=rec) as pilot:
        await pilot.pause()
        hub.emit(unsure)
        if auto:
            await until(pilot, _seen(rec, ReviewerAnswered), what="ReviewerAnswered")
        hub.emit(unsure)  # within the interval: not asked again
        await pilot.pause(1.0)
        assert rec.names() == (["ReviewerAnswered"] if auto else [])
        if auto:
            assert rec.seen[0].auto  # type: ignore[attr-defined]
            assert app.reviews["plateau"].decision == "WAIT"
            assert any("asked by itself" in n and "WAIT: still improving" in n for n in _notes(app))


@pytest.mark.timeout(10)
@run_async
async def test_workers_turn_what_actions_raise_into_failed_messages(tmp_path: Path) -> None:
    from monitor.actions import Actions
    from tui import action_workers
    from tui.scripted import ScriptedHub

    posted: list[Message] = []
    gone = Actions(Config(evidence_dir=tmp_path / "ev"), hub=ScriptedHub())  # knows no run at all
    await action_workers.save_evidence(gone, posted.append, "r1", "run one", None)
    await action_workers.plan_stop(gone, posted.append, "r1", "run one", None, confirm=True)
    await action_workers.escalate(gone, posted.append, "r1", "run one")
    await action_workers.escalate(gone, posted.append, "r1", "run one", auto=True)
    assert [type(m).__name__ for m in posted] == ["EvidenceFailed", "StopFailed", "ReviewerFailed", "ReviewerFailed"]
    assert all("the hub has no run 'r1'" in m.error for m in posted)  # type: ignore[attr-defined]
    assert [m.auto for m in posted[2:]] == [False, True]  # type: ignore[attr-defined]
