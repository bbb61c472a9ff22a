"""The main screen: summary line, run table (worst first) and, on tall terminals, a preview of the selected run."""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.widgets import DataTable

from monitor.analysis import RunAnalysis
from monitor.hub import HubSnapshot, RunSnapshot
from tui import actions
from tui import format as fmt
from tui.messages import EscalationRequested, EvidenceRequested, RunActionRequested, StopRequested
from tui.plotdata import PlotOptions, bucket_means
from tui.runplots import data_version, loss_spec
from tui.screens.base import RunwatchScreen
from tui.widgets.filter_input import FilterInput
from tui.widgets.findings import FindingsList
from tui.widgets.footer import FittingFooter
from tui.widgets.notice_bar import NoticeBar
from tui.widgets.plot import PlotView
from tui.widgets.run_table import COLUMNS, RunTable
from tui.widgets.summary import SummaryBar

#: The columns `o` sorts by, in the order it cycles through them.
SORTS = ("badge", "name", "state", "step", "speed", "loss", "age")
_TREND_POINTS = 24


def matches(run: RunSnapshot, needle: str) -> bool:
    """Whether a filter string matches a run's name, source, state or verdict (case-insensitive)."""
    if not needle:
        return True
    hay = " ".join((run.name, run.source, run.target, run.state, fmt.badge_text(run), run.format)).lower()
    return all(word in hay for word in needle.lower().split())


class MainScreen(RunwatchScreen):
    """All runs at a glance."""

    BINDINGS: ClassVar[list[BindingType]] = actions.bindings(actions.MAIN)
    VERTICAL_BREAKPOINTS = [(0, "-short"), (16, "-tall")]  # noqa: RUF012
    DEFAULT_CSS = """
    MainScreen RunTable {
        height: auto;
        max-height: 60%;
    }
    MainScreen.-short RunTable {
        height: 1fr;
        max-height: 100%;
    }
    MainScreen #preview {
        height: 1fr;
        min-height: 8;
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
        self.sort_by = "badge"
        """The column the table is sorted on (`badge`: worst first)."""
        self.sort_reverse = False
        """Reverse that order (`O`)."""
        self._trends: dict[str, tuple[int, tuple[float, ...]]] = {}
        self.marked: set[str] = set()
        """Runs marked for the compare view."""
        self._drawn_at = -1e9
        self._drawn_verdicts: tuple[tuple[str, str], ...] = ()
        self._pending: HubSnapshot | None = None
        self._all_read = False
        """Every run was just caught up: the next snapshot is drawn whole, at once."""
        self._pending_since = 0.0

    def compose(self) -> ComposeResult:
        yield SummaryBar(id="summary")
        yield RunTable(id="runs")
        with Horizontal(id="preview"):
            yield PlotView(id="preview-plot")
            with VerticalScroll(id="preview-findings-box"):
                yield FindingsList(id="preview-findings")
        yield FilterInput(placeholder="filter runs: words in name, source, state or verdict", id="filter")
        yield NoticeBar()
        yield FittingFooter()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#preview-findings-box").border_title = "findings"
        self.query_one(RunTable).focus()
        self.query_one(SummaryBar).show(self.rw.snapshot, self.filter_text, self.sort_text)

    # ---- drawing -------------------------------------------------------------------------
    def visible_runs(self, snap: HubSnapshot) -> list[RunSnapshot]:
        """The runs shown, filtered and in display order, each dated by its last data."""
        runs = [self._dated(r) for r in snap.runs if matches(r, self.filter_text)]
        indexed = {r.id: i for i, r in enumerate(snap.runs)}
        runs.sort(key=lambda r: fmt.column_sort_key(r, self.sort_by, indexed[r.id]), reverse=self.sort_reverse)
        return runs

    @property
    def sort_worst(self) -> bool:
        """Sorted worst first (the default)."""
        return self.sort_by == "badge" and not self.sort_reverse

    @property
    def sort_text(self) -> str:
        """How the table is sorted, for the summary line (empty for the default, worst first)."""
        if self.sort_worst:
            return ""
        label = {c.key: c.label for c in COLUMNS}[self.sort_by]
        return f"sorted by {label}{' reversed' if self.sort_reverse else ''}"

    def _dated(self, run: RunSnapshot) -> RunSnapshot:
        # The hub's `last_update` also moves when a tick changes a finding; the age column means
        # "time since the run last logged", which the store's newest row time says.
        a = self.analysis(run.id)
        if a is None or not a.store.times:
            return run
        return dataclasses.replace(run, last_update=a.store.times[-1][1], loss_trend=self._trend(run, a))

    def _interval(self, run_id: str) -> float | None:
        """The run's usual seconds between logged rows (median over its last rows), for the rate's decay."""
        a = self.analysis(run_id)
        if a is None or len(a.store.times) < 3:
            return None
        times = [t for _, t in list(a.store.times)[-17:]]
        gaps = sorted(b - c for b, c in zip(times[1:], times[:-1], strict=False) if b > c)
        return gaps[len(gaps) // 2] if gaps else None

    def _trend(self, run: RunSnapshot, a: RunAnalysis) -> tuple[float, ...]:
        """The loss over the whole run in a few bucket means (not the last dozen points, which read as noise)."""
        key = run.loss_key
        if key is None or key not in a.store.metrics:
            return run.loss_trend
        cached = self._trends.get(run.id)
        if cached is not None and cached[0] == a.store.rows:
            return cached[1]
        _, values = a.store.metrics[key].series()
        trend = bucket_means(values, _TREND_POINTS)
        self._trends[run.id] = (a.store.rows, trend)
        return trend

    def all_caught_up(self) -> None:
        """Every run has been read to where it stood: its whole view should not wait for the pacing."""
        self._all_read = True

    def show_snapshot(self, snap: HubSnapshot, *, now: bool = False) -> None:
        # Live numbers redraw at most every `redraw_interval`; a verdict or state change draws at once.
        urgent, self._all_read = self._all_read, False
        now = now or urgent
        verdicts = tuple((r.id, fmt.badge_kind(r)) for r in snap.runs)
        due = time.monotonic() - self._drawn_at >= self.rw.redraw_interval
        if not (now or due or verdicts != self._drawn_verdicts):
            if self._pending is None:
                self._pending_since = time.monotonic()
            self._pending = snap
            return
        self._pending = None
        first = self._drawn_at < 0
        self._drawn_at = time.monotonic()
        self._drawn_verdicts = verdicts
        table = self.query_one(RunTable)
        had_runs = min(2, len(table.order))  # none, one, several: the run keys and `c` come and go
        table.sort_column = (self.sort_by, self.sort_reverse)
        runs = self.visible_runs(snap)
        intervals = {r.id: iv for r in runs if (iv := self._interval(r.id)) is not None}
        table.show(runs, self.rw.clock(), frozenset(self.marked), frozenset(self.rw.reading), intervals)
        if had_runs != min(2, len(table.order)):
            self.refresh_bindings()
        self.query_one(SummaryBar).show(snap, self.filter_text, self.sort_text)
        if first:
            # The table's first frame goes out before the preview plot is built.
            self.call_after_refresh(self._show_preview, False, urgent)
        else:
            self._show_preview(force=False, now=urgent)

    def _redraw(self) -> None:
        if self.rw.snapshot is not None:
            self.show_snapshot(self.rw.snapshot, now=True)

    def tick(self, now: float) -> None:
        # A snapshot held back and none since: the stream paused, draw what is held.
        if self._pending is not None and time.monotonic() - self._pending_since >= self.rw.redraw_interval:
            self.show_snapshot(self._pending, now=True)
        self.query_one(RunTable).tick(now)
        if self.has_class("-tall"):
            run = self._selected()
            if run is not None:
                dated = self._dated(run)
                self.query_one(FindingsList).show(run.findings, last_update=dated.last_update, now=now)

    def restyle(self) -> None:
        self.query_one(RunTable).restyle()
        self._redraw()
        self._show_preview(force=True)

    def _show_preview(self, force: bool, now: bool = False) -> None:
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
        plot.show((run.id, data_version(a), run.findings), lambda: loss_spec(a, run.findings, opts), now=now)
        plot.border_subtitle = Content(run.name)
        findings.show(run.findings, force=force, last_update=self._dated(run).last_update, now=self.rw.clock())

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
        self.app.push_screen(CompareScreen(chosen))

    def action_mark(self) -> None:
        run = self._selected()
        if run is None:
            return
        self.marked.symmetric_difference_update({run.id})
        self._redraw()

    def action_sort(self) -> None:
        self.sort_by = SORTS[(SORTS.index(self.sort_by) + 1) % len(SORTS)]
        self._redraw()

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._redraw()

    def action_clear_filter(self) -> None:
        if self.filter_text:
            self.query_one(FilterInput).close(cleared=True)
            self.filter_text = ""
            self._redraw()

    def action_notifications(self) -> None:
        from tui.screens.notices import NoticesScreen

        self.app.push_screen(NoticesScreen())

    def action_filter(self) -> None:
        self.query_one(FilterInput).open()

    def on_input_changed(self, event: FilterInput.Changed) -> None:
        if bool(self.filter_text) != bool(event.value.strip()):
            self.refresh_bindings()
        self.filter_text = event.value.strip()
        self._redraw()

    def on_filter_input_closed(self, _event: FilterInput.Closed) -> None:
        self.query_one(RunTable).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Run keys are shown only when there is a run to act on (compare: two); `esc` only with a filter to clear."""
        if action == "compare":
            return bool(self.is_mounted and len(self.query_one(RunTable).order) > 1)  # one run: nothing to compare
        if action in ("open_detail", "stop", "escalate", "evidence", "mark", "sort", "sort_reverse"):
            return bool(self.is_mounted and self.query_one(RunTable).order)
        if action == "clear_filter":
            return bool(self.filter_text)
        return True

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
