"""Plain-text line plots for evidence bundles: readable in `less`, a mail or a ticket, no plotting state.

Each column of the plot covers a range of steps and draws the min..max of the values in it, so a
one-step spike survives any amount of downsampling. Non-finite values are marked on the top row
with `!` and listed under the plot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_MARKS = "*o+x#"
_LABEL = 11


def text_plot(
    series: Sequence[tuple[str, np.ndarray, np.ndarray]],
    *,
    title: str = "",
    width: int = 78,
    height: int = 16,
    log_y: bool | None = None,
) -> str:
    """Plot `(name, steps, values)` series on shared axes; `log_y=None` picks log for wide positive ranges."""
    cols = max(10, width - _LABEL - 1)
    finite = [(n, np.asarray(s, float), np.asarray(v, float)) for n, s, v in series]
    all_s = np.concatenate([s for _, s, _ in finite]) if finite else np.empty(0)
    all_v = np.concatenate([v for _, _, v in finite]) if finite else np.empty(0)
    ok = np.isfinite(all_v) & np.isfinite(all_s)
    lines = [title] if title else []
    if not ok.any():
        return "\n".join([*lines, "(no finite values to plot)", *_nonfinite_notes(finite)]) + "\n"
    s_ok = np.isfinite(all_s)
    s_lo, s_hi = float(all_s[s_ok].min()), float(all_s[s_ok].max())
    v_lo, v_hi = float(all_v[ok].min()), float(all_v[ok].max())
    if log_y is None:
        log_y = v_lo > 0 and v_hi / v_lo > 50
    if log_y and v_lo <= 0:
        log_y = False

    def fy(v: np.ndarray) -> np.ndarray:
        return np.log10(v) if log_y else v

    y_lo, y_hi = float(fy(np.array([v_lo]))[0]), float(fy(np.array([v_hi]))[0])
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    grid = [[" "] * cols for _ in range(height)]
    span = s_hi - s_lo or 1.0

    def row_of(y: float) -> int:
        return min(height - 1, max(0, round((y_hi - y) / (y_hi - y_lo) * (height - 1))))

    for i, (_, steps, values) in enumerate(finite):
        mark = _MARKS[i % len(_MARKS)]
        if steps.size == 0:
            continue
        col = np.clip(((steps - s_lo) / span * (cols - 1)).round().astype(int), 0, cols - 1)
        good = np.isfinite(values) & np.isfinite(steps)
        for c in np.unique(col):
            in_col = col == c
            if (in_col & ~good).any():
                grid[0][c] = "!"
            vals = values[in_col & good]
            if vals.size == 0:
                continue
            top, bottom = row_of(float(fy(vals.max()))), row_of(float(fy(vals.min())))
            for r in range(top, bottom + 1):
                if grid[r][c] in (" ", "|"):
                    grid[r][c] = mark if r in (top, bottom) else "|"
    for r in range(height):
        y = y_hi - (y_hi - y_lo) * r / (height - 1)
        label = _fmt(10**y if log_y else y) if r in (0, height // 2, height - 1) else ""
        lines.append(f"{label:>{_LABEL}}|{''.join(grid[r])}".rstrip())
    lines.append(" " * _LABEL + "+" + "-" * cols)
    left, right = _fmt(s_lo), _fmt(s_hi)
    lines.append(" " * (_LABEL + 1) + left + " " * max(1, cols - len(left) - len(right)) + right)
    legend = "   ".join(f"{_MARKS[i % len(_MARKS)]} {n}" for i, (n, _, _) in enumerate(finite))
    scale = "log y" if log_y else "linear y"
    lines.append(f"{'':{_LABEL}} step ->   {legend}   ({scale}; each column spans min..max)")
    lines += _nonfinite_notes(finite)
    return "\n".join(lines) + "\n"


def _nonfinite_notes(series: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> list[str]:
    notes = []
    for name, steps, values in series:
        bad = ~np.isfinite(values)
        if bad.any():
            where = ", ".join(_fmt(float(s)) for s in steps[bad][:8])
            more = f" (+{int(bad.sum()) - 8} more)" if bad.sum() > 8 else ""
            notes.append(f"! {name}: {int(bad.sum())} non-finite value(s) at step {where}{more}")
    return notes


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    if float(x).is_integer() and abs(x) < 1e7:
        return str(int(x))
    return f"{x:.4g}"
