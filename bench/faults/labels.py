"""Truthful labels: what a careful reader of each file sees the fault do, judged against the healthy twin.

The injected fault says where to look; what the run actually did decides the label. Per file, from
the rows that file shows (axis, metrics):
- nan: first row at/after the fault with a non-finite loss, component loss, eval value or grad norm
  (not a grad norm that is an fp16 overflow skip with a finite loss: that is the trap).
- spike: the first of the 5 rows after the fault above the pre-fault level + 6 robust sigmas, 1.5×
  the level, the last 30 rows' maximum and 1.2× the twin's maximum over those rows; recovered
  when a 5-row median later comes back within 2 sigmas, else it is a divergence.
- divergence: the 5-row median of the loss rises above both the pre-fault level + 4 sigmas and 1.3×
  the twin's 5-row median, and never comes back on a healthy course (within 1.1× the twin's median,
  or the pre-fault level + 2 sigmas without a twin) before the end (or the NaN it ends in); its
  onset is the first row after the last one on a healthy course (where the loss left it).
- lr_anomaly: first row where the logged LR differs from the twin's (the declared schedule) by > 5 %.
- grad_explosion / grad_vanishing: first row with a grad norm 10× above / below the pre-fault median.
- plateau: the fault step, when the twin ends 20 % lower and the faulty loss stays within 15 %.
- overfit / eval_degradation: first eval (of the eval loss or any eval component loss) after the
  fault above the best so far by a margin (3 %, or 2.5 robust sigmas of the twin's eval-to-eval
  changes) that every later eval keeps. Other faults that make the eval worse get it as an
  optional eval_degradation event.
- stalled / crashed: the last step the file shows.
An event a file cannot show (no LR or grad norm printed) is kept with `acceptable_to_miss = true`.
`None` means the fault did not show: the caller retries it stronger or drops the instance.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench.faults.writers import OVERFLOW, Row, Written

_SKIP = ("lr",)


def _train(rows: list[Row], key: str = "loss") -> list[tuple[float, float]]:
    return [(a, m[key]) for a, m in rows if key in m]


def _robust(xs: list[float]) -> tuple[float, float]:
    """Median and robust spread (1.4826 × MAD, at least 1 % of the level)."""
    x = np.array([v for v in xs if math.isfinite(v)])
    if not len(x):
        return math.nan, math.nan
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med))) * 1.4826
    return med, max(mad, 0.01 * abs(med), 1e-12)


def _med5(vals: list[float], i: int) -> float:
    w = [v for v in vals[i : i + 5] if math.isfinite(v)]
    return float(np.median(w)) if w else math.inf


def first_nonfinite(rows: list[Row], b: float, keys: tuple[str, ...] | None = None) -> float | None:
    for a, m in rows:
        if a < b:
            continue
        for k, v in m.items():
            if k in _SKIP or (keys and k not in keys) or (k == "gnorm" and OVERFLOW in m):
                continue
            if not math.isfinite(v):
                return a
    return None


def pre_level(rows: list[Row], b: float, key: str = "loss") -> tuple[float, float]:
    pre = [v for a, v in _train(rows, key) if a < b][-30:]
    return _robust(pre)


def divergence_onset(fault: list[Row], twin: list[Row], b: float) -> float | None:
    """Where the loss leaves the twin and the pre-fault level for good (None if it does not)."""
    level, sd = pre_level(fault, b)
    if not math.isfinite(level):
        return None
    tw = dict(_train(twin))
    post = [(a, v) for a, v in _train(fault) if a >= b]
    vals = [v for _, v in post]
    twin_vals = [tw.get(a, math.nan) for a, _ in post]
    nan_at = next((i for i, v in enumerate(vals) if not math.isfinite(v)), len(vals))
    if nan_at < 3:
        return None
    onset = None
    healthy = -1  # the last row whose median was still on a healthy course
    for i in range(nan_at):
        m = _med5(vals[:nan_at], i)
        # The twin over the same rows, as a median too: one noisy twin point is no reference.
        t = _med5(twin_vals, i)
        t = t if math.isfinite(t) else math.nan
        high = m > level + 4 * sd and (not math.isfinite(t) or m > 1.3 * t)
        # On a healthy course: near the twin (which keeps descending), or near the pre-fault level
        # where there is no twin to compare with.
        back = m <= 1.1 * t if math.isfinite(t) else m <= level + 2 * sd
        if back:
            healthy = i
            onset = None
        elif high and onset is None:
            # The divergence began where the loss left its healthy course for good, not where it
            # crossed the (arbitrary) 30 % bar; a median that dips under that bar for a moment on a
            # noisy series is not a recovery either (hysteresis).
            onset = post[min(healthy + 1, i)][0]
    if onset is None:
        return None
    tail = [v for v in vals[:nan_at][-5:]]
    return onset if (nan_at < len(vals) or _robust(tail)[0] > level + 4 * sd) else None


def spike(fault: list[Row], twin: list[Row], b: float) -> list[dict[str, Any]] | None:
    level, sd = pre_level(fault, b)
    post = [(a, v) for a, v in _train(fault) if a >= b]
    if not post or not math.isfinite(level):
        return None
    # above the noise: 6 robust sigmas, 1.5x the level, the recent pre-fault maximum, and what the twin did
    recent = [v for a, v in _train(fault) if a < b][-30:]
    tw = [v for a, v in _train(twin) if a >= b][:10]
    thr = max(level + 6 * sd, 1.5 * level, max(recent, default=level), 1.2 * max(tw, default=level))
    first = next((i for i, (_, v) in enumerate(post[:5]) if not math.isfinite(v) or v > thr), None)
    if first is None:
        return None
    onset = post[first][0]
    vals = [v for _, v in post]
    back = any(_med5(vals, i) <= level + 2 * sd for i in range(first + 1, max(first + 1, len(vals) - 4)))
    events = []
    nan = first_nonfinite(fault, b)
    if back and nan is None:
        events.append(ev("spike", onset))
    else:
        events.append(ev("divergence", onset, alternatives=["spike"], note="the spike never comes back"))
    if nan is not None:
        events.append(ev("nan", nan))
    return events


def lr_onset(fault: list[Row], twin: list[Row], b: float) -> float | None:
    tw = {a: m["lr"] for a, m in twin if "lr" in m}
    for a, m in fault:
        if a < b or "lr" not in m or a not in tw:
            continue
        ref = tw[a]
        if abs(m["lr"] - ref) > 0.05 * max(abs(ref), 1e-12):
            return a
    return None


def grad_onset(fault: list[Row], b: float, up: bool) -> float | None:
    level, _ = pre_level(fault, b, "gnorm")
    if not math.isfinite(level) or level <= 0:
        return None
    for a, v in _train(fault, "gnorm"):
        if a >= b and math.isfinite(v) and (v > 10 * level if up else v < level / 10):
            return a
    return None


def eval_rise(fault: list[Row], twin: list[Row], b: float) -> float | None:
    """The earliest `eval_rise_of` over the eval loss and every eval component loss."""
    keys = sorted({k for _, m in fault for k in m if k.startswith("eval_") and k.endswith("loss")})
    found = [o for k in keys if (o := eval_rise_of(fault, twin, b, k)) is not None]
    return min(found, default=None)


def eval_rise_of(fault: list[Row], twin: list[Row], b: float, key: str) -> float | None:
    """First eval after the fault that is worse than the best so far by a margin every later eval keeps.

    The margin is 3 %, or 2.5 robust sigmas of the twin's eval-to-eval changes over the same steps
    (how much evals move when nothing is wrong), in log space.
    """
    evs = _train(fault, key)
    pre = [v for a, v in evs if a < b]
    if len(pre) < 2 or not all(math.isfinite(v) and v > 0 for _, v in evs):
        return None
    tw = np.log([v for a, v in _train(twin, key) if a >= b and math.isfinite(v) and v > 0])
    d = np.diff(tw)
    noise = 1.4826 * float(np.median(np.abs(d - np.median(d)))) if len(d) >= 3 else 0.0
    margin = max(math.log(1.03), 2.5 * noise)
    best = math.log(min(pre))
    post = [(a, math.log(v)) for a, v in evs if a >= b]
    for i, (a, v) in enumerate(post):
        best_so_far = min([best] + [x for _, x in post[:i]])
        if v > best_so_far + margin and all(x > best_so_far + margin / 2 for _, x in post[i:]):
            return a if len(post) - i >= 2 else None
    return None


def ev(verdict: str, onset: float, *, miss: bool = False, alternatives: list[str] | None = None, note: str = ""):
    d: dict[str, Any] = {"verdict": verdict, "onset_step": onset}
    if alternatives:
        d["acceptable_alternatives"] = alternatives
    d["acceptable_to_miss"] = miss
    if note:
        d["note"] = note
    return d


def consequences(fault: list[Row], twin: list[Row], b: float) -> list[dict[str, Any]]:
    """Divergence, NaN (required) and a worse eval (optional) that followed a fault of another kind."""
    out = []
    d = divergence_onset(fault, twin, b)
    if d is not None:
        out.append(ev("divergence", d))
    n = first_nonfinite(fault, b)
    if n is not None:
        out.append(ev("nan", n))
    e = eval_rise(fault, twin, b)
    if e is not None and (n is None or e < n):
        note = "the eval got worse as a consequence of the fault"
        out.append(ev("eval_degradation", e, miss=True, alternatives=["overfit"], note=note))
    return out


def file_events(
    kind: str, f: Written, twin: Written, fault_step: int, primary: bool = True
) -> list[dict[str, Any]] | None:
    """The events `f` shows for fault `kind` switched on at `fault_step`; None when it shows nothing
    (or, for the `primary` file, when the fault did not do what it is meant to: a growing LR that
    never made the loss diverge is retried stronger)."""
    b = f.axis(fault_step)
    rows, trows = f.rows, twin.rows
    has = {k for _, m in rows for k in m}
    if kind in ("nan_loss", "inf_loss", "nan_subloss", "nan_eval"):
        n = first_nonfinite(rows, b)
        return [ev("nan", n)] if n is not None else None
    if kind == "spike":
        return spike(rows, trows, b)
    if kind in ("lr_grows", "lr_jump", "warmup_never_ends", "no_decay", "schedule_reset"):
        out = []
        if "lr" in has:
            o = lr_onset(rows, trows, b)
            if o is None:
                return None
            out.append(ev("lr_anomaly", o))
        else:
            out.append(ev("lr_anomaly", b, miss=True, note="this log does not print the learning rate"))
        more = consequences(rows, trows, b)
        if primary and kind == "lr_grows" and not any(e["verdict"] in ("divergence", "nan") for e in more):
            return None
        return out + more
    if kind in ("grad_explosion", "grad_vanishing"):
        if "gnorm" not in has:
            out = [ev(kind, b, miss=True, note="this log does not print the grad norm")]
        else:
            o = grad_onset(rows, b, kind == "grad_explosion")
            if o is None:
                return None
            out = [ev(kind, o)]
        return out + consequences(rows, trows, b)
    if kind == "plateau":
        return _plateau(rows, trows, b)
    if kind in ("overfit", "eval_shift"):
        o = eval_rise(rows, trows, b)
        if o is None:
            return None
        verdict = "overfit" if kind == "overfit" else "eval_degradation"
        other = "eval_degradation" if kind == "overfit" else "overfit"
        out = [ev(verdict, o, alternatives=[other])]
        d = divergence_onset(rows, trows, b)
        if d is not None:
            out.append(ev("divergence", d, miss=True, note="the training loss rose while the data changed"))
        return out
    if kind in ("stalled", "crashed"):
        last = max((a for a, m in rows if "loss" in m), default=None)
        if last is None:
            return None
        if kind == "crashed" and f.name in ("metrics.jsonl", "metrics_log.csv"):
            return [
                ev("stalled", last, alternatives=["crashed", "crash"], note="the process died; this file just stops")
            ]
        alts = ["crash"] if kind == "crashed" else ["crashed", "crash"]
        return [ev(kind, last, alternatives=alts)]
    if kind == "fp16_burst":
        return []
    raise ValueError(kind)


def _plateau(rows: list[Row], trows: list[Row], b: float) -> list[dict[str, Any]] | None:
    f_post = [v for a, v in _train(rows) if a >= b]
    t_post = [v for a, v in _train(trows) if a >= b]
    if len(f_post) < 20:
        return None
    k = max(5, len(f_post) // 5)
    f_start, f_end, t_end = (_robust(x)[0] for x in (f_post[:k], f_post[-k:], t_post[-k:]))
    # the twin keeps improving clearly (20 % lower at the end) while the faulty run stays within 15 %
    if not (t_end < 0.8 * f_end and abs(math.log(f_end / f_start)) < math.log(1.15)):
        return None
    return [ev("plateau", b, note="only the output bias still learns; the LR is unchanged")]


def natural_overfit(rows: list[Row]) -> float | str | None:
    """Whether a healthy run overfits on its own, on its eval loss or any eval component loss:
    "drop" when one ends over 15 % above its best, the earliest onset of a 5-15 % rise (kept, as an
    optional event), or None."""
    keys = sorted({k for _, m in rows for k in m if k.startswith("eval_") and k.endswith("loss")})
    onsets = []
    for key in keys:
        evs = [(a, v) for a, v in _train(rows, key) if math.isfinite(v)]
        if len(evs) < 4:
            continue
        best_i = min(range(len(evs)), key=lambda i: evs[i][1])
        best = evs[best_i][1]
        final = float(np.median([v for _, v in evs[-3:]]))
        if final > 1.15 * best:
            return "drop"
        if final <= 1.05 * best:
            continue
        after = evs[best_i + 1 :]
        for i, (a, v) in enumerate(after):
            if v > 1.05 * best and all(x > 1.025 * best for _, x in after[i:]):
                onsets.append(a)
                break
    return min(onsets, default=None)
