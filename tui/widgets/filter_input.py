"""A one-line filter box: typing filters live, Enter keeps the filter, Escape clears and closes it."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input


class FilterInput(Input):
    """Hidden until asked for; posts `Closed` when the person is done with it."""

    DEFAULT_CSS = """
    FilterInput {
        dock: bottom;
        display: none;
        height: 3;
        margin: 0 0 1 0;
    }
    FilterInput.-open {
        display: block;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Clear filter", show=False)]

    class Closed(Message):
        """The filter box closed; `cleared` when Escape threw the text away."""

        def __init__(self, cleared: bool, input: Input) -> None:
            super().__init__()
            self.cleared = cleared
            self.input = input

    def open(self) -> None:
        self.add_class("-open")
        # Focus now, not after the next refresh: keys typed right after `/` (a fast typist, a paste) arrive
        # in the same burst and would otherwise reach the screen's own bindings (`m`, `p`, ...).
        self.display = True
        self.screen.set_focus(self)

    def close(self, cleared: bool) -> None:
        if cleared:
            self.value = ""
        self.remove_class("-open")
        self.display = False
        self.post_message(self.Closed(cleared, self))

    def action_cancel(self) -> None:
        self.close(cleared=True)

    async def action_submit(self) -> None:
        self.close(cleared=False)
