"""What the diagnosis reads about a run: its findings, its metric curves by role and its config.

Built from a `RunAnalysis` in memory (no I/O, no clock); the rules in this package only see `RunFacts`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from monitor.model import Finding, Role, Severity
from monitor.roles import RoleMap, primary

if TYPE_CHECKING:
    from monitor.analysis import RunAnalysis


@dataclass(frozen=True)
class Curve:
    """One metric's held points, sorted by step (NaN/Inf kept)."""

    key: str
    steps: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.steps)

    def finite(self) -> Curve:
        ok = np.isfinite(self.values)
        return Curve(self.key, self.steps[ok], self.values[ok])

    def before(self, step: float) -> Curve:
        ok = self.steps < step
        return Curve(self.key, self.steps[ok], self.values[ok])

    def since(self, step: float) -> Curve:
        ok = self.steps >= step
        return Curve(self.key, self.steps[ok], self.values[ok])

    def at(self, step: float) -> float:
        """The last value logged at or before `step` (NaN when none)."""
        i = int(np.searchsorted(self.steps, step, side="right")) - 1
        return float(self.values[i]) if i >= 0 else math.nan

    def median(self) -> float:
        v = self.values[np.isfinite(self.values)]
        return float(np.median(v)) if len(v) else math.nan

    def first_nonfinite(self) -> float | None:
        bad = ~np.isfinite(self.values)
        return float(self.steps[bad][0]) if bad.any() else None

    def interval(self) -> float:
        """Median steps between logged points."""
        d = np.diff(self.steps)
        d = d[d > 0]
        return float(np.median(d)) if len(d) else 1.0


@dataclass(frozen=True)
class RunFacts:
    """Everything a rule may look at."""

    findings: tuple[Finding, ...]
    loss: Curve | None = None
    eval_loss: Curve | None = None
    eval_up: Curve | None = None
    eval_down: Curve | None = None
    """An eval metric where lower is better that is not a loss (WER, perplexity)."""
    lr: Curve | None = None
    grad: Curve | None = None
    scale: Curve | None = None
    epoch: Curve | None = None
    times: Curve | None = None
    """Arrival time (epoch seconds) per step, where the source told it."""
    others: Mapping[str, Curve] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    axis: str = "step"
    total_steps: float | None = None
    verdict_healthy: bool = True

    def of(self, *kinds: str, warn: bool = False) -> list[Finding]:
        """Findings of these kinds (only warn or bad ones with `warn`), earliest onset first."""
        out = [f for f in self.findings if f.kind in kinds and (not warn or f.severity >= Severity.WARN)]
        return sorted(out, key=lambda f: f.onset_step)

    def where(self, step: float) -> str:
        """`step 1200` (or `epoch 3`), with the epoch too when one is logged."""
        s = f"{self.axis} {fmt(step)}"
        if self.epoch is not None and self.axis != "epoch":
            ep = self.epoch.at(step)
            if ep == ep:
                s += f" (epoch {ep:.3g})"
        return s


def fmt(x: float) -> str:
    """A number as people write it: 1200, 0.0003, 3.2e-07."""
    if x != x or x in (math.inf, -math.inf):
        return str(x)
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.4g}"


def curve(steps: Any, values: Any, key: str = "") -> Curve:
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    order = np.argsort(s, kind="stable")
    return Curve(key, s[order], v[order])


def facts_of(analysis: RunAnalysis) -> RunFacts:
    """The facts of a run as its analysis holds them now."""
    store = analysis.store
    curves = {k: curve(*s.series(), key=k) for k, s in store.metrics.items()}
    roles: RoleMap = analysis.roles

    def by_role(role: Role) -> Curve | None:
        key = primary(curves.keys(), roles, role)
        if role is Role.TRAIN_LOSS:
            # The loss logged most often (nanoGPT prints `train loss` at evals and `loss` every step).
            cands = [k for k in curves if roles(k) is role]
            watched = analysis.key_for(role)
            if watched in curves:
                cands.append(watched)
            key = max(cands, key=lambda k: (len(curves[k]), k == watched), default=None)
        return curves.get(key) if key else None

    times = None
    if len(store.times) >= 2:
        st, tt = zip(*store.times, strict=True)
        times = curve(st, tt, key="time")
    epoch = next((curves[k] for k in ("epoch", "train/epoch", "trainer/epoch") if k in curves), None)
    judgement = analysis.judgement()
    return RunFacts(
        findings=judgement.findings,
        loss=by_role(Role.TRAIN_LOSS),
        eval_loss=by_role(Role.EVAL_LOSS),
        eval_up=by_role(Role.EVAL_UP),
        eval_down=by_role(Role.EVAL_DOWN),
        lr=by_role(Role.LR),
        grad=by_role(Role.GRAD_NORM),
        scale=by_role(Role.LOSS_SCALE),
        epoch=epoch,
        times=times,
        others=curves,
        # The config the detectors were declared: the one saved beside the metrics file (read when the
        # analysis was made), overridden by what the log itself printed.
        config={**(getattr(analysis, "_beside", None) or {}), **analysis.info.config},
        axis=analysis.info.axis,
        total_steps=analysis.info.total_steps,
        verdict_healthy=int(judgement.verdict) == 0,
    )


def evalish(metric: str) -> bool:
    """An eval/validation/test metric (by name)."""
    m = metric.lower()
    return m.startswith(("eval", "val", "test", "metrics/")) or "/val" in m or "_val" in m or "/eval" in m
