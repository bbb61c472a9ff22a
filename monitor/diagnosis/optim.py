"""Causes in the optimisation itself: the learning rate and bad batches (and the helpers that the gradient
and numerics rules share).

Confidence rules (each rule's docstring says its own in full). High needs direct evidence at the right step
*and* evidence that separates the cause from those it competes with (LR too high, exploding gradients,
a bad batch: the loss leaves its band with the grad norm in all three):
- LR too high: the LR peaked (or kept rising) just before, and the grad norm left its band just before
  the training loss did; not after a schedule break, not from a one-step jolt.
- exploding gradients, vanishing gradients: in `gradients.py`.
- bad batch: one recovered loss spike with a grad spike beyond noise and logging precision, no LR rise.
- fp16 overflow, a NaN/Inf: in `numerics.py`.
Band statistics (scale-free, noise- and precision-aware) are in `bands.py`.
"""

from __future__ import annotations

import math

import numpy as np

from monitor.diagnosis import bands
from monitor.diagnosis.facts import Curve, RunFacts, evalish, fmt
from monitor.diagnosis.model import Confidence, Hypothesis
from monitor.diagnosis.schedule import lr_jumped
from monitor.model import Finding, Severity

LEAD = 3
"""Logging intervals by which a grad norm may leave its band before the loss and still be "just before"."""

NEAR = 0.05
"""Fraction of the run so far within which a grad norm leaving its band still counts as "just before"."""

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
    iv = interval_of(f)
    return next((x for x in f.of("spike") if not evalish(x.metric) and abs(x.onset_step - step) <= 2 * iv), None)


def jolt_in(f: RunFacts, lo: float, hi: float) -> Finding | None:
    """A one-step training-loss spike that began in [lo, hi]: a jolt that may have caused what followed."""
    return next((x for x in f.of("spike") if not evalish(x.metric) and lo <= x.onset_step <= hi), None)


def trouble(f: RunFacts) -> Finding | None:
    """The earliest sign the loss went wrong: divergence, a NaN in the loss, a spike it never came back
    from, or eval clearly worse.

    A divergence that began with a one-point spike and came back is that spike's aftermath, not trouble;
    a spike still unrecovered three logged points and more after it is the loss leaving its band for good."""
    div = [x for x in f.of("divergence", warn=True) if x.active or spike_at(f, x.onset_step) is None]
    cands = div + [x for x in f.of("nan", warn=True) if x.metric == _key(f.loss)]
    if f.loss is not None:
        cands += [
            x
            for x in f.of("spike", warn=True)
            if x.metric == f.loss.key and x.active and len(f.loss.since(x.onset_step)) >= 4
        ]
    if not cands:
        cands = [x for x in f.of("eval_degradation", "overfit") if x.severity >= Severity.BAD and x.active]
    return min(cands, key=lambda x: x.onset_step) if cands else None


def _key(c: Curve | None) -> str | None:
    return c.key if c is not None else None


def early_level(c: Curve, until: float) -> float:
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


def lr_peaked_recently(f: RunFacts, step: float) -> tuple[bool, float, float, float, float] | None:
    """(recent, LR there, its early level, its peak so far, the peak's step): whether the LR at `step` had
    risen 2x or more from its early level and reached its peak so far shortly before (or was still rising)."""
    if f.lr is None:
        return None
    lr = f.lr.finite().before(step + 1e-9)
    if not len(lr):
        return None
    lr_s = float(lr.values[-1])
    early = early_level(f.lr, step)
    top = float(lr.values.max())
    peak_step = float(lr.steps[np.nonzero(lr.values >= 0.95 * top)[0][0]])
    rose = early > 0 and lr_s >= 2.0 * early
    recent = lr_s >= 0.8 * top and step - peak_step <= max(0.35 * peak_step, 10 * lr.interval())
    return rose and recent, lr_s, early, top, peak_step


def _schedule_break(f: RunFacts, before: float, lr: float) -> Finding | None:
    """An LR finding before `before` that brought the LR back up after a decay (a reset, a jump, a climb)
    to `lr`, no higher than the peak the run had already trained at: "too high" does not separate from
    the schedule break then."""
    for x in f.of("lr_anomaly", warn=True):
        peak = x.evidence.get("peak")
        back_up = x.evidence.get("anomaly") in ("reset", "rising_again", "jump")
        if x.onset_step <= before and back_up and isinstance(peak, float) and lr <= 1.05 * peak:
            return x
    return None


def lr_too_high(f: RunFacts) -> Hypothesis | None:
    """Divergence after the LR reached its peak (or kept rising), ideally with the grad norm rising first.

    High needs all of: the *training* loss diverged or went non-finite; the LR had at least doubled from its
    early level and reached its peak so far shortly before (or was still rising); the grad norm left its own
    band and stayed out (a median of three) "just before" the loss left its band: at most `LEAD` logging
    intervals, the time the loss took to show its departure (which bounds how well its onset is known) or
    the last `NEAR` of the run before it, up to one interval after, and strictly before a NaN (after which
    gradients are garbage); no schedule reset or jump brought the LR back to a level the run had already
    trained at; and the divergence did not begin with a one-step loss spike (a bad batch reads the same).
    The LR peak alone, or a grad norm that left its band (beyond noise) without the LR peak, is medium; a
    grad norm up by a raw factor but inside its band, no LR logged, or trouble only in the eval metrics, is
    low with what would settle it.
    """
    t = trouble(f)
    if t is None:
        return None
    s = t.onset_step
    what = f"the loss left its band from {f.where(s)} ({t.kind}: {t.message})"
    peaked = lr_peaked_recently(f, s)
    if peaked is None:
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
    recent, lr_s, early, top, peak_step = peaked
    iv = interval_of(f)
    in_loss = t.kind in ("divergence", "nan", "spike") and not evalish(t.metric)
    if not in_loss:
        what = f"{t.metric} went wrong from {f.where(s)} ({t.kind}: {t.message}), the training loss did not"
    ex = None
    if f.grad is not None:
        # "Just before": a few logging intervals, as long as the loss took to show its departure (its onset
        # is known no better than that), or the last `NEAR` of the run so far, whichever is longest.
        first = float(f.grad.steps[0]) if len(f.grad) else 0.0
        lead = max(LEAD * max(iv, f.grad.interval()), t.step - t.onset_step, NEAR * (s - first))
        ex = bands.left_band(f.grad, s - lead, s - 1e-9 if t.kind == "nan" else s + iv, sustained=True)
    g = grad_rise(f, s + 2 * iv, 2.0)
    brk = _schedule_break(f, s, lr_s)
    rose = early > 0 and lr_s >= 2.0 * early
    parts = [what, f"the LR was {fmt(lr_s)} there" + (f", x{lr_s / early:.3g} its early {fmt(early)}" if rose else "")]
    whole = f.lr.finite() if f.lr is not None else None
    later = float(whole.values.max()) if whole is not None else top
    if whole is not None and later > 1.05 * top:
        at = float(whole.steps[int(np.argmax(whole.values))])
        parts.append(f"it was still rising (to its peak {fmt(later)} at {f.where(at)})")
    elif whole is not None and float(whole.values.min()) >= 0.99 * later:
        parts.append("constant from the first logged step, so no LR change ties it to a step")
    else:
        parts.append(f"it reached its peak {fmt(top)} at {f.where(peak_step)}")
    steps = [peak_step, s]
    if ex is not None:
        ahead = s - ex.step
        when = f"{fmt(ahead)} {f.axis}s before the loss" if ahead > 0 else "at the same step as the loss"
        parts.append(
            f"the grad norm rose out of its band x{ex.ratio:.3g} ({fmt(ex.level)} -> {fmt(ex.value)}) "
            f"at {f.where(ex.step)}, {when}"
        )
        steps.insert(1, ex.step)
    elif g is not None:
        parts.append(
            f"the grad norm rose x{g[2] / g[1]:.3g} ({fmt(g[1])} -> {fmt(g[2])}) at {f.where(g[0])}, "
            "but it did not leave its band just before the loss did"
        )
        steps.insert(1, g[0])
    if brk is not None:
        parts.append(f"the LR came back up after a schedule break at {f.where(brk.onset_step)}")
    jolt = spike_at(f, s)
    if jolt is not None:
        parts.append(
            f"it began with a one-step loss spike at {f.where(jolt.onset_step)}: one bad batch that knocked the "
            "weights off reads the same"
        )
    if recent and in_loss and ex is not None and brk is None and jolt is None:
        conf, weight = Confidence.HIGH, 0.9
    elif recent and in_loss:
        conf, weight = Confidence.MEDIUM, 0.9 if f.grad is None else 0.7
    elif in_loss and ex is not None:
        conf, weight = Confidence.MEDIUM, 0.35
    else:
        conf, weight = Confidence.LOW, 0.25
    settle = ""
    if conf < Confidence.HIGH:
        settle = (
            "log the gradient norm every step; one leaving its band just before the loss would confirm it"
            if f.grad is None or ex is None
            else "a rerun at a lower LR from a checkpoint before the peak would separate it from a schedule break"
        )
    lower = fmt(float(f"{lr_s / 3:.2g}"))
    base = ex.level if ex is not None else g[1] if g is not None else None
    return Hypothesis(
        "lr_too_high",
        "the learning rate is likely too high" if conf >= Confidence.MEDIUM else "possibly a learning rate too high",
        conf,
        "; ".join(parts),
        f"lower the peak LR about 3x ({fmt(lr_s)} -> {lower}) or lengthen the warm-up; keep gradient clipping on",
        f"the loss keeps falling past {f.where(s)}"
        + (f" and the grad norm stays near {fmt(base) if base is not None else 'its early level'}" if f.grad else ""),
        f"rerun from a checkpoint before {f.where(steps[0])} with the lower LR and compare the loss at {f.where(s)}",
        steps=tuple(sorted(set(steps))),
        settle=settle,
        weight=weight,
    )


def bad_batch(f: RunFacts) -> Hypothesis | None:
    """One loss spike with a grad-norm spike at the same step, recovered.

    High needs all of: one or two loss spikes, the first recovered; the grad norm outside its own band
    (noise- and precision-aware) within two logging intervals of it, and further out than any excursion of
    the grad norm before it (one outlier batch, not the run's usual noise); no trouble after it; an LR that was
    not rising into it (else an LR too high reads the same). Recovered without a grad-norm spike is
    medium; so is a spike the loss never came back from when the trouble began at the spike itself, with the
    grad-norm spike and no LR rising into it (a jolt that knocked the weights off; an LR too high builds up
    instead, and a lasting jump is not certain to be one batch); otherwise low.
    """
    spikes = [x for x in f.of("spike") if x.metric == _key(f.loss)]
    if not spikes or len(spikes) > 2:
        return None
    x = spikes[0]
    recovered = not x.active or "cleared_step" in x.evidence
    t = trouble(f)
    followed = t is not None and t.onset_step >= x.onset_step
    gtxt, gspike = "", False
    if f.grad is not None:
        iv = f.grad.interval()
        ex = bands.left_band(f.grad, x.onset_step - 2 * iv, x.onset_step + 2 * iv)
        if ex is not None:
            gspike = bands.exceptional(f.grad, ex)
            gtxt = (
                f"; the grad norm spiked out of its band x{ex.ratio:.3g} ({fmt(ex.level)} -> {fmt(ex.value)}) "
                f"at {f.where(ex.step)}"
            )
    ev = f"{x.message}{gtxt}"
    if followed and t is x:
        ev += "; but the loss never came back from it"
    elif followed and t is not None:
        ev += f"; but the loss went wrong after it ({t.kind} from {f.where(t.onset_step)})"
    # With the LR climbing into the spike, the spike is a symptom of the LR, not of one batch.
    lr_rising = False
    if f.lr is not None and len(f.lr.finite().before(x.onset_step)) >= 3:
        lr_rising = f.lr.finite().at(x.onset_step) >= 2.0 * early_level(f.lr, x.onset_step) and lr_jumped(f) is None
        lr_rising = lr_rising or lr_jumped(f) is not None
    if lr_rising:
        ev += "; the LR had been rising into it"
    iv = interval_of(f)
    others = [
        y
        for y in f.findings
        if y.active
        and (y.severity >= Severity.BAD or y.kind == "stalled")
        and abs(y.onset_step - x.onset_step) > 2 * iv
        and y.kind not in ("spike", "converged")
    ]
    # The loss went wrong at the spike itself (a jump it never came back from), with a grad spike there and
    # no LR rising into it: one jolt that knocked the weights off is the most specific reading.
    at_once = followed and t is not None and abs(t.onset_step - x.onset_step) <= 2 * iv and gspike and not lr_rising
    if recovered and gspike and not followed and not lr_rising:
        conf = Confidence.HIGH
    elif (recovered and not followed) or at_once:
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
        weight=0.6 if not followed else 0.5 if at_once else 0.2,
        # On a run judged healthy it is a note; on a flagged run it may be the very reason it was flagged.
        incidental=recovered and not followed and (f.verdict_healthy or bool(others)),
    )


def interval_of(f: RunFacts) -> float:
    c = f.loss or f.grad
    return c.interval() if c is not None else 1.0
