"""Root-cause hypotheses for a run's trouble, from its findings, metrics and config (pure: no I/O, no clock).

`diagnose(facts)` returns hypotheses ranked surest and most specific first; `diagnose_analysis(a)` does
the same for a `RunAnalysis`. Each says its cause, confidence, evidence (steps and numbers), fix,
expected effect and how to verify it. Nothing here is certain: confidence says how direct the evidence is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from monitor.diagnosis import gradients, layers, numerics, optim, progress, rl, schedule
from monitor.diagnosis.facts import RunFacts, facts_of
from monitor.diagnosis.model import Confidence, Hypothesis

if TYPE_CHECKING:
    from monitor.analysis import RunAnalysis

__all__ = ["Confidence", "Hypothesis", "RunFacts", "diagnose", "diagnose_analysis", "facts_of"]

_RULES: tuple[Callable[[RunFacts], Hypothesis | list[Hypothesis] | None], ...] = (
    optim.lr_too_high,
    schedule.lr_schedule,
    gradients.exploding,
    gradients.vanishing,
    optim.bad_batch,
    numerics.fp16_overflow,
    numerics.nonfinite,
    progress.not_learning,
    progress.overfitting,
    progress.eval_data,
    progress.stalled,
    progress.throughput,
    progress.crashed,
    rl.rl_lens,  # RL / LLM lens (monitor/diagnosis/rl.py)
    layers.dead_layers,  # per-layer gradients (monitor/diagnosis/layers.py)
    layers.layer_gradients,
)


#: Causes whose symptoms overlap (a loss that leaves its band with the grad norm): each rule's high already
#: asks for the evidence that separates it from the others; two of them high at once means it did not.
_COMPETING = (frozenset({"lr_too_high", "exploding_gradients", "bad_batch"}),)

#: Causes kept (as notes) on a run judged healthy.
_SCHEDULE_NOTES = frozenset({"schedule_reset", "no_decay", "warmup_never_ends", "lr_jump"})


def diagnose(facts: RunFacts) -> tuple[Hypothesis, ...]:
    """Every hypothesis the facts support, surest and most specific first (one per cause)."""
    best: dict[str, Hypothesis] = {}
    for rule in _RULES:
        got = rule(facts)
        for h in got if isinstance(got, list) else [got] if got is not None else []:
            if h.cause_id not in best or h.rank_key() > best[h.cause_id].rank_key():
                best[h.cause_id] = h
    best = _separate(best)
    if facts.verdict_healthy:
        # A healthy run has no trouble to explain, only incidents worth knowing: what happened without
        # harm, and an LR schedule that looks wrong although the loss is fine so far.
        best = {
            k: h if h.incidental else replace(h, incidental=True)
            for k, h in best.items()
            if h.incidental or (k in _SCHEDULE_NOTES and h.confidence >= Confidence.MEDIUM)
        }
    return tuple(sorted(best.values(), key=Hypothesis.rank_key, reverse=True))


def _separate(best: dict[str, Hypothesis]) -> dict[str, Hypothesis]:
    """Competing causes that are both high are both capped at medium, each naming the other."""
    out = dict(best)
    for group in _COMPETING:
        high = sorted(
            k for k in group if k in best and best[k].confidence == Confidence.HIGH and not best[k].incidental
        )
        if len(high) < 2:
            continue
        for k in high:
            others = ", ".join(best[o].cause for o in high if o != k)
            h = best[k]
            out[k] = replace(
                h,
                confidence=Confidence.MEDIUM,
                evidence=f"{h.evidence}; the same evidence fits another cause ({others}), so neither is certain",
                settle=h.settle or "a rerun that changes only this cause (from a checkpoint before it) would tell",
            )
    return out


def diagnose_analysis(analysis: RunAnalysis) -> tuple[Hypothesis, ...]:
    """The hypotheses for a run as its analysis holds it now."""
    return diagnose(facts_of(analysis))
