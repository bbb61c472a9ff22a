"""The mouse wheel zooms the plots' x range around the pointer; `z` shows the whole run again."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from textual import events

from tests.test_tui_app import NOW, _app, run_async, settle
from tui.plotdata import PlotOptions, prepare_series, zoom_range
from tui.screens.compare import CompareScreen
from tui.screens.detail import DetailScreen
from tui.scripted import mixed_scene, yolo_scene
from tui.widgets.plot import PlotView
from tui.widgets.plot_grid import PlotGrid


async def _wheel(pilot: Any, view: PlotView, dx: int, dy: int, *, up: bool, shift: bool = False) -> None:
    """A wheel notch at (dx, dy) inside `view`'s region, sent the way the terminal driver sends it."""
    r = view.region
    x, y = r.x + dx, r.y + dy
    cls = events.MouseScrollUp if up else events.MouseScrollDown
    pilot.app.post_message(cls(None, x, y, 0, -1 if up else 1, 0, shift, False, False, screen_x=x, screen_y=y))
    await settle(pilot)


def test_zoom_range_narrows_around_the_pointer_and_zooms_back_out_to_none() -> None:
    r = zoom_range((0.0, 1000.0), (0.0, 1000.0), 1000.0, True)
    assert r == pytest.approx((300.0, 1000.0))  # the pointer's x stays where it was
    r2 = zoom_range((0.0, 1000.0), (0.0, 1000.0), 500.0, True)
    assert r2 == pytest.approx((150.0, 850.0))
    assert zoom_range(r2, (0.0, 1000.0), 500.0, False) is None  # back to the whole run
    # Zooming out near one end slides the range back inside the run, it does not run past it.
    assert zoom_range((0.0, 100.0), (0.0, 1000.0), 0.0, False) == pytest.approx((0.0, 100 / 0.7))
    assert zoom_range((900.0, 1000.0), (0.0, 1000.0), 1000.0, False)[1] == pytest.approx(1000.0)  # type: ignore[index]
    # Never narrower than the minimum span: one more notch in keeps the range.
    assert zoom_range((10.0, 20.0), (0.0, 1000.0), 15.0, True, min_span=10.0) == (10.0, 20.0)


def test_prepare_series_cuts_to_the_zoomed_range_and_keeps_the_whole_extent() -> None:
    x = np.arange(0, 1000, dtype=float)
    y = np.exp(-x / 300)
    y[700] = np.nan
    p = prepare_series(x, y, PlotOptions(x_range=(600.0, 800.0)), 4096)
    assert p.x.min() >= 600 and p.x.max() <= 800
    assert p.extent == (0.0, 999.0)
    assert p.bad_x.tolist() == [700.0]
    p = prepare_series(x, y, PlotOptions(x_range=(0.0, 100.0)), 4096)
    assert p.bad_x.tolist() == []
    # Changing the axis or the window drops a range that belonged to the old one.
    o = PlotOptions(x_range=(1.0, 2.0))
    assert o.toggled_x().x_range is None and o.next_window().x_range is None
    assert "zoomed" in o.describe() and "zoomed" not in PlotOptions().describe()


@run_async
async def test_wheel_over_a_detail_plot_zooms_every_pane_and_z_resets() -> None:
    hub, _ = yolo_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        assert not screen.check_action("unzoom", ())  # `z` is not offered before a zoom
        view = screen.query_one(PlotGrid).views[0]
        frame = view._frame
        assert frame is not None
        # The pointer at the plot's right edge: the range keeps its end and loses its start.
        await _wheel(pilot, view, view.region.width - 3, view.region.height // 2, up=True)
        lo, hi = screen.options.x_range  # type: ignore[misc]
        assert frame.lo < lo < hi and hi == pytest.approx(frame.hi, rel=0.1)
        assert screen.check_action("unzoom", ())
        assert "⌕" in str(view.border_title)
        for other in screen.query_one(PlotGrid).views[1:]:
            assert "⌕" in str(other.border_title)  # the panes share the zoomed axis
        assert "zoomed" in str(screen.query_one("#detail-head").render())
        await _wheel(pilot, view, view.region.width // 2, view.region.height // 2, up=True)
        lo2, hi2 = screen.options.x_range  # type: ignore[misc]
        assert hi2 - lo2 < hi - lo
        await pilot.press("z")
        await settle(pilot)
        assert screen.options.x_range is None and "⌕" not in str(view.border_title)
        # Zooming in and out again comes back to the whole run (not zoomed).
        await _wheel(pilot, view, view.region.width // 2, view.region.height // 2, up=True)
        assert screen.options.x_range is not None
        await _wheel(pilot, view, view.region.width // 2, view.region.height // 2, up=False)
        assert screen.options.x_range is None


@run_async
async def test_wheel_on_a_pane_border_or_with_shift_pages_the_grid_instead() -> None:
    hub, _ = yolo_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        grid = screen.query_one(PlotGrid)
        assert len(grid.items) > grid.shape.shown  # more panes than fit: the wheel can page
        view = grid.views[0]
        await _wheel(pilot, view, 5, 0, up=False)  # on the top border
        assert grid.first > 0 and screen.options.x_range is None
        await _wheel(pilot, grid.views[0], 20, 4, up=True, shift=True)
        assert grid.first == 0 and screen.options.x_range is None


@run_async
async def test_wheel_zooms_the_compare_plot_and_the_main_table_still_scrolls() -> None:
    hub, _ = mixed_scene(NOW)
    app = _app(hub)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        main = app.screen
        preview = main.query("#preview-plot")
        if preview:
            # The table's preview plot is not zoomable: the wheel there belongs to the page.
            await _wheel(pilot, preview.first(PlotView), 20, 3, up=True)
            assert app.screen is main
        await pilot.press("c")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        view = screen.query_one("#compare-plot", PlotView)
        await _wheel(pilot, view, view.region.width // 2, view.region.height // 2, up=True)
        assert screen.options.x_range is not None and "⌕" in str(view.border_title)
        await pilot.press("x")  # another axis: the range meant the old one
        await settle(pilot)
        assert screen.options.x_range is None
