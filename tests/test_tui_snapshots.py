"""Screenshots of the app at fixed sizes and theme, from scripted hubs (no clocks, no randomness)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from monitor.config import Config
from monitor.hub import HubSnapshot
from tui.app import RunwatchApp, make_app
from tui.scripted import ScriptedHub, mixed_scene, sample_scene, yolo_scene

NOW = 1000.0
SIZES = [(80, 24), (120, 40), (200, 60)]
Scene = Callable[[float], tuple[ScriptedHub, HubSnapshot]]


def _app(theme: str = "dark", scene: Scene = sample_scene) -> RunwatchApp:
    hub, _ = scene(NOW)
    return make_app(Config(), hub=hub, theme=theme, clock=lambda: NOW + 5, redraw_interval=0.0)


async def _settle(pilot: Any) -> None:
    for _ in range(3):
        await pilot.pause()


def _keys(*keys: str) -> Callable[[Any], Any]:
    async def run(pilot: Any) -> None:
        await _settle(pilot)
        for k in keys:
            await pilot.press(k)
            await _settle(pilot)

    return run


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(_app(scene=mixed_scene), terminal_size=size, run_before=_settle)


def test_main_screen_200x60_light(snap_compare: Any) -> None:
    assert snap_compare(_app("light"), terminal_size=(200, 60), run_before=_settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_detail_loss_only(snap_compare: Any, size: tuple[int, int]) -> None:
    # The scene sorts the YOLO run first; `down` opens the run that logs only loss.
    assert snap_compare(_app(scene=yolo_scene), terminal_size=size, run_before=_keys("down", "enter"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_detail_yolo_grid(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(_app(scene=yolo_scene), terminal_size=size, run_before=_keys("enter"))


def test_detail_yolo_picker_and_config_120x40(snap_compare: Any) -> None:
    keys = _keys("enter", "slash", *"map", "enter", "i")
    assert snap_compare(_app(scene=yolo_scene), terminal_size=(120, 40), run_before=keys)


def test_detail_nan_run_160x50(snap_compare: Any) -> None:
    assert snap_compare(_app(), terminal_size=(160, 50), run_before=_keys("enter"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compare_mixed_step_keys(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(_app(scene=mixed_scene), terminal_size=size, run_before=_keys("c"))


def test_compare_160x50_high_contrast(snap_compare: Any) -> None:
    assert snap_compare(_app("high-contrast"), terminal_size=(160, 50), run_before=_keys("c"))


def test_help_80x24(snap_compare: Any) -> None:
    assert snap_compare(_app(), terminal_size=(80, 24), run_before=_keys("question_mark"))
