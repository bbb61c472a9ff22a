"""The layer heat map's data: per-layer gradient norms as layers (input → output) × time buckets.

Pure (store series and findings in, an immutable `LayerMap` out). The layers are the metrics
`detectors.layers.layer_of` recognises (`gradients/<param>` histograms read as norms, per-layer
grad-norm scalars); each cell is the mean log10 norm of the points in its time bucket, or a
mark: every gradient exactly zero (a dead layer's cells) or a NaN/Inf. Layers whose findings say
dead, vanishing or exploding carry that as a mark too, so the picture says it without colour.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from detectors.layers import layer_of
from monitor.model import Finding, Role

EMPTY, VALUE, ZERO, BAD = 0, 1, 2, 3
"""What a cell holds: no point in its bucket, a norm, only all-zero gradients, a NaN/Inf."""
DEAD, VANISHING, EXPLODING = "dead", "vanishing", "exploding"
_INPUT = re.compile(r"embed|\bwte\b|\bwpe\b|tok_emb|pos_emb|patch_embed|stem|^input", re.I)
_OUTPUT = re.compile(r"lm_head|classifier|(^|[._])head([._]|$)|^output|^out[._]|final", re.I)
_NUMBER = re.compile(r"\d+")

Series = Callable[[str], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True, slots=True)
class LayerRow:
    """One row: the layers it stands for (one, or several merged to fit), its cells and its mark."""

    name: str
    keys: tuple[str, ...]
    log10: np.ndarray
    """Mean log10 gradient norm per time bucket (NaN where the cell is not a VALUE)."""
    kind: np.ndarray
    """EMPTY / VALUE / ZERO / BAD per bucket."""
    mark: str = ""
    """DEAD, VANISHING or EXPLODING when a finding said so about one of its layers."""
    active: bool = False
    """Whether that finding is still active."""


@dataclass(frozen=True, slots=True)
class LayerMap:
    """The whole picture: rows from the input side down to the output side, over `steps`."""

    rows: tuple[LayerRow, ...]
    step_lo: float
    step_hi: float
    lo: float
    """The scale's low end (log10 norm)."""
    hi: float
    layers: int
    """How many layers the rows stand for (more than rows when merged to fit)."""


def layer_keys(keys: Iterable[str], role_of: Callable[[str], Role]) -> list[str]:
    """The metric keys that are per-layer gradients."""
    return [k for k in keys if layer_of(k, role_of(k)) is not None]


def depth_order(keys: Sequence[str], role_of: Callable[[str], Role] = lambda _k: Role.OTHER) -> list[str]:
    """Keys from the input side to the output side: embeddings, then numbered blocks by number,
    then other layers in the order they came, then heads and classifiers."""

    def rank(item: tuple[int, str]) -> tuple[int, tuple[int, ...], int]:
        i, key = item
        name = layer_of(key, role_of(key)) or key
        nums = tuple(int(n) for n in _NUMBER.findall(name))
        if _INPUT.search(name) and not nums:
            return (0, (), i)
        if _OUTPUT.search(name) and not nums:
            return (3, (), i)
        if nums:
            return (1, nums, i)
        return (2, (), i)

    return [k for _, k in sorted(enumerate(keys), key=rank)]


def _marks(findings: Iterable[Finding]) -> dict[str, tuple[str, bool]]:
    out: dict[str, tuple[str, bool]] = {}
    order = {DEAD: 3, EXPLODING: 2, VANISHING: 1}
    for f in findings:
        if f.kind == "grad_vanishing":
            mark = DEAD if f.evidence.get("dead_layer") else VANISHING
        elif f.kind == "grad_explosion":
            mark = EXPLODING
        else:
            continue
        old = out.get(f.metric)
        if old is None or (order[mark], f.active) > (order[old[0]], old[1]):
            out[f.metric] = (mark, f.active)
    return out


def _cells(steps: np.ndarray, values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(edges) - 1
    log10 = np.full(n, np.nan)
    kind = np.zeros(n, dtype=np.int8)
    if len(steps) == 0:
        return log10, kind
    col = np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, n - 1)
    order = np.argsort(col, kind="stable")
    col, values = col[order], values[order]
    starts = np.searchsorted(col, np.arange(n), side="left")
    ends = np.searchsorted(col, np.arange(n), side="right")
    bad = ~np.isfinite(values)
    pos = values > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(np.where(pos & ~bad, values, 1.0))
    # Per bucket from cumulative sums (O(points), no loop over buckets): any NaN/Inf, else the mean
    # log10 of its non-zero norms (their geometric mean), else all zero.
    good = pos & ~bad
    nbad = np.concatenate([[0], np.cumsum(bad)])
    npos = np.concatenate([[0], np.cumsum(good)])
    slog = np.concatenate([[0.0], np.cumsum(np.where(good, logs, 0.0))])
    n_bad, n_pos = nbad[ends] - nbad[starts], npos[ends] - npos[starts]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = (slog[ends] - slog[starts]) / n_pos
    kind = np.where(n_bad > 0, BAD, np.where(n_pos > 0, VALUE, np.where(ends > starts, ZERO, EMPTY))).astype(np.int8)
    log10 = np.where(kind == VALUE, mean, np.nan)
    # A layer logged every few steps (`wandb.watch`'s log_freq) holds its last value until the next
    # point, so the buckets between two of its points are not drawn as gaps.
    filled = np.flatnonzero(kind)
    for c in range(int(filled[0]) + 1, int(filled[-1])):
        if kind[c] == EMPTY:
            kind[c], log10[c] = kind[c - 1], log10[c - 1]
    return log10, kind


def _merge(rows: list[LayerRow]) -> LayerRow:
    """Neighbouring layers in one row: the median of their norms; a zero or NaN cell of any wins."""
    if len(rows) == 1:
        return rows[0]
    kinds = np.stack([r.kind for r in rows])
    vals = np.stack([r.log10 for r in rows])
    kind = np.where((kinds == BAD).any(0), BAD, np.where((kinds == ZERO).any(0), ZERO, kinds.max(0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a bucket none of them logged: NaN is right
        log10 = np.where(kind == VALUE, np.nanmedian(np.where(kinds == VALUE, vals, np.nan), axis=0), np.nan)
    marked = [r for r in rows if r.mark]
    worst = max(marked, key=lambda r: ({DEAD: 3, EXPLODING: 2, VANISHING: 1}[r.mark], r.active), default=None)
    name = f"{rows[0].name} … {rows[-1].name}"
    keys = tuple(k for r in rows for k in r.keys)
    return LayerRow(name, keys, log10, kind.astype(np.int8), worst.mark if worst else "", bool(worst and worst.active))


def layer_map(
    keys: Sequence[str],
    series: Series,
    findings: Iterable[Finding],
    columns: int,
    max_rows: int,
    step_range: tuple[float, float] | None = None,
    role_of: Callable[[str], Role] = lambda _k: Role.OTHER,
) -> LayerMap | None:
    """The heat map of these per-layer keys in `columns` time buckets and at most `max_rows` rows
    (neighbouring layers merged to fit); None when none of them has a point."""
    ordered = depth_order(keys, role_of)
    data = {k: series(k) for k in ordered}
    data = {k: (np.asarray(s, dtype=float), np.asarray(v, dtype=float)) for k, (s, v) in data.items() if len(s)}
    if not data or columns < 1 or max_rows < 1:
        return None
    if step_range is None:
        lo = min(float(s.min()) for s, _ in data.values())
        hi = max(float(s.max()) for s, _ in data.values())
    else:
        lo, hi = step_range
    edges = np.linspace(lo, hi if hi > lo else lo + 1, columns + 1)
    marks = _marks(findings)
    rows: list[LayerRow] = []
    for k in ordered:
        if k not in data:
            continue
        s, v = data[k]
        inside = (s >= lo) & (s <= hi)
        log10, kind = _cells(s[inside], v[inside], edges)
        mark, active = marks.get(k, ("", False))
        rows.append(LayerRow(layer_of(k, role_of(k)) or k, (k,), log10, kind, mark, active))
    n = len(rows)
    if n > max_rows:
        bounds = np.linspace(0, n, max_rows + 1).astype(int)
        rows = [_merge(rows[a:b]) for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True) if b > a]
    vals = np.concatenate([r.log10[r.kind == VALUE] for r in rows]) if rows else np.empty(0)
    vlo, vhi = (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 0.0)
    return LayerMap(tuple(rows), lo, hi, vlo, vhi, n)
