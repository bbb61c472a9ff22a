"""Causes seen in per-layer gradients (`detectors/layers.py`): dead layers, and single layers whose
gradients explode or vanish while the rest of the network is fine.

Confidence rules: dead layers are medium (all-zero gradients are measured directly, but a layer frozen on
purpose reads the same and only the code tells); one layer exploding or vanishing is low until the loss or
the global grad norm moves at the same steps.
"""

from __future__ import annotations

from detectors.layers import layer_of
from monitor.diagnosis.facts import RunFacts
from monitor.diagnosis.model import Confidence, Hypothesis
from monitor.model import Finding, Role


def per_layer(x: Finding) -> bool:
    """Whether a finding is about one layer's gradients (not the run's global grad norm)."""
    return layer_of(x.metric, Role.OTHER) is not None


def _names(fs: list[Finding]) -> str:
    names = [layer_of(x.metric, Role.OTHER) or x.metric for x in fs]
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def dead_layers(f: RunFacts) -> Hypothesis | None:
    fs = [x for x in f.of("grad_vanishing", warn=True) if per_layer(x) and x.evidence.get("dead_layer")]
    if not fs:
        return None
    first = fs[0]
    return Hypothesis(
        "dead_layers",
        "some layers likely get no gradient at all (dead, frozen or detached)",
        Confidence.MEDIUM,
        f"all-zero gradients in {_names(fs)} from {f.where(first.onset_step)} "
        f"({first.evidence.get('points', '?')} logged points) while other layers still get gradients",
        "check that these parameters are meant to be frozen (requires_grad, a detach() or no_grad in the forward "
        "path); for dead ReLUs lower the learning rate, use LeakyReLU/GELU or re-initialise",
        "non-zero gradient histograms for those layers from the first steps",
        "rerun a few steps with the fix and look at gradients/<layer> (or per-layer grad norms) for them",
        steps=tuple(x.onset_step for x in fs[:6]),
        settle="whether the layers are frozen on purpose is in the training code, not in the metrics",
        weight=0.7,
    )


def layer_gradients(f: RunFacts) -> Hypothesis | None:
    """One layer's (or a few layers') gradients exploding or vanishing on their own."""
    up = [x for x in f.of("grad_explosion", warn=True) if per_layer(x)]
    down = [x for x in f.of("grad_vanishing", warn=True) if per_layer(x) and not x.evidence.get("dead_layer")]
    if not up and not down:
        return None
    fs = up or down
    first = fs[0]
    what = "exploding" if up else "vanishing"
    return Hypothesis(
        f"layer_grad_{what}",
        f"gradients likely {what} in a few layers",
        Confidence.LOW,
        f"{first.message}" + (f"; also {_names(fs[1:])}" if len(fs) > 1 else ""),
        "clip gradients, check the normalisation and initialisation of those layers, or give them a lower LR"
        if up
        else "check for saturated activations before those layers; add a residual path or normalisation",
        f"the per-layer gradient norms of {_names(fs)} stay within ~10x of their usual level",
        "compare the per-layer gradient norms of a rerun with the fix at the same steps",
        steps=tuple(x.onset_step for x in fs[:6]),
        settle="the loss or global grad norm moving at the same steps would show it matters to the run",
        weight=0.4,
    )
