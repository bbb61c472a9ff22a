"""Rich styles from the current theme's variables, for text built in code (table cells, badges)."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.app import App
from textual.color import Color

from monitor.hub import RunSnapshot
from tui.format import badge_kind, badge_text, theme_variable


def var_style(app: App[object], variable: str, *, bold: bool = False) -> Style:
    """A style whose colour is a theme variable (plain when the theme lacks it)."""
    value = app.theme_variables.get(variable)
    if value is None:
        return Style(bold=bold)
    return Style(color=Color.parse(value).rich_color, bold=bold)


def badge(app: App[object], run: RunSnapshot) -> Text:
    """The verdict badge: glyph, word and the verdict's colour."""
    kind = badge_kind(run)
    return Text(badge_text(run), style=var_style(app, theme_variable(kind), bold=kind in ("bad", "error")))


SEVERITY_VARIABLE = {"bad": "verdict-bad", "warn": "verdict-unsure", "info": "muted"}
