"""Causes in the gradients themselves: exploding (growing by orders of magnitude) and vanishing (falling by
orders of magnitude), from the run's global grad norm (per-layer gradients are `layers.py`'s).

Confidence rules (each rule's docstring says its own in full):
- exploding gradients: high for a sustained 10x rise beyond noise, with an LR that did not rise into it,
  leading the loss, not begun by a one-step loss spike, and still out of its band at the end; medium
  otherwise. A burst that came back is transient (an RNN's gradient cliff, a run of hard batches): low,
  and incidental when the loss never went wrong.
- vanishing gradients: high for a 30x fall beyond noise, the loss stuck after it but still learning before
  it, the LR not decayed, not begun by a one-step loss spike; medium for 10x; low otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from monitor.diagnosis import bands, layers
from monitor.diagnosis.facts import Curve, RunFacts, evalish, fmt
from monitor.diagnosis.model import Confidence, Hypothesis
from monitor.diagnosis.optim import (
    LEAD,
    NEAR,
    clip_value,
    early_level,
    interval_of,
    jolt_in,
    lr_peaked_recently,
    trouble,
)
from monitor.model import Finding


def exploding(f: RunFacts) -> Hypothesis | None:
    """Gradients growing by an order of magnitude, with no (or ineffective) clipping.

    High needs all of: a sustained rise (median of three) an order of magnitude above the grad norm's
    reference level and beyond that level's own noise; an LR that did not rise into it (else an LR too high
    reads the same); the gradients growing no later than the loss went wrong (else they may be its
    symptom) and not from a one-step loss spike (a bad batch reads the same); three or more points since;
    the grad norm not back inside its reference band at the end of the log (the median of the last third of
    the points after the peak). Otherwise medium; low for a burst that came back (transient, not an
    explosion: consistent with one, nothing more), and then incidental when the loss never went wrong.
    """
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
    # Separates it from an LR too high: the LR did not reach a new peak shortly before the growth (after a
    # warm-up, a jump or while still rising), nor is it 2x its typical level over the stretch where the
    # grad norm was at its reference level.
    peaked = lr_peaked_recently(f, onset)
    lr_flat = not (peaked is not None and peaked[0])
    if f.lr is not None and lr_flat:
        lv = f.lr.finite()
        ref_lr = lv.values[(lv.steps >= g.steps[n // 5]) & (lv.steps <= g.steps[max(n // 5 + 3, n // 2) - 1])]
        lr_flat = not (len(ref_lr) and lv.at(onset) >= 2.0 * float(np.median(ref_lr)))
    # An order of magnitude, and beyond the reference level's own noise.
    ref = bands.band(g.values[n // 5 : max(n // 5 + 3, n // 2)], bands.resolution(g.values))
    clear = ref is not None and end > ref.threshold(bands.Z, 10.0)
    # Separates it from a symptom: the gradients grew no later than the loss went wrong.
    led = t is None or onset <= t.onset_step + interval_of(f)
    clip_txt = (
        f"clipping is set at {fmt(clip)} but the logged norm (before clipping) kept growing"
        if clip
        else "no gradient clipping in the config"
    )
    # Separates it from a bad batch: the growth did not begin with a one-step loss spike.
    iv = interval_of(f)
    low = np.nonzero((g.steps < onset) & (g.values <= base))[0]
    rise_start = float(g.steps[low[-1]]) if len(low) else float(g.steps[0])
    jolt = jolt_in(f, rise_start - LEAD * iv, onset + iv)
    # Separates it from a transient burst (a recurrent net's gradient cliff, a run of hard batches): an
    # explosion stays out of the band; a grad norm back inside its reference band at the end was not one.
    tail = g.values[j + 3 :]
    back = float(np.median(tail[-max(3, len(tail) // 3) :])) if len(tail) >= 3 else math.nan
    came_back = ref is not None and back <= ref.threshold(bands.Z, bands.MIN_RATIO)
    conf = (
        Confidence.HIGH
        if clear and lr_flat and led and jolt is None and not came_back and len(g.since(onset)) >= 3
        else Confidence.LOW
        if came_back
        else Confidence.MEDIUM
    )
    ev = f"grad norm grew x{ratio:.3g} ({fmt(base)} -> {fmt(end)}) from {f.where(onset)}; {clip_txt}"
    if came_back:
        ev += f"; it came back to {fmt(back)} by {f.where(float(g.steps[-1]))}: a transient burst reads the same"
    if jolt is not None:
        ev += f"; it began with a one-step loss spike at {f.where(jolt.onset_step)}: a bad batch reads the same"
    if t is not None:
        ev += f"; the loss went wrong from {f.where(t.onset_step)}"
        if not led:
            ev += ", before the gradients grew, so they may be its symptom"
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
        settle="per-layer grad norms around the burst would tell one layer's gradient cliff from a bad batch"
        if came_back
        else "",
        weight=0.8 if lr_flat else 0.4,
        # A burst that came back while the loss never went wrong did no harm: it happened, nothing more.
        incidental=came_back and t is None,
    )


def plateau_since(x: Finding) -> float:
    """The step from which a plateau finding says the loss stopped improving."""
    v = x.evidence.get("since_step", x.onset_step)
    return float(v) if isinstance(v, (int, float)) else x.onset_step


def _cleared(x: Finding) -> float:
    """The step a finding cleared at (inf while it holds)."""
    v = x.evidence.get("cleared_step")
    return float(v) if isinstance(v, (int, float)) and not x.active else math.inf


def _falling(f: RunFacts, g: Curve, plateau: Finding) -> bool:
    """Whether the grad norm was below its own band within "just before" of the step the loss went flat."""
    p = plateau_since(plateau)
    lead = max(LEAD * interval_of(f), NEAR * (p - float(g.steps[0])))
    b = bands.band(g.before(p - lead).values[-bands.WINDOW :], bands.resolution(g.values))
    near = g.values[(g.steps >= p) & (g.steps <= p + lead)]
    if b is None or not len(near):
        return False
    low = b.level / math.exp(max(bands.Z * b.spread, math.log(bands.MIN_RATIO)))
    return float(np.median(near[-3:])) < low


def vanishing(f: RunFacts) -> Hypothesis | None:
    """Gradients shrinking by orders of magnitude while the loss stops improving.

    High needs all of: the grad norm's late level 30x or more below its early band and beyond that band's
    noise; the loss not improving after the fall; the LR not decayed there (a decayed LR explains small
    steps and a flat loss); the loss not already flat well before the fall (else "not learning" reads the
    same); the fall not begun by a one-step loss spike (a bad batch that killed units reads the same). A 10x
    fall otherwise is medium.
    """
    fs = [x for x in f.of("grad_vanishing", warn=True) if not layers.per_layer(x)]  # layers: diagnosis/layers.py
    if f.grad is None or len(f.grad.finite()) < 8:
        return None
    g = f.grad.finite()
    base = early_level(f.grad, float(g.steps[-1]) + 1)
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
    # Beyond the early level's own noise (and logging precision), by 30x at least.
    ref = bands.band(g.values[: max(5, len(g) // 5)], bands.resolution(g.values))
    clear = ref is not None and tail <= ref.level / math.exp(max(bands.Z * ref.spread, math.log(30.0)))
    # Separates it from "not learning": when the loss stopped improving, the grad norm was already falling.
    stopped_first = [
        x
        for x in f.of("plateau", warn=True)
        if not evalish(x.metric) and plateau_since(x) < onset and _cleared(x) >= onset and not _falling(f, g, x)
    ]
    # Separates it from a bad batch that killed units: the fall did not begin with a one-step loss spike.
    up = np.nonzero((g.steps < onset) & (g.values >= (ref.level if ref is not None else base)))[0]
    fall_start = float(g.steps[up[-1]]) if len(up) else float(g.steps[0])
    jolt = jolt_in(f, fall_start - LEAD * interval_of(f), onset)
    conf = (
        Confidence.HIGH
        if clear and flat and not lr_decayed and not stopped_first and jolt is None
        else Confidence.MEDIUM
        if ratio >= 10
        else Confidence.LOW
    )
    if jolt is not None:
        stuck += f"; it began with a one-step loss spike at {f.where(jolt.onset_step)}: a bad batch that killed units"
    if stopped_first:
        stuck += f"; but the loss had stopped improving already from {f.where(plateau_since(stopped_first[0]))}"
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
