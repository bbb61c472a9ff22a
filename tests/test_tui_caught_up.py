"""When every run has been read to where it stood, the table and preview show it at once (no pacing)."""

from __future__ import annotations

import asyncio
import dataclasses

from monitor.config import Config
from monitor.model import Row
from tui.app import make_app
from tui.screens.main import MainScreen
from tui.scripted import sample_scene
from tui.widgets.plot import PlotView
from tui.widgets.run_table import RunTable

NOW = 1_700_000_000.0


def test_preview_waits_for_the_pacing_until_every_run_is_caught_up() -> None:
    async def scenario() -> None:
        hub, snap = sample_scene(NOW)
        app = make_app(Config(), hub=hub, clock=lambda: NOW + 5, redraw_interval=30.0)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, MainScreen)
            plot = screen.query_one("#preview-plot", PlotView)
            run_id = screen.query_one(RunTable).selected_id
            assert run_id is not None
            a = hub.analyses[run_id]
            step = (a.detectors.last_step or 0.0) + 1
            a.add_rows([Row(step, {"loss": 1.0})], NOW)
            hub.publish(dataclasses.replace(snap, time=NOW + 1))
            await pilot.pause()
            held = plot.renders  # new data, but the pacing holds it back
            a.add_rows([Row(step + 1, {"loss": 1.0})], NOW)
            hub.publish(dataclasses.replace(snap, time=NOW + 2))
            await pilot.pause()
            assert plot.renders == held
            screen.all_caught_up()
            a.add_rows([Row(step + 2, {"loss": 1.0})], NOW)
            hub.publish(dataclasses.replace(snap, time=NOW + 3))
            await pilot.pause()
            assert plot.renders == held + 1

    asyncio.run(scenario())
