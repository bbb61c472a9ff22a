"""The notification log (`n`): every toast the session showed, newest first, to read after it faded."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui import actions
from tui.style import var_style

if TYPE_CHECKING:
    from tui.app import RunwatchApp

_SEVERITY_VARIABLE = {"error": "verdict-bad", "warning": "verdict-unsure", "information": "foreground"}


class NoticesScreen(ModalScreen[None]):
    """The app's notices as literal text (run names and paths are never read as markup)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *actions.bindings(actions.MODAL),
        Binding("n", "back", show=False),
    ]
    DEFAULT_CSS = """
    NoticesScreen {
        align: center middle;
    }
    NoticesScreen > VerticalScroll {
        width: 100;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $primary;
        background: $surface;
        padding: 0 1;
    }
    """

    def compose(self) -> ComposeResult:
        app = cast("RunwatchApp", self.app)
        notices = app.notices
        app_: App[object] = self.app
        t = Text()
        for n in reversed(notices):
            if t:
                t.append("\n")
            t.append(datetime.fromtimestamp(n.time).strftime("%H:%M:%S "), style=var_style(app_, "muted"))
            t.append(
                n.title + ": " if n.title else "", style=var_style(app_, _SEVERITY_VARIABLE[n.severity], bold=True)
            )
            t.append(n.message)
        if not t:
            t.append("No notifications yet.", style="italic")
        with VerticalScroll() as box:
            box.border_title = f"notifications · {len(app.notices)}  (esc closes)"
            yield Static(t, id="notices")

    def action_back(self) -> None:
        self.dismiss()
