"""A footer that shows the view's keys that fit: the last ones give way first, help and quit never."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Footer

#: Keys that stay whatever the width (`?` shows every other key).
KEEP = frozenset({"help", "quit", "back"})


def _is_key(w: Widget) -> bool:
    # Footer's key widgets (their class is not public API): a key, its description and its action.
    return all(hasattr(w, a) for a in ("key_display", "description", "action"))


def _width(key: Any) -> int:
    # A compact footer key: "key description", then one column of gutter.
    return len(key.key_display) + 1 + len(key.description) + 1


class FittingFooter(Footer):
    """`Footer(compact=True)` that drops the keys it has no room for instead of cutting the line."""

    def __init__(self) -> None:
        super().__init__(compact=True)
        self._laid_out_width = 0

    def compose(self) -> ComposeResult:
        items = list(super().compose())
        keys: list[Any] = [w for w in items if _is_key(w)]
        width = self.size.width or self.app.size.width
        total = sum(_width(k) for k in keys)
        for k in reversed(keys):
            if total <= width:
                break
            if k.action.rsplit(".", 1)[-1] not in KEEP:
                items.remove(k)
                total -= _width(k)
        self.styles.grid_size_columns = max(1, len(items))
        yield from items

    def on_resize(self) -> None:
        if self.size.width != self._laid_out_width:
            self._laid_out_width = self.size.width
            self.call_after_refresh(self.recompose)
