"""Textual themes and the verdict colour variables; colours live here and nowhere else.

Widgets refer to colours only through theme variables: `$verdict-healthy`, `$verdict-unsure`,
`$verdict-bad`, `$verdict-stale`, `$plot-series-1` … `$plot-series-6`, `$plot-marker`, `$muted`,
`$heat-1` … `$heat-5` (the layer heat map's scale).
"""

from __future__ import annotations

from textual.theme import Theme

from themes.palette import PALETTES, Palette

#: Theme names as the config and `--theme` spell them, in the order `t` cycles through them.
NAMES: tuple[str, ...] = tuple(PALETTES)
PREFIX = "runwatch-"

VERDICT_VARIABLES = ("verdict-healthy", "verdict-unsure", "verdict-bad", "verdict-stale")
SERIES_VARIABLES = tuple(f"plot-series-{i}" for i in range(1, 7))
HEAT_VARIABLES = tuple(f"heat-{i}" for i in range(1, 6))
"""The layer heat map's colour scale, low to high."""


def textual_name(name: str) -> str:
    """The registered Textual theme name for a runwatch theme name (`dark` → `runwatch-dark`)."""
    return name if name.startswith(PREFIX) else PREFIX + name


def short_name(textual_theme: str) -> str:
    """The runwatch name of a registered theme (`runwatch-dark` → `dark`)."""
    return textual_theme.removeprefix(PREFIX)


def next_name(current: str) -> str:
    """The theme after `current` in the cycle (the `t` key)."""
    names = list(NAMES)
    short = short_name(current)
    i = names.index(short) if short in names else -1
    return names[(i + 1) % len(names)]


def make_theme(p: Palette) -> Theme:
    """A Textual theme from a palette, with runwatch's variables."""
    variables = {
        "verdict-healthy": p.healthy,
        "verdict-unsure": p.unsure,
        "verdict-bad": p.bad,
        "verdict-stale": p.stale,
        "plot-marker": p.marker,
        "muted": p.muted,
        "footer-key-foreground": p.accent,
    }
    variables.update({name: colour for name, colour in zip(SERIES_VARIABLES, p.series, strict=True)})
    variables.update({name: colour for name, colour in zip(HEAT_VARIABLES, p.heat, strict=True)})
    return Theme(
        name=textual_name(p.name),
        primary=p.primary,
        secondary=p.secondary,
        accent=p.accent,
        foreground=p.foreground,
        background=p.background,
        surface=p.surface,
        panel=p.panel,
        warning=p.unsure,
        error=p.bad,
        success=p.healthy,
        dark=p.dark,
        variables=variables,
    )


THEMES: tuple[Theme, ...] = tuple(make_theme(p) for p in PALETTES.values())
