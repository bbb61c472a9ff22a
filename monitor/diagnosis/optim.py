"""Causes in the optimisation itself: learning rate, its schedule, gradients, fp16 overflow, bad batches, NaNs."""

from __future__ import annotations

import math

import numpy as np

from monitor.diagnosis import layers
from monitor.diagnosis.facts import Curve, RunFacts, evalish, fmt
from monitor.diagnosis.model import Confidence, Hypothesis
from monitor.diagnosis.schedule import lr_jumped
from monitor.model import Finding, Severity

_CLIP_KEYS = (
    "max_grad_norm",
    "grad_clip",
    "clip_grad",
    "clip_grad_norm",
    "gradient_clipping",
    "clip",
    "grad_norm_clip",
)


def spike_at(f: RunFacts, step: float) -> Finding | None:
    """A training-loss spike that began within two logging intervals of `step`."""
    iv = _interval(f)
    return next((x for x in f.of("spike") if not evalish(x.metric) and abs(x.onset_step - step) <= 2 * iv), None)


def trouble(f: RunFacts) -> Finding | None:
    """The earliest sign the loss went wrong: divergence, a NaN in the loss, or eval clearly worse.

    A divergence that began with a one-point spike and came back is that spike's aftermath, not trouble."""
    div = [x for x in f.of("divergence", warn=True) if x.active or spike_at(f, x.onset_step) is None]
    cands = div + [x for x in f.of("nan", warn=True) if x.metric == _key(f.loss)]
    if not cands:
        cands = [x for x in f.of("eval_degradation", "overfit") if x.severity >= Severity.BAD]
    return min(cands, key=lambda x: x.onset_step) if cands else None


def _key(c: Curve | None) -> str | None:
    return c.key if c is not None else None


def _early(c: Curve, until: float) -> float:
    """A curve's typical level in the first fifth of what it logged before `until`."""
    b = c.before(until).finite()
    if not len(b):
        return math.nan
    n = max(3, len(b) // 5)
    return float(np.median(b.values[:n]))


def grad_rise(f: RunFacts, until: float, factor: float = 3.0) -> tuple[float, float, float] | None:
    """(step, base, value) where the grad norm first went `factor`x above its earlier median, at or before `until`."""
    if f.grad is None:
        return None
    g = f.grad.finite()
    if len(g) < 8:
        return None
    before = g.before(until + 1e-9)
    if len(before) < 6:
        return None
    base = float(np.median(before.values[: max(5, len(before) // 2)]))
    if not base > 0:
        return None
    hi = np.nonzero(before.values > factor * base)[0]
    hi = hi[hi >= max(5, len(before) // 4)] if len(hi) else hi
    if not len(hi):
        return None
    i = int(hi[0])
    return float(before.steps[i]), base, float(before.values[i])


def clip_value(f: RunFacts) -> float | None:
    for k in _CLIP_KEYS:
        v = f.config.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return float(v)
    return None


def lr_too_high(f: RunFacts) -> Hypothesis | None:
    """Divergence after the LR reached its peak (or kept rising), ideally with the grad norm rising first."""
    t = trouble(f)
    if t is None:
        return None
    s = t.onset_step
    what = f"the loss left its band from {f.where(s)} ({t.kind}: {t.message})"
    if f.lr is None or not len(f.lr.finite().before(s + 1e-9)):
        return Hypothesis(
            "lr_too_high",
            "possibly a learning rate too high for this model",
            Confidence.LOW,
            what + "; no learning rate is logged, so this is a guess",
            "lower the learning rate 2-4x or lengthen the warm-up",
            "the loss keeps falling past that step",
            "rerun from a checkpoint before it with the lower LR",
            steps=(s,),
            settle="log the learning rate and the gradient norm every step",
            weight=0.2,
        )
    lr = f.lr.finite().before(s + 1e-9)
    lr_s = float(lr.values[-1])
    early = _early(f.lr, s)
    top = float(lr.values.max())
    peak_step = float(lr.steps[np.nonzero(lr.values >= 0.95 * top)[0][0]])
    rose = early > 0 and lr_s >= 2.0 * early
    recent_peak = lr_s >= 0.8 * top and s - peak_step <= max(0.35 * peak_step, 10 * lr.interval())
    # The onset a detector reports is approximate by a logging interval or two.
    g = grad_rise(f, s + 2 * _interval(f), 2.0)
    parts = [what, f"the LR was {fmt(lr_s)} there" + (f", x{lr_s / early:.3g} its early {fmt(early)}" if rose else "")]
    whole = f.lr.finite()
    later = float(whole.values.max())
    if later > 1.05 * top:
        at = float(whole.steps[int(np.argmax(whole.values))])
        parts.append(f"it was still rising (to its peak {fmt(later)} at {f.where(at)})")
    else:
        parts.append(f"it reached its peak {fmt(top)} at {f.where(peak_step)}")
    steps = [peak_step, s]
    if g is not None:
        when = "first" if g[0] < s else "at about the same time" if g[0] <= s + _interval(f) else "soon after"
        parts.append(f"the grad norm rose x{g[2] / g[1]:.3g} ({fmt(g[1])} -> {fmt(g[2])}) at {f.where(g[0])}, {when}")
        steps.insert(1, g[0])
    # Direct evidence: the grad norm moved no later than one logging interval after the loss did.
    g_in_time = g is not None and g[0] <= s + _interval(f)
    if rose and recent_peak and (g_in_time or f.grad is None):
        conf, weight = Confidence.HIGH if g_in_time else Confidence.MEDIUM, 0.9
    elif rose and recent_peak:
        conf, weight = Confidence.MEDIUM, 0.7
    elif g is not None:
        conf, weight = Confidence.MEDIUM, 0.35
    else:
        conf, weight = Confidence.LOW, 0.25
    lower = fmt(float(f"{lr_s / 3:.2g}"))
    return Hypothesis(
        "lr_too_high",
        "the learning rate is likely too high" if conf >= Confidence.MEDIUM else "possibly a learning rate too high",
        conf,
        "; ".join(parts),
        f"lower the peak LR about 3x ({fmt(lr_s)} -> {lower}) or lengthen the warm-up; keep gradient clipping on",
        f"the loss keeps falling past {f.where(s)} and the grad norm stays near "
        f"{fmt(g[1]) if g else 'its early level'}",
        f"rerun from a checkpoint before {f.where(steps[0])} with the lower LR and compare the loss at {f.where(s)}",
        steps=tuple(sorted(set(steps))),
        settle=""
        if conf >= Confidence.MEDIUM
        else "log the gradient norm every step; a rise before the loss would confirm it",
        weight=weight,
    )


def exploding(f: RunFacts) -> Hypothesis | None:
    """Gradients growing by an order of magnitude, with no (or ineffective) clipping."""
    fs = [x for x in f.of("grad_explosion", warn=True) if not layers.per_layer(x)]  # layers: diagnosis/layers.py
    if f.grad is None or not len(f.grad.finite()):
        return None
    g = f.grad.finite()
    if len(g) < 8:
        return None
    # Grad norms that grow from a tiny start are common: the level to compare with is the one after
    # the first fifth of the run, and a rise counts when it is sustained (largest median of three).
    n = len(g)
    base = float(np.median(g.values[n // 5 : max(n // 5 + 3, n // 2)]))
    if not base > 0:
        return None
    med3 = np.median(np.lib.stride_tricks.sliding_window_view(g.values, 3), axis=1)
    j = int(np.argmax(med3))
    end = float(med3[j])
    ratio = end / base
    t = trouble(f)
    if not fs and not (ratio >= 10 and j >= n // 5):
        return None
    above = np.nonzero(med3[n // 5 :] > 3 * base)[0]
    onset = fs[0].onset_step if fs else float(g.steps[n // 5 + int(above[0]) + 1]) if len(above) else float(g.steps[j])
    clip = clip_value(f)
    lr_flat = True
    if f.lr is not None and len(f.lr.finite()):
        lr_on = f.lr.finite().at(onset)
        lr_flat = not (lr_on >= 2.0 * _early(f.lr, onset + 1))
    clip_txt = (
        f"clipping is set at {fmt(clip)} but the logged norm (before clipping) kept growing"
        if clip
        else "no gradient clipping in the config"
    )
    conf = Confidence.HIGH if ratio >= 10 and lr_flat and len(g.since(onset)) >= 3 else Confidence.MEDIUM
    ev = f"grad norm grew x{ratio:.3g} ({fmt(base)} -> {fmt(end)}) from {f.where(onset)}; {clip_txt}"
    if t is not None:
        ev += f"; the loss went wrong from {f.where(t.onset_step)}"
    if not lr_flat:
        ev += "; the LR rose before it, so the LR may be the root cause"
    return Hypothesis(
        "exploding_gradients",
        "gradients are likely exploding" + ("" if clip else " without clipping"),
        conf,
        ev,
        "clip gradients (max_grad_norm=1.0), check the loss scaling/unscaling, lower the LR if it persists",
        f"the grad norm stays near {fmt(base)}; no divergence after {f.where(onset)}",
        "log the grad norm before and after clipping; the clipped norm should stay at or below the limit",
        steps=(onset,),
        weight=0.8 if lr_flat else 0.4,
    )


def vanishing(f: RunFacts) -> Hypothesis | None:
    """Gradients shrinking by orders of magnitude while the loss stops improving."""
    fs = [x for x in f.of("grad_vanishing", warn=True) if not layers.per_layer(x)]  # layers: diagnosis/layers.py
    if f.grad is None or len(f.grad.finite()) < 8:
        return None
    g = f.grad.finite()
    base = _early(f.grad, float(g.steps[-1]) + 1)
    tail = float(np.median(g.values[-max(3, len(g) // 10) :]))
    if not base > 0:
        return None
    ratio = base / max(tail, 1e-300)
    if not fs and ratio < 10:
        return None
    low = np.nonzero(g.values < 0.1 * base)[0]
    onset = fs[0].onset_step if fs else float(g.steps[low[0]]) if len(low) else float(g.steps[-1])
    stuck = ""
    if f.loss is not None:
        lo = f.loss.finite()
        a, b = lo.at(onset), float(lo.values[-1]) if len(lo) else math.nan
        if a == a and b == b:
            stuck = f"; the loss went {fmt(a)} -> {fmt(b)} after it"
            flat = b > 0.97 * a
        else:
            flat = False
    else:
        flat = False
    lr_decayed = False
    if f.lr is not None and len(f.lr.finite()):
        lv = f.lr.finite()
        lr_decayed = lv.at(onset) < 0.3 * float(lv.values.max())
    conf = (
        Confidence.HIGH
        if ratio >= 30 and flat and not lr_decayed
        else Confidence.MEDIUM
        if ratio >= 10
        else Confidence.LOW
    )
    return Hypothesis(
        "vanishing_gradients",
        "gradients are likely vanishing (dead or saturated layers)",
        conf,
        f"grad norm fell {'to 0' if tail <= 0 else f'x{ratio:.3g}'} ({fmt(base)} -> {fmt(tail)}) "
        f"from {f.where(onset)}{stuck}",
        "check for saturated activations or dead ReLUs, a wrongly scaled loss, or frozen layers; "
        "try a residual path/normalisation or a higher LR",
        "the grad norm returns to its earlier level and the loss falls again",
        "log per-layer grad norms: the layers near zero are the ones to fix",
        steps=(onset,),
        settle="" if conf > Confidence.LOW else "per-layer gradient norms would show which layers died",
        weight=0.7,
    )


def bad_batch(f: RunFacts) -> Hypothesis | None:
    """One loss spike with a grad-norm spike at the same step, recovered."""
    spikes = [x for x in f.of("spike") if x.metric == _key(f.loss)]
    if not spikes or len(spikes) > 2:
        return None
    x = spikes[0]
    recovered = not x.active or "cleared_step" in x.evidence
    t = trouble(f)
    followed = t is not None and t.onset_step >= x.onset_step
    gtxt, gspike = "", False
    if f.grad is not None and len(f.grad.finite()) >= 6:
        g = f.grad.finite()
        iv = g.interval()
        near = g.values[(g.steps >= x.onset_step - 2 * iv) & (g.steps <= x.onset_step + 2 * iv)]
        before = g.before(x.onset_step - 2 * iv)
        if len(near) and len(before) >= 3:
            base = float(np.median(before.values[-50:]))
            peak = float(near.max())
            if base > 0 and peak >= 3 * base:
                gspike = True
                gtxt = f"; the grad norm spiked x{peak / base:.3g} ({fmt(base)} -> {fmt(peak)}) at the same step"
    ev = f"{x.message}{gtxt}"
    if followed and t is not None:
        ev += f"; but the loss went wrong after it ({t.kind} from {f.where(t.onset_step)})"
    # With the LR climbing into the spike, the spike is a symptom of the LR, not of one batch.
    lr_rising = False
    if f.lr is not None and len(f.lr.finite().before(x.onset_step)) >= 3:
        lr_rising = f.lr.finite().at(x.onset_step) >= 2.0 * _early(f.lr, x.onset_step) and lr_jumped(f) is None
        lr_rising = lr_rising or lr_jumped(f) is not None
    if lr_rising:
        ev += "; the LR had been rising into it"
    iv = _interval(f)
    others = [
        y
        for y in f.findings
        if y.active
        and y.severity >= Severity.BAD
        and abs(y.onset_step - x.onset_step) > 2 * iv
        and y.kind not in ("spike", "converged")
    ]
    if recovered and gspike and not followed and not lr_rising:
        conf = Confidence.HIGH
    elif recovered and not followed:
        conf = Confidence.MEDIUM
    else:
        conf = Confidence.LOW
    return Hypothesis(
        "bad_batch",
        "probably one bad batch (or a rare outlier sample)",
        conf,
        ev,
        "inspect the batch at that step (sample ids, lengths, labels); "
        "clip gradients so one batch cannot jolt the weights",
        "no spike at that step on a rerun with the batch skipped; with clipping, a smaller jump",
        f"replay the data order and look at the batch at {f.where(x.onset_step)}",
        steps=(x.onset_step,),
        settle="" if conf > Confidence.LOW else "log the grad norm and per-sample losses around the spike",
        weight=0.6 if not followed else 0.2,
        # On a run judged healthy it is a note; on a flagged run it may be the very reason it was flagged.
        incidental=recovered and not followed and (f.verdict_healthy or bool(others)),
    )


def fp16_overflow(f: RunFacts) -> Hypothesis | None:
    """fp16/bf16 overflow: NaN grad norm with a finite loss (skipped steps), the loss scale dropping."""
    # Isolated skips only: a NaN grad norm that persists is a real NaN, not the scaler at work.
    lasting = [x.onset_step for x in f.of("nan", warn=True) if not evalish(x.metric)]
    skips = [x for x in f.of("overflow_skip") if not any(abs(x.onset_step - n) <= 3 * _interval(f) for n in lasting)]
    drops: list[tuple[float, float, float]] = []
    if f.scale is not None and len(f.scale.finite()) >= 2:
        s = f.scale.finite()
        d = np.nonzero(s.values[1:] < s.values[:-1] * 0.75)[0]
        drops = [(float(s.steps[i + 1]), float(s.values[i]), float(s.values[i + 1])) for i in d[:5]]
    if not skips and not drops:
        return None
    parts = []
    steps: list[float] = []
    if skips:
        at = [x.onset_step for x in skips]
        steps += at
        parts.append(
            f"grad norm NaN with a finite loss at {f.axis} {', '.join(fmt(a) for a in at[:6])}"
            f" ({len(at)} skipped step{'s' if len(at) > 1 else ''})"
        )
    if drops:
        steps += [d[0] for d in drops]
        parts.append("loss scale dropped " + ", ".join(f"{fmt(a)} -> {fmt(b)} at {fmt(st)}" for st, a, b in drops[:3]))
    t = trouble(f)
    iv = _interval(f)
    # Harmful when the loss went wrong soon after a skip, or the skips are many.
    after = [x.onset_step for x in f.of("spike") if not evalish(x.metric)]
    if t is not None and t.kind in ("divergence", "nan"):
        after.append(t.onset_step)
    # A dynamic scaler halves its scale now and then by design; a scale that collapses is not that.
    collapsed = f.scale is not None and bool(drops) and _collapsed(f.scale)
    harmful = (
        len(skips) > 10 or collapsed or (bool(skips) and any(0 <= a - st <= 10 * iv for a in after for st in steps))
    )
    return Hypothesis(
        "fp16_overflow",
        "fp16 overflow: the loss scaler skipped steps" + ("" if harmful else " (harmless when rare)"),
        Confidence.HIGH if skips or collapsed else Confidence.MEDIUM,
        "; ".join(parts) + (f"; fp16={f.config.get('fp16')}" if "fp16" in f.config else ""),
        "nothing while skips are rare; if they repeat: train in bf16, lower the LR, or lower the scaler's growth",
        "fewer NaN grad norms; the loss scale settles instead of dropping",
        "count skipped steps (NaN grad norms) per 1000 steps on the next run",
        steps=tuple(sorted(set(steps))),
        weight=0.5 if not harmful else 0.7,
        incidental=not harmful,
    )


def _interval(f: RunFacts) -> float:
    c = f.loss or f.grad
    return c.interval() if c is not None else 1.0


def _collapsed(scale: Curve) -> bool:
    """The loss scale ended 64x or more below its peak."""
    v = scale.finite().values
    return len(v) >= 2 and v.max() > 0 and v[-1] <= v.max() / 64


def nonfinite(f: RunFacts) -> Hypothesis | None:
    """A NaN/Inf in the training loss, one of its parts or the gradients that came abruptly, with no build-up."""
    nans = [x for x in f.of("nan", warn=True) if not evalish(x.metric)]
    if not nans:
        return None
    x = nans[0]
    n = x.onset_step
    g = grad_rise(f, n - 1e-9)
    if g is not None:
        build = f"the grad norm rose x{g[2] / g[1]:.3g} from {f.where(g[0])} before it: a divergence ended in it"
        conf, weight = Confidence.MEDIUM, 0.3
    else:
        last = ""
        if f.grad is not None and len(f.grad.finite().before(n)):
            last = f" (last finite grad norm {fmt(float(f.grad.finite().before(n).values[-1]))})"
        build = f"no build-up before it in the loss or grad norm{last}: it came abruptly"
        if f.loss is not None and len(f.loss) and not len(f.loss.finite().before(n)):
            build = "from the very first logged step: the initialisation, the data or a dtype/loss-scale setting"
        conf, weight = Confidence.MEDIUM, 0.65
    if x.metric == _key(f.grad):
        part = " (seen in the gradients; a logged loss average may hide NaN steps)"
    else:
        part = "" if x.metric == _key(f.loss) else f" (first in {x.metric})"
    return Hypothesis(
        "nonfinite",
        "a NaN/Inf likely entered the weights or inputs" + part,
        conf,
        f"{x.message}; {build}",
        "find the first non-finite tensor (torch.autograd.set_detect_anomaly, or assert finite "
        "inputs/labels); guard log/div with eps",
        "no NaN/Inf at that step on a rerun from the last checkpoint before it",
        f"rerun from a checkpoint before {f.where(n)} with anomaly detection on",
        steps=(n,),
        settle="the first non-finite tensor (weights, activations or the batch) would settle where it came from",
        weight=weight,
    )
