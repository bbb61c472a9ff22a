"""Hand-written SVG plots: a per-run overview (loss/eval, LR, grad norm with finding markers) and an overlay.

No plotting library: a few hundred points per curve as polylines, NaN/Inf shown as marks on the top
edge. The SVGs are self-contained (no fonts or scripts loaded) so they embed in HTML as they are.
"""

from __future__ import annotations

import math
from html import escape

import numpy as np

from monitor.diagnosis.facts import Curve, fmt

# Okabe-Ito: a palette colour-blind readers can tell apart (the report's own; the TUI's live in themes/).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
BAD = "#D55E00"
WARN = "#E69F00"
INFO = "#777777"
_W, _PH, _ML, _MR, _MT, _MB = 720, 150, 64, 16, 22, 24
_MAX_POINTS = 600


def _thin(c: Curve) -> Curve:
    n = len(c)
    if n <= _MAX_POINTS:
        return c
    idx = np.unique(np.linspace(0, n - 1, _MAX_POINTS).astype(int))
    # Keep the extremes of each stretch so a spike is never thinned away.
    extra = [int(np.nanargmax(c.values)) if np.isfinite(c.values).any() else 0]
    idx = np.unique(np.concatenate([idx, extra]))
    return Curve(c.key, c.steps[idx], c.values[idx])


def _scale(lo: float, hi: float, a: float, b: float, log: bool):
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    span = hi - lo or 1.0

    def f(x: float) -> float:
        v = math.log10(x) if log else x
        return a + (v - lo) / span * (b - a)

    return f


def panel(
    title: str,
    curves: list[tuple[Curve, str]],
    markers: list[tuple[float, str, str]],
    x_range: tuple[float, float],
    y0: float,
    log: bool = False,
    x_label: str = "step",
) -> str:
    """One plot panel at vertical offset `y0`: curves (curve, colour), vertical markers (step, colour, label)."""
    x_lo, x_hi = x_range
    fin = [c.finite() for c, _ in curves]
    vals = np.concatenate([c.values for c in fin]) if fin else np.array([])
    if log:
        vals = vals[vals > 0]
    parts = [f'<g transform="translate(0,{y0})">']
    parts.append(f'<text x="{_ML}" y="14" class="t">{escape(title)}</text>')
    top, bot, left, right = _MT, _PH - _MB, _ML, _W - _MR
    parts.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bot - top}" class="frame"/>')
    if not len(vals):
        parts.append(f'<text x="{(left + right) / 2}" y="{(top + bot) / 2}" class="n">not logged</text></g>')
        return "".join(parts)
    lo, hi = float(np.min(vals)), float(np.max(vals))
    if log and hi / lo < 10:
        log = False
        vals = np.concatenate([c.values for c in fin])
        lo, hi = float(np.min(vals)), float(np.max(vals))
    if hi == lo:
        lo, hi = lo - (abs(lo) or 1.0) * 0.1, hi + (abs(hi) or 1.0) * 0.1
    sx = _scale(x_lo, x_hi if x_hi > x_lo else x_lo + 1, left, right, False)
    sy = _scale(lo, hi, bot, top, log)
    for v in (lo, hi):
        parts.append(f'<text x="{left - 4}" y="{sy(v) + 4:.1f}" class="y">{escape(fmt(float(f"{v:.3g}")))}</text>')
    for x in (x_lo, x_hi):
        parts.append(f'<text x="{sx(x):.1f}" y="{bot + 14}" class="x">{escape(fmt(x))}</text>')
    parts.append(f'<text x="{(left + right) / 2}" y="{bot + 14}" class="x">{escape(x_label)}</text>')
    for step, colour, label in markers:
        if x_lo <= step <= x_hi:
            x = sx(step)
            parts.append(
                f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bot}" stroke="{colour}" class="m">'
                f"<title>{escape(label)}</title></line>"
            )
    for (c, colour), _f in zip(curves, fin, strict=True):
        t = _thin(c)
        segs: list[list[str]] = [[]]
        for s, v in zip(t.steps.tolist(), t.values.tolist(), strict=True):
            if not math.isfinite(v) or (log and v <= 0):
                if segs[-1]:
                    segs.append([])
                if not math.isfinite(v):
                    parts.append(f'<text x="{sx(s):.1f}" y="{top + 8}" fill="{BAD}" class="nan">×</text>')
                continue
            segs[-1].append(f"{sx(s):.1f},{sy(v):.1f}")
        for seg in segs:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>')
            elif seg:
                parts.append(f'<polyline points="{" ".join(seg)}" stroke="{colour}" class="c"/>')
    legend_x = right - 8
    for i, (c, colour) in enumerate(reversed(curves)):
        parts.append(f'<text x="{legend_x}" y="{top + 12 + 12 * i}" fill="{colour}" class="l">{escape(c.key)}</text>')
    parts.append("</g>")
    return "".join(parts)


_STYLE = (
    "<style>.t{font:bold 12px sans-serif;fill:#222}.x,.n{font:10px sans-serif;fill:#555;text-anchor:middle}"
    ".y{font:10px sans-serif;fill:#555;text-anchor:end}.l{font:10px sans-serif;text-anchor:end}"
    ".frame{fill:#fff;stroke:#bbb}.c{fill:none;stroke-width:1.3}.m{stroke-width:1;stroke-dasharray:3,2}"
    ".nan{font:bold 11px sans-serif;text-anchor:middle}</style>"
)


def document(title: str, panels: list[str]) -> str:
    h = _PH * len(panels) + 8
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{h}" viewBox="0 0 {_W} {h}" role="img">'
        f"<title>{escape(title)}</title>{_STYLE}" + "".join(panels) + "</svg>"
    )


def x_range(curves: list[Curve | None]) -> tuple[float, float]:
    steps = [c.steps for c in curves if c is not None and len(c)]
    if not steps:
        return (0.0, 1.0)
    return float(min(s[0] for s in steps)), float(max(s[-1] for s in steps))
