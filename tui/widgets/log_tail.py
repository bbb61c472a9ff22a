"""The live log tail of one run, filterable; rewritten only when new lines arrived or the filter changed.

Lines wrap at the pane's width (a narrow terminal must not cut a number in half), each as literal
text: a log line holding `[/]` or `[@click=…]` is shown as written.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import events
from textual.content import Content
from textual.widgets import RichLog

from monitor.outward import outward_lines


class LogTail(RichLog):
    """The last lines the run's source produced (parsed or not)."""

    DEFAULT_CSS = """
    LogTail {
        height: 1fr;
        border: round $panel-lighten-2;
        border-title-color: $text-muted;
        background: $surface;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, highlight=False, markup=False, wrap=True, min_width=1, max_lines=2000, auto_scroll=True)
        self._key: tuple[object, ...] | None = None
        self._lines: Sequence[str] = ()
        self._wrapped_at = 0
        self.filter_text = ""

    def show(self, lines: Sequence[str], version: object) -> None:
        """Show the tail; `version` changes whenever the lines did."""
        key = (version, self.filter_text)
        if key == self._key:
            return
        self._key = key
        self._lines = lines
        self._wrapped_at = self.size.width
        needle = self.filter_text.lower()
        shown = [ln for ln in lines if needle in ln.lower()] if needle else list(lines)
        self.clear()
        for line in outward_lines(shown):  # hostile wall: no secrets, no escapes on screen
            self.write(Text(line, no_wrap=False))
        title = "log"
        if not lines:
            title += " · no console lines from this source yet (i: config and summary)"
        elif needle:
            title += f" · filter {self.filter_text!r}: {len(shown)} of {len(lines)} lines"
        self.border_title = Content(title)  # the filter text is typed by a person: literal, never markup

    def on_resize(self, event: events.Resize) -> None:
        super().on_resize(event)
        # Lines wrapped at the old width would be cut (or scroll sideways) at the new one: wrap again.
        width = event.size.width
        if self._key is not None and self._wrapped_at and width and width != self._wrapped_at:
            version = self._key[0]
            self._key = None
            self.show(self._lines, version)
        elif width:
            self._wrapped_at = width

    def set_filter(self, text: str) -> None:
        self.filter_text = text
