"""Plot specs from a run's live analysis: one per metric pane, GPU history, and multi-run overlays.

Reads the store's numpy copies on the UI loop (the hub runs on the same loop, so nothing moves
underneath) and returns immutable `PlotSpec`s; the plot widgets fit them to their size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from monitor.analysis import RunAnalysis
from monitor.gpu import GpuSnapshot
from monitor.model import Finding, Role
from tui.metricgrid import Pane, panes
from tui.plotdata import EPOCH, PCT, STEP, TIME, TOKENS, WALL, PlotOptions, last_window, map_x, prepare_series
from tui.tokenaxis import tokens_of
from tui.widgets.heatmap import HeatSpec, heat_spec
from tui.widgets.plot import PlotSpec, Series

ROLE_TITLES = {
    Role.TRAIN_LOSS: "train loss",
    Role.EVAL_LOSS: "eval loss",
    Role.LR: "learning rate",
    Role.GRAD_NORM: "grad norm",
}
_WIDE = 4096  # downsampling to the pane's width happens in the widget; this bounds a spec's arrays
PANE_SERIES_MAX = 6
"""Lines in one pane at most (one per theme series colour)."""
_NO_MARKER = ("converged", "source_error", "gpu_idle", "stalled")  # about the clock, not the curve


def data_version(a: RunAnalysis | None) -> int:
    """Changes whenever the run's store took a row (plots key their redraws on it)."""
    return -1 if a is None else a.store.rows


def axis_name(a: RunAnalysis) -> str:
    """The run's own x unit: what its parser says the axis counts (`epoch`, `token`), else the step key."""
    axis = str(getattr(a.info, "axis", "") or "step")
    return axis if axis != "step" else (a.info.step_key or "step")


def run_panes(a: RunAnalysis | None, pattern: str = "") -> list[Pane]:
    """The metric panes of a run (see `tui.metricgrid`), narrowed by the picker's pattern."""
    if a is None:
        return []
    return panes(
        list(a.store.metrics.keys()),
        a.roles,
        step_key=a.info.step_key,
        primary_loss=a.key_for(Role.TRAIN_LOSS),
        primary_eval=a.key_for(Role.EVAL_LOSS),
        pattern=pattern,
    )


def axis_pairs(a: RunAnalysis, axis: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The (step, x) pairs an epoch or tokens axis maps a run's steps through (None: other axes, or unknown)."""
    if axis == EPOCH:
        return epochs_of(a)
    if axis == TOKENS:
        return tokens_of(a)
    return None


def _series(
    a: RunAnalysis,
    key: str,
    opts: PlotOptions,
    label: str,
    colour: str,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[list[Series], str]:
    steps, values = a.store.metrics[key].series()
    p = prepare_series(steps, values, opts, _WIDE, a.store.times, a.store.last_step, pairs)
    out = [Series(label, p.x, p.y, colour, p.bad_x, p.bad_y, extent=p.extent)]
    if opts.ema:
        # The raw curve stays visible (dim) under the smoothed one, as in W&B.
        raw = prepare_series(steps, values, replace(opts, ema=0.0), _WIDE, a.store.times, a.store.last_step, pairs)
        out.insert(0, Series(label, raw.x, raw.y, colour, faint=True))
    return out, p.unit


def _xlabel(opts: PlotOptions, unit: str, name: str) -> str:
    if opts.x_axis == TIME:
        return f"relative time ({unit})"
    if opts.x_axis == WALL:
        return "wall time"
    if opts.x_axis == PCT:
        return "% of each run's steps"
    if opts.x_axis == EPOCH:
        return "epoch"
    if opts.x_axis == TOKENS:
        return "tokens seen"
    return name


def _markers(
    a: RunAnalysis,
    findings: Sequence[Finding],
    opts: PlotOptions,
    keys: Sequence[str] | None = None,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[tuple[float, str], ...]:
    """Findings (of these metrics; all when None) as labelled x positions where they began."""
    at: dict[float, list[str]] = {}
    for f in findings:
        if f.kind in _NO_MARKER or (keys is not None and f.metric not in keys):
            continue
        if not f.active and f.kind != "nan":
            continue  # a cleared plateau or spike would only clutter the curve; the findings list keeps it
        at.setdefault(float(f.onset_step), [])
        if f.kind not in at[float(f.onset_step)]:
            at[float(f.onset_step)].append(f.kind)
    if not at:
        return ()
    steps = np.asarray(sorted(at), dtype=float)
    labels = [",".join(at[s]) for s in steps.tolist()]
    keep = np.ones(len(steps), bool)
    if opts.window is not None and a.store.last_step is not None:
        keep = steps >= a.store.last_step - opts.window
    xs, _ = map_x(steps, opts.x_axis, a.store.times, a.store.last_step, pairs)
    return tuple((float(x), lab) for x, lab, k in zip(xs.tolist(), labels, keep.tolist(), strict=True) if k)


def pane_spec(a: RunAnalysis | None, pane: Pane, findings: Sequence[Finding], opts: PlotOptions) -> PlotSpec:
    """One pane of the detail grid: its metrics, NaN marks and the findings about them."""
    title = pane.title
    if a is None:
        return PlotSpec(title, ())
    series: list[Series] = []
    unit = "step"
    drawn = pane.keys[:PANE_SERIES_MAX]
    if len(pane.keys) > len(drawn):
        # 150 per-layer grad norms in one pane read as noise: the first few, and the picker for the rest.
        title += f" ({len(drawn)} of {len(pane.keys)}: / picks)"
    pairs = axis_pairs(a, opts.x_axis)
    for i, key in enumerate(drawn):
        if key in a.store.metrics:
            s, unit = _series(a, key, opts, pane.short(key), f"plot-series-{i % 6 + 1}", pairs)
            series.extend(s)
    # The headline loss pane carries every finding; other panes the ones about their metrics.
    keys = None if pane.headline else pane.keys
    return PlotSpec(
        title,
        tuple(series),
        _markers(a, findings, opts, keys, pairs),
        log_y=opts.log_y,
        xlabel=_xlabel(opts, unit, axis_name(a)),
        empty=f"no {title} logged yet",
        x_unit=unit,
        x_range=opts.x_range,
    )


def layers_spec(a: RunAnalysis | None, pane: Pane, findings: Sequence[Finding], opts: PlotOptions) -> HeatSpec:
    """The per-layer gradients pane: a heat map over steps (the zoomed or windowed steps when asked)."""
    title = f"{pane.title} · log10 ‖g‖ by step · rows: input → output"
    if a is None:
        return heat_spec(title, (), lambda _k: (np.empty(0), np.empty(0)), ())
    step_range = opts.x_range if opts.x_axis == STEP else None
    if step_range is None and opts.window is not None and a.store.last_step is not None:
        step_range = (max(0.0, a.store.last_step - opts.window), a.store.last_step)
    store = a.store

    def series(key: str) -> tuple[np.ndarray, np.ndarray]:
        return store.metrics[key].series() if key in store.metrics else (np.empty(0), np.empty(0))

    keys = [k for k in pane.keys if k in store.metrics]
    return heat_spec(title, keys, series, findings, step_range, a.roles)


def loss_spec(a: RunAnalysis | None, findings: Sequence[Finding], opts: PlotOptions) -> PlotSpec:
    """The run's first pane (its loss, or whatever it logs first), with findings as markers."""
    ps = run_panes(a)
    if a is None or not ps:
        return PlotSpec("loss", (), empty="no metrics logged yet")
    return pane_spec(a, ps[0], findings, opts)


def role_spec(a: RunAnalysis | None, role: Role, opts: PlotOptions, colour: str) -> PlotSpec:
    """One metric role (LR, grad norm) of one run."""
    title = ROLE_TITLES[role]
    if a is None:
        return PlotSpec(title, ())
    key = a.key_for(role)
    if key is None or key not in a.store.metrics:
        return PlotSpec(title, (), empty=f"no {title} logged")
    s, unit = _series(a, key, opts, key, colour)
    return PlotSpec(title, tuple(s), log_y=opts.log_y, xlabel=_xlabel(opts, unit, axis_name(a)), x_unit=unit)


def has_times(a: RunAnalysis | None) -> bool:
    """Whether a run's rows came at different times (a live run, or a log with timestamps): a file read
    in one go without them has one arrival time for every row, and a time axis would collapse to a line."""
    if a is None:
        return False
    times = a.store.times
    distinct = len({t for _, t in times})
    return distinct >= 3 and distinct * 10 >= len(times)


def has_gpu(history: Sequence[GpuSnapshot]) -> bool:
    """Whether a host's GPU history holds any GPU (a host without one gets no GPU pane)."""
    return any(s.gpus for s in history)


def gpu_spec(host: str, history: Sequence[GpuSnapshot], now: float) -> PlotSpec:
    """Mean GPU utilisation and memory of a host over the last minutes (x: minutes ago, negative)."""
    title = f"GPU · {host}"
    if not history:
        return PlotSpec(title, (), empty="no GPU readings for this host")
    last = history[-1]
    if not any(s.gpus for s in history):
        return PlotSpec(title, (), empty=f"GPU: {last.status}")
    xs, util, mem = [], [], []
    for snap in history:
        u = [g.util_pct for g in snap.gpus if g.util_pct is not None]
        m = [g.mem_pct for g in snap.gpus if g.mem_pct is not None]
        xs.append((snap.time - now) / 60.0)
        util.append(sum(u) / len(u) if u else np.nan)
        mem.append(sum(m) / len(m) if m else np.nan)
    x = np.asarray(xs)
    series = []
    for label, ys, colour in (("util %", util, "plot-series-3"), ("mem %", mem, "plot-series-4")):
        y = np.asarray(ys)
        ok = np.isfinite(y)
        series.append(Series(label, x[ok], y[ok], colour))
    n = len(last.gpus)
    if not last.gpus:
        title += f" · last known ({last.status})"
    return PlotSpec(f"{title} · {n} GPU{'s' if n != 1 else ''}", tuple(series), xlabel="minutes ago")


_EPOCH_KEYS = ("epoch", "train/epoch", "trainer/epoch", "epochs")


def epochs_of(a: RunAnalysis) -> tuple[np.ndarray, np.ndarray] | None:
    """A run's (step, epoch) pairs: its steps when its axis is the epoch, else a logged epoch metric."""
    if axis_name(a) == "epoch":
        steps = np.asarray([s for s, _ in a.store.times], dtype=float)
        return (steps, steps) if len(steps) else None
    for key in _EPOCH_KEYS:
        if key in a.store.metrics:
            steps, values = a.store.metrics[key].series()
            ok = np.isfinite(values)
            return (steps[ok], values[ok]) if ok.any() else None
    return None


def compare_spec(runs: Sequence[tuple[str, RunAnalysis | None]], role: Role, opts: PlotOptions) -> PlotSpec:
    """One metric of several runs overlaid on a shared x axis (step, % of own steps, or time); the runs
    come best first, so a line's short legend is its rank in the table."""
    title = ROLE_TITLES[role]
    if opts.ema:
        title += f" (EMA {opts.ema:g})"
    series = []
    unit = "step"
    step_keys = set()
    for i, (name, a) in enumerate(runs):
        if a is None:
            continue
        key = a.key_for(role)
        if key is None or key not in a.store.metrics:
            continue
        steps, values = a.store.metrics[key].series()
        pairs = axis_pairs(a, opts.x_axis)
        if opts.x_axis in (EPOCH, TOKENS) and pairs is None:
            continue  # a run that logs no epochs (tokens) has no place on an epoch (tokens) axis
        p = prepare_series(steps, values, opts, _WIDE, a.store.times, a.store.last_step, pairs)
        unit = p.unit
        colour = f"plot-series-{i % 6 + 1}"
        series.append(Series(name, p.x, p.y, colour, p.bad_x, p.bad_y, extent=p.extent, short=str(i + 1)))
        step_keys.add(axis_name(a))
    if opts.x_axis == STEP and len(step_keys) > 1:
        name = f"step ({len(step_keys)} step keys: x for % of each run)"
    else:
        name = " / ".join(sorted(step_keys)) or "step"
    xlabel = _xlabel(opts, unit, name)
    return PlotSpec(
        title,
        tuple(series),
        log_y=opts.log_y,
        xlabel=xlabel,
        empty=f"no {title} in these runs",
        x_unit=unit,
        x_range=opts.x_range,
    )


def role_values(a: RunAnalysis | None, role: Role, window: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of a run's metric for a role, optionally the last `window` steps."""
    if a is None:
        return np.empty(0), np.empty(0)
    key = a.key_for(role)
    if key is None or key not in a.store.metrics:
        return np.empty(0), np.empty(0)
    steps, values = a.store.metrics[key].series()
    return last_window(steps, values, window)
