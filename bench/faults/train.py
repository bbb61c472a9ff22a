"""The training loop: minibatch training of a family's model, with a fault switched on at a known step.

A healthy run is trained once; its state is copied just before each fault step, and every faulty
twin continues from that copy. So a fault run is byte-identical to its healthy twin up to the fault,
and the shared prefix is computed once.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.faults.families import Family
from bench.faults.optim import LossScaler, Optimizer, Schedule

#: Fault kinds and what they do from their step on (see `Trainer.step`).
FAULTS = (
    "nan_loss",  # a NaN lands in a weight every prediction uses: the loss is NaN from then on
    "inf_loss",  # an Inf lands there instead (Inf loss for squared errors, NaN for softmax)
    "nan_subloss",  # a NaN in one head's weight: one of the box/obj/cls losses (and what shares it) goes NaN
    "nan_eval",  # a NaN sample in the validation set: eval loss NaN, training fine
    "fp16_burst",  # fp16 overflow for a few steps: grad norm NaN with a finite loss, steps skipped (healthy)
    "lr_grows",  # the LR grows geometrically (×`mag` by the end)
    "lr_jump",  # the LR is multiplied by `mag` and stays there
    "warmup_never_ends",  # the warm-up ramp keeps rising past warmup_steps
    "no_decay",  # the LR stays at its peak after warm-up although the config declares a decay
    "schedule_reset",  # after a resume the scheduler starts again from step 0
    "spike",  # one bad update: every weight jolted by `mag` × its own spread
    "grad_explosion",  # gradients scaled up geometrically (a loss scale that is never unscaled)
    "grad_vanishing",  # gradients scaled down geometrically
    "plateau",  # only the output bias keeps learning (an optimiser rebuilt over the wrong parameters)
    "overfit",  # the sampler draws only `mag` training examples from then on
    "eval_shift",  # the training data drifts away from what validation measures
    "stalled",  # the process hangs: the log stops
    "crashed",  # the process dies: the log ends in a traceback or `Killed`
)


@dataclass(frozen=True)
class Fault:
    """A fault of `kind` switched on at step `step` with strength `mag`."""

    kind: str
    step: int
    mag: float = 1.0


@dataclass
class RunConfig:
    """Everything that decides a healthy run (the config files say most of it)."""

    family: str
    seed: int
    steps: int
    batch_size: int
    optimizer: str
    weight_decay: float
    schedule: Schedule
    log_every: int
    eval_every: int
    fp16: bool
    clip: float | None
    resume_at: int | None
    t0: float
    dt: float


@dataclass
class Trajectory:
    """What a run did: one train record per step, eval records, and how it ended."""

    train: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    end: str = "finished"
    """`finished`, `stalled` or `crashed`."""
    end_time: float = 0.0


@dataclass
class State:
    """All that changes while training; deep-copied to fork a twin."""

    params: dict[str, np.ndarray]
    opt: Optimizer
    sched: Schedule
    scaler: LossScaler
    rng: np.random.Generator
    trng: np.random.Generator
    t: float
    traj: Trajectory


class Trainer:
    """Trains one run of `cfg` on `fam`, optionally with `fault`."""

    def __init__(self, fam: Family, cfg: RunConfig, fault: Fault | None = None) -> None:
        self.fam, self.cfg, self.fault = fam, cfg, fault
        f = fault
        rest = max(1, cfg.steps - f.step) if f else 1
        if f and f.kind == "grad_explosion":
            self.gfactor = math.log(1e4) / (0.25 * rest)
        elif f and f.kind == "grad_vanishing":
            self.gfactor = math.log(1e-5) / (0.25 * rest)
        elif f and f.kind == "lr_grows":
            self.gfactor = math.log(f.mag) / rest
        else:
            self.gfactor = 0.0
        if f and f.kind == "plateau":
            self.frozen = frozenset(k for k in fam.init(np.random.default_rng(0)) if k != fam.shared)
        else:
            self.frozen = frozenset()
        self.pool = np.arange(fam.n_train - int(f.mag), fam.n_train) if f and f.kind == "overfit" else None

    def start(self) -> State:
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, 1])
        params = self.fam.init(rng)
        st = State(
            params,
            Optimizer(cfg.optimizer, params, cfg.weight_decay),
            copy.deepcopy(cfg.schedule),
            LossScaler(),
            rng,
            np.random.default_rng([cfg.seed, 2]),
            cfg.t0,
            Trajectory(),
        )
        self._eval(st, 0)
        return st

    def _on(self, kind: str, s: int) -> bool:
        f = self.fault
        return f is not None and f.kind == kind and s >= f.step

    def lr_at(self, st: State, s: int) -> float:
        cfg, f = self.cfg, self.fault
        sched = st.sched
        step: float = s
        if self._on("schedule_reset", s) and cfg.resume_at:
            step = s - cfg.resume_at + 1
        if self._on("warmup_never_ends", s):
            return sched.peak * s / max(1, sched.warmup)
        if self._on("no_decay", s):
            return sched.peak
        lr = sched.lr(step)
        if f is not None and s >= f.step:
            if f.kind == "lr_jump":
                lr *= f.mag
            elif f.kind == "lr_grows":
                lr *= math.exp(self.gfactor * (s - f.step))
        return lr

    def run(self, st: State, until: int) -> None:
        """Train steps after the last one done, up to and including `until`."""
        first = len(st.traj.train) + 1
        with np.errstate(all="ignore"):
            for s in range(first, until + 1):
                self.step(st, s)

    def step(self, st: State, s: int) -> None:
        fam, cfg, f = self.fam, self.cfg, self.fault
        p = st.params
        if f is not None and s == f.step:
            if f.kind in ("nan_loss", "inf_loss"):
                p[fam.shared].flat[0] = math.nan if f.kind == "nan_loss" else math.inf
            elif f.kind == "nan_subloss":
                p[fam.heads[fam.losses[int(f.mag) % len(fam.losses)]]].flat[0] = math.nan
            elif f.kind == "spike":
                for k, v in p.items():
                    spread = float(np.std(v)) or 0.1
                    p[k] = v + st.rng.normal(0, f.mag * spread, v.shape)
        if cfg.resume_at and s == cfg.resume_at:
            st.t += 600 + 300 * st.trng.random()  # requeued: the job waited before it resumed
        lr = self.lr_at(st, s)
        if self.pool is not None and s >= f.step:  # type: ignore[union-attr]
            idx = st.rng.choice(self.pool, cfg.batch_size)
        else:
            idx = st.rng.integers(0, fam.n_train, cfg.batch_size)
        drift = 0.0
        if self._on("eval_shift", s):
            drift = min(1.0, (s - f.step + 1) / (0.3 * max(1, cfg.steps - f.step)))  # type: ignore[union-attr]
        X, Y = fam.batch(idx, drift, st.rng)
        losses, g, _ = fam.loss_grad(p, X, Y)
        loss = sum(losses.values())
        if self.gfactor and f is not None and f.kind.startswith("grad_"):
            mult = math.exp(max(-27.6, min(27.6, self.gfactor * (s - f.step + 1))))
            g = {k: v * mult for k, v in g.items()}
        gnorm = math.sqrt(sum(float(np.sum(v * v)) for v in g.values()))
        skipped = False
        if cfg.fp16:
            burst = self._on("fp16_burst", s) and s < f.step + int(f.mag)  # type: ignore[union-attr]
            skipped = burst or st.scaler.overflowed(g)
            st.scaler.update(skipped)
        rec: dict[str, Any] = {"step": s, "loss": loss, "lr": lr, "scale": st.scaler.scale if cfg.fp16 else None}
        if len(losses) > 1:
            rec.update(losses)
        if skipped:
            rec["gnorm"], rec["skipped"] = math.nan, True
        else:
            rec["gnorm"], rec["skipped"] = gnorm, False
            if cfg.clip and gnorm > cfg.clip:
                g = {k: v * (cfg.clip / gnorm) for k, v in g.items()}
            st.opt.step(p, g, lr, self.frozen if self._on("plateau", s) else frozenset())
        st.t += cfg.dt * (1 + 0.05 * abs(st.trng.normal()))
        rec["t"] = round(st.t, 3)
        st.traj.train.append(rec)
        if s % cfg.eval_every == 0 or s == cfg.steps:
            self._eval(st, s)

    def _eval(self, st: State, s: int) -> None:
        ev: dict[str, Any] = {"step": s}
        ev.update(self.fam.evaluate(st.params))
        if self._on("nan_eval", s):
            n = len(self.fam.Yv)
            for k in list(ev):
                if k.startswith("eval_") and k.endswith("loss"):
                    ev[k] = math.nan
                elif k.startswith("eval_"):
                    ev[k] = ev[k] * (n - 1) / n
        st.sched.on_eval(ev["eval_loss"])
        st.t += 3 * self.cfg.dt + 0.5
        ev["t"] = round(st.t, 3)
        st.traj.evals.append(ev)


class Twins:
    """A healthy run and faulty twins forked from copies of its state just before each fault step."""

    def __init__(self, fam: Family, cfg: RunConfig, fault_steps: list[int]) -> None:
        self.fam, self.cfg = fam, cfg
        healthy = Trainer(fam, cfg)
        st = healthy.start()
        self.forks: dict[int, State] = {}
        for step in sorted(set(fault_steps)):
            healthy.run(st, step - 1)
            self.forks[step] = copy.deepcopy(st)
        healthy.run(st, cfg.steps)
        st.traj.end_time = st.t
        self.healthy = st.traj

    def faulty(self, f: Fault) -> Trajectory:
        """The run with `f` (stalled and crashed twins are the healthy run cut short at the fault)."""
        base = copy.deepcopy(self.forks[f.step])
        if f.kind in ("stalled", "crashed"):
            base.traj.end = f.kind
            base.traj.end_time = base.t
            return base.traj
        Trainer(self.fam, self.cfg, f).run(base, self.cfg.steps)
        base.traj.end_time = base.t
        return base.traj
