"""One run in detail: loss / LR / grad-norm / GPU plots with finding markers, the findings, the live log tail."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Static

from monitor.actions import ReviewerAnswer
from monitor.hub import HubSnapshot, RunSnapshot
from monitor.model import Role
from tui import actions
from tui import format as fmt
from tui.messages import EscalationRequested, EvidenceRequested, RunActionRequested, StopRequested
from tui.plotdata import PlotOptions
from tui.runplots import data_version, gpu_spec, loss_spec, role_spec
from tui.screens.base import PlottingScreen
from tui.style import badge, var_style
from tui.widgets.filter_input import FilterInput
from tui.widgets.findings import FindingsList
from tui.widgets.log_tail import LogTail
from tui.widgets.plot import PlotView

PLOTS = ("plot-loss", "plot-lr", "plot-grad", "plot-gpu")


class DetailScreen(PlottingScreen):
    """Everything about one run; `n`/`p` move to the next/previous run without leaving."""

    BINDINGS: ClassVar[list[BindingType]] = actions.bindings(actions.DETAIL)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]  # noqa: RUF012
    VERTICAL_BREAKPOINTS = [(0, "-short"), (40, "-tall")]  # noqa: RUF012
    DEFAULT_CSS = """
    DetailScreen #detail-head {
        height: 2;
        padding: 0 1;
        background: $panel;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    DetailScreen #plots {
        layout: grid;
        grid-size: 2 2;
        height: 3fr;
    }
    DetailScreen.-narrow #plots {
        grid-size: 1;
    }
    DetailScreen.-short #plots {
        grid-size: 1 1;
        height: 2fr;
    }
    DetailScreen.-short #plots PlotView {
        display: none;
    }
    DetailScreen.-short #plots PlotView.-solo {
        display: block;
    }
    DetailScreen #lower {
        height: 2fr;
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
    DetailScreen.-short #lower {
        height: 1fr;
    }
    """

    def __init__(self, run_id: str, order: Sequence[str] = ()) -> None:
        super().__init__()
        self.run_id = run_id
        """The run shown."""
        self.order = tuple(order) or (run_id,)
        """Runs `n` and `p` step through (the table's order when the screen opened)."""
        self.options = PlotOptions()
        """The `l`, `m`, `w`, `x` toggles."""
        self.solo = 0
        """Which plot a short terminal shows (`g` cycles)."""
        self._review_shown: tuple[ReviewerAnswer, str] | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="detail-head")
        with Grid(id="plots"):
            for i, pid in enumerate(PLOTS):
                yield PlotView(id=pid, classes="-solo" if i == 0 else None)
        with Horizontal(id="lower"):
            with VerticalScroll(id="findings-box"):
                yield FindingsList(id="findings")
                yield Static(id="reviewer")
            with Vertical(id="log-box"):
                yield LogTail(id="log")
                yield FilterInput(placeholder="filter log lines", id="log-filter")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#findings-box").border_title = "findings"
        self.query_one(LogTail).border_title = "log"

    # ---- drawing -------------------------------------------------------------------------
    def show_snapshot(self, snap: HubSnapshot, *, force: bool = False) -> None:
        run = next((r for r in snap.runs if r.id == self.run_id), None)
        head = self.query_one("#detail-head", Static)
        if run is None:
            head.update(Text(f"{self.run_id}: not in the latest snapshot", style="italic"))
            return
        head.update(self._head(run))
        a = self.analysis(run.id)
        version = data_version(a)
        opts = self.options
        key = (run.id, version, opts, run.findings)
        self.query_one("#plot-loss", PlotView).show(key, lambda: loss_spec(a, run.findings, opts))
        self.query_one("#plot-lr", PlotView).show(key, lambda: role_spec(a, Role.LR, opts, "plot-series-3"))
        self.query_one("#plot-grad", PlotView).show(key, lambda: role_spec(a, Role.GRAD_NORM, opts, "plot-series-4"))
        history = self.rw.hub.gpu_history.get(run.host, ())
        gpu_key = (run.host, len(history), history[-1].time if history else None)
        self.query_one("#plot-gpu", PlotView).show(gpu_key, lambda: gpu_spec(run.host, history, snap.time))
        self.query_one(FindingsList).show(run.findings, force=force)
        self._show_reviewer_line()
        if a is not None:
            tail = a.store.log_tail
            self.query_one(LogTail).show(list(tail), (len(tail), id(tail[-1]) if tail else None, a.info.lines))

    def _head(self, run: RunSnapshot) -> Text:
        t = badge(self.app, run)
        t.append(f"  {run.name}", style="bold")
        t.append(f"  · {run.state} · {run.source} · {run.format} · step axis: {run.step_key}")
        t.append(f" · step {fmt.step_text(run.last_step, run.total_steps)} · {fmt.rate_text(run.steps_per_s)}")
        t.append(f" · GPU {fmt.pct_text(run.gpu_util)}")
        t.append("\n")
        sev = {"stop": "verdict-bad", "wait": "verdict-unsure"}.get(str(run.decision), "verdict-healthy")
        t.append(f"{str(run.decision).upper()}: {run.reason}", style=var_style(self.app, sev, bold=True))
        t.append(f"   │ {self.options.describe()}", style=var_style(self.app, "muted"))
        if run.source_error:
            t.append(f"   │ source: {run.source_error}", style=var_style(self.app, "verdict-stale"))
        return t

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
        self._redraw()

    def action_next_run(self) -> None:
        self._move(1)

    def action_prev_run(self) -> None:
        self._move(-1)

    def action_next_plot(self) -> None:
        self.solo = (self.solo + 1) % len(PLOTS)
        for i, pid in enumerate(PLOTS):
            self.query_one(f"#{pid}").set_class(i == self.solo, "-solo")

    def action_filter(self) -> None:
        self.query_one(FilterInput).open()

    def on_input_changed(self, event: FilterInput.Changed) -> None:
        self.query_one(LogTail).set_filter(event.value.strip())
        self._redraw()

    def on_filter_input_closed(self, _event: FilterInput.Closed) -> None:
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
