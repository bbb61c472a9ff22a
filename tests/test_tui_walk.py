"""What a walk through the views at 80x24 found: keys that fit the footer, log lines rewrapped on
resize, a loss that fits its column, compare's legend in the title."""

from __future__ import annotations

import pytest
from rich.text import Text

from monitor.hub import HubSnapshot
from monitor.model import Row
from tests.test_tui_app import NOW, _app, run_async, settle
from tui import format as fmt
from tui.app import RunwatchApp
from tui.scripted import ScriptedHub, analysis, mixed_scene, run_snapshot, sample_scene, yolo_scene
from tui.widgets.footer import FittingFooter
from tui.widgets.log_tail import LogTail
from tui.widgets.plot import PlotView
from tui.widgets.plot_grid import PlotGrid


@pytest.mark.parametrize(
    ("x", "width", "text"),
    [(8.52e-05, 7, "8.52e-5"), (-8.52e-05, 7, "-8.5e-5"), (2.314, 7, "2.314"), (123456.0, 7, "1.23e5"), (None, 7, "—")],
)
def test_loss_fits_its_column(x: float | None, width: int, text: str) -> None:
    assert fmt.num_fit(x, width) == text


def _footer_keys(app: RunwatchApp) -> list[str]:
    footer = app.screen.query_one(FittingFooter)
    return [str(getattr(k, "description", "")) for k in footer.children if k.display]


@run_async
async def test_footer_shows_the_keys_that_fit_and_always_help_and_quit() -> None:
    hub, _ = yolo_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot, 5)
        narrow = _footer_keys(app)
        assert "Help" in narrow and "Quit" in narrow and "Back" in narrow
        footer = app.screen.query_one(FittingFooter)
        assert sum(k.outer_size.width for k in footer.children if k.display) <= 80
        await pilot.resize_terminal(200, 40)
        await settle(pilot, 5)
        wide = _footer_keys(app)
        assert len(wide) > len(narrow) and "Config" in wide


@run_async
async def test_the_log_rewraps_when_its_pane_gets_narrower() -> None:
    line = "iter 405: loss 3.2481, time 1452.75ms, mfu 0.01%, tokens/s 123456.7, grad norm 0.9812"
    rows = [Row(float(s), {"loss": 3.0 - s / 100}) for s in range(50)]
    a = analysis("long-lines", rows, NOW - 1, [line] * 8)
    snap = HubSnapshot(NOW, (run_snapshot("long-lines"),), (), ())
    app = _app(ScriptedHub({"long-lines": a}, {}, initial=snap))
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        log = app.screen.query_one(LogTail)
        assert log.lines
        await pilot.resize_terminal(80, 24)
        await settle(pilot, 5)
        # Every line fits the pane: nothing is cut off or needs a sideways scroll.
        assert log.virtual_size.width <= log.scrollable_content_region.width


def _title(app: RunwatchApp) -> str:
    return Text.from_markup(str(app.screen.query_one("#compare-plot", PlotView).border_title)).plain


@run_async
async def test_compare_legend_names_runs_by_rank_when_names_do_not_fit() -> None:
    hub, _ = mixed_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        title = _title(app)
        assert "━1" in title and "━2" in title and "hf-bert-base" not in title
        await pilot.resize_terminal(240, 40)
        await settle(pilot)
        title = _title(app)
        assert "hf-bert-base" in title


def test_compact_toggles_name_only_what_is_not_default() -> None:
    from tui.plotdata import PlotOptions

    o = PlotOptions()
    assert o.describe("iter", compact=True) == "x: iter"
    assert o.next_ema().describe("iter", compact=True) == "x: iter · EMA 0.9"
    assert o.toggled_log().describe(compact=True) == "x: step · y: log"
    assert o.describe() == "x: step · y: linear · EMA off · all steps"


@run_async
async def test_keys_that_would_do_nothing_are_not_offered() -> None:
    # A file read in one go has no arrival times worth an axis; one run has nothing to compare with.
    rows = [Row(float(s), {"loss": 3.0 - s / 100}, NOW - 1) for s in range(50)]  # one arrival time
    a = analysis("read-at-once", rows, NOW - 1)
    snap = HubSnapshot(NOW, (run_snapshot("read-at-once"),), (), ())
    app = _app(ScriptedHub({"read-at-once": a}, {}, initial=snap))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert not app.screen.check_action("compare", ())
        assert "Compare" not in _footer_keys(app)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert screen.X_AXES == ("step",) and not screen.check_action("x_axis", ())  # type: ignore[attr-defined]
        assert "X axis" not in _footer_keys(app)
    hub, _ = sample_scene(NOW)  # rows that came over time: wall and relative time are offered
    app = _app(hub)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert app.screen.check_action("compare", ())
        await pilot.press("enter")
        await settle(pilot)
        assert "wall" in app.screen.X_AXES and "X axis" in _footer_keys(app)  # type: ignore[attr-defined]


def test_a_forced_exit_runs_the_cleanup_hooks_then_ends_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # SIGTERM/SIGHUP with a closed terminal: after the grace period the process ends anyway, and the
    # demo's simulators are stopped first (one failing hook does not keep the others from running).
    import tui.app as app_module

    hub, _ = sample_scene(NOW)
    app = _app(hub)
    ran: list[str] = []

    def failing() -> None:
        ran.append("failing")
        raise OSError("already gone")

    app.exit_hooks += [failing, lambda: ran.append("demo.stop")]
    exits: list[int] = []
    monkeypatch.setattr(app_module.os, "_exit", exits.append)
    app._exit_now(129)
    assert ran == ["failing", "demo.stop"] and exits == [129]


@run_async
async def test_a_picker_pattern_that_matches_nothing_says_so() -> None:
    hub, _ = yolo_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter", "slash", *"nosuchmetric", "enter")
        await settle(pilot)
        (view,) = app.screen.query_one(PlotGrid).views
        assert "no logged metric matches 'nosuchmetric'" in str(view.render())


@run_async
async def test_keys_typed_in_one_burst_after_slash_are_not_commands() -> None:
    from textual import events

    hub, _ = yolo_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        # A terminal delivers a fast typist's (or a paste's) keys in one read: `m` and `p` must not
        # turn smoothing on or move to the previous run while the picker is opening.
        for key, char in (("slash", "/"), ("m", "m"), ("a", "a"), ("p", "p")):
            app.post_message(events.Key(key, char))
        await settle(pilot, 5)
        assert screen.options.ema == 0.0 and screen.run_id == "yolo"  # type: ignore[attr-defined]
        assert app.focused is screen.query_one("#picker")
