"""A grid of plot panes sized to the space it has: as many panes as stay readable, the first largest.

The screen hands it every pane it could show (`show(items)`); the grid picks a shape from its own
size (`tui.metricgrid.grid_shape`), shows the page that holds the selected pane, and keeps a pool of
`PlotView`s so a redraw never mounts or removes widgets unless the pane count grew.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from textual import events
from textual.app import ComposeResult
from textual.message import Message
from textual.widget import Widget

from tui.metricgrid import GridShape, grid_shape
from tui.widgets.plot import Builder, PlotView


@dataclass(frozen=True, slots=True)
class PaneItem:
    """One pane the grid may show: a stable name, the key its picture depends on, and its builder."""

    name: str
    key: Hashable
    builder: Builder


class PlotGrid(Widget):
    """The detail view's plots; `select(i)` pages to pane i, `full` shows only the selected pane."""

    DEFAULT_CSS = """
    PlotGrid {
        layout: grid;
        grid-size: 1 1;
        height: 1fr;
    }
    PlotGrid > PlotView.-selected {
        border: round $accent;
    }
    """

    class Selected(Message):
        """The selected pane changed (a click, `g`, or paging)."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.items: list[PaneItem] = []
        self.selected = 0
        """The pane `f` shows full-screen and `g` moves on from."""
        self.full = False
        """Only the selected pane, over the whole grid."""
        self.shape = GridShape(1, 1, 0, 1)
        """The shape last laid out (tests and the header read it)."""
        self.first = 0
        """Index of the first pane shown (the page)."""
        self._told: tuple[GridShape, int] | None = None
        self._views: list[PlotView] = []

    def compose(self) -> ComposeResult:
        yield from ()

    @property
    def views(self) -> list[PlotView]:
        """The plot widgets in use, in pane order."""
        return [v for v in self._views if v.display]

    def show(self, items: Sequence[PaneItem]) -> None:
        """The panes to show now (in order); only panes whose key changed redraw."""
        self.items = list(items)
        if self.selected >= len(self.items):
            self.selected = max(0, len(self.items) - 1)
        self._layout_panes()

    def select(self, index: int) -> None:
        if not self.items:
            return
        self.selected = index % len(self.items)
        self._layout_panes()
        self.post_message(self.Selected(self.selected))

    def toggle_full(self) -> None:
        self.full = not self.full
        self._layout_panes()

    def on_resize(self) -> None:
        self._layout_panes()

    def _layout_panes(self) -> None:
        if not self.is_mounted:
            return
        w, h = self.size
        n = len(self.items)
        shape = GridShape(1, 1, min(1, n), 1) if self.full else grid_shape(n, w or 80, h or 20)
        per = max(1, shape.shown)
        self.first = self.selected if self.full else (self.selected // per) * per
        visible = self.items[self.first : self.first + per]
        if len(visible) < per and not self.full:
            # The last page holds fewer panes: the first of them spans what is left over.
            shape = grid_shape(len(visible), w or 80, h or 20) if visible else shape
        if (shape, self.first) != self._told:
            # The screen's header names the panes shown ("panes 1–6 of 10"): tell it they changed.
            self._told = (shape, self.first)
            self.post_message(self.Selected(self.selected))
        self.shape = shape
        self.styles.grid_size_columns = shape.columns
        self.styles.grid_size_rows = shape.rows
        while len(self._views) < len(visible):
            view = PlotView(id=f"pane-{len(self._views)}", zoomable=True)
            self._views.append(view)
            self.mount(view)
        for i, view in enumerate(self._views):
            if i >= len(visible):
                view.display = False
                continue
            view.display = True
            view.styles.column_span = shape.first_span if i == 0 else 1
            item = visible[i]
            view.set_class(self.first + i == self.selected and len(self.items) > 1, "-selected")
            view.show((item.name, item.key), item.builder)

    def on_click(self, event: events.Click) -> None:
        widget = event.widget
        if isinstance(widget, PlotView) and widget in self._views:
            self.select(self.first + self._views.index(widget))

    # The wheel over a plot zooms its x range (PlotView stops the event); on a pane's border or with
    # shift it pages through the panes that do not fit.
    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        self._page(1, event)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self._page(-1, event)

    def _page(self, delta: int, event: events.Event) -> None:
        per = max(1, self.shape.shown)
        if len(self.items) > per:
            event.stop()
            self.select(((self.first // per + delta) * per) % max(1, len(self.items)))
