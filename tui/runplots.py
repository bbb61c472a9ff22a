"""Plot specs from a run's live analysis: loss/eval, LR, grad norm, GPU history, and multi-run overlays.

Reads the store's numpy copies on the UI loop (the hub runs on the same loop, so nothing moves
underneath) and returns immutable `PlotSpec`s; the plot widgets fit them to their size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from monitor.analysis import RunAnalysis
from monitor.gpu import GpuSnapshot
from monitor.model import Finding, Role
from tui.plotdata import TIME, PlotOptions, last_window, prepare, wall_time
from tui.widgets.plot import PlotSpec, Series

ROLE_TITLES = {
    Role.TRAIN_LOSS: "train loss",
    Role.EVAL_LOSS: "eval loss",
    Role.LR: "learning rate",
    Role.GRAD_NORM: "grad norm",
}
_WIDE = 4096  # downsampling happens in the widget; this only bounds the arrays kept in a spec


def data_version(a: RunAnalysis | None) -> int:
    """Changes whenever the run's store took a row (plots key their redraws on it)."""
    return -1 if a is None else a.store.rows


def _series(a: RunAnalysis, key: str, opts: PlotOptions, label: str, colour: str) -> tuple[Series, str]:
    steps, values = a.store.metrics[key].series()
    x, y, unit = prepare(steps, values, opts, _WIDE, a.store.times)
    return Series(label, x, y, colour), unit


def _xlabel(opts: PlotOptions, unit: str, step_key: str) -> str:
    if opts.x_axis == TIME:
        return f"wall time ({unit} since start)"
    return step_key


def _markers(a: RunAnalysis, findings: Sequence[Finding], opts: PlotOptions) -> tuple[float, ...]:
    steps = sorted({f.onset_step for f in findings if f.kind not in ("converged", "source_error", "gpu_idle")})
    if not steps:
        return ()
    arr = np.asarray(steps, dtype=float)
    if opts.window is not None and a.store.last_step is not None:
        arr = arr[arr >= a.store.last_step - opts.window]
    if opts.x_axis == TIME:
        arr, _ = wall_time(arr, a.store.times)
    return tuple(arr.tolist())


def loss_spec(a: RunAnalysis | None, findings: Sequence[Finding], opts: PlotOptions) -> PlotSpec:
    """Train and eval loss of one run, with findings as vertical markers."""
    title = "loss"
    if opts.ema:
        title += f" (EMA {opts.ema:g})"
    if a is None:
        return PlotSpec(title, ())
    series: list[Series] = []
    unit = "step"
    for role, colour in ((Role.TRAIN_LOSS, "plot-series-1"), (Role.EVAL_LOSS, "plot-series-2")):
        key = a.key_for(role)
        if key is not None and key in a.store.metrics:
            s, unit = _series(a, key, opts, key, colour)
            series.append(s)
    return PlotSpec(
        title,
        tuple(series),
        _markers(a, findings, opts),
        log_y=opts.log_y,
        xlabel=_xlabel(opts, unit, a.info.step_key),
        empty="no loss logged yet",
    )


def role_spec(a: RunAnalysis | None, role: Role, opts: PlotOptions, colour: str) -> PlotSpec:
    """One metric role (LR, grad norm) of one run."""
    title = ROLE_TITLES[role]
    if a is None:
        return PlotSpec(title, ())
    key = a.key_for(role)
    if key is None or key not in a.store.metrics:
        return PlotSpec(title, (), empty=f"no {title} logged")
    s, unit = _series(a, key, opts, key, colour)
    return PlotSpec(
        f"{title} · {key}",
        (s,),
        log_y=opts.log_y,
        xlabel=_xlabel(opts, unit, a.info.step_key),
    )


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
    return PlotSpec(f"{title} · {n} GPU{'s' if n != 1 else ''}", tuple(series), xlabel="minutes ago")


def compare_spec(runs: Sequence[tuple[str, RunAnalysis | None]], role: Role, opts: PlotOptions) -> PlotSpec:
    """One metric of several runs overlaid on a common x axis (step, or wall time since each start)."""
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
        s, unit = _series(a, key, opts, name, f"plot-series-{i % 6 + 1}")
        series.append(s)
        step_keys.add(a.info.step_key)
    xlabel = _xlabel(opts, unit, " / ".join(sorted(step_keys)) or "step")
    return PlotSpec(title, tuple(series), log_y=opts.log_y, xlabel=xlabel, empty=f"no {title} in these runs")


def role_values(a: RunAnalysis | None, role: Role, window: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of a run's metric for a role, optionally the last `window` steps."""
    if a is None:
        return np.empty(0), np.empty(0)
    key = a.key_for(role)
    if key is None or key not in a.store.metrics:
        return np.empty(0), np.empty(0)
    steps, values = a.store.metrics[key].series()
    return last_window(steps, values, window)
