"""Which runs exist: per family, seeded base configurations, each with a healthy run and a few faults.

Everything is drawn from seeded generators keyed by (family, base index), so the plan is the same on
every machine. Families split the benchmark: `DEV_FAMILIES` are for tuning, the rest for testing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.faults.families import MLP, AutoEncoder, CharLM, Family, LinReg, MatrixFactorisation, Softmax
from bench.faults.models_det import Conv1D, Detect
from bench.faults.models_seq import RNN, AttnPool, SparseLogReg
from bench.faults.optim import Schedule
from bench.faults.train import Fault, RunConfig

_ORDER = (Softmax, MLP, CharLM, Detect, LinReg, AutoEncoder, MatrixFactorisation, Conv1D, SparseLogReg, AttnPool, RNN)
FAMILIES: dict[str, type[Family]] = {c.name: c for c in _ORDER}
# New families go at the end: a family's position seeds its bases, so earlier families stay byte-identical.
DEV_FAMILIES = ("softmax", "mlp", "charlm", "detect", "logreg", "attn", "rnn")
TEST_FAMILIES = ("linreg", "autoenc", "mf", "conv1d")

TEXT_FORMATS = ("hf-trainer", "nanogpt", "megatron", "llmc")
FORMATS_SINGLE = ("hf-trainer", "nanogpt", "megatron", "llmc", "hf-state", "lightning")
FORMATS_MULTI = ("yolov5", "lightning", "hf-trainer", "yolov5", "hf-state")
SCHEDULES = {
    "hf-trainer": ("constant", "linear", "cosine", "restarts", "plateau"),
    "hf-state": ("constant", "linear", "cosine", "restarts", "plateau"),
    "nanogpt": ("constant", "cosine"),
    "megatron": ("constant", "linear", "cosine", "step"),
    "llmc": ("constant", "linear", "cosine"),
    "lightning": ("constant", "linear", "cosine", "step", "plateau", "restarts"),
    "yolov5": ("linear", "cosine"),
}
#: A learning rate that trains each family well with each optimiser (at batch size 32).
BASE_LR = {
    "softmax": {"sgd": 0.5, "momentum": 0.05, "adam": 0.01, "adamw": 0.01},
    "mlp": {"sgd": 0.3, "momentum": 0.03, "adam": 0.01, "adamw": 0.01},
    "charlm": {"sgd": 0.5, "momentum": 0.05, "adam": 0.005, "adamw": 0.005},
    "detect": {"sgd": 0.3, "momentum": 0.03, "adam": 0.005, "adamw": 0.005},
    "linreg": {"sgd": 0.02, "momentum": 0.002, "adam": 0.05, "adamw": 0.05},
    "autoenc": {"sgd": 0.5, "momentum": 0.05, "adam": 0.01, "adamw": 0.01},
    "mf": {"adam": 0.02, "adamw": 0.02},
    "conv1d": {"sgd": 0.1, "momentum": 0.01, "adam": 0.003, "adamw": 0.003},
    "logreg": {"sgd": 0.5, "momentum": 0.05, "adam": 0.02, "adamw": 0.02},
    "attn": {"sgd": 0.1, "momentum": 0.01, "adam": 0.003, "adamw": 0.003},
    "rnn": {"sgd": 0.3, "momentum": 0.03, "adam": 0.01, "adamw": 0.01},
}
FAULT_CYCLE = (
    "nan_loss",
    "spike",
    "lr_grows",
    "stalled",
    "overfit",
    "grad_explosion",
    "nan_eval",
    "warmup_never_ends",
    "plateau",
    "crashed",
    "eval_shift",
    "lr_jump",
    "inf_loss",
    "grad_vanishing",
    "no_decay",
    "schedule_reset",
    "nan_subloss",
    "fp16_burst",
)


@dataclass(frozen=True)
class Base:
    """One healthy configuration and the faults its twins carry."""

    name: str
    cfg: RunConfig
    fmt: str
    chan2: str
    spe: int
    faults: tuple[Fault, ...]

    @property
    def split(self) -> str:
        return "dev" if self.cfg.family in DEV_FAMILIES else "test"


def compatible(kind: str, cfg: RunConfig, fmt: str, multi: bool) -> bool:
    sch = cfg.schedule
    return {
        "nan_subloss": multi,
        "fp16_burst": cfg.fp16,
        "warmup_never_ends": sch.warmup > 0,
        "no_decay": sch.warmup > 0 and sch.kind in ("linear", "cosine", "step"),
        "schedule_reset": bool(cfg.resume_at) and sch.kind != "constant",
        "crashed": fmt in TEXT_FORMATS,
    }.get(kind, True)


def make_base(family: str, i: int, quick: bool) -> Base:
    fi = list(FAMILIES).index(family)
    rng = np.random.default_rng([fi, i, 7])
    multi = family in ("detect", "conv1d")
    fmts = FORMATS_MULTI if multi else FORMATS_SINGLE
    fmt = fmts[(i + fi) % len(fmts)]
    opts = list(BASE_LR[family])
    opt = opts[(i * 3 + fi) % len(opts)]
    bs = int(rng.choice([2, 4, 8, 16, 32, 32, 64, 64, 128, 256, 512]))
    lr = BASE_LR[family][opt] * 2 ** rng.uniform(-1.0, 0.3)
    if opt in ("sgd", "momentum"):
        lr *= min(1.0, (bs / 32) ** 0.5)
    lr = float(f"{lr:.3g}")
    if fmt == "yolov5":
        spe = int(rng.choice([4, 5, 8, 10]))
        epochs = 40 if quick else int(rng.integers(60, 200))
        steps, log_every, eval_every = spe * epochs, spe, spe
    else:
        spe = int(rng.choice([50, 100, 128, 200]))
        steps = 300 if quick else int(rng.choice([400, 600, 800, 1200, 1600, 2000, 3000]))
        log_every = int(rng.choice([n for n in (1, 2, 5, 10, 20) if 100 <= steps / n <= 1500]))
        k = [m for m in (5, 10, 20, 25) if 8 <= steps / (m * log_every) <= 60] or [5]
        eval_every = log_every * int(rng.choice(k))
    kind = str(rng.choice(SCHEDULES[fmt]))
    warm = int(steps * float(rng.choice([0.0, 0.02, 0.05, 0.1]))) if kind != "plateau" else 0
    if fmt == "yolov5":
        warm = spe * int(rng.choice([2, 3]))
    floor = lr * float(rng.choice([0.0, 0.01, 0.1])) if kind in ("linear", "cosine", "restarts") else 0.0
    decay_end = int(steps * float(rng.choice([1.0, 1.0, 0.7])))
    sched = Schedule(
        kind,
        lr,
        warmup=warm,
        floor=float(f"{floor:.3g}"),
        decay_end=decay_end,
        step_size=max(1, steps // 4),
        gamma=0.3,
        patience=int(rng.integers(2, 5)),
        t0=max(10, steps // 7),
    )
    fp16 = bool(rng.random() < 0.3)
    resume = int(steps * rng.uniform(0.35, 0.6)) + 1 if rng.random() < 0.3 else None
    cfg = RunConfig(
        family=family,
        seed=int(rng.integers(0, 2**31)),
        steps=steps,
        batch_size=bs,
        optimizer=opt,
        weight_decay=float(rng.choice([0.0, 0.0, 0.01, 0.1])) if opt != "sgd" else 0.0,
        schedule=sched,
        log_every=log_every,
        eval_every=eval_every,
        fp16=fp16,
        clip=float(rng.choice([1.0, 5.0])) if rng.random() < 0.5 else None,
        resume_at=resume,
        t0=1767225600.0 + 86400 * (fi * 50 + i),
        dt=float(f"{rng.uniform(0.05, 2.0):.3g}"),
    )
    faults: list[Fault] = []
    n_faults = 2 if quick else 3
    # faults only some configurations can carry get a fair chance first, the rest rotate
    for special, p in (
        ("schedule_reset", 0.7),
        ("fp16_burst", 0.35),
        ("nan_subloss", 0.6),
        ("no_decay", 0.4),
        ("crashed", 0.2),
    ):
        if len(faults) < n_faults - 1 and compatible(special, cfg, fmt, multi) and rng.random() < p:
            faults.append(Fault(special, _fault_step(special, cfg, rng), _fault_mag(special, rng)))
    j = i * 3 + fi * 5
    while len(faults) < n_faults:
        kind_f = FAULT_CYCLE[j % len(FAULT_CYCLE)]
        j += 1
        if not compatible(kind_f, cfg, fmt, multi) or any(f.kind == kind_f for f in faults):
            continue
        faults.append(Fault(kind_f, _fault_step(kind_f, cfg, rng), _fault_mag(kind_f, rng)))
    chan2 = "jsonl" if (i + fi) % 3 else "csv"
    return Base(f"{family}-{i:03d}", cfg, fmt, chan2, spe, tuple(faults))


def _fault_step(kind: str, cfg: RunConfig, rng: np.random.Generator) -> int:
    if kind in ("warmup_never_ends", "no_decay"):
        return cfg.schedule.warmup + 1
    if kind == "schedule_reset":
        return int(cfg.resume_at or 1)
    if kind == "plateau":  # while the loss still falls clearly, so that stopping shows
        return max(cfg.schedule.warmup, int(cfg.steps * rng.uniform(0.04, 0.1))) + 1
    return int(cfg.steps * rng.uniform(0.3, 0.65)) + 1


def _fault_mag(kind: str, rng: np.random.Generator) -> float:
    return {
        "spike": float(rng.choice([0.3, 0.6, 1.5])),
        "lr_jump": float(rng.choice([8.0, 20.0, 50.0])),
        "lr_grows": float(rng.choice([300.0, 1000.0])),
        "overfit": 32.0,
        "fp16_burst": float(rng.integers(2, 7)),
        "nan_subloss": float(rng.integers(0, 3)),
    }.get(kind, 1.0)


def stronger(f: Fault) -> Fault | None:
    """The same fault made stronger, for a retry when it did not show; None when it cannot be."""
    if f.kind == "spike":
        return Fault(f.kind, f.step, f.mag * 2.5)
    if f.kind == "lr_grows":
        return Fault(f.kind, f.step, f.mag * 10)
    if f.kind == "lr_jump":
        return Fault(f.kind, f.step, f.mag * 3)
    if f.kind == "overfit" and f.mag > 8:
        return Fault(f.kind, f.step, f.mag / 2)
    return None


def plan(quick: bool = False, bases_per_family: int = 13) -> list[Base]:
    n = 1 if quick else bases_per_family
    return [make_base(fam, i, quick) for fam in FAMILIES for i in range(n)]
