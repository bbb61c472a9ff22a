"""The detail view shows a run's likely causes (Pilot, on the scripted hub's sample scene)."""

from __future__ import annotations

import asyncio

from monitor.diagnosis import diagnose_analysis
from tui.app import make_app
from tui.screens.detail import DetailScreen
from tui.scripted import sample_scene
from tui.widgets.diagnosis import DiagnosisList

NOW = 1000.0


def test_detail_view_lists_the_likely_causes_of_a_bad_run() -> None:
    async def run() -> None:
        from monitor.config import Config

        hub, _ = sample_scene(NOW)
        app = make_app(Config(), hub=hub, clock=lambda: NOW + 5, redraw_interval=0.0)  # type: ignore[arg-type]
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await pilot.press("enter")
            await pilot.pause()
            await pilot.press("i")  # the run · config · summary pane, where the likely causes lead
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, DetailScreen) and screen.run_id == "nan"
            pane = screen.query_one(DiagnosisList)
            assert pane.hypotheses, "a run that went NaN has a likely cause"
            assert pane.hypotheses[0].cause_id == "nonfinite"
            assert "likely causes" in str(pane.render()) and not pane.has_class("-empty")
            await pilot.press("n")  # the next run: the pane follows it
            await pilot.pause()
            if not app.screen.has_class("-info"):
                await pilot.press("i")
                await pilot.pause()
            nxt = app.screen
            assert isinstance(nxt, DetailScreen) and nxt.run_id != "nan"
            assert nxt.query_one(DiagnosisList).hypotheses == diagnose_analysis(nxt.analysis(nxt.run_id))

    asyncio.run(run())
