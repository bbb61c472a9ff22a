"""The layer heat-map pane: per-layer gradient norms, layers as rows (input → output) × time as columns.

A `HeatSpec` is what a `PlotView` pane draws instead of a line plot (the grid treats both alike): it
fits `tui.layermap.layer_map` to the pane's size and writes one character per cell, coloured by
log10 gradient norm on the theme's `$heat-1` … `$heat-5` scale. Zero and NaN cells and dead,
vanishing or exploding layers also have their own glyphs, so the picture reads without colour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from rich.style import Style
from rich.text import Text
from textual.app import App
from textual.color import Color

from monitor.model import Finding, Role
from themes import HEAT_VARIABLES
from tui import format as fmt
from tui.layermap import BAD, DEAD, EXPLODING, VALUE, VANISHING, ZERO, LayerMap, Series, layer_map

MARKS = {DEAD: "∅", VANISHING: "↓", EXPLODING: "↑"}
ZERO_GLYPH = "0"
BAD_GLYPH = "×"
CELL = "█"
#: Without colour the level is a shade.
SHADES = "░▒▓█"
_FOOT = 2  # the x axis line and the legend line


@dataclass(frozen=True, slots=True)
class HeatSpec:
    """A layer heat map to draw: its layers' keys, how to read their series, and the findings about them."""

    title: str
    keys: tuple[str, ...]
    series: Series
    findings: tuple[Finding, ...] = ()
    step_range: tuple[float, float] | None = None
    """The zoomed step range (None: the whole run)."""
    role_of: Callable[[str], Role] = field(default=lambda _k: Role.OTHER)
    empty: str = "no per-layer gradients logged yet"

    def draw(self, app: App[object], width: int, height: int) -> Text:
        """The picture at this size (one character per cell)."""
        label_w = max(6, min(26, width // 3))
        cols = width - label_w - 3
        m = layer_map(
            self.keys, self.series, self.findings, max(1, cols), max(1, height - _FOOT), self.step_range, self.role_of
        )
        if m is None or cols < 4:
            return Text(self.empty, style="italic")
        return _render(app, m, label_w, cols, width)

    def title_for(self, app: App[object]) -> str:
        return self.title


def _colour(app: App[object], variable: str) -> Color | None:
    value = app.theme_variables.get(variable)
    return None if value is None or getattr(app, "no_color", False) else Color.parse(value)


def _scale(app: App[object]) -> list[Color] | None:
    stops = [_colour(app, v) for v in HEAT_VARIABLES]
    return None if any(c is None for c in stops) else [c for c in stops if c is not None]


def _level(scale: Sequence[Color], frac: float) -> Color:
    frac = min(1.0, max(0.0, frac))
    pos = frac * (len(scale) - 1)
    i = min(len(scale) - 2, int(pos))
    return scale[i].blend(scale[i + 1], pos - i)


def _tail(name: str, width: int) -> str:
    """A layer's name cut from the left (the end names the parameter: `…layers.3.mlp.weight`)."""
    return name.rjust(width) if len(name) <= width else "…" + name[-(width - 1) :]


def _render(app: App[object], m: LayerMap, label_w: int, cols: int, width: int) -> Text:
    scale = _scale(app)
    bad = _style(app, "verdict-bad")
    unsure = _style(app, "verdict-unsure")
    muted = _style(app, "muted")
    span = m.hi - m.lo
    t = Text(no_wrap=True, overflow="crop")
    for row in m.rows:
        t.append(_tail(row.name, label_w) + " ", style=muted)
        glyph = MARKS.get(row.mark, " ")
        t.append(glyph, style=(bad if row.active else unsure) if row.mark else muted)
        t.append(" ")
        for kind, v in zip(row.kind.tolist(), row.log10.tolist(), strict=True):
            if kind == VALUE:
                frac = (v - m.lo) / span if span > 0 else 1.0
                if scale is None:
                    t.append(SHADES[min(len(SHADES) - 1, int(frac * len(SHADES)))])
                else:
                    t.append(CELL, style=Style(color=_level(scale, frac).rich_color))
            elif kind == ZERO:
                t.append(ZERO_GLYPH, style=bad)
            elif kind == BAD:
                t.append(BAD_GLYPH, style=bad)
            else:
                t.append(" ")
        t.append("\n")
    _axis(t, m, label_w, cols, muted)
    _legend(t, app, m, scale, width, bad, muted)
    return t


def _axis(t: Text, m: LayerMap, label_w: int, cols: int, muted: Style) -> None:
    lo, hi = fmt.tick_labels([m.step_lo, m.step_hi])
    merged = f"{m.layers} layers in {len(m.rows)} rows" if m.layers > len(m.rows) else f"{m.layers} layers"
    t.append(_tail(merged, label_w) + "   ", style=muted)
    gap = max(1, cols - len(lo) - len(hi))
    mid = "step" if gap >= 6 else ""
    t.append(lo + mid.center(gap, "─") + hi + "\n", style=muted)


def _legend(
    t: Text, app: App[object], m: LayerMap, scale: list[Color] | None, width: int, bad: Style, muted: Style
) -> None:
    """The scale, then what each glyph means; the longest wording that fits the pane's width."""
    ramp = Text()
    for i in range(8):
        frac = i / 7
        if scale is None:
            ramp.append(SHADES[min(len(SHADES) - 1, int(frac * len(SHADES)))])
        else:
            ramp.append(CELL, style=Style(color=_level(scale, frac).rich_color))
    lo, hi = f"{m.lo:.1f}", f"{m.hi:.1f}"
    z, b = ZERO_GLYPH, BAD_GLYPH
    variants: list[list[tuple[str, Style | None]]] = [
        [
            ("log10‖g‖ ", muted),
            (lo + " ", None),
            ("", None),
            (" " + hi, None),
            (f"  {z}", bad),
            (" all zero", muted),
            (f"  {b}", bad),
            (" NaN/Inf", muted),
            ("  ∅", bad),
            (" dead", muted),
            ("  ↓", bad),
            (" vanishing", muted),
            ("  ↑", bad),
            (" exploding", muted),
        ],
        [
            ("log10‖g‖ ", muted),
            (lo + " ", None),
            ("", None),
            (" " + hi, None),
            (f" {z}", bad),
            ("zero", muted),
            (f" {b}", bad),
            ("nan", muted),
            (" ∅", bad),
            ("dead", muted),
            (" ↓↑", bad),
        ],
        [
            (lo, None),
            ("", None),
            (hi, None),
            (f" {z}", bad),
            ("zero", muted),
            (f" {b}", bad),
            ("nan", muted),
            (" ∅↓↑", bad),
        ],
    ]
    fits = [v for v in variants if sum(len(text) for text, _ in v) + len(ramp) <= width]
    for text, style in (fits or variants)[0]:
        if text == "" and style is None:
            t.append_text(ramp)  # the empty segment stands for the colour ramp
        else:
            t.append(text, style=style or "")


def _style(app: App[object], variable: str) -> Style:
    c = _colour(app, variable)
    return Style() if c is None else Style(color=c.rich_color)


def heat_spec(
    title: str,
    keys: Iterable[str],
    series: Series,
    findings: Iterable[Finding],
    step_range: tuple[float, float] | None = None,
    role_of: Callable[[str], Role] = lambda _k: Role.OTHER,
) -> HeatSpec:
    """A heat map of these per-layer keys."""
    return HeatSpec(title, tuple(keys), series, tuple(findings), step_range, role_of)
