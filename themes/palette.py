"""Colour data: the Okabe-Ito colour-blind-safe palette and the three runwatch themes built from it.

Verdicts use blue (healthy), orange (unsure) and vermillion (bad): the three stay distinct under
protanopia, deuteranopia and tritanopia, and every badge also carries a glyph and a word.
"""

from __future__ import annotations

from dataclasses import dataclass

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky-blue": "#56B4E9",
    "bluish-green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish-purple": "#CC79A7",
}


@dataclass(frozen=True, slots=True)
class Palette:
    """Everything a runwatch theme says: Textual's base colours plus runwatch's own variables."""

    name: str
    dark: bool
    primary: str
    secondary: str
    accent: str
    foreground: str
    background: str
    surface: str
    panel: str
    healthy: str
    unsure: str
    bad: str
    stale: str
    series: tuple[str, ...]
    """Plot lines in order: train loss, eval loss, LR, grad norm, then compare-view runs."""
    marker: str
    """Vertical lines where findings fired."""
    muted: str
    heat: tuple[str, ...] = ("#440154", "#3B528B", "#21918C", "#5EC962", "#FDE725")
    """The layer heat map's scale, low to high (viridis: ordered in lightness, colour-blind safe)."""


DARK = Palette(
    name="dark",
    dark=True,
    primary=OKABE_ITO["sky-blue"],
    secondary=OKABE_ITO["bluish-green"],
    accent=OKABE_ITO["orange"],
    foreground="#E6E6E6",
    background="#121417",
    surface="#1B1E23",
    panel="#252A31",
    healthy=OKABE_ITO["sky-blue"],
    unsure=OKABE_ITO["orange"],
    bad="#F0653A",  # vermillion lifted for contrast on a dark background
    stale="#9AA0A6",
    series=(
        OKABE_ITO["sky-blue"],
        OKABE_ITO["orange"],
        OKABE_ITO["bluish-green"],
        OKABE_ITO["reddish-purple"],
        OKABE_ITO["yellow"],
        "#F0653A",
    ),
    marker="#F0653A",
    muted="#9AA0A6",
)

LIGHT = Palette(
    name="light",
    dark=False,
    primary=OKABE_ITO["blue"],
    secondary=OKABE_ITO["bluish-green"],
    accent="#B07800",
    foreground="#1A1A1A",
    background="#FAFAF7",
    surface="#F0F0EC",
    panel="#E2E2DC",
    healthy=OKABE_ITO["blue"],
    unsure="#B07800",  # orange darkened to read on white
    bad=OKABE_ITO["vermillion"],
    stale="#6B6F73",
    series=(
        OKABE_ITO["blue"],
        "#B07800",
        OKABE_ITO["bluish-green"],
        OKABE_ITO["reddish-purple"],
        OKABE_ITO["vermillion"],
        OKABE_ITO["black"],
    ),
    marker=OKABE_ITO["vermillion"],
    muted="#6B6F73",
)

HIGH_CONTRAST = Palette(
    name="high-contrast",
    dark=True,
    primary="#FFFFFF",
    secondary=OKABE_ITO["yellow"],
    accent=OKABE_ITO["yellow"],
    foreground="#FFFFFF",
    background="#000000",
    surface="#000000",
    panel="#1A1A1A",
    healthy="#7CC8FF",
    unsure=OKABE_ITO["yellow"],
    bad="#FF7A45",
    stale="#FFFFFF",
    series=("#7CC8FF", OKABE_ITO["yellow"], "#3DDBB0", "#FF9CD6", "#FFFFFF", "#FF7A45"),
    marker="#FF7A45",
    muted="#D0D0D0",
)

PALETTES: dict[str, Palette] = {p.name: p for p in (DARK, LIGHT, HIGH_CONTRAST)}
