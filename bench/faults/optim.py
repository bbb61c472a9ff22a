"""Optimisers (SGD, momentum, Adam, AdamW), LR schedules and fp16-style dynamic loss scaling."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Params = dict[str, np.ndarray]

FP16_MAX = 65504.0


class Optimizer:
    """One of `sgd`, `momentum`, `adam`, `adamw`; state is plain arrays so a deep copy forks it."""

    def __init__(self, kind: str, params: Params, weight_decay: float = 0.0) -> None:
        self.kind = kind
        self.wd = weight_decay
        self.t = 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()} if kind in ("adam", "adamw") else {}

    def step(self, p: Params, g: Params, lr: float, frozen: frozenset[str] = frozenset()) -> None:
        """Update `p` in place; parameters named in `frozen` are left alone."""
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        for k, gk in g.items():
            if k in frozen:
                continue
            if self.kind == "sgd":
                p[k] -= lr * (gk + self.wd * p[k])
            elif self.kind == "momentum":
                self.m[k] = 0.9 * self.m[k] + gk + self.wd * p[k]
                p[k] -= lr * self.m[k]
            else:
                if self.kind == "adam" and self.wd:
                    gk = gk + self.wd * p[k]
                self.m[k] = b1 * self.m[k] + (1 - b1) * gk
                self.v[k] = b2 * self.v[k] + (1 - b2) * gk * gk
                mh = self.m[k] / (1 - b1**self.t)
                vh = self.v[k] / (1 - b2**self.t)
                p[k] -= lr * mh / (np.sqrt(vh) + eps)
                if self.kind == "adamw":
                    p[k] -= lr * self.wd * p[k]


@dataclass
class Schedule:
    """A declared LR schedule: what the run's config says, and what a correct scheduler does.

    kinds: `constant`, `linear` (warm-up, then linear decay to the floor at `decay_end`), `cosine`
    (warm-up, cosine to the floor at `decay_end`), `step` (×`gamma` every `step_size`), `plateau`
    (ReduceLROnPlateau on the eval loss: ×`factor` after `patience` evals without a 1 % improvement),
    `restarts` (cosine with warm restarts, period `t0` doubling each cycle).
    """

    kind: str
    peak: float
    warmup: int = 0
    floor: float = 0.0
    decay_end: int = 0
    step_size: int = 0
    gamma: float = 0.5
    factor: float = 0.5
    patience: int = 3
    t0: int = 0
    state: dict[str, Any] = field(default_factory=dict)

    def lr(self, step: float) -> float:
        """The learning rate at scheduler step `step` (1-based) as the declared schedule has it."""
        if self.warmup and step <= self.warmup:
            return self.peak * step / self.warmup
        s = step - self.warmup
        if self.kind == "constant":
            return self.peak
        if self.kind in ("linear", "cosine"):
            span = max(1, self.decay_end - self.warmup)
            x = min(1.0, s / span)
            w = 1 - x if self.kind == "linear" else 0.5 * (1 + math.cos(math.pi * x))
            return self.floor + (self.peak - self.floor) * w
        if self.kind == "step":
            return self.peak * self.gamma ** (s // self.step_size)
        if self.kind == "plateau":
            return float(self.state.get("lr", self.peak))
        if self.kind == "restarts":
            t, period = s, self.t0
            while t >= period:
                t -= period
                period *= 2
            return self.floor + (self.peak - self.floor) * 0.5 * (1 + math.cos(math.pi * t / period))
        raise ValueError(self.kind)

    def on_eval(self, loss: float) -> None:
        """ReduceLROnPlateau's bookkeeping (other kinds ignore evals)."""
        if self.kind != "plateau":
            return
        st = self.state
        best = st.get("best", math.inf)
        if loss < best * 0.99:
            st["best"], st["bad"] = loss, 0
        else:
            st["bad"] = st.get("bad", 0) + 1
            if st["bad"] > self.patience:
                st["lr"] = max(self.floor, st.get("lr", self.peak) * self.factor)
                st["bad"] = 0

    def declared(self) -> dict[str, Any]:
        """The schedule as a config file would state it."""
        out: dict[str, Any] = {"lr_scheduler": self.kind, "learning_rate": self.peak, "warmup_steps": self.warmup}
        if self.kind in ("linear", "cosine", "restarts"):
            out["min_lr"] = self.floor
        if self.kind in ("linear", "cosine"):
            out["lr_decay_steps"] = self.decay_end
        if self.kind == "step":
            out["step_size"], out["gamma"] = self.step_size, self.gamma
        if self.kind == "plateau":
            out["factor"], out["patience"] = self.factor, self.patience
        if self.kind == "restarts":
            out["t0"], out["t_mult"] = self.t0, 2
        return out


@dataclass
class LossScaler:
    """fp16 dynamic loss scaling: an overflow skips the step and halves the scale; growth after N clean steps."""

    scale: float = 65536.0
    growth_interval: int = 200
    good: int = 0

    def overflowed(self, grads: Params) -> bool:
        """Whether the scaled gradients would overflow fp16 (or are already non-finite)."""
        worst = max(float(np.max(np.abs(g))) if g.size else 0.0 for g in grads.values())
        return not math.isfinite(worst) or worst * self.scale > FP16_MAX

    def update(self, overflow: bool) -> None:
        if overflow:
            self.scale = max(1.0, self.scale / 2)
            self.good = 0
        else:
            self.good += 1
            if self.good >= self.growth_interval:
                self.scale *= 2
                self.good = 0
