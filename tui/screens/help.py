"""The `?` help: every key from the action registry, as remapped by the config."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from monitor.model import Verdict
from tui import actions
from tui.format import GLYPH


class HelpScreen(ModalScreen[None]):
    """Keys by screen, and what the badges mean."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *actions.bindings(actions.MODAL),
        Binding("question_mark", "back", show=False),
    ]
    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > VerticalScroll {
        width: 84;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $primary;
        background: $surface;
        padding: 0 1;
    }
    """

    def compose(self) -> ComposeResult:
        keymap = getattr(self.app, "keymap", {})
        table = Table(box=None, show_header=False, padding=(0, 1), expand=True)
        table.add_column("where", style="bold", no_wrap=True)
        table.add_column("key", no_wrap=True)
        table.add_column("what")
        last = None
        for scope, key, text in actions.help_rows(keymap):
            table.add_row(scope if scope != last else "", key, text)
            last = scope
        legend = (
            f"{GLYPH[Verdict.HEALTHY]} healthy: continue   {GLYPH[Verdict.UNSURE]} unsure: wait   "
            f"{GLYPH[Verdict.BAD]} bad: stop   ~ stale: source unreachable, last verdict kept   ! error"
        )
        with VerticalScroll() as box:
            box.border_title = "runwatch keys  (esc closes)"
            yield Static(table)
            yield Static(legend)

    def action_back(self) -> None:
        self.dismiss()
