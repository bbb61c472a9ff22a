"""A text plot that owns its own plotext figure and redraws only when its data, size or theme changed.

plotext's module-level functions share one global figure; two plots drawn from two widgets would
trample each other. Each `PlotView` keeps a private `_figure_class` instead, renders it with
`build()` (no printing) and shows the ANSI string through `Text.from_ansi`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np
from plotext._figure import _figure_class
from rich.text import Text
from textual.color import Color
from textual.timer import Timer
from textual.widgets import Static

from tui.plotdata import downsample

#: Plots redraw live data at most every this many of the app's redraw intervals (tables: every one).
PLOT_EVERY = 2
_SLACK = 0.1
#: Markers used when colour is off (NO_COLOR): each series stays tellable by shape.
_MONO_MARKERS = ("braille", "dot", "+", "x", "*", "o")


@dataclass(frozen=True, slots=True)
class Series:
    """One line: label, x and y (already windowed/smoothed) and the theme variable of its colour."""

    label: str
    x: np.ndarray
    y: np.ndarray
    colour: str = "plot-series-1"


@dataclass(frozen=True, slots=True)
class PlotSpec:
    """What to draw; the widget fits it to its size."""

    title: str
    series: tuple[Series, ...]
    markers: tuple[float, ...] = ()
    """x positions of vertical lines (where findings fired)."""
    log_y: bool = False
    xlabel: str = ""
    empty: str = "no data yet"


Builder = Callable[[], PlotSpec]


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

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes)
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

    def show(self, key: Hashable, builder: Builder) -> None:
        """New content identified by `key` (e.g. a data version and the options); built lazily."""
        self._key = key
        self._builder = builder
        self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
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
        if wait > _SLACK and isinstance(self._drawn, tuple) and state[1:] == self._drawn[1:]:
            if self._timer is None:
                self._timer = self.set_timer(wait + interval, self._deferred)
            return
        self._drawn = state
        self._drawn_at = time.monotonic()
        spec = self._builder()
        self.border_title = spec.title
        self.update(self._draw(spec, w, h))
        self.renders += 1

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

    def _draw(self, spec: PlotSpec, w: int, h: int) -> Text:
        series = [s for s in spec.series if len(s.x)]
        if not series:
            return Text(spec.empty, style="italic")
        fig = self._fig
        fig.clear_data()
        fig.plot_size(w, h)
        fig.theme("clear")
        fig.xlabel(spec.xlabel)
        # The axes' own width is unknown before drawing; the plot area is a few columns narrower.
        cols = max(10, w - 10)
        for i, s in enumerate(series):
            x, y = downsample(s.x, s.y, cols)
            marker = _MONO_MARKERS[i % len(_MONO_MARKERS)] if self.app.no_color else "braille"
            fig.plot(x.tolist(), y.tolist(), marker=marker, color=self._colour(s.colour), label=s.label)
        fig.yscale("log" if spec.log_y else "linear")
        lo = min(float(s.x.min()) for s in series)
        hi = max(float(s.x.max()) for s in series)
        marks = [m for m in spec.markers if m >= lo]
        if marks and max(marks) > hi:
            # A finding after the last plottable point (a NaN) still gets its marker.
            fig.xlim(lo, max(marks))
        for m in marks:
            fig.vertical_line(m, color=self._colour("plot-marker"))
        return Text.from_ansi(fig.build(), no_wrap=True, end="")
