"""One run as a report sees it: verdict, findings, hypotheses, curves on the chosen step axis, config."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor import runstate
from monitor.check import CheckResult
from monitor.diagnosis import Hypothesis, diagnose, facts_of
from monitor.diagnosis.facts import Curve, RunFacts
from monitor.model import Finding, Role

#: Step keys a run may log besides the one its parser chose (ARCHITECTURE "Step axis").
STEP_CANDIDATES = ("_step", "global_step", "trainer/global_step", "train/global_step", "epoch", "train/step", "step")


@dataclass
class RunSummary:
    """What the report shows of one run."""

    target: str
    name: str
    verdict: str
    decision: str
    reason: str
    state: str
    step_key: str
    """The step axis the run was read and plotted on."""
    step_candidates: tuple[str, ...]
    last_step: float | None
    findings: tuple[Finding, ...]
    hypotheses: tuple[Hypothesis, ...]
    facts: RunFacts
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Curve] = field(default_factory=dict)
    error: str | None = None
    summary: dict[str, float] = field(default_factory=dict)
    """Final values kept apart from the curves (a W&B run's summary): ranking falls back on them."""

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity >= 1 and f.kind not in ("converged", "overflow_skip")]


def _restep(c: Curve | None, axis: Curve | None) -> Curve | None:
    """A curve put on another logged step axis (its value at each step), dropping points without one."""
    if c is None or axis is None:
        return c
    x = np.array([axis.at(s) for s in c.steps])
    ok = np.isfinite(x)
    return Curve(c.key, x[ok], c.values[ok])


def summarise(r: CheckResult, step_key: str | None = None) -> RunSummary:
    """A report's view of one checked run; `step_key` re-plots it on another logged key (e.g. `epoch`)."""
    a = r.analysis
    if a is None:
        empty = RunFacts(findings=())
        return RunSummary(
            r.target, r.target, "error", "-", r.error or "", "unreadable", "-", (), None, (), (), empty, error=r.error
        )
    j = a.judgement()
    state = r.state or runstate.RunState(runstate.LIVE)
    facts = facts_of(a)
    hyps = diagnose(facts)
    metrics = dict(facts.others)
    cands = tuple(k for k in STEP_CANDIDATES if k in metrics)
    axis_key = a.info.step_key
    if step_key and step_key in metrics and step_key != axis_key:
        axis = metrics[step_key]
        from dataclasses import replace

        facts = replace(
            facts,
            loss=_restep(facts.loss, axis),
            eval_loss=_restep(facts.eval_loss, axis),
            eval_up=_restep(facts.eval_up, axis),
            lr=_restep(facts.lr, axis),
            grad=_restep(facts.grad, axis),
            scale=_restep(facts.scale, axis),
        )
        metrics = {k: c2 for k, c in metrics.items() if (c2 := _restep(c, axis)) is not None}
        axis_key = step_key
    return RunSummary(
        target=r.target,
        name=a.info.name,
        verdict=runstate.shown_verdict(state, j.verdict),
        decision=str(j.decision),
        reason=j.reason,
        state=state.word,
        step_key=axis_key,
        step_candidates=tuple(dict.fromkeys((a.info.step_key, *cands))),
        last_step=a.detectors.last_step,
        findings=j.findings,
        hypotheses=hyps,
        facts=facts,
        config=_flat(a.info.config),
        metrics=metrics,
        summary={k: float(v) for k, v in a.info.summary.items() if isinstance(v, int | float) and math.isfinite(v)},
    )


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        elif isinstance(v, (str, int, float, bool)) or v is None:
            out[key] = v
    return out


def stability(s: RunSummary) -> float | None:
    """Relative noise of the training loss over its last quarter (robust: MAD of step-to-step changes / level)."""
    c = s.facts.loss
    if c is None:
        return None
    v = c.finite().values
    if len(v) < 8:
        return None
    tail = v[-max(8, len(v) // 4) :]
    level = float(np.median(np.abs(tail)))
    if not level > 0:
        return None
    d = np.diff(tail)
    return float(np.median(np.abs(d - np.median(d))) / level)


def role_curve(s: RunSummary, role: Role) -> Curve | None:
    f = s.facts
    return {
        Role.TRAIN_LOSS: f.loss,
        Role.EVAL_LOSS: f.eval_loss,
        Role.EVAL_UP: f.eval_up,
        Role.LR: f.lr,
        Role.GRAD_NORM: f.grad,
    }.get(role)


def finite_or_none(x: float) -> float | None:
    return x if x == x and not math.isinf(x) else None
