"""A run catching up with a big source shows, in its row, a progress bar, how much of the total has
been read and the read rate; once caught up, its state and steps/s again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.app import App, ComposeResult

from monitor.analysis import RunAnalysis, RunInfo
from monitor.config import Config
from monitor.hubrun import HubRun
from monitor.sources.base import open_sources
from tui import format as fmt
from tui.scripted import run_snapshot
from tui.widgets.run_table import RunTable

MB = 1 << 20


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield RunTable(id="runs")


def cells(table: RunTable, run_id: str) -> dict[str, str]:
    return {c: str(table.get_cell(run_id, c)) for c in ("state", "step", "speed") if c in table.columns}


@pytest.mark.parametrize("cols", [120, 160])
def test_a_row_shows_the_bar_the_amount_read_and_the_rate_then_its_state(cols: int) -> None:
    async def main() -> None:
        app = TableApp()
        async with app.run_test(size=(cols, 40)) as pilot:
            table = app.query_one(RunTable)
            reading = run_snapshot("big", progress=(120 * MB, 280 * MB), read_rate=45 * MB, last_step=250_000.0)
            table.show([reading], now=1000.0)
            await pilot.pause()
            row = cells(table, "big")
            assert "43%" in row["state"] and row["state"].startswith("▕█")
            if "speed" in row:  # a wide table: the rate in the steps/s column
                assert row["state"].endswith("120/280 MB") and row["speed"] == "45 MB/s"
            else:  # else beside the amount
                assert row["state"].endswith("120/280 MB  45 MB/s")
            assert row["step"] == "250,000"
            done = run_snapshot("big", progress=None, read_rate=None, last_step=1_000_000.0, steps_per_s=10.0)
            table.show([done], now=1000.0)
            await pilot.pause()
            row = cells(table, "big")
            assert "%" not in row["state"] and "MB" not in row.get("speed", "") and row["step"] == "1,000,000"

    asyncio.run(main())


def test_at_80_columns_the_bar_alone_fits() -> None:
    async def main() -> None:
        app = TableApp()
        async with app.run_test(size=(80, 24)) as pilot:
            table = app.query_one(RunTable)
            table.show([run_snapshot("big", progress=(5 * MB, 280 * MB), read_rate=45 * MB)], now=1000.0)
            await pilot.pause()
            state = cells(table, "big")["state"]
            assert "2%" in state and "5.0/280 MB" in state and len(state) <= 30

    asyncio.run(main())


def test_the_read_rate_is_measured_from_the_first_snapshot_of_the_catching_up(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text("step=1 loss=2\n")
    (ref,) = open_sources(str(log), Config()).runs
    run = HubRun(ref.id, ref, RunAnalysis(RunInfo(target=ref.id, name="run")))
    assert run.read_rate(10.0) is None  # not catching up
    run.progress = (1 * MB, 100 * MB)
    assert run.read_rate(10.0) is None  # first sight: no rate yet
    run.progress = (21 * MB, 100 * MB)
    assert run.read_rate(12.0) == 10 * MB
    run.progress = None
    assert run.read_rate(13.0) is None and run.read_since is None


def test_amounts_and_rates_read_short() -> None:
    assert fmt.read_amount(120 * MB, 280 * MB) == "120/280 MB"
    assert fmt.read_amount(5 * MB, 280 * MB) == "5.0/280 MB"
    assert fmt.read_amount(3 << 30, 12 << 30) == "3.0/12 GB"
    assert fmt.read_amount(500, 900) == "500/900 B"
    assert fmt.byte_rate_text(45 * MB) == "45 MB/s" and fmt.byte_rate_text(800) == "800 B/s"
