"""One line above the footer for the latest notification: it takes a row of its own, so it hides no data.

Toasts float over the plots and stack up; this line shows the newest notice (coalesced upstream:
"3 runs turned bad") for its time-out, in the severity's colour with a glyph, and `n` keeps them all.
"""

from __future__ import annotations

from rich.text import Text
from textual.timer import Timer
from textual.widgets import Static

from tui.style import var_style

_LOOK = {"error": ("✗", "verdict-bad"), "warning": ("!", "verdict-unsure"), "information": ("i", "foreground")}
DEFAULT_TIMEOUT = 6.0


class NoticeBar(Static):
    """Hidden until `show_notice`; hides itself after the notice's time-out."""

    DEFAULT_CSS = """
    NoticeBar {
        height: 1;
        padding: 0 1;
        display: none;
        background: $panel;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    NoticeBar.-shown {
        display: block;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self._timer: Timer | None = None

    def show_notice(self, title: str, message: str, severity: str, timeout: float | None) -> None:
        """Show one notice (literal text) until `timeout` seconds pass or another replaces it."""
        glyph, variable = _LOOK.get(severity, _LOOK["information"])
        # A title that opens with its own glyph ("✗ Bad run", "■ Stop sent") keeps it alone.
        own = bool(title) and not title[0].isalnum()
        t = Text("" if own else f"{glyph} ", style=var_style(self.app, variable, bold=True))
        if title:
            t.append(f"{title}: ", style=var_style(self.app, variable, bold=True))
        t.append(" · ".join(part for part in message.splitlines() if part.strip()))
        t.append("   (n: all notifications)", style=var_style(self.app, "muted"))
        self.update(t)
        self.add_class("-shown")
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(timeout or DEFAULT_TIMEOUT, self._hide)

    def _hide(self) -> None:
        self._timer = None
        self.remove_class("-shown")
