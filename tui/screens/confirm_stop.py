"""The stop confirmation: exactly what stopping a run will do, where; nothing happens unless confirmed."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tui import actions

if TYPE_CHECKING:
    from monitor.actions import StopPlan


class ConfirmStopScreen(ModalScreen[bool]):
    """Shows `plan.describe()`; dismisses with True only on an explicit confirm (`y`, or the Stop button).

    Cancel has the focus, so Enter alone cancels. A plan that cannot be carried out shows why and
    offers only Close.
    """

    BINDINGS: ClassVar[list[BindingType]] = actions.bindings(actions.DIALOG)
    DEFAULT_CSS = """
    ConfirmStopScreen {
        align: center middle;
    }
    ConfirmStopScreen > #dialog {
        width: 100;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $verdict-bad;
        background: $surface;
        padding: 0 1;
    }
    ConfirmStopScreen.-impossible > #dialog {
        border: thick $verdict-unsure;
    }
    ConfirmStopScreen #plan-box {
        height: auto;
        max-height: 18;
        margin-bottom: 1;
    }
    ConfirmStopScreen #buttons {
        height: auto;
        align-horizontal: right;
    }
    ConfirmStopScreen Button {
        margin-left: 2;
    }
    """

    def __init__(self, plan: StopPlan) -> None:
        super().__init__(classes="" if plan.ok else "-impossible")
        self.plan = plan
        """The plan shown, and carried out if confirmed."""

    def compose(self) -> ComposeResult:
        keymap = getattr(self.app, "keymap", {})
        confirm_key = actions.BY_ID["confirm"].display_for(keymap)
        cancel_key = actions.BY_ID["cancel"].display_for(keymap)
        with Vertical(id="dialog") as box:
            # The run's name is literal text: `[/]` or `[@click=…]` in a name is never markup.
            name = self.plan.run_name
            box.border_title = Content(f"Stop {name}?" if self.plan.ok else f"Cannot stop {name}")
            # The plan's text verbatim: command lines hold brackets that markup would eat.
            with VerticalScroll(id="plan-box"):
                yield Static(Text(self.plan.describe()), id="plan")
            with Horizontal(id="buttons"):
                if self.plan.ok:
                    yield Button(f"Stop ({confirm_key})", variant="error", id="confirm")
                    yield Button(f"Cancel ({cancel_key})", variant="primary", id="cancel")
                else:
                    yield Button(f"Close ({cancel_key})", variant="primary", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm" and self.plan.ok)

    def action_confirm(self) -> None:
        if self.plan.ok:
            self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
