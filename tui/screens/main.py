"""The main screen: summary line, run table (worst first) and, on tall terminals, a preview of the selected run."""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Footer

from monitor.hub import HubSnapshot, RunSnapshot
from tui import actions
from tui import format as fmt
from tui.messages import EscalationRequested, EvidenceRequested, RunActionRequested, StopRequested
from tui.plotdata import PlotOptions
from tui.runplots import data_version, loss_spec
from tui.screens.base import RunwatchScreen
from tui.widgets.filter_input import FilterInput
from tui.widgets.findings import FindingsList
from tui.widgets.plot import PlotView
from tui.widgets.run_table import RunTable
from tui.widgets.summary import SummaryBar

COMPARE_MAX = 6


def matches(run: RunSnapshot, needle: str) -> bool:
    """Whether a filter string matches a run's name, source, state or verdict (case-insensitive)."""
    if not needle:
        return True
    hay = " ".join((run.name, run.source, run.target, run.state, fmt.badge_text(run), run.format)).lower()
    return all(word in hay for word in needle.lower().split())


class MainScreen(RunwatchScreen):
    """All runs at a glance."""

    BINDINGS: ClassVar[list[BindingType]] = actions.bindings(actions.MAIN)
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]  # noqa: RUF012
    DEFAULT_CSS = """
    MainScreen #preview {
        height: 45%;
        display: none;
    }
    MainScreen.-tall #preview {
        display: block;
    }
    MainScreen #preview-plot {
        width: 2fr;
    }
    MainScreen #preview-findings-box {
        width: 1fr;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        """Words every shown run must match."""
        self.sort_worst = True
        """Bad runs first (else in the order the hub lists them)."""
        self.marked: set[str] = set()
        """Runs marked for the compare view."""
        self._drawn_at = -1e9
        self._drawn_verdicts: tuple[tuple[str, str], ...] = ()
        self._pending: HubSnapshot | None = None
        self._pending_since = 0.0

    def compose(self) -> ComposeResult:
        yield SummaryBar(id="summary")
        yield RunTable(id="runs")
        with Horizontal(id="preview"):
            yield PlotView(id="preview-plot")
            with VerticalScroll(id="preview-findings-box"):
                yield FindingsList(id="preview-findings")
        yield FilterInput(placeholder="filter runs: words in name, source, state or verdict", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#preview-findings-box").border_title = "findings"
        self.query_one(RunTable).focus()
        self.query_one(SummaryBar).show(self.rw.snapshot, self.filter_text, self.sort_worst)

    # ---- drawing -------------------------------------------------------------------------
    def visible_runs(self, snap: HubSnapshot) -> list[RunSnapshot]:
        """The runs shown, filtered and in display order, each dated by its last data."""
        runs = [self._dated(r) for r in snap.runs if matches(r, self.filter_text)]
        if self.sort_worst:
            indexed = {r.id: i for i, r in enumerate(snap.runs)}
            runs.sort(key=lambda r: fmt.sort_key(r, indexed[r.id]))
        return runs

    def _dated(self, run: RunSnapshot) -> RunSnapshot:
        # The hub's `last_update` also moves when a tick changes a finding; the age column means
        # "time since the run last logged", which the store's newest row time says.
        a = self.analysis(run.id)
        if a is None or not a.store.times:
            return run
        return dataclasses.replace(run, last_update=a.store.times[-1][1])

    def show_snapshot(self, snap: HubSnapshot, *, now: bool = False) -> None:
        # Live numbers redraw at most every `redraw_interval`; a verdict or state change draws at once.
        verdicts = tuple((r.id, fmt.badge_kind(r)) for r in snap.runs)
        due = time.monotonic() - self._drawn_at >= self.rw.redraw_interval
        if not (now or due or verdicts != self._drawn_verdicts):
            if self._pending is None:
                self._pending_since = time.monotonic()
            self._pending = snap
            return
        self._pending = None
        self._drawn_at = time.monotonic()
        self._drawn_verdicts = verdicts
        table = self.query_one(RunTable)
        table.show(self.visible_runs(snap), self.rw.clock(), frozenset(self.marked))
        self.query_one(SummaryBar).show(snap, self.filter_text, self.sort_worst)
        self._show_preview(force=False)

    def _redraw(self) -> None:
        if self.rw.snapshot is not None:
            self.show_snapshot(self.rw.snapshot, now=True)

    def tick(self, now: float) -> None:
        # A snapshot held back and none since: the stream paused, draw what is held.
        if self._pending is not None and time.monotonic() - self._pending_since >= self.rw.redraw_interval:
            self.show_snapshot(self._pending, now=True)
        self.query_one(RunTable).tick(now)

    def restyle(self) -> None:
        self.query_one(RunTable).restyle()
        self._redraw()
        self._show_preview(force=True)

    def _show_preview(self, force: bool) -> None:
        if not self.has_class("-tall"):
            return
        run_id = self.query_one(RunTable).selected_id
        run = self.run(run_id) if run_id else None
        plot = self.query_one("#preview-plot", PlotView)
        findings = self.query_one(FindingsList)
        if run is None:
            findings.show(())
            return
        a = self.analysis(run.id)
        opts = PlotOptions()
        plot.show((run.id, data_version(a), run.findings), lambda: loss_spec(a, run.findings, opts))
        plot.border_subtitle = run.name
        findings.show(run.findings, force=force)

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_preview(force=False)

    def on_data_table_row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open_detail()

    # ---- actions -------------------------------------------------------------------------
    def _selected(self) -> RunSnapshot | None:
        run_id = self.query_one(RunTable).selected_id
        return self.run(run_id) if run_id else None

    def action_open_detail(self) -> None:
        from tui.screens.detail import DetailScreen

        run = self._selected()
        if run is None:
            self.notify("No run selected", severity="warning")
            return
        self.app.push_screen(DetailScreen(run.id, self.query_one(RunTable).order))

    def action_compare(self) -> None:
        from tui.screens.compare import CompareScreen

        order = self.query_one(RunTable).order
        chosen = [r for r in order if r in self.marked] or list(order)
        if not chosen:
            self.notify("No runs to compare", severity="warning")
            return
        if len(chosen) > COMPARE_MAX:
            self.notify(f"Comparing the first {COMPARE_MAX} of {len(chosen)} runs (mark runs with space to choose)")
        self.app.push_screen(CompareScreen(chosen[:COMPARE_MAX]))

    def action_mark(self) -> None:
        run = self._selected()
        if run is None:
            return
        self.marked.symmetric_difference_update({run.id})
        self._redraw()

    def action_sort(self) -> None:
        self.sort_worst = not self.sort_worst
        self._redraw()
        self.notify("Sorted worst first" if self.sort_worst else "Sorted as listed", timeout=2)

    def action_filter(self) -> None:
        self.query_one(FilterInput).open()

    def on_input_changed(self, event: FilterInput.Changed) -> None:
        self.filter_text = event.value.strip()
        self._redraw()

    def on_filter_input_closed(self, _event: FilterInput.Closed) -> None:
        self.query_one(RunTable).focus()

    def _request(self, cls: type[RunActionRequested]) -> None:
        run = self._selected()
        if run is None:
            self.notify("No run selected", severity="warning")
            return
        self.post_message(cls(run.id, run.name))

    def action_stop(self) -> None:
        self._request(StopRequested)

    def action_escalate(self) -> None:
        self._request(EscalationRequested)

    def action_evidence(self) -> None:
        self._request(EvidenceRequested)
