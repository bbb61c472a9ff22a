"""A text plot that owns its own plotext figure and redraws only when its data, size or theme changed.

plotext's module-level functions share one global figure; two plots drawn from two widgets would
trample each other. Each `PlotView` keeps a private `_figure_class` instead, renders it with
`build()` (no printing) and shows the ANSI string through `Text.from_ansi`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np
from plotext._figure import _figure_class
from rich.text import Text
from textual import events
from textual.app import App
from textual.color import Color
from textual.content import Content
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static

from tui import format as fmt
from tui.plotdata import downsample, nice_ticks, zoom_range

#: Plots redraw live data at most every this many of the app's redraw intervals (tables: every one).
PLOT_EVERY = 2
_SLACK = 0.1
#: Markers used when colour is off (NO_COLOR): each series stays tellable by shape.
_MONO_MARKERS = ("braille", "dot", "+", "*", "o", "@")
_EMPTY = np.empty(0)
_BAD_MARK = "x"


@dataclass(frozen=True, slots=True)
class Series:
    """One line: label, x and y (already windowed/smoothed), its colour variable, and its NaN/Inf points."""

    label: str
    x: np.ndarray
    y: np.ndarray
    colour: str = "plot-series-1"
    bad_x: np.ndarray = field(default_factory=lambda: _EMPTY)
    """x of non-finite values, drawn as red marks on the curve."""
    bad_y: np.ndarray = field(default_factory=lambda: _EMPTY)
    faint: bool = False
    """The raw line under a smoothed one: drawn dim, left out of the legend."""
    extent: tuple[float, float] | None = None
    """The x range of the whole series before a zoom cut it (how far the wheel may zoom out)."""
    short: str = ""
    """What the legend calls it where the whole label does not fit (compare: the run's rank)."""


@dataclass(frozen=True, slots=True)
class PlotSpec:
    """What to draw; the widget fits it to its size."""

    title: str
    series: tuple[Series, ...]
    markers: tuple[float | tuple[float, str], ...] = ()
    """x positions of vertical lines (where findings fired), each optionally with a label."""
    log_y: bool = False
    xlabel: str = ""
    empty: str = "no data yet"
    x_unit: str = "step"
    """`clock` labels the x ticks as times of day; anything else with SI numbers."""
    x_range: tuple[float, float] | None = None
    """The zoomed x range (the series are already cut to it); None: the whole run."""


class Drawing(Protocol):
    """Another picture a plot pane can show (the layer heat map): it draws itself at the pane's size."""

    def title_for(self, app: App[object]) -> str: ...

    def draw(self, app: App[object], width: int, height: int) -> Text: ...


Builder = Callable[[], "PlotSpec | Drawing"]


@dataclass(frozen=True, slots=True)
class _Frame:
    """Where the last drawing put the x axis: its range, the whole data's range and the plot's columns."""

    lo: float
    hi: float
    extent: tuple[float, float]
    left: int
    cols: int
    unit: str


class PlotView(Static):
    """A plot pane; call `show(key, builder)` and it redraws only when something it shows changed."""

    DEFAULT_CSS = """
    PlotView {
        height: 1fr;
        min-height: 6;
        padding: 0;
        color: $foreground;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
    }
    """

    class ZoomRequested(Message):
        """The wheel asked for another x range over this plot (None: the whole run again)."""

        def __init__(self, view: PlotView, x_range: tuple[float, float] | None) -> None:
            super().__init__()
            self.view = view
            self.x_range = x_range

    def __init__(self, *, id: str | None = None, classes: str | None = None, zoomable: bool = False) -> None:
        super().__init__("", id=id, classes=classes)
        self.zoomable = zoomable
        """The wheel zooms the x range here (the screen keeps the range); else it scrolls the page."""
        self._frame: _Frame | None = None
        self._fig = _figure_class()
        # plotext clips a figure to the real terminal's size otherwise (80x24 when headless).
        self._fig._limit_size(False, False)
        self._key: Hashable = None
        self._drawn: Hashable = None
        self._builder: Builder | None = None
        self._drawn_at = -1e9
        self._timer: Timer | None = None
        self.renders = 0
        """How many times the figure was rebuilt (tests and the benchmark read it)."""

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._redraw())

    def show(self, key: Hashable, builder: Builder, *, now: bool = False) -> None:
        """New content identified by `key` (e.g. a data version and the options); built lazily.
        `now`: draw it at once, not held back by the redraw pacing (the data just became complete)."""
        self._key = key
        self._builder = builder
        self._redraw(now)

    def on_resize(self) -> None:
        self._redraw()

    def _redraw(self, now: bool = False) -> None:
        if self._builder is None or not self.is_mounted:
            return
        w, h = self.content_size
        if w < 10 or h < 3:
            return
        state = (self._key, w, h, self.app.theme, self.app.no_color)
        if state == self._drawn:
            return
        # New data for the same picture redraws at most every PLOT_EVERY redraw intervals.
        # The next `show()` (the screen's next redraw) normally picks it up, in the same frame as the
        # table; the timer only catches the last data when the stream stops.
        interval = PLOT_EVERY * getattr(self.app, "redraw_interval", 0.0)
        wait = self._drawn_at + interval - time.monotonic()
        if not now and wait > _SLACK and isinstance(self._drawn, tuple) and state[1:] == self._drawn[1:]:
            if self._timer is None:
                self._timer = self.set_timer(wait + interval, self._deferred)
            return
        self._drawn = state
        self._drawn_at = time.monotonic()
        spec = self._builder()
        if isinstance(spec, PlotSpec):
            self.border_title = self.title_for(spec)
            self.update(self._draw(spec, w, h))
        else:
            self._frame = None  # no x axis to zoom: the wheel pages the grid
            self.border_title = spec.title_for(self.app)
            self.update(spec.draw(self.app, w, h))
        self.renders += 1

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self._zoom(event, zoom_in=True)

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        self._zoom(event, zoom_in=False)

    def _zoom(self, event: events.MouseScrollUp | events.MouseScrollDown, *, zoom_in: bool) -> None:
        """Wheel over the plot area: zoom the x range around the pointer. Over the border, with shift, or
        where nothing is plotted the event goes on to the page (the grid pages its panes with it)."""
        frame = self._frame
        at = event.get_content_offset(self)
        if not self.zoomable or frame is None or at is None or event.shift or frame.hi <= frame.lo:
            return
        event.stop()
        frac = min(1.0, max(0.0, (at.x - frame.left + 0.5) / frame.cols))
        x = frame.lo + frac * (frame.hi - frame.lo)
        # Steps are whole numbers: zooming in past a few steps per column shows nothing more.
        min_span = frame.cols / 4 if frame.unit == "step" else 0.0
        new = zoom_range((frame.lo, frame.hi), frame.extent, x, zoom_in, min_span)
        if new != (frame.lo, frame.hi):
            self.post_message(self.ZoomRequested(self, new))

    def _deferred(self) -> None:
        self._timer = None
        self._redraw()

    def _colour(self, variable: str) -> tuple[int, int, int] | str:
        if self.app.no_color:
            return "default"
        value = self.app.theme_variables.get(variable)
        if value is None:
            return "default"
        c = Color.parse(value)
        return (c.r, c.g, c.b)

    def title_for(self, spec: PlotSpec) -> Content:
        """The pane's title with the legend (colour swatch and key per line), as literal text."""
        lines = [s for s in spec.series if not s.faint and len(s.x) + len(s.bad_x)]
        parts: list[tuple[str, str] | str] = [spec.title]
        room = self.size.width - 4 - len(spec.title)
        if len(lines) == 1 and lines[0].label != spec.title:
            parts.append(f" · {lines[0].label}")
        elif len(lines) > 1:
            # The whole names when they fit the border, else the short ones (the table beside names them).
            short = sum(len(s.label) + 3 for s in lines) > room and all(s.short for s in lines)
            for s in lines:
                parts.append(" ")
                parts.append(("━", self._style(s.colour)))
                parts.append(f"{s.short}" if short else f" {s.label}")
        if spec.x_range is not None:
            lo, hi = spec.x_range
            if spec.x_unit == "clock":
                span = f"{datetime.fromtimestamp(lo):%H:%M:%S}–{datetime.fromtimestamp(hi):%H:%M:%S}"
            else:
                span = "–".join(fmt.tick_labels([lo, hi]))
            parts.append((f"  ⌕ {span}", self._style("accent")))
        bad = sum(len(s.bad_x) for s in spec.series if not s.faint)
        if bad:
            parts.append("  ")
            parts.append((f"{_BAD_MARK} {bad} NaN/Inf", self._style("verdict-bad")))
        return Content.assemble(*parts)

    def _style(self, variable: str) -> str:
        c = self._colour(variable)
        return "" if isinstance(c, str) else "#{:02x}{:02x}{:02x}".format(*c)

    def _draw(self, spec: PlotSpec, w: int, h: int) -> Text:
        series = [s for s in spec.series if len(s.x) or len(s.bad_x)]
        self._frame = None
        if not series:
            if spec.x_range is not None and any(s.extent for s in spec.series):
                return Text("nothing logged in this x range (z: the whole run)", style="italic")
            return Text(spec.empty, style="italic")
        fig = self._fig
        fig.clear_data()
        fig.plot_size(w, h)
        fig.theme("clear")
        fig.xlabel(spec.xlabel)
        ys = [s.y for s in series if len(s.y)] + [s.bad_y[np.isfinite(s.bad_y)] for s in series]
        yall = np.concatenate(ys) if ys else _EMPTY
        if spec.log_y:
            yall = yall[yall > 0]
        if len(yall) == 0:
            return Text(spec.empty if not any(len(s.bad_x) for s in series) else "only NaN/Inf so far", style="italic")

        def ty(v: np.ndarray) -> np.ndarray:
            return np.log10(np.where(v > 0, v, np.nan)) if spec.log_y else v

        ylo, yhi = float(np.nanmin(ty(yall))), float(np.nanmax(ty(yall)))
        xs = [s.x for s in series] + [s.bad_x for s in series]
        marks = [(m, "") if isinstance(m, (int, float)) else m for m in spec.markers]
        xall = np.concatenate(xs)
        lo, hi = float(xall.min()), float(xall.max())
        if spec.x_range is not None:
            lo, hi = spec.x_range
            marks = [(x, label) for x, label in marks if lo <= x <= hi]
        else:
            marks = [(x, label) for x, label in marks if x >= lo]
            if marks:
                hi = max(hi, max(x for x, _ in marks))
        # One y tick every ~3 plot rows at most: plotext rounds ticks to rows, and crowded ones collide.
        ny = max(3, min(6, (h - 3) // 3))
        yt = nice_ticks(ylo, yhi, ny)
        while len(yt) < 2 and ny < 7 and yhi > ylo:
            # Round steps can leave one tick inside the range (0.5 for 0.18–0.88): one finer step.
            ny += 1
            yt = nice_ticks(ylo, yhi, ny)
        ylab = fmt.tick_labels(yt)
        cols = max(10, w - max((len(t) for t in ylab), default=4) - 3)
        extents = [s.extent for s in series if s.extent is not None]
        extent = (min(e[0] for e in extents), max(e[1] for e in extents)) if extents else (lo, hi)
        # plotext puts the y labels, then the axis line, then the data columns, then the right frame.
        left = max((len(t) for t in ylab), default=4) + 1
        self._frame = _Frame(lo, hi, (min(extent[0], lo), max(extent[1], hi)), left, max(1, w - left - 1), spec.x_unit)
        for i, s in enumerate(series):
            if not len(s.x):
                continue
            x, y = downsample(s.x, s.y, cols)
            marker = _MONO_MARKERS[i % len(_MONO_MARKERS)] if self.app.no_color else "braille"
            colour = self._colour("muted" if s.faint else s.colour)
            fig.plot(x.tolist(), ty(y).tolist(), marker=marker, color=colour)
        for s in series:
            ok = np.isfinite(ty(s.bad_y)) if len(s.bad_y) else np.zeros(0, bool)
            if ok.any() and not s.faint:
                bx, by = downsample(s.bad_x[ok], ty(s.bad_y)[ok], cols)
                fig.scatter(bx.tolist(), by.tolist(), marker=_BAD_MARK, color=self._colour("verdict-bad"))
        if hi > lo:
            fig.xlim(lo, hi)
        if yhi > ylo:
            fig.ylim(ylo, yhi)
        free = -1.0
        for m, label in sorted(marks):
            fig.vertical_line(m, color=self._colour("plot-marker"))
            col = (m - lo) / (hi - lo) * cols if hi > lo else 0.0
            if label and col > free:
                # A label that would run into the previous one is left out (the line stays).
                fig.text(label, m, yhi, color=self._colour("plot-marker"), alignment="left")
                free = col + len(label) + 1
        nx = max(3, min(8, w // 12))
        xt = nice_ticks(lo, hi, nx)
        while len(xt) < 3 and nx < w // 8 and hi > lo:
            nx += 1  # as for y: 0–149 would get 0 and 100 only
            xt = nice_ticks(lo, hi, nx)
        if spec.x_unit == "clock":
            fig.xticks(xt, [datetime.fromtimestamp(t).strftime("%H:%M" if hi - lo > 120 else "%H:%M:%S") for t in xt])
        else:
            fig.xticks(xt, fmt.tick_labels(xt))
        if spec.log_y:
            fig.yticks(yt, [fmt.si(10**t) for t in yt])
        else:
            fig.yticks(yt, fmt.tick_labels(yt))
        return Text.from_ansi(fig.build(), no_wrap=True, end="")
