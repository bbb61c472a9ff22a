"""Causes in the numerics: fp16/bf16 overflow (the loss scaler skipping steps) and NaN/Inf in the loss or
the gradients.

Confidence rules (each rule's docstring says its own in full):
- fp16 overflow: high when the loss scale dropped at a skipped step (or collapsed), with the grad norm inside
  its band around the skips (gradients growing out of it overflow too: then medium).
- a NaN/Inf with no build-up: medium at most; low and incidental when only the grad norm was non-finite and
  came back finite with the loss finite throughout (weights that held a NaN never come back).
"""

from __future__ import annotations

import numpy as np

from monitor.diagnosis import bands
from monitor.diagnosis.facts import Curve, RunFacts, evalish, fmt
from monitor.diagnosis.model import Confidence, Hypothesis
from monitor.diagnosis.optim import LEAD, NEAR, _key, grad_rise, interval_of, trouble


def fp16_overflow(f: RunFacts) -> Hypothesis | None:
    """fp16/bf16 overflow: NaN grad norm with a finite loss (skipped steps), the loss scale dropping.

    High when the loss scale dropped at a skipped step (within a logging interval), or collapsed 64x below
    its peak while the loss stayed finite (a loss that went non-finite collapses the scale too), and the
    grad norm did not leave its band (sustained, beyond noise) "just before" or after the first skip or drop
    (gradients that grow out of their band overflow fp16 too: the skips may be their first symptom); NaN
    grad norms without a logged loss scale, or scale drops without skips, are medium (a NaN gradient may be
    a real one; a dynamic scaler also halves now and then by design).
    """
    # Isolated skips only: a NaN grad norm that persists is a real NaN, not the scaler at work.
    lasting = [x.onset_step for x in f.of("nan", warn=True) if not evalish(x.metric)]
    skips = [x for x in f.of("overflow_skip") if not any(abs(x.onset_step - n) <= 3 * interval_of(f) for n in lasting)]
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
    iv = interval_of(f)
    # Direct evidence: the scaler halved its scale at a skipped step (a NaN grad norm alone may be a real NaN).
    siv = f.scale.interval() if f.scale is not None else iv
    at_skip = any(abs(d[0] - x.onset_step) <= max(iv, siv) for d in drops for x in skips)
    if skips and f.scale is None:
        parts.append("no loss scale is logged to confirm the scaler skipped them")
    elif skips and not at_skip:
        parts.append("the logged loss scale did not drop at them")
    # Harmful when the loss went wrong soon after a skip, or the skips are many.
    after = [x.onset_step for x in f.of("spike") if not evalish(x.metric)]
    if t is not None and t.kind in ("divergence", "nan"):
        after.append(t.onset_step)
    # A dynamic scaler halves its scale now and then by design; a scale that collapses is not that.
    collapsed = f.scale is not None and bool(drops) and _collapsed(f.scale)
    # A scale that collapsed because the loss itself went non-finite is the NaN's consequence, not overflow.
    loss_nan = next((x for x in f.of("nan", warn=True) if x.metric == _key(f.loss)), None)
    if collapsed and loss_nan is not None and loss_nan.onset_step <= drops[-1][0]:
        collapsed = False
        parts.append(f"but the loss itself went non-finite from {f.where(loss_nan.onset_step)}")
    harmful = (
        len(skips) > 10 or collapsed or (bool(skips) and any(0 <= a - st <= 10 * iv for a in after for st in steps))
    )
    # Gradients growing out of their band overflow fp16 as well: skips that come with that growth may be
    # its first symptom (exploding gradients, an LR too high), not a cause of their own.
    grew = _grad_left_near(f, min(steps)) if steps else None
    if grew is not None:
        parts.append(
            f"the grad norm left its band x{grew.ratio:.3g} ({fmt(grew.level)} -> {fmt(grew.value)}) at "
            f"{f.where(grew.step)}, as the scaler skipped: growing gradients overflow too, so they may be the cause"
        )
    return Hypothesis(
        "fp16_overflow",
        "fp16 overflow: the loss scaler skipped steps" + ("" if harmful else " (harmless when rare)"),
        Confidence.HIGH if (at_skip or collapsed) and grew is None else Confidence.MEDIUM,
        "; ".join(parts) + (f"; fp16={f.config.get('fp16')}" if "fp16" in f.config else ""),
        "nothing while skips are rare; if they repeat: train in bf16, lower the LR, or lower the scaler's growth",
        "fewer NaN grad norms; the loss scale settles instead of dropping",
        "count skipped steps (NaN grad norms) per 1000 steps on the next run",
        steps=tuple(sorted(set(steps))),
        weight=0.5 if not harmful else 0.7,
        incidental=not harmful,
    )


def _grad_left_near(f: RunFacts, step: float) -> bands.Exit | None:
    """Where the grad norm rose out of its band for good (median of three) "just before" or after `step`."""
    if f.grad is None or len(f.grad.finite()) < 8:
        return None
    g = f.grad.finite()
    lead = max(LEAD * interval_of(f), NEAR * (step - float(g.steps[0])))
    return bands.left_band(f.grad, step - lead, step + lead, sustained=True)


def _collapsed(scale: Curve) -> bool:
    """The loss scale ended 64x or more below its peak."""
    v = scale.finite().values
    return len(v) >= 2 and v.max() > 0 and v[-1] <= v.max() / 64


def nonfinite(f: RunFacts) -> Hypothesis | None:
    """A NaN/Inf in the training loss, one of its parts or the gradients that came abruptly, with no build-up.

    Medium at most: where the first non-finite tensor came from (weights, activations, the batch) is not in
    the metrics. Low, and incidental, when only the grad norm was non-finite and came back finite with the
    loss finite throughout: weights that held a NaN never come back, so that was a skipped step or one
    batch's gradient."""
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
            return Hypothesis(
                "nonfinite",
                "a NaN/Inf from the very start: the initialisation, the data or the numeric setup",
                Confidence.MEDIUM,
                f"{x.message}; {build}",
                "run the first step in fp32 with torch.autograd.set_detect_anomaly(True); assert the weights are "
                "finite after initialisation (or after loading the checkpoint) and the first batch is finite",
                "a finite loss at the first step",
                "rerun a few steps with the asserts on: the first one that fails names the tensor",
                steps=(n,),
                settle="which tensor is non-finite first (weights after init, the batch, or an activation)",
                weight=0.7,
            )
        conf, weight = Confidence.MEDIUM, 0.65
    if x.metric == _key(f.grad):
        part = " (seen in the gradients; a logged loss average may hide NaN steps)"
    else:
        part = "" if x.metric == _key(f.loss) else f" (first in {x.metric})"
    # Weights that held a NaN never come back: a grad norm finite again, with the loss finite throughout,
    # was a skipped step (fp16 loss scaling) or one batch's gradient, not a NaN in the weights.
    passed = (
        x.metric == _key(f.grad)
        and (not x.active or "cleared_step" in x.evidence)
        and f.loss is not None
        and len(f.loss.since(n)) > 0
        and bool(np.all(np.isfinite(f.loss.since(n).values)))
    )
    if passed:
        conf, weight = Confidence.LOW, 0.2
        build += "; the grad norm came back finite and the loss stayed finite, so the weights never held it"
    return Hypothesis(
        "nonfinite",
        (
            "a NaN/Inf possibly entered the gradients once"
            if passed
            else "a NaN/Inf likely entered the weights or inputs"
        )
        + part,
        conf,
        f"{x.message}; {build}",
        "find the first non-finite tensor (torch.autograd.set_detect_anomaly, or assert finite "
        "inputs/labels); guard log/div with eps",
        "no NaN/Inf at that step on a rerun from the last checkpoint before it",
        f"rerun from a checkpoint before {f.where(n)} with anomaly detection on",
        steps=(n,),
        settle="the first non-finite tensor (weights, activations or the batch) would settle where it came from",
        weight=weight,
        incidental=passed,
    )
