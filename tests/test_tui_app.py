"""The app driven by a scripted hub through Pilot: badges, screens, filtering, stale sources, run actions.

The actions themselves, for real (bundles, a stopped process, a reviewer), are in test_tui_actions.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from textual.message import Message
from textual.pilot import Pilot
from textual.widgets import DataTable

from monitor.hub import HubEvent
from monitor.model import Decision, Severity, Verdict
from tui.app import RunwatchApp, make_app
from tui.messages import EventArrived, RunActionReported, RunActionRequested, SnapshotArrived
from tui.screens.compare import CompareScreen
from tui.screens.confirm_stop import ConfirmStopScreen
from tui.screens.detail import DetailScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.scripted import ScriptedHub, finding, sample_scene
from tui.widgets.notice_bar import NoticeBar
from tui.widgets.plot import PlotView
from tui.widgets.run_table import RunTable
from tui.widgets.summary import SummaryBar

NOW = 1000.0


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (the suite has no async plugin)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


def _app(hub: ScriptedHub, **kw: object) -> RunwatchApp:
    from monitor.config import Config

    return make_app(Config(**kw), hub=hub, clock=lambda: NOW + 5, redraw_interval=0.0)  # type: ignore[arg-type]


async def settle(pilot: Any, n: int = 3) -> None:
    """Let the app handle what the last key or snapshot started (a few message-loop turns)."""
    for _ in range(n):
        await pilot.pause()


class Recorder:
    """Records the app's messages of the kinds the tests care about (the message flow)."""

    def __init__(self, *kinds: type[Message]) -> None:
        self.kinds = kinds
        self.seen: list[Message] = []

    def __call__(self, m: Message) -> None:
        # The hook sees a bubbling message once per node it reaches: keep the first sighting.
        if isinstance(m, self.kinds) and not any(m is s for s in self.seen):
            self.seen.append(m)

    def names(self) -> list[str]:
        return [type(m).__name__ for m in self.seen]


async def until(pilot: Pilot[Any], cond: Callable[[], object], timeout: float = 15.0, what: str = "") -> None:
    """Let the app run until `cond()` holds (workers finish in real time), failing after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not met within {timeout} s: {what or cond}")
        await pilot.pause(0.05)


def _badge(app: RunwatchApp, run_id: str) -> str:
    table = app.screen.query_one(RunTable)
    return str(table.get_cell(run_id, "badge"))


def _notes(app: RunwatchApp) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app.notices]


@run_async
async def test_snapshot_reaches_the_table_sorted_worst_first() -> None:
    hub, _ = sample_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert hub.started
        table = app.screen.query_one(RunTable)
        assert table.order == ("nan", "plateau", "lost", "healthy")
        assert _badge(app, "nan") == "✗ bad"
        assert _badge(app, "plateau") == "? unsure"
        assert _badge(app, "lost") == "~ stale"
        assert _badge(app, "healthy") == "✓ healthy"
        summary = str(app.screen.query_one(SummaryBar).render())
        assert "✓ 1 healthy" in summary and "✗ 1 bad" in summary and "~ 1 stale" in summary
        assert "worst: gpt-fp16: nan at step 260" in summary
        await pilot.press("o")  # by run name
        await pilot.pause()
        assert table.order == ("nan", "healthy", "plateau", "lost")  # gpt-fp16, gpt-small, llmc-d12, remote-7b
        assert "run ▼" in str(table.columns["name"].label)
        assert "sorted by run" in str(app.screen.query_one(SummaryBar).render())
        await pilot.press("O")  # reversed
        await pilot.pause()
        assert table.order == ("lost", "plateau", "healthy", "nan")
        assert "run ▲" in str(table.columns["name"].label)
    assert hub.stopped


@run_async
async def test_a_verdict_change_reaches_the_badge_through_a_snapshot_message() -> None:
    hub, _ = sample_scene(NOW)
    rec = Recorder(SnapshotArrived, EventArrived)
    app = _app(hub)
    async with app.run_test(size=(120, 40), message_hook=rec) as pilot:
        await pilot.pause()
        assert _badge(app, "healthy") == "✓ healthy"
        bad = finding("divergence", Severity.BAD, 280, "loss is diverging")
        hub.update_run(
            "healthy", verdict=Verdict.BAD, decision=Decision.STOP, reason="loss is diverging", findings=(bad,)
        )
        hub.emit(
            HubEvent(NOW, "verdict", "healthy", "gpt-small", Verdict.BAD, Decision.STOP, "loss is diverging", "live")
        )
        await pilot.pause(0.5)  # verdict toasts coalesce for a moment
        assert _badge(app, "healthy") == "✗ bad"
        assert app.screen.query_one(RunTable).order[:2] == ("healthy", "nan")  # ties keep the listed order
        assert rec.names().count("SnapshotArrived") >= 2
        assert "EventArrived" in rec.names()
        assert any("Bad run" in n and "gpt-small" in n for n in _notes(app))


@run_async
async def test_snapshots_coalesce_a_burst_draws_once() -> None:
    hub, snap = sample_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        for i in range(50):
            hub.publish(dataclasses.replace(snap, time=NOW + i))
        drawn: list[float] = []
        original = app.screen.show_snapshot

        def spy(s):  # type: ignore[no-untyped-def]
            drawn.append(s.time)
            original(s)

        app.screen.show_snapshot = spy  # type: ignore[method-assign]
        await pilot.pause()
        assert drawn and drawn[-1] == NOW + 49
        assert len(drawn) < 50  # replaced in the queue, not drawn one by one


@run_async
async def test_source_error_shows_as_stale_state_not_a_crash() -> None:
    hub, _ = sample_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        err = finding("source_error", Severity.WARN, 299, "gpu1: host unreachable", metric="source")
        hub.update_run(
            "healthy", state="retrying in 10 s", stale=True, source_error="gpu1: unreachable", findings=(err,)
        )
        hub.emit(
            HubEvent(
                NOW,
                "state",
                "healthy",
                "gpt-small",
                Verdict.HEALTHY,
                Decision.CONTINUE,
                "",
                "retrying in 10 s",
                "gpu1: host unreachable",
                (err,),
            )
        )
        await pilot.pause()
        assert _badge(app, "healthy") == "~ stale"
        table = app.screen.query_one(RunTable)
        assert str(table.get_cell("healthy", "state")).startswith("retryin")
        assert any("Source unreachable" in n for n in _notes(app))
        # The same error again does not notify twice; the detail view still opens.
        hub.emit(
            HubEvent(
                NOW,
                "state",
                "healthy",
                "gpt-small",
                Verdict.HEALTHY,
                Decision.CONTINUE,
                "",
                "retrying in 20 s",
                "gpu1: host unreachable",
                (err,),
            )
        )
        await pilot.pause()
        assert sum("Source unreachable" in n for n in _notes(app)) == 1
        table.select("healthy")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        head = str(app.screen.query_one("#detail-head").render())
        assert "~ stale" in head and "source: gpu1: unreachable" in head


@run_async
async def test_keys_open_the_right_screens() -> None:
    hub, _ = sample_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen) and app.screen.run_id == "nan"
        await pilot.press("n")
        await pilot.pause()
        assert app.screen.run_id == "plateau"
        await pilot.press("l", "m", "x", "w")
        await pilot.pause()
        opts = app.screen.options
        assert opts.log_y and opts.ema == 0.9 and opts.x_axis == "wall" and opts.window == 1000
        assert "EMA 0.9" in str(app.screen.query_one("#detail-head").render())
        await pilot.press("minus", "minus", "x")
        await pilot.pause()
        opts = app.screen.options
        assert opts.ema == 0.7 and opts.x_axis == "time"
        await pilot.press("m")
        assert app.screen.options.ema == 0.0
        await pilot.press("plus")
        assert app.screen.options.ema == 0.8
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        await pilot.press("down", "space", "down", "down", "space", "c")
        await pilot.pause()
        assert isinstance(app.screen, CompareScreen)
        assert app.screen.run_ids == ("plateau", "healthy")
        ranking = app.screen.query_one("#ranking", DataTable)
        assert ranking.row_count == 2
        assert str(ranking.get_row_at(0)[1]) == "gpt-small"  # the lower loss ranks first
        await pilot.press("k")
        assert "eval loss" in str(app.screen.query_one("#compare-head").render())
        await pilot.press("escape", "r")
        assert hub.refreshes == 1
        await pilot.press("t")
        assert app.theme == "runwatch-light"
        await pilot.press("q")
    assert hub.stopped


@run_async
async def test_filter_narrows_the_table_and_escape_clears_it() -> None:
    hub, _ = sample_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = app.screen.query_one(RunTable)
        await pilot.press("slash", *"gpt")
        await pilot.pause()
        assert set(table.order) == {"nan", "healthy"}
        assert "filter: 'gpt'" in str(app.screen.query_one(SummaryBar).render())
        await pilot.press("enter")  # keeps the filter, back to the table
        assert set(table.order) == {"nan", "healthy"}
        await pilot.press("slash", "ctrl+a", "ctrl+k", *"bad")
        await pilot.pause()
        assert table.order == ("nan",)
        await pilot.press("escape")
        await pilot.pause()
        assert len(table.order) == 4
        assert table.has_focus


@pytest.mark.timeout(30)
@run_async
async def test_stop_escalate_evidence_reach_the_actions_from_the_table_and_the_detail(tmp_path: Path) -> None:
    hub, _ = sample_scene(NOW)
    rec = Recorder(RunActionRequested, RunActionReported)
    app = _app(hub, evidence_dir=tmp_path)  # and no reviewer configured
    async with app.run_test(size=(120, 40), message_hook=rec) as pilot:
        await pilot.pause()
        await pilot.press("b")
        await until(pilot, lambda: "EvidenceSaved" in rec.names())
        await pilot.press("e")
        await until(pilot, lambda: "ReviewerFailed" in rec.names())
        # Notices are plain text: as markup, "[reviewer] command = [...]" would lose its brackets.
        bar = str(app.screen.query_one(NoticeBar).render())
        assert "[reviewer]" in bar and "[reviewer]" in app.notices[-1].message
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStopScreen))
        await pilot.press("escape")
        await until(pilot, lambda: "StopCancelled" in rec.names())
        assert rec.names() == [
            "EvidenceRequested",
            "EvidenceSaved",
            "EscalationRequested",
            "ReviewerFailed",
            "StopRequested",
            "StopPlanned",
            "StopCancelled",
        ]
        assert all(m.run_id == "nan" for m in rec.seen)  # type: ignore[attr-defined]
        notes = _notes(app)
        assert not any("Not available" in n for n in notes)
        assert any(n.startswith("Evidence saved") and str(tmp_path) in n for n in notes)
        assert any(n.startswith("Reviewer gave no answer") and "set [reviewer] command" in n for n in notes)
        assert any(n.startswith("Not stopped") and "Nothing was done" in n for n in notes)
        await pilot.press("enter", "s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStopScreen))
        assert [type(s).__name__ for s in app.screen_stack][-2:] == ["DetailScreen", "ConfirmStopScreen"]
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen))
        assert rec.names()[-3:] == ["StopRequested", "StopPlanned", "StopCancelled"]
        assert "no reviewer configured" in str(app.screen.query_one("#reviewer").render())


@run_async
async def test_keys_remap_from_config_and_help_shows_them() -> None:
    hub, _ = sample_scene(NOW)
    app = _app(hub, keys={"compare": "v", "quit": "ctrl+x"})
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("c")
        assert isinstance(app.screen, MainScreen)
        await pilot.press("v")
        await pilot.pause()
        assert isinstance(app.screen, CompareScreen)
        await pilot.press("escape", "question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = app.export_screenshot().replace("&#160;", " ")
        assert "ctrl+x" in text and "compare the marked runs" in text


@run_async
async def test_plots_redraw_only_when_data_size_or_theme_changed() -> None:
    hub, snap = sample_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        plot = app.screen.query_one("#pane-0", PlotView)
        before = plot.renders
        assert before >= 1
        hub.publish(dataclasses.replace(snap, time=NOW + 1))  # same data
        await pilot.pause()
        assert plot.renders == before
        a = hub.analyses["nan"]
        from monitor.model import Row

        a.add_rows([Row(280.0, {"loss": math.nan})], NOW)
        hub.publish(dataclasses.replace(snap, time=NOW + 2))
        await pilot.pause()
        assert plot.renders == before + 1
        await pilot.press("t")
        await pilot.pause()
        assert plot.renders == before + 2
        await pilot.resize_terminal(140, 50)
        await pilot.pause()
        assert plot.renders == before + 3


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
@run_async
async def test_sizes_small_keeps_the_table_large_shows_a_preview(size: tuple[int, int]) -> None:
    hub, _ = sample_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        screen = app.screen
        table = screen.query_one(RunTable)
        assert table.region.height >= 5 and table.order
        # The table takes the rows it needs; the preview grows into the rest.
        assert table.region.height == len(table.order) + 1
        preview = screen.query_one("#preview")
        assert preview.display and preview.region.height >= size[1] - 8
        await pilot.press("enter")
        await pilot.pause()
        # The NaN run logs only loss: one pane fills the grid (and the scene's host has a GPU).
        visible = [str(p.border_title) for p in app.screen.query(PlotView) if p.display]
        assert visible[0].startswith("loss") and any(t.startswith("GPU") for t in visible)
        assert not any("not logged" in t or "no driver" in t for t in visible)


@run_async
async def test_live_numbers_are_throttled_but_a_verdict_change_draws_at_once() -> None:
    from monitor.config import Config

    hub, _ = sample_scene(NOW)
    app = make_app(Config(), hub=hub, clock=lambda: NOW + 5, redraw_interval=30.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = app.screen.query_one(RunTable)
        hub.update_run("healthy", loss=1.5, last_step=400.0)
        await pilot.pause()
        assert str(table.get_cell("healthy", "loss")) == "2.187"  # held back: only numbers moved
        hub.update_run("plateau", verdict=Verdict.BAD, decision=Decision.STOP)
        await pilot.pause()
        assert _badge(app, "plateau") == "✗ bad"
        assert str(table.get_cell("healthy", "loss")) == "1.5"  # and the held-back numbers came along


@run_async
async def test_a_snapshot_right_after_a_screen_is_pushed_waits_for_its_widgets() -> None:
    hub, snap = sample_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        # A live hub publishes every 0.25 s, so one often lands between the push and the mount.
        app.push_screen(DetailScreen("nan"))
        hub.publish(dataclasses.replace(snap, time=NOW + 1))
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        assert "gpt-fp16" in str(app.screen.query_one("#detail-head").render())
