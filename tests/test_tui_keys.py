"""Pilot tests for the issue-14 keys: table navigation and sorting, the detail grid, compare, notices."""

from __future__ import annotations

import dataclasses

from monitor.config import Config
from monitor.hub import HubEvent
from monitor.model import Decision, Verdict
from tests.test_tui_app import NOW, _app, run_async, settle
from tui.app import make_app
from tui.screens.compare import CompareScreen
from tui.screens.detail import DetailScreen
from tui.screens.main import MainScreen
from tui.screens.notices import NoticesScreen
from tui.scripted import mixed_scene, sample_scene, yolo_scene
from tui.widgets.log_tail import LogTail
from tui.widgets.plot_grid import PlotGrid
from tui.widgets.run_table import RunTable
from tui.widgets.summary import SummaryBar


@run_async
async def test_table_home_end_pages_and_the_cursor_follows_its_run_through_a_resort() -> None:
    hub, _ = mixed_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(RunTable)
        await pilot.press("end")
        assert table.cursor_row == len(table.order) - 1
        await pilot.press("home")
        assert table.cursor_row == 0
        await pilot.press("pagedown")
        assert table.cursor_row == len(table.order) - 1
        await pilot.press("pageup")
        assert table.cursor_row == 0
        table.select("big")
        await pilot.press("o", "o", "o")  # by step: the 1M-step run moves to the top, the cursor with it
        await settle(pilot)
        assert table.order[0] == "big" and table.selected_id == "big"
        assert "step ▼" in str(table.columns["step"].label)
        await pilot.press("O")
        await settle(pilot)
        assert table.order[-1] == "big" and table.selected_id == "big"
        assert "1,000,000" in str(table.get_cell("big", "step"))


@run_async
async def test_escape_on_the_table_clears_a_kept_filter() -> None:
    hub, _ = sample_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(RunTable)
        await pilot.press("slash", *"gpt", "enter")
        await settle(pilot)
        assert set(table.order) == {"nan", "healthy"} and table.has_focus
        await pilot.press("escape")
        await settle(pilot)
        assert len(table.order) == 4
        assert "filter" not in str(app.screen.query_one(SummaryBar).render())


@run_async
async def test_detail_picker_full_screen_pane_paging_config_and_log_filter() -> None:
    hub, _ = yolo_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        grid = screen.query_one(PlotGrid)
        assert len(grid.items) == 8 and grid.shape.shown == 6 and len(grid.views) == 6
        assert [i.name for i in grid.items][:3] == ["box_loss", "cls_loss", "obj_loss"]
        await pilot.press(*["g"] * 6)  # the seventh pane: the second page
        await settle(pilot)
        assert grid.selected == 6 and grid.first == 6 and len(grid.views) == 2
        assert "panes 7–8 of 8" in str(screen.query_one("#detail-head").render())
        await pilot.press("f")
        await settle(pilot)
        assert grid.full and len(grid.views) == 1 and not screen.query_one("#lower").display
        assert str(grid.views[0].border_title).startswith("metrics/recall")
        await pilot.press("f")
        await settle(pilot)
        assert not grid.full and screen.query_one("#lower").display
        await pilot.press("slash", *"val/*", "enter")
        await settle(pilot)
        assert screen.pattern == "val/*"
        assert [i.name for i in grid.items] == ["box_loss", "val/cls_loss", "val/obj_loss"]
        assert all(len(v.border_title or "") for v in grid.views)
        await pilot.press("slash", "escape")  # escape clears the picker: every metric again
        await settle(pilot)
        assert screen.pattern == "" and len(grid.items) == 8
        await pilot.press("i")
        await settle(pilot)
        info = str(screen.query_one("#info").render())
        assert "batch_size" in info and "abcd1234secretvalue" not in info and "[REDACTED]" in info
        assert not screen.query_one("#log-box").display
        await pilot.press("i", "L", *"0.02", "enter")
        await settle(pilot)
        log = screen.query_one(LogTail)
        assert log.filter_text == "0.02" and "filter '0.02'" in str(log.border_title)


@run_async
async def test_compare_cycles_its_x_axes_and_ranks_a_nan_run_last_never_improving() -> None:
    hub, _ = mixed_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CompareScreen) and len(screen.run_ids) == 5
        assert screen.ranked_ids[-1] == "short-2"  # NaN: worst
        ranking = screen.query_one("#ranking")
        row = [str(c) for c in ranking.get_row("short-2")]  # type: ignore[attr-defined]
        assert "diverged" in row and not any(c.startswith("-") for c in row[5:6])
        # Step keys differ (train/global_step, iter, step): compare opens on % of each run.
        assert screen.options.x_axis == "pct"
        assert "relative %" in str(screen.query_one("#compare-head").render())
        axes = []
        for _ in range(5):
            await pilot.press("x")
            axes.append(screen.options.x_axis)
        assert axes == ["epoch", "time", "wall", "step", "pct"]  # the HF run logs epochs
        await pilot.press("x")  # epoch: only runs that know their epochs are drawn
        await settle(pilot)
        plot = screen.query_one("#compare-plot")
        assert "hf-bert-base" in str(plot.border_title) and "nanogpt" not in str(plot.border_title)


@run_async
async def test_many_runs_turning_bad_share_one_toast_and_the_log_keeps_it() -> None:
    hub, snap = sample_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        for r in snap.runs:
            hub.emit(HubEvent(NOW, "verdict", r.id, r.name, Verdict.BAD, Decision.STOP, "diverging", "live"))
        await pilot.pause(0.6)
        toasts = [n for n in app.notices if "bad" in n.title]
        assert len(toasts) == 1 and toasts[0].title.startswith("✗ 4 runs turned bad")
        assert isinstance(app.screen, MainScreen)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, NoticesScreen)
        assert "4 runs turned bad" in str(app.screen.query_one("#notices").render())
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


@run_async
async def test_steps_per_second_decay_and_the_age_counts_on_a_quiet_run() -> None:
    hub, snap = sample_scene(NOW)
    clock = [NOW]
    app = make_app(Config(), hub=hub, clock=lambda: clock[0], redraw_interval=0.0)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(RunTable)
        hub.publish(dataclasses.replace(snap, runs=tuple(dataclasses.replace(r, steps_per_s=2.7) for r in snap.runs)))
        await settle(pilot)
        assert str(table.get_cell("healthy", "speed")) == "2.7/s"
        clock[0] = NOW + 300
        table.tick(clock[0])
        assert str(table.get_cell("healthy", "speed")) == "0/s"
        assert str(table.get_cell("healthy", "age")) == "5m"


@run_async
async def test_a_run_being_caught_up_reads_reading_until_the_hub_says_caught_up() -> None:
    hub, snap = sample_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(RunTable)
        hub.emit(HubEvent(NOW, "run", "healthy", "gpt-small", Verdict.HEALTHY, Decision.CONTINUE, "", "live"))
        hub.publish(dataclasses.replace(snap, time=NOW + 1))
        await settle(pilot)
        assert str(table.get_cell("healthy", "state")) == "reading"
        hub.emit(HubEvent(NOW, "caught_up", "healthy", "gpt-small", Verdict.HEALTHY, Decision.CONTINUE, "", "live"))
        hub.publish(dataclasses.replace(snap, time=NOW + 2))
        await settle(pilot)
        assert str(table.get_cell("healthy", "state")) == "live"


@run_async
async def test_a_stall_message_keeps_counting_in_the_detail_view() -> None:
    from monitor.model import Severity
    from tui.scripted import finding
    from tui.widgets.findings import FindingsList

    hub, snap = sample_scene(NOW)
    stall = finding("stalled", Severity.WARN, 299, "no new step for 21s after step 299 (usual interval 1s)")
    runs = tuple(dataclasses.replace(r, findings=(stall,)) if r.id == "healthy" else r for r in snap.runs)
    hub.initial = dataclasses.replace(snap, runs=runs)
    clock = [NOW + 20]
    app = make_app(Config(), hub=hub, clock=lambda: clock[0], redraw_interval=0.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.screen.query_one(RunTable).select("healthy")
        await pilot.press("enter")
        await settle(pilot)
        findings = app.screen.query_one(FindingsList)
        assert "no new step for 22s" in str(findings.render())  # the store's last row came at NOW - 2
        clock[0] = NOW + 118
        app.screen.tick(clock[0])
        assert "no new step for 2m" in str(findings.render())


_ACTED_ELSEWHERE = {"quit", "stop", "escalate", "evidence", "confirm", "cancel", "back", "help"}


@run_async
async def test_every_key_of_every_view_does_something_without_breaking_the_app() -> None:
    """Each registry key pressed in its view: the app keeps running and the view stays usable."""
    from tui import actions as registry

    hub, _ = yolo_scene(NOW)
    app = _app(hub)
    opened = {registry.MAIN: (), registry.DETAIL: ("enter",), registry.COMPARE: ("c",)}
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        for scope, how in opened.items():
            for spec in registry.ACTIONS:
                if scope not in spec.scopes or spec.id in _ACTED_ELSEWHERE:
                    continue
                await pilot.press(*how)
                await settle(pilot, 2)
                view = type(app.screen)
                await pilot.press(spec.key.split(",")[0])
                await settle(pilot, 2)
                assert app.is_running and app.return_code is None, f"{scope}: {spec.id} ended the app"
                # Back to the table: close whatever the key opened (a filter box, a view, the log).
                for _ in range(4):
                    if isinstance(app.screen, MainScreen) and not app.screen.query_one("#filter").has_focus:
                        break
                    await pilot.press("escape")
                    await settle(pilot, 2)
                assert isinstance(app.screen, MainScreen), f"{scope} ({view.__name__}): {spec.id} left us stuck"
