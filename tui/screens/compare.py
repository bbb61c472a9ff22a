"""Several runs side by side: one metric overlaid on a common x axis and a ranking table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.widgets import DataTable, Static

from monitor.analysis import RunAnalysis
from monitor.hub import HubSnapshot, RunSnapshot
from monitor.model import Role, Verdict
from tui import actions
from tui import format as fmt
from tui.plotdata import COMPARE_X_AXES, PCT, STEP, TOKENS, PlotOptions, RankStats, axes_with, rank_stats
from tui.runplots import ROLE_TITLES, axis_name, compare_spec, data_version, epochs_of, has_times, role_values
from tui.screens.base import PlottingScreen
from tui.style import badge, var_style
from tui.tokenaxis import tokens_of
from tui.widgets.footer import FittingFooter
from tui.widgets.notice_bar import NoticeBar
from tui.widgets.plot import PlotView

METRICS = (Role.TRAIN_LOSS, Role.EVAL_LOSS, Role.LR, Role.GRAD_NORM)
RANK_WINDOW = 100
"""Points in the window the slope and noise are measured over."""
OVERLAY_MAX = 6
"""Runs drawn on the plot: the best-ranked ones (rank first, plot the shortlist); the table ranks all."""


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:+.1f}%"


class CompareScreen(PlottingScreen):
    """The quick comparison researchers do before killing the weaker configs."""

    BINDINGS: ClassVar[list[BindingType]] = actions.bindings(actions.COMPARE)
    X_AXES = COMPARE_X_AXES
    DEFAULT_CSS = """
    CompareScreen #compare-head {
        height: 1;
        padding: 0 1;
        background: $panel;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    CompareScreen #compare-plot {
        height: 1fr;
        min-height: 8;
    }
    CompareScreen #ranking {
        height: auto;
        max-height: 40%;
    }
    """

    def __init__(self, run_ids: Sequence[str]) -> None:
        super().__init__()
        self.run_ids = tuple(run_ids)
        """The runs compared, in the table's order."""
        self.metric = Role.TRAIN_LOSS
        """The metric overlaid (`k` cycles)."""
        self.options = PlotOptions()
        self._ranked: object = None
        self._axis_chosen = False
        self.ranked_ids: tuple[str, ...] = tuple(run_ids)
        """The runs best first (the plot overlays the first OVERLAY_MAX)."""

    def compose(self) -> ComposeResult:
        yield Static(id="compare-head")
        yield PlotView(id="compare-plot", zoomable=True)
        table: DataTable[Text | str] = DataTable(id="ranking", cursor_type="row", zebra_stripes=False)
        yield table
        yield NoticeBar()
        yield FittingFooter()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#ranking", DataTable)
        wide = self.app.size.width >= 100
        for label, width in (
            ("#", 4),
            ("run", 24 if wide else 14),
            ("verdict", 9),
            ("last", 9 if wide else 8),
            ("best", 9 if wide else 8),
            ("slope/1k", 9),
            ("noise", 7),
            ("eval best", 9),
        ):
            # At 80 columns the noise column gives way so the eval column is not cut off.
            if wide or label != "noise":
                table.add_column(label, key=label, width=width)

    def show_snapshot(self, snap: HubSnapshot, *, force: bool = False) -> None:
        runs = {r.id: r for r in snap.runs}
        chosen = [(rid, runs.get(rid)) for rid in self.run_ids]
        analyses = [(rid, self.analysis(rid)) for rid in self.run_ids]
        versions = tuple(data_version(a) for _, a in analyses)
        if not self._axis_chosen and any(a is not None and a.store.rows for _, a in analyses):
            self._choose_axis(analyses)
        ranked_key = (versions, self.metric, self.options.window, tuple(r.verdict if r else None for _, r in chosen))
        if force or ranked_key != self._ranked:
            self._ranked = ranked_key
            self._rank(chosen, analyses)
        shown = self.ranked_ids[:OVERLAY_MAX]
        head = Text(f"compare {len(self.run_ids)} runs", style="bold")
        if len(self.run_ids) > OVERLAY_MAX:
            head.append(f" (plot: best {OVERLAY_MAX})", style="bold")
        head.append(f" · metric: {ROLE_TITLES[self.metric]} (k) · ")
        head.append(self.options.describe(compact=self.app.size.width < 120), style=var_style(self.app, "muted"))
        self.query_one("#compare-head", Static).update(head)
        pairs = [((runs[rid].name if rid in runs else rid), self.analysis(rid)) for rid in shown]
        key = (versions, self.metric, self.options, shown)
        metric, opts = self.metric, self.options
        self.query_one("#compare-plot", PlotView).show(key, lambda: compare_spec(pairs, metric, opts))

    def _rank(
        self, chosen: list[tuple[str, RunSnapshot | None]], analyses: list[tuple[str, RunAnalysis | None]]
    ) -> None:
        rows = []
        for (rid, run), (_, a) in zip(chosen, analyses, strict=True):
            x, y = role_values(a, self.metric, self.options.window)
            st = rank_stats(x, y, RANK_WINDOW)
            ex, ey = role_values(a, Role.EVAL_LOSS, self.options.window)
            ev = rank_stats(ex, ey, RANK_WINDOW)
            rows.append((rid, run, st, ev))
        lower_better = self.metric in (Role.TRAIN_LOSS, Role.EVAL_LOSS)

        def order(item: tuple[str, RunSnapshot | None, RankStats, RankStats]) -> tuple[int, float]:
            # A run that went NaN/Inf or was judged bad ranks below every finite, unjudged-bad one.
            _, run, st, _ = item
            last = st.last
            if last is None:
                return (3, 0.0)
            if not math.isfinite(last):
                return (2, 0.0)
            if run is not None and run.verdict is Verdict.BAD:
                return (1, last if lower_better else -last)
            return (0, last if lower_better else -last)

        rows.sort(key=order)
        self.ranked_ids = tuple(rid for rid, *_ in rows)
        table = self.query_one("#ranking", DataTable)
        table.clear()
        for i, (rid, run, st, ev) in enumerate(rows, 1):
            diverged = st.last is not None and not math.isfinite(st.last)
            cells: dict[str, Text | str] = {
                "#": self._legend(i),
                "run": Text(run.name if run else rid),
                "verdict": badge(self.app, run) if run else "—",
                "last": fmt.num_fit(st.last, 8),
                "best": fmt.num_fit(st.best, 8),
                "slope/1k": Text("diverged", style=var_style(self.app, "verdict-bad"))
                if diverged
                else _pct(st.slope_pct),
                "noise": "—" if st.noise_pct is None or diverged else f"{st.noise_pct:.1f}%",
                "eval best": fmt.num_fit(ev.best, 8),
            }
            table.add_row(
                *(cells[str(c.value)] for c in table.columns),
                key=rid,
            )

    def _legend(self, rank: int) -> Text:
        """The rank, with the plotted runs' line colour: the legend, outside the plot."""
        if rank > OVERLAY_MAX:
            return Text(f"{rank}")
        t = Text("━ ", style=var_style(self.app, f"plot-series-{(rank - 1) % 6 + 1}", bold=True))
        t.append(str(rank))
        return t

    def _choose_axis(self, analyses: list[tuple[str, RunAnalysis | None]]) -> None:
        """Runs that count steps differently (other step keys, or lengths 5x apart) start on tokens seen
        when every run tells its tokens, else on % of each run."""
        present = [a for _, a in analyses if a is not None]
        epoch = any(epochs_of(a) is not None for a in present)
        tokens = bool(present) and all(tokens_of(a) is not None for a in present)
        base = COMPARE_X_AXES if any(has_times(a) for a in present) else (STEP, PCT)
        self.X_AXES = axes_with(base, epoch=epoch, tokens=tokens)
        names = {axis_name(a) for a in present}
        lasts = [a.store.last_step for a in present if a.store.last_step]
        if len(names) > 1 or (lasts and min(lasts) > 0 and max(lasts) / min(lasts) > 5):
            self.options = replace(self.options, x_axis=TOKENS if tokens else PCT)
        self._axis_chosen = True

    def restyle(self) -> None:
        if self.rw.snapshot is not None:
            self.show_snapshot(self.rw.snapshot, force=True)

    def _redraw(self) -> None:
        if self.rw.snapshot is not None:
            self.show_snapshot(self.rw.snapshot)

    def action_back(self) -> None:
        self.dismiss()

    def action_metric(self) -> None:
        i = METRICS.index(self.metric)
        self.metric = METRICS[(i + 1) % len(METRICS)]
        self._redraw()
