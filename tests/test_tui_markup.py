"""Issue 13 §2: text from outside (run names, metric keys, log lines, paths, filter text) is never markup.

Each hostile string goes through every view; the test asserts it is drawn literally, that nothing
crashed (a `MarkupError` would end the app) and that nothing acted (`[@click=app.quit]` quit it).
"""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path
from typing import Any

from monitor.config import Config
from monitor.hub import HubSnapshot
from monitor.model import Row, Verdict
from tui.app import RunwatchApp, make_app
from tui.screens.compare import CompareScreen
from tui.screens.confirm_stop import ConfirmStopScreen
from tui.screens.detail import DetailScreen
from tui.scripted import ScriptedHub, analysis, run_snapshot

NOW = 1000.0
NAMES = ("a[/]b", "[@click=app.quit]CLICK", "[link=http://x.example]L[/link]", "[bold]B[/bold]", "x]y[z")
KEY = "[/]loss"
EVAL_KEY = "val/[@click=app.quit]acc"


def _scene() -> ScriptedHub:
    analyses = {}
    runs = []
    for i, name in enumerate(NAMES):
        rid = f"r{i}"
        rows = [Row(float(s), {KEY: 3.0 - s / 100, EVAL_KEY: s / 100}) for s in range(100)]
        analyses[rid] = analysis(rid, rows, NOW, [f"step {s} [/] [@click=app.quit]q [red]x" for s in range(5)])
        analyses[rid].info.config = {"[/]opt": "[@click=app.quit]sgd"}
        analyses[rid].info.name = name
        runs.append(
            run_snapshot(
                rid,
                name=name,
                source=f"/runs/{name}",
                target=f"/runs/{name}/log.txt",
                loss_key=KEY,
                verdict=Verdict.BAD if i == 0 else Verdict.HEALTHY,
                reason=f"{KEY} is NaN [/]",
                state="live",
            )
        )
    return ScriptedHub(analyses, {}, initial=HubSnapshot(NOW, tuple(runs), (), ()))


def _app(tmp_path: Path) -> RunwatchApp:
    return make_app(Config(evidence_dir=tmp_path), hub=_scene(), clock=lambda: NOW + 5, redraw_interval=0.0)  # type: ignore[call-arg]


def _screen_text(app: RunwatchApp) -> str:
    """What is on screen, as plain text (the SVG screenshot without its tags)."""
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


async def _settle(pilot: Any) -> None:
    for _ in range(3):
        await pilot.pause()


def _alive(app: RunwatchApp) -> None:
    assert app.is_running and app.return_code is None, "the app ended: markup was parsed or acted on"


def test_outside_text_is_never_markup_in_any_view(tmp_path: Path) -> None:
    async def go() -> None:
        app = _app(tmp_path)
        async with app.run_test(size=(200, 60)) as pilot:
            await _settle(pilot)
            text = _screen_text(app)
            for name in NAMES:
                assert name in text, f"table: {name!r} not drawn literally"
            assert "/runs/a[/]b" in text  # the preview's subtitle and the source column
            _alive(app)

            await pilot.press("enter")  # the first row: a[/]b (bad, sorted first)
            await _settle(pilot)
            assert isinstance(app.screen, DetailScreen)
            text = _screen_text(app)
            assert f"─ {KEY}" in text and "[@click=app.quit]acc" in text  # pane titles
            assert "a[/]b" in text and f"{KEY} is NaN [/]" in text
            assert "[@click=app.quit]q [red]x" in text  # the log tail
            await pilot.press("slash", "[", "/", "]")  # the metric picker
            await _settle(pilot)
            await pilot.press("escape")
            await pilot.press("L", "[", "/", "]")  # the log filter, its title holds the text
            await _settle(pilot)
            assert "filter '[/]'" in _screen_text(app)
            await pilot.press("escape", "i")  # the config pane
            await _settle(pilot)
            text = _screen_text(app)
            info = str(app.screen.query_one("#info").render())  # it scrolls: its whole text
            assert "[/]opt" in info and "[@click=app.quit]sgd" in info and "/runs/a[/]b/log.txt" in info
            for _ in NAMES:  # every run's detail
                await pilot.press("n")
                await _settle(pilot)
            _alive(app)

            await pilot.press("s")  # the stop dialog names the run
            for _ in range(100):
                if isinstance(app.screen, ConfirmStopScreen):
                    break
                await asyncio.sleep(0.05)
            assert isinstance(app.screen, ConfirmStopScreen)
            await _settle(pilot)
            assert "Cannot stop a[/]b" in _screen_text(app) or "Stop a[/]b?" in _screen_text(app)
            await pilot.press("escape")
            await _settle(pilot)
            await pilot.press("escape")
            await _settle(pilot)

            await pilot.press("slash", *"[/]")  # the run filter
            await _settle(pilot)
            await pilot.press("escape")
            await pilot.press("c")  # compare: plot legend and ranking
            await _settle(pilot)
            assert isinstance(app.screen, CompareScreen)
            text = _screen_text(app)
            for name in NAMES:
                assert name in text, f"compare: {name!r} not drawn literally"
            await pilot.press("escape", "n")  # the notification log
            await _settle(pilot)
            _alive(app)
        assert app.return_code in (None, 0)

    asyncio.run(go())
