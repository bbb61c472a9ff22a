"""Framework-style logs of a trajectory, line shapes copied from `corpus/real/FORMATS.md`.

Every writer returns the file's text and the rows it *shows* (axis value, metrics under normalised
names: `loss`, `lr`, `gnorm`, `eval_loss`, …), so labels are computed from what a reader of that
file can see (HF's `nan_inf_filter` hides a NaN step loss; nanoGPT prints no LR or grad norm).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.faults.train import RunConfig, Trajectory

Row = tuple[float, dict[str, float]]


@dataclass
class Written:
    """One channel file: its text and what it shows."""

    name: str
    text: str
    rows: list[Row] = field(default_factory=list)
    axis: Callable[[int], float] = float
    """Maps a training step to this file's step axis."""
    stream: bool = True
    """Appended line by line while training (a document rewritten whole is not)."""
    mtime: float | None = None
    """When the file was last written, where that is not the run's last record (a checkpoint)."""


def when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def logged(cfg: RunConfig, traj: Trajectory, every: int | None = None) -> list[dict[str, Any]]:
    n = every or cfg.log_every
    return [r for r in traj.train if r["step"] % n == 0]


def interval(traj: Trajectory, s: int, n: int) -> list[dict[str, Any]]:
    return traj.train[max(0, s - n) : s]


OVERFLOW = "_overflow"
"""Row marker: this grad norm is an fp16 overflow skip with a finite loss (a trap, not a NaN event)."""


def overflow_mark(r: dict[str, Any], row: dict[str, float]) -> dict[str, float]:
    if r["skipped"] and math.isfinite(r["loss"]):
        row[OVERFLOW] = 1.0
    return row


def train_row(r: dict[str, Any], comps: tuple[str, ...], loss: float | None = None) -> dict[str, float]:
    row = {"loss": r["loss"] if loss is None else loss, "lr": r["lr"], "gnorm": r["gnorm"]}
    for c in comps:
        row[c] = r[c]
    return overflow_mark(r, row)


def eval_row(ev: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in ev.items() if k.startswith("eval_")}


def _evals(cfg: RunConfig, traj: Trajectory, with_zero: bool) -> list[dict[str, Any]]:
    last = traj.train[-1]["step"] if traj.train else 0
    return [e for e in traj.evals if (with_zero or e["step"] > 0) and e["step"] <= last]


def hf_filtered_loss(traj: Trajectory, s: int, n: int) -> float:
    """The `loss` HF Trainer logs over the last `n` steps: its nan_inf_filter swaps a non-finite step loss
    for the interval's running average (so after the weights go NaN it logs 0.0)."""
    total = 0.0
    steps = interval(traj, s, n)
    for k, r in enumerate(steps):
        x = r["loss"]
        total += x if math.isfinite(x) else total / (1 + k)
    return round(total / max(1, len(steps)), 4)


def jsonl(cfg: RunConfig, traj: Trajectory, comps: tuple[str, ...]) -> Written:
    """A W&B-style JSON Lines metrics file with a wall-clock `timestamp` on every line."""
    out, rows = [], []
    evs = {e["step"]: e for e in _evals(cfg, traj, True)}
    if 0 in evs:
        out.append(_jline({"step": 0, "timestamp": evs[0]["t"], **_eval_keys(evs[0])}))
        rows.append((0.0, eval_row(evs[0])))
    for r in logged(cfg, traj):
        d: dict[str, Any] = {"step": r["step"], "timestamp": r["t"], "train/loss": r["loss"], "train/lr": r["lr"]}
        d["train/grad_norm"] = r["gnorm"]
        if cfg.fp16:
            d["train/loss_scale"] = r["scale"]
        for c in comps:
            d[f"train/{c}"] = r[c]
        out.append(_jline(d))
        rows.append((float(r["step"]), train_row(r, comps)))
        ev = evs.get(r["step"])
        if ev is not None:
            out.append(_jline({"step": r["step"], "timestamp": ev["t"], **_eval_keys(ev)}))
            rows.append((float(r["step"]), eval_row(ev)))
    return Written("metrics.jsonl", "".join(out), rows)


def _jline(d: dict[str, Any]) -> str:
    return json.dumps(d) + "\n"


def _eval_keys(ev: dict[str, Any]) -> dict[str, float]:
    return {"eval/" + k[5:]: v for k, v in ev.items() if k.startswith("eval_")}


def csv_channel(cfg: RunConfig, traj: Trajectory, comps: tuple[str, ...]) -> Written:
    """A CSV metrics file with a header: one row per logged step, eval columns filled where evaluated."""
    evs = {e["step"]: e for e in _evals(cfg, traj, True)}
    ekeys = sorted(_eval_keys(traj.evals[0])) if traj.evals else []
    tkeys = ["train/loss", "train/lr", "train/grad_norm"] + (["train/loss_scale"] if cfg.fp16 else [])
    tkeys += [f"train/{c}" for c in comps]
    lines = [",".join(["step", "timestamp", *tkeys, *ekeys])]
    rows: list[Row] = []
    if 0 in evs:
        e0 = _eval_keys(evs[0])
        lines.append(",".join(["0", _num(evs[0]["t"])] + [""] * len(tkeys) + [_num(e0[k]) for k in ekeys]))
        rows.append((0.0, eval_row(evs[0])))
    for r in logged(cfg, traj):
        vals = [r["loss"], r["lr"], r["gnorm"]] + ([r["scale"]] if cfg.fp16 else []) + [r[c] for c in comps]
        ev = evs.get(r["step"])
        e = _eval_keys(ev) if ev else {}
        t = ev["t"] if ev else r["t"]
        lines.append(",".join([str(r["step"]), _num(t), *map(_num, vals), *(_num(e[k]) if e else "" for k in ekeys)]))
        rows.append((float(r["step"]), train_row(r, comps)))
        if ev:
            rows.append((float(r["step"]), eval_row(ev)))
    return Written("metrics_log.csv", "\n".join(lines) + "\n", rows)


def _num(x: float) -> str:
    return repr(float(x)) if math.isfinite(x) else ("nan" if x != x else ("inf" if x > 0 else "-inf"))


def llmc(cfg: RunConfig, traj: Trajectory, comps: tuple[str, ...]) -> Written:
    """llm.c `main.log`: `s:N trl:X lr:Y norm:Z` and `s:N tel:X`."""
    out, rows = [], []
    evs = {e["step"]: e for e in _evals(cfg, traj, True)}
    if 0 in evs:
        out.append(f"s:0 tel:{evs[0]['eval_loss']:.4f}\n")
        rows.append((0.0, {"eval_loss": evs[0]["eval_loss"]}))
    for r in logged(cfg, traj):
        s = r["step"]
        out.append(f"s:{s} trl:{r['loss']:.4f} lr:{r['lr']:.6f} norm:{r['gnorm']:.2f}\n")
        rows.append((float(s), overflow_mark(r, {"loss": r["loss"], "lr": round(r["lr"], 6), "gnorm": r["gnorm"]})))
        if s in evs:
            out.append(f"s:{s} tel:{evs[s]['eval_loss']:.4f}\n")
            rows.append((float(s), {"eval_loss": evs[s]["eval_loss"]}))
    return Written("main.log", "".join(out), rows)


def nanogpt(cfg: RunConfig, traj: Trajectory, comps: tuple[str, ...], header: str, tail: str) -> Written:
    """nanoGPT console: `step N: train loss X, val loss Y` and `iter N: loss X, time Tms, mfu M%` (no LR).

    nanoGPT counts from iter 0 and evaluates before the update of the same number, so training step s
    prints as `iter s-1` and the eval after step s as `step s`.
    """
    out, rows = [header], []
    evs = {e["step"]: e for e in _evals(cfg, traj, True)}
    mfu = -1.0
    prev_t = cfg.t0
    for r in traj.train:
        s = r["step"]
        it = s - 1
        dt = (r["t"] - prev_t) * 1000
        prev_t = r["t"]
        if cfg.resume_at and s == cfg.resume_at:
            out.append(f"Resuming training from out-{cfg.family}\n")
        ev = evs.get(it)
        if ev is not None and it % cfg.eval_every == 0:
            out.append(f"step {it}: train loss {ev['train_eval_loss']:.4f}, val loss {ev['eval_loss']:.4f}\n")
            rows.append((float(it), {"eval_loss": ev["eval_loss"], "train_eval_loss": ev["train_eval_loss"]}))
        if it % cfg.log_every:
            continue
        if it >= 5 * cfg.log_every:
            m = 0.02 * cfg.dt / max(1e-9, dt / 1000)
            mfu = m if mfu < 0 else 0.9 * mfu + 0.1 * m
        out.append(f"iter {it}: loss {r['loss']:.4f}, time {dt:.2f}ms, mfu {mfu * 100:.2f}%\n")
        rows.append((float(it), {"loss": r["loss"]}))
    end = cfg.steps
    if traj.end == "finished" and end in evs and end % cfg.eval_every == 0:  # the eval at iter max_iters
        ev = evs[end]
        out.append(f"step {end}: train loss {ev['train_eval_loss']:.4f}, val loss {ev['eval_loss']:.4f}\n")
        rows.append((float(end), {"eval_loss": ev["eval_loss"], "train_eval_loss": ev["train_eval_loss"]}))
    out.append(tail)
    return Written("train.log", "".join(out), rows, axis=lambda s: float(s - 1))


def megatron(cfg: RunConfig, traj: Trajectory, comps: tuple[str, ...], header: str, tail: str) -> Written:
    """Megatron-LM iteration lines (interval averages of `lm loss`), validation lines and datetime markers."""
    out, rows = [header, f"[before the start of training step] datetime: {when(cfg.t0)} \n"], []
    evs = {e["step"]: e for e in _evals(cfg, traj, False)}
    n, total = cfg.log_every, cfg.steps
    prev_t = cfg.t0
    for r in logged(cfg, traj):
        s = r["step"]
        if cfg.resume_at and s - n < cfg.resume_at <= s:
            out.append(f" loading checkpoint from /checkpoints/{cfg.family} at iteration {cfg.resume_at - 1}\n")
            out.append(
                f"  successfully loaded checkpoint from /checkpoints/{cfg.family} at iteration {cfg.resume_at - 1}\n"
            )
        part = interval(traj, s, n)
        kept = [x["loss"] for x in part if not x["skipped"]]
        nans = sum(1 for x in part if not math.isfinite(x["loss"]))
        skipped = sum(1 for x in part if x["skipped"])
        ms = (r["t"] - prev_t) * 1000 / len(part)
        prev_t = r["t"]
        line = (
            f" iteration {s:8d}/{total:8d} | consumed samples: {s * cfg.batch_size:12d} | "
            f"elapsed time per iteration (ms): {ms:.1f} | learning rate: {r['lr']:.3E} | "
            f"global batch size: {cfg.batch_size:5d} |"
        )
        row: dict[str, float] = {"lr": float(f"{r['lr']:.3E}")}
        if kept:
            avg = sum(kept) / len(kept)
            line += f" lm loss: {avg:.6E} |"
            row["loss"] = avg
        if cfg.fp16:
            line += f" loss scale: {r['scale']:.1f} |"
        good = [x["gnorm"] for x in part if not x["skipped"]]
        if good:
            line += f" grad norm: {good[-1]:.3f} |"
            row["gnorm"] = good[-1]
        line += (
            f" num zeros: 0.0 | number of skipped iterations: {skipped:3d} | number of nan iterations: {nans:3d} |\n"
        )
        out.append(line)
        rows.append((float(s), row))
        if s in evs:
            v = evs[s]["eval_loss"]
            ppl = math.exp(min(v, 700.0)) if math.isfinite(v) else v
            out.append("-" * 99 + "\n")
            out.append(f" validation loss at iteration {s} | lm loss value: {v:.6E} | lm loss PPL: {ppl:.6E} | \n")
            out.append("-" * 99 + "\n")
            rows.append((float(s), {"eval_loss": v}))
    if traj.end == "finished":
        out.append(f"[after training is done] datetime: {when(traj.end_time)} \n")
    out.append(tail)
    return Written("train.log", "".join(out), rows)
