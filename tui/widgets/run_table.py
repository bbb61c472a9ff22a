"""The run table: one row per run, verdict badge first, worst runs on top; only changed cells redraw."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from monitor.hub import RunSnapshot
from tui import format as fmt
from tui.style import badge, var_style


@dataclass(frozen=True, slots=True)
class Column:
    """A column: key, header, fixed width (0: takes the width left over) and whether compact tables keep it."""

    key: str
    label: str
    width: int
    compact: bool


COLUMNS: tuple[Column, ...] = (
    Column("badge", "verdict", 9, True),
    Column("name", "run", 0, True),
    Column("source", "source", 18, False),
    Column("state", "state", 8, True),
    Column("step", "step", 8, True),
    Column("speed", "steps/s", 8, False),
    Column("loss", "loss", 7, True),
    Column("trend", "trend", 12, True),
    Column("age", "age", 5, True),
    Column("gpu", "GPU", 4, False),
)
COLUMNS_BY_KEY = {c.key: c for c in COLUMNS}
#: Below this width the table drops the source, speed and GPU columns...
COMPACT_BELOW = 130
#: ...and below this one the trend sparkline is shorter.
NARROW_BELOW = 100
_NARROW_TREND = 8


#: The narrowest progress bar shown beside the amount read (`▕██▏43%`).
_BAR = 9
#: The widest read rate (`999 MB/s`).
_RATE = 8


def _amount(run: RunSnapshot, rate: bool = False) -> str:
    """`120/280 MB` (with `rate`: `120/280 MB 45 MB/s`) for a run catching up with its source's
    content, padded to its widest (so the bar beside it keeps its width); empty otherwise."""
    progress = getattr(run, "progress", None)
    if progress is None or not progress[1] or progress[0] >= progress[1]:
        return ""
    widest = fmt.read_amount(progress[1], progress[1])
    text = fmt.read_amount(progress[0], progress[1]).rjust(len(widest))
    if rate:
        per_s = getattr(run, "read_rate", None)
        text += " " + (fmt.byte_rate_text(per_s) if per_s else "").rjust(_RATE)
    return text


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def clip_middle(text: str, width: int) -> str:
    """`hf-trainer…7471.out`: both ends of a run name stay (runs in one folder differ at the end)."""
    if len(text) <= width:
        return text
    tail = max(1, (width - 1) * 2 // 5)
    return text[: max(1, width - 1 - tail)] + "…" + text[-tail:]


class RunTable(DataTable[Text | str]):
    """One row per run; `show(runs, now, marked)` diffs against what is on screen."""

    DEFAULT_CSS = """
    RunTable {
        height: 1fr;
        background: $surface;
    }
    RunTable > .datatable--header {
        color: $text-muted;
        text-style: bold;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("home", "first_row", "First run", show=False),
        Binding("end", "last_row", "Last run", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.sort_column: tuple[str, bool] = ("badge", False)
        """The column sorted on and whether reversed (shown in its header with ▼ or ▲)."""
        self._compact: bool | None = None
        self._narrow: bool | None = None
        self._shape: tuple[object, ...] = ()
        self._name_width = 20
        self._step_width = 8
        self._fit: dict[str, int] = {}
        """Widths that follow the widest value shown (verdict, state), beyond the column's own."""
        self._order: list[str] = []
        self._cells: dict[str, dict[str, Text | str]] = {}
        self._runs: dict[str, RunSnapshot] = {}
        self._marked: frozenset[str] = frozenset()
        self._reading: frozenset[str] = frozenset()
        self._intervals: dict[str, float] = {}
        self._now = 0.0

    # ---- public --------------------------------------------------------------------------
    @property
    def selected_id(self) -> str | None:
        """The run under the cursor."""
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return self._order[self.cursor_row]

    @property
    def order(self) -> tuple[str, ...]:
        """Run ids in the order shown."""
        return tuple(self._order)

    def select(self, run_id: str) -> None:
        """Move the cursor to a run, if it is shown."""
        if run_id in self._order:
            self.move_cursor(row=self._order.index(run_id), animate=False)

    def show(
        self,
        runs: Sequence[RunSnapshot],
        now: float,
        marked: frozenset[str] = frozenset(),
        reading: frozenset[str] = frozenset(),
        intervals: dict[str, float] | None = None,
    ) -> None:
        """Show these runs in this order (`reading`: runs still catching up); unchanged cells are not touched."""
        self._now = now
        self._marked = marked
        self._reading = reading
        self._intervals = intervals or {}
        self._runs = {r.id: r for r in runs}
        order = [r.id for r in runs]
        # The step column fits its widest value: `1,000,000` is never cut.
        self._step_width = max([6] + [len(fmt.step_text(r.last_step)) for r in runs])
        # `! unreadable` and `unreadable` are read whole, not cut to `! unreada`.
        self._fit = {
            "badge": max([COLUMNS_BY_KEY["badge"].width] + [len(fmt.badge_text(r)) for r in runs]),
            "state": min(12, max([COLUMNS_BY_KEY["state"].width] + [len(r.state) for r in runs])),
        }
        if reading_amounts := [len(a) for r in runs if (a := _amount(r, self._compact is not False))]:
            # A run catching up shows how much it has read next to its bar: `▕██░░▏43% 120/280 MB`
            # (and the read rate, where the steps/s column that shows it is left out).
            self._fit["state"] = max(self._fit["state"], min(_BAR + 1 + max(reading_amounts), 30))
        selected = self.selected_id
        if self._ensure_columns() or order != self._order:
            self._rebuild(order, selected=selected)
            return
        for r in runs:
            self._update_row(r)

    def tick(self, now: float) -> None:
        """Redraw the clock-driven cells, age and steps/s (called once a second)."""
        self._now = now
        for run_id in self._order:
            self._update_row(self._runs[run_id])

    def restyle(self) -> None:
        """Redraw every cell (the theme changed: colours are baked into the cells' text)."""
        for run_id in self._order:
            self._cells[run_id] = {}
            self._update_row(self._runs[run_id])

    def action_first_row(self) -> None:
        self.move_cursor(row=0, animate=False)

    def action_last_row(self) -> None:
        self.move_cursor(row=max(0, len(self._order) - 1), animate=False)

    # ---- internals -----------------------------------------------------------------------
    def _columns(self) -> tuple[Column, ...]:
        return tuple(c for c in COLUMNS if c.compact or not self._compact)

    def _width(self, c: Column) -> int:
        if c.key == "name":
            return self._name_width
        if c.key == "step":
            return self._step_width
        if c.key in self._fit:
            return self._fit[c.key]
        if c.key == "trend" and self._narrow:
            return _NARROW_TREND
        return c.width

    def _has(self, key: str) -> bool:
        return any(c.key == key for c in self._columns())

    def on_resize(self) -> None:
        selected = self.selected_id
        order = list(self._order)
        if self._ensure_columns():
            self._rebuild(order, force=True, selected=selected)

    def _ensure_columns(self) -> bool:
        width = self.size.width or 80
        compact = width < COMPACT_BELOW
        narrow = width < NARROW_BELOW
        fixed = sum(c.width + 2 for c in COLUMNS if c.width and (c.compact or not compact))
        fixed += self._step_width - COLUMNS_BY_KEY["step"].width
        fixed += sum(w - COLUMNS_BY_KEY[k].width for k, w in self._fit.items())
        if narrow:
            fixed -= 12 - _NARROW_TREND
        # Two columns for the cell padding of the name, one for a scrollbar's worth of slack.
        name_width = max(10, min(40, width - fixed - 3))
        shape = (compact, narrow, name_width, self._step_width, tuple(self._fit.items()), self.sort_column)
        if shape == self._shape and self.columns:
            return False
        self._shape = shape
        self._compact, self._narrow, self._name_width = compact, narrow, name_width
        self.clear(columns=True)
        for c in self._columns():
            label = c.label
            if c.key == self.sort_column[0]:
                label += " ▲" if self.sort_column[1] else " ▼"
            self.add_column(
                label,
                key=c.key,
                width=self._width(c) if c.key != self.sort_column[0] else max(len(label), self._width(c)),
            )
        self._order = []
        return True

    def _rebuild(self, order: list[str], force: bool = False, selected: str | None = None) -> None:
        """Rows in this order; the cursor stays on the run it was on (`selected`, else the current one)."""
        selected = selected or self.selected_id
        self.clear()
        self._cells.clear()
        self._order = order
        for run_id in order:
            cells = self._cells_for(self._runs[run_id])
            self._cells[run_id] = cells
            self.add_row(*cells.values(), key=run_id)
        if selected in order:
            self.move_cursor(row=order.index(selected), animate=False)

    def _update_row(self, run: RunSnapshot) -> None:
        new = self._cells_for(run)
        old = self._cells.get(run.id, {})
        for key, value in new.items():
            if old.get(key) != value:
                self.update_cell(run.id, key, value)
        self._cells[run.id] = new

    def _cells_for(self, run: RunSnapshot) -> dict[str, Text | str]:
        app = self.app
        mark = "● " if run.id in self._marked else ""
        name = Text(clip_middle(mark + run.name, self._name_width))
        state = run.state
        out: dict[str, Text | str] = {}
        for c in self._columns():
            if c.key == "badge":
                out[c.key] = badge(app, run)
            elif c.key == "name":
                out[c.key] = name
            elif c.key == "source":
                out[c.key] = Text(_clip(run.source, c.width))
            elif c.key == "state":
                style = var_style(app, "verdict-stale") if run.stale else ""
                progress = getattr(run, "progress", None)
                if progress is not None and progress[1] and progress[0] < progress[1]:
                    # What the hub has read of what the source holds: `▕███░░▏ 43%`, and how much
                    # that is (`120/280 MB`) where the column has room for both.
                    w, amount = self._width(c), _amount(run, bool(self._compact))
                    bar = w if w - len(amount) - 1 < _BAR else w - len(amount) - 1
                    text = fmt.progress_bar(progress[0], progress[1], bar) + (f" {amount}" if bar < w else "")
                    out[c.key] = Text(text, style=var_style(app, "muted"))
                elif run.id in self._reading and not run.stale:
                    out[c.key] = Text(_clip("reading", self._width(c)), style=var_style(app, "muted"))
                else:
                    out[c.key] = Text(_clip(state, self._width(c)), style=style)
            elif c.key == "step":
                out[c.key] = Text(fmt.step_text(run.last_step), justify="right")
            elif c.key == "speed" and _amount(run) and run.read_rate:
                out[c.key] = Text(fmt.byte_rate_text(run.read_rate), justify="right", style=var_style(app, "muted"))
            elif c.key == "speed":
                age = None if run.last_update is None else self._now - run.last_update
                out[c.key] = Text(
                    fmt.rate_text(fmt.live_rate(run.steps_per_s, age, self._intervals.get(run.id))), justify="right"
                )
            elif c.key == "loss":
                style = var_style(app, "verdict-bad") if fmt.num(run.loss) in ("NaN", "Inf") else ""
                out[c.key] = Text(fmt.num_fit(run.loss, self._width(c)), justify="right", style=style)
            elif c.key == "trend":
                spark = fmt.sparkline(run.loss_trend, self._width(c))
                out[c.key] = Text(spark, style=var_style(app, "plot-series-1"))
            elif c.key == "age":
                out[c.key] = Text(fmt.age_text(None if run.last_update is None else self._now - run.last_update))
            elif c.key == "gpu":
                out[c.key] = Text(fmt.pct_text(run.gpu_util))
        return out
