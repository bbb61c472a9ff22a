"""One run in detail: a grid of the metrics it logs (findings and NaNs marked), its findings, log and config."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static

from monitor.analysis import RunAnalysis
from monitor.hub import HubSnapshot, RunSnapshot
from monitor.model import Finding
from tui import actions
from tui import format as fmt
from tui.messages import EscalationRequested, EvidenceRequested, RunActionRequested, StopRequested
from tui.metricgrid import Pane
from tui.plotdata import STEP, X_AXES, PlotOptions, axes_with
from tui.runinfo import info_sections
from tui.runplots import (
    axis_name,
    data_version,
    epochs_of,
    gpu_spec,
    has_gpu,
    has_times,
    layers_spec,
    pane_spec,
    run_panes,
)
from tui.screens.base import PlottingScreen
from tui.style import badge, var_style
from tui.tokenaxis import tokens_of
from tui.widgets.diagnosis import DiagnosisList
from tui.widgets.filter_input import FilterInput
from tui.widgets.findings import FindingsList
from tui.widgets.footer import FittingFooter
from tui.widgets.log_tail import LogTail
from tui.widgets.notice_bar import NoticeBar
from tui.widgets.plot import Drawing, PlotSpec
from tui.widgets.plot_grid import PaneItem, PlotGrid

if TYPE_CHECKING:
    from monitor.actions import ReviewerAnswer


def _pane_builder(
    a: RunAnalysis | None, pane: Pane, findings: Sequence[Finding], opts: PlotOptions
) -> Callable[[], PlotSpec | Drawing]:
    if pane.layers:
        return lambda: layers_spec(a, pane, findings, opts)
    return lambda: pane_spec(a, pane, findings, opts)


class DetailScreen(PlottingScreen):
    """Everything about one run; `n`/`p` move to the next/previous run without leaving."""

    BINDINGS: ClassVar[list[BindingType]] = actions.bindings(actions.DETAIL)
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]  # noqa: RUF012
    DEFAULT_CSS = """
    DetailScreen #detail-head {
        height: 2;
        padding: 0 1;
        background: $panel;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    DetailScreen #lower {
        height: 12;
    }
    DetailScreen.-short #lower {
        height: 7;
    }
    DetailScreen.-full #lower {
        display: none;
    }
    DetailScreen #findings-box {
        width: 1fr;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
    }
    DetailScreen #reviewer {
        display: none;
        height: auto;
        padding: 0 1;
        border-top: dashed $panel-lighten-2;
    }
    DetailScreen #reviewer.-shown {
        display: block;
    }
    DetailScreen #log-box {
        width: 1fr;
    }
    DetailScreen #info-box {
        width: 1fr;
        display: none;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
    }
    DetailScreen.-info #info-box {
        display: block;
    }
    DetailScreen.-info #log-box {
        display: none;
    }
    DetailScreen #info {
        padding: 0 1;
    }
    """

    def __init__(self, run_id: str, order: Sequence[str] = ()) -> None:
        super().__init__()
        self.run_id = run_id
        """The run shown."""
        self.order = tuple(order) or (run_id,)
        """Runs `n` and `p` step through (the table's order when the screen opened)."""
        self.options = PlotOptions()
        """The `l`, `m`, `+`/`-`, `w`, `x` toggles."""
        self.pattern = ""
        """The metric picker's pattern (glob or substring; empty: every metric)."""
        self._review_shown: tuple[ReviewerAnswer, str] | None = None
        self._info_key: object = None
        self._axes_key: object = None

    def compose(self) -> ComposeResult:
        yield Static(id="detail-head")
        yield PlotGrid(id="plots")
        with Horizontal(id="lower"):
            with VerticalScroll(id="findings-box"):
                yield FindingsList(id="findings")
                yield Static(id="reviewer")
            with Vertical(id="log-box"):
                yield LogTail(id="log")
                yield FilterInput(placeholder="filter log lines", id="log-filter")
            with VerticalScroll(id="info-box"):
                yield DiagnosisList(id="diagnosis")
                yield Static(id="info")
        yield FilterInput(placeholder="metrics to plot: substring or glob (loss, val/*, *lr*); esc: all", id="picker")
        yield NoticeBar()
        yield FittingFooter()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#findings-box").border_title = "findings"
        self.query_one("#info-box").border_title = "run · config · summary"
        self.query_one(LogTail).border_title = "log"

    # ---- drawing -------------------------------------------------------------------------
    def show_snapshot(self, snap: HubSnapshot, *, force: bool = False) -> None:
        run = next((r for r in snap.runs if r.id == self.run_id), None)
        head = self.query_one("#detail-head", Static)
        if run is None:
            head.update(Text(f"{self.run_id}: not in the latest snapshot", style="italic"))
            return
        a = self.analysis(run.id)
        version = data_version(a)
        self._offer_axes(run.id, version, a)
        opts = self.options
        key = (run.id, version, opts, run.findings)
        items = [PaneItem(p.title, key, _pane_builder(a, p, run.findings, opts)) for p in run_panes(a, self.pattern)]
        history = self.rw.hub.gpu_history.get(run.host, ())
        if has_gpu(history):
            gpu_key = (run.host, len(history), history[-1].time if history else None)
            items.append(PaneItem("gpu", gpu_key, lambda: gpu_spec(run.host, history, snap.time)))
        if not items:
            # Never a blank grid: say why nothing is plotted (no metric yet, or none matches the picker).
            pattern = self.pattern
            empty = f"no logged metric matches {pattern!r} (/ then esc: every metric)" if pattern else "no metrics yet"
            items.append(PaneItem("none", (pattern, version), lambda: PlotSpec("metrics", (), empty=empty)))
        grid = self.query_one(PlotGrid)
        if (len(items) > 1) != (len(grid.items) > 1):
            self.refresh_bindings()  # `g` and `f` come and go with a second pane
        grid.show(items)
        head.update(self._head(run, grid))
        self._show_findings(run, force=force)
        self._show_reviewer_line()
        if a is not None:
            tail = a.store.log_tail
            self.query_one(LogTail).show(list(tail), (len(tail), id(tail[-1]) if tail else None, a.info.lines))
        if self.has_class("-info"):
            self._show_info(run, version)
            self.query_one(DiagnosisList).show(a, (run.id, version, run.findings))

    def _offer_axes(self, run_id: str, version: int, a: RunAnalysis | None) -> None:
        """`x` offers the epoch and tokens axes where this run logs or states them."""
        if (run_id, version) == self._axes_key:
            return
        self._axes_key = (run_id, version)
        own = axis_name(a) if a is not None else "step"
        epoch = a is not None and own != "epoch" and epochs_of(a) is not None
        tokens = a is not None and own not in ("token", "tokens") and tokens_of(a) is not None
        base = X_AXES if has_times(a) else (STEP,)
        offered = len(self.X_AXES) > 1
        self.X_AXES = axes_with(base, epoch=epoch, tokens=tokens)
        if self.options.x_axis not in self.X_AXES:
            self.options = replace(self.options, x_axis=STEP, x_range=None)
        if offered != (len(self.X_AXES) > 1):
            self.refresh_bindings()  # `x` is offered only with a second axis

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys that would do nothing here are neither shown nor acted on: `g` and `f` with one pane."""
        if action in ("next_plot", "full_pane") and self.is_mounted:
            return len(self.query_one(PlotGrid).items) > 1 or self.query_one(PlotGrid).full
        if action in ("next_run", "prev_run"):
            return len(self.order) > 1
        return super().check_action(action, parameters)

    def _show_findings(self, run: RunSnapshot, *, force: bool = False) -> None:
        a = self.analysis(run.id)
        last = a.store.times[-1][1] if a is not None and a.store.times else run.last_update
        self.query_one(FindingsList).show(run.findings, force=force, last_update=last, now=self.rw.clock())

    def tick(self, now: float) -> None:
        # A stall's age counts on between snapshots ("no new step for 3m").
        run = self.run(self.run_id)
        if run is not None:
            self._show_findings(run)

    def _head(self, run: RunSnapshot, grid: PlotGrid) -> Text:
        t = badge(self.app, run)
        t.append(f"  {run.name}", style="bold")
        t.append(f"  · step {fmt.step_text(run.last_step, run.total_steps)} · {fmt.rate_text(run.steps_per_s)}")
        t.append(f" · {getattr(run, 'state_detail', '') or run.state}")
        if run.gpu_util is not None:
            t.append(f" · GPU {fmt.pct_text(run.gpu_util)}")
        t.append(f" · {run.format} · {run.source}")
        t.append("\n")
        sev = {"stop": "verdict-bad", "wait": "verdict-unsure"}.get(str(run.decision), "verdict-healthy")
        t.append(f"{str(run.decision).upper()}: {run.reason}", style=var_style(self.app, sev, bold=True))
        muted = var_style(self.app, "muted")
        # The toggles first: at 80 columns the end of this line is cut, and they say what the plots show.
        a = self.analysis(run.id)
        step_name = axis_name(a) if a is not None else "step"
        t.append(f"   │ {self.options.describe(step_name, compact=self.app.size.width < 120)}", style=muted)
        n, shown = len(grid.items), grid.shape.shown
        if n > shown and not grid.full:
            t.append(f"   │ panes {grid.first + 1}–{grid.first + shown} of {n} (g)", style=muted)
        if self.pattern:
            t.append("   │ metrics matching ", style=muted)
            t.append(repr(self.pattern), style="italic")
        if run.source_error:
            t.append(f"   │ source: {run.source_error}", style=var_style(self.app, "verdict-stale"))
        return t

    def _show_info(self, run: RunSnapshot, version: int) -> None:
        a = self.analysis(run.id)
        key = (run.id, version, self.app.theme)
        if key == self._info_key:
            return
        self._info_key = key
        t = Text()
        for title, rows in info_sections(run, a):
            if t:
                t.append("\n")
            t.append(title + "\n", style="bold")
            width = max((len(k) for k, _ in rows), default=0)
            for k, v in rows:
                t.append(f"  {k.ljust(width)}  ", style=var_style(self.app, "muted"))
                t.append(v + "\n")
        self.query_one("#info", Static).update(t)

    def show_review(self, answer: ReviewerAnswer) -> None:
        if answer.run_id == self.run_id:
            self._show_reviewer_line()

    def _show_reviewer_line(self) -> None:
        line = self.query_one("#reviewer", Static)
        answer = self.rw.reviews.get(self.run_id)
        line.set_class(answer is not None, "-shown")
        if answer is None or (answer, self.app.theme) == self._review_shown:
            return
        self._review_shown = (answer, self.app.theme)
        when = datetime.fromtimestamp(answer.asked_at).strftime("%H:%M:%S")
        sev = {"STOP": "verdict-bad", "WAIT": "verdict-unsure", "CONTINUE": "verdict-healthy"}.get(
            answer.decision or "", "verdict-stale"
        )
        t = Text("Reviewer ", style="bold")
        t.append(answer.one_line(), style=var_style(self.app, sev, bold=answer.decision == "STOP"))
        if not answer.ok:
            t.append(" (verdict unchanged)", style=var_style(self.app, "muted"))
        t.append(f"\n{answer.backend}, {when}", style=var_style(self.app, "muted"))
        line.update(t)

    def restyle(self) -> None:
        self._info_key = None
        if self.rw.snapshot is not None:
            self.show_snapshot(self.rw.snapshot, force=True)

    def _redraw(self) -> None:
        if self.rw.snapshot is not None:
            self.show_snapshot(self.rw.snapshot)

    # ---- actions -------------------------------------------------------------------------
    def action_back(self) -> None:
        self.dismiss()

    def _move(self, delta: int) -> None:
        if self.run_id in self.order:
            i = (self.order.index(self.run_id) + delta) % len(self.order)
            self.run_id = self.order[i]
        self._info_key = None
        if self.options.x_range is not None:
            self._set_zoom(None)  # another run has its own range
            return
        self._redraw()

    def action_next_run(self) -> None:
        self._move(1)

    def action_prev_run(self) -> None:
        self._move(-1)

    def action_next_plot(self) -> None:
        grid = self.query_one(PlotGrid)
        grid.select(grid.selected + 1)
        self._redraw()

    def action_full_pane(self) -> None:
        grid = self.query_one(PlotGrid)
        grid.toggle_full()
        self.set_class(grid.full, "-full")
        self._redraw()

    def action_info(self) -> None:
        self.toggle_class("-info")
        self._info_key = None
        self._redraw()

    def on_plot_grid_selected(self, _event: PlotGrid.Selected) -> None:
        self._redraw()

    def action_pick_metrics(self) -> None:
        picker = self.query_one("#picker", FilterInput)
        picker.value = self.pattern
        picker.open()

    def action_log_filter(self) -> None:
        self.query_one("#log-filter", FilterInput).open()

    def on_input_changed(self, event: FilterInput.Changed) -> None:
        if event.input.id == "picker":
            self.pattern = event.value.strip()
            self.query_one(PlotGrid).selected = 0
        else:
            self.query_one(LogTail).set_filter(event.value.strip())
        self._redraw()

    def on_filter_input_closed(self, event: FilterInput.Closed) -> None:
        if event.input.id == "picker":
            self.query_one(PlotGrid).focus()
        else:
            self.query_one(LogTail).focus()

    def _request(self, cls: type[RunActionRequested]) -> None:
        run = self.run(self.run_id)
        self.post_message(cls(self.run_id, run.name if run else self.run_id))

    def action_stop(self) -> None:
        self._request(StopRequested)

    def action_escalate(self) -> None:
        self._request(EscalationRequested)

    def action_evidence(self) -> None:
        self._request(EvidenceRequested)
