"""Screenshots of the app at fixed sizes and theme, from a scripted hub (no clocks, no randomness)."""

from __future__ import annotations

from typing import Any

from monitor.config import Config
from tui.app import RunwatchApp, make_app
from tui.scripted import sample_scene

NOW = 1000.0


def _app(theme: str = "dark") -> RunwatchApp:
    hub, _ = sample_scene(NOW)
    return make_app(Config(), hub=hub, theme=theme, clock=lambda: NOW + 5, redraw_interval=0.0)


async def _settle(pilot: Any) -> None:
    for _ in range(3):
        await pilot.pause()


def test_main_screen_120x40(snap_compare: Any) -> None:
    assert snap_compare(_app(), terminal_size=(120, 40), run_before=_settle)


def test_main_screen_80x24(snap_compare: Any) -> None:
    assert snap_compare(_app(), terminal_size=(80, 24), run_before=_settle)


def test_main_screen_200x60_light(snap_compare: Any) -> None:
    assert snap_compare(_app("light"), terminal_size=(200, 60), run_before=_settle)


def test_detail_nan_run_160x50(snap_compare: Any) -> None:
    async def open_detail(pilot: Any) -> None:
        await _settle(pilot)
        await pilot.press("enter")
        await _settle(pilot)

    assert snap_compare(_app(), terminal_size=(160, 50), run_before=open_detail)


def test_detail_80x24(snap_compare: Any) -> None:
    async def open_detail(pilot: Any) -> None:
        await _settle(pilot)
        await pilot.press("enter")
        await _settle(pilot)

    assert snap_compare(_app(), terminal_size=(80, 24), run_before=open_detail)


def test_compare_160x50_high_contrast(snap_compare: Any) -> None:
    async def open_compare(pilot: Any) -> None:
        await _settle(pilot)
        await pilot.press("c")
        await _settle(pilot)

    assert snap_compare(_app("high-contrast"), terminal_size=(160, 50), run_before=open_compare)


def test_help_80x24(snap_compare: Any) -> None:
    async def open_help(pilot: Any) -> None:
        await _settle(pilot)
        await pilot.press("question_mark")
        await _settle(pilot)

    assert snap_compare(_app(), terminal_size=(80, 24), run_before=open_help)
