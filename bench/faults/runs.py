"""One base to files: train it and its twins, write every channel, label each run, and save it."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from bench.faults import configs, frameworks, writers
from bench.faults.labels import consequences, ev, file_events, natural_overfit
from bench.faults.plan import FAMILIES, Base, stronger
from bench.faults.tails import CRASHES
from bench.faults.train import Fault, Trajectory, Twins
from bench.faults.writers import Written

FORMAT_NAMES = {
    "hf-trainer": "hf-trainer-log",
    "hf-state": "hf-trainer-state-json",
    "nanogpt": "nanogpt-log",
    "megatron": "megatron-deepspeed-log",
    "llmc": "llmc-main-log",
    "lightning": "lightning-csvlogger",
    "yolov5": "yolov5-results-csv",
}
STEP_KEYS = {
    "hf-trainer": "logging_steps×n (the printed TrainingArguments)",
    "hf-state": "step",
    "nanogpt": "iter (train) / step (eval); training step s prints as iter s-1",
    "megatron": "iteration",
    "llmc": "s",
    "lightning": "step (global_step - 1 at log time)",
    "yolov5": "epoch (from 0)",
}
CHECK_DELAY = 1800.0
"""A run is judged this long after its healthy twin finished (a finished run read later, a stall seen late)."""


def channels(base: Base, traj: Trajectory, crash: str, n_train: int) -> tuple[list[Written], dict[str, str]]:
    """The run's channel files (format file first) and its config files."""
    cfg, spe = base.cfg, base.spe
    comps = FAMILIES[cfg.family].losses
    comps = comps if len(comps) > 1 else ()
    tail = CRASHES[crash] if traj.end == "crashed" else ""
    fmt = base.fmt
    if fmt == "hf-trainer":
        args = configs.training_arguments(cfg, n_train, spe)
        first = frameworks.hf_log(cfg, traj, comps, args, tail, spe)
    elif fmt == "hf-state":
        first = frameworks.hf_state(cfg, traj, comps, spe)
    elif fmt == "nanogpt":
        first = writers.nanogpt(cfg, traj, comps, configs.nanogpt_header(cfg), tail)
    elif fmt == "megatron":
        first = writers.megatron(cfg, traj, comps, configs.megatron_args(cfg), tail)
    elif fmt == "llmc":
        first = writers.llmc(cfg, traj, comps)
        if tail:
            first.text += tail
    elif fmt == "lightning":
        first = frameworks.lightning(cfg, traj, comps, spe)
    else:
        first = frameworks.yolov5(cfg, traj, comps, spe)
    second = writers.jsonl(cfg, traj, comps) if base.chan2 == "jsonl" else writers.csv_channel(cfg, traj, comps)
    conf = {"config.json": configs.config_json(cfg)}
    if fmt == "lightning":
        conf["hparams.yaml"] = configs.hparams_yaml(cfg)
    if fmt == "yolov5":
        conf.update(configs.yolo_yamls(cfg, cfg.steps // spe))
    return [first, second], conf


def traps(base: Base, healthy: Trajectory) -> list[str]:
    """What in this configuration looks alarming but is not (true of the twins as well)."""
    cfg, sch = base.cfg, base.cfg.schedule
    out = []
    skips = sum(1 for r in healthy.train if r["skipped"])
    if cfg.fp16 and skips:
        out.append(f"fp16 dynamic loss scaling skips {skips} steps (grad norm NaN with a finite loss, scale halved)")
    if cfg.batch_size <= 8:
        out.append(f"batch size {cfg.batch_size}: single-step losses jump several-fold; that is noise, not spikes")
    if cfg.family == "linreg":
        out.append("Student-t label noise: heavy-tailed batch losses are ordinary")
    if sch.warmup:
        out.append(f"LR warm-up over the first {sch.warmup} steps is intended")
    if sch.kind in ("linear", "cosine") and sch.decay_end < cfg.steps:
        out.append(f"the LR sits at its floor from step {sch.decay_end}: a flat loss there is convergence")
    if sch.kind == "step":
        out.append(f"scheduled LR drops ×{sch.gamma} every {sch.step_size} steps are intended")
    if sch.kind == "plateau":
        out.append("ReduceLROnPlateau cuts the LR when eval stops improving: intended")
    if sch.kind == "restarts":
        out.append("cosine warm restarts: the LR jumps back to its peak by design")
    if cfg.resume_at:
        out.append(f"resumed from a checkpoint at step {cfg.resume_at} after a requeue pause of 10-15 min")
    return out


def healthy_ok(files: list[Written]) -> bool:
    """A base whose healthy run did not train properly is dropped (its label would be a guess)."""
    vals = [m["loss"] for _, m in files[1].rows if "loss" in m]
    if len(vals) < 20 or not all(math.isfinite(v) for v in vals):
        return False
    k = max(5, len(vals) // 10)
    return float(np.median(vals[-k:])) < 0.9 * float(np.median(vals[:k]))


def generate_base(base: Base, out: Path) -> list[str]:
    """Train `base` and its twins and write every run under `out`; returns the run ids written."""
    fam = FAMILIES[base.cfg.family](np.random.default_rng([base.cfg.seed, 0]))
    crash = sorted(CRASHES)[base.cfg.seed % len(CRASHES)]
    twins = Twins(fam, base.cfg, [f.step for f in base.faults])
    healthy_files, conf = channels(base, twins.healthy, crash, fam.n_train)
    if not healthy_ok(healthy_files):
        return []
    check_time = twins.healthy.end_time + CHECK_DELAY
    twin_id = f"{base.name}-healthy"
    common = traps(base, twins.healthy)
    # a healthy run that overfits clearly on its own is no healthy twin; a mild rise is an optional event
    mild = [natural_overfit(w.rows) for w in healthy_files]
    if "drop" in mild:
        return []
    optional = [
        [ev("overfit", m, miss=True, note="the healthy run's eval loss drifts 5-15 % above its best")]
        if isinstance(m, float)
        else []
        for m in mild
    ]
    per_twin = [(w.name, o) for w, o in zip(healthy_files, optional, strict=True) if o]
    _save(out / twin_id, base, "none", None, twin_id, healthy_files, conf, twins.healthy, per_twin, common, check_time)
    written = [twin_id]
    for f0 in base.faults:
        fault: Fault | None = f0
        while fault is not None:
            traj = twins.faulty(fault)
            files, _ = channels(base, traj, crash, fam.n_train)
            pairs = zip(files, healthy_files, strict=True)
            events = [file_events(fault.kind, w, h, fault.step, i == 0) for i, (w, h) in enumerate(pairs)]
            if events[0] is not None:
                break
            fault = stronger(fault)
        if fault is None:
            continue
        run_id = f"{base.name}-{fault.kind}"
        # a channel that does not show the fault itself still shows what followed it
        per_file = [
            (w.name, e if e is not None else consequences(w.rows, h.rows, w.axis(fault.step)))
            for w, h, e in zip(files, healthy_files, events, strict=True)
        ]
        for (_, evs), o, w in zip(per_file, optional, files, strict=True):  # the twin's drift, before the fault
            evs += [e for e in o if e["onset_step"] < w.axis(fault.step) or fault.kind == "fp16_burst"]
        notes = list(common)
        if fault.kind == "fp16_burst":
            notes.append(f"a burst of {int(fault.mag)} fp16 overflows from step {fault.step}: skipped steps, not NaN")
        if fault.kind == "crashed":
            notes.append(f"the log ends in a crash ({crash})")
        if any(not e for _, e in per_file[1:]) and fault.kind != "fp16_burst":
            notes.append("the fault does not show in every channel file; such a file carries no event")
        _save(out / run_id, base, fault.kind, fault, twin_id, files, conf, traj, per_file, notes, check_time)
        written.append(run_id)
    return written


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def label_toml(
    base: Base,
    fault: str,
    f: Fault | None,
    twin: str,
    files: list[Written],
    conf: dict[str, str],
    per_file: list[tuple[str, list[dict[str, Any]]]],
    notes: list[str],
    check_time: float,
) -> str:
    cfg = base.cfg
    # the case's verdict: the first required event of the format file, else of any file, else any event
    primary = per_file[0][1] if per_file else []
    everywhere = [e for _, evs in per_file for e in evs]
    required = sorted((e for e in primary if not e["acceptable_to_miss"]), key=lambda e: e["onset_step"])
    required = required or [e for e in everywhere if not e["acceptable_to_miss"]]
    if fault not in ("none", "fp16_burst"):
        required = required or everywhere
    head: dict[str, Any] = {
        "generator": "make_faults",
        "family": cfg.family,
        "split": base.split,
        "seed": cfg.seed,
        "fault": fault,
        "fault_step": f.step if f else None,
        "twin": twin,
        "format": FORMAT_NAMES[base.fmt],
        "step_key": STEP_KEYS[base.fmt],
        "files": [w.name for w in files],
        "config_files": sorted(conf),
        "check_time": check_time,
        "verdict": required[0]["verdict"] if required else "healthy",
    }
    if required:
        head["onset_step"] = required[0]["onset_step"]
    lines = [f"{k} = {_toml(v)}" for k, v in head.items() if v is not None]
    for name, evs in per_file:
        for e in evs:
            lines += ["", "[[events]]", f"file = {_toml(name)}"]
            lines += [f"{k} = {_toml(v)}" for k, v in e.items()]
    lines += ["", "[notes]", f"traps = {_toml('; '.join(notes))}"]
    return "\n".join(lines) + "\n"


def _save(
    d: Path,
    base: Base,
    fault: str,
    f: Fault | None,
    twin: str,
    files: list[Written],
    conf: dict[str, str],
    traj: Trajectory,
    per_file: list[tuple[str, list[dict[str, Any]]]],
    notes: list[str],
    check_time: float,
) -> None:
    d.mkdir(parents=True, exist_ok=True)
    last = traj.train[-1]["t"] if traj.train else base.cfg.t0
    end = traj.end_time if traj.end == "finished" else last
    for w in files:
        (d / w.name).write_text(w.text)
        t = w.mtime if w.mtime is not None and traj.end != "finished" else end
        os.utime(d / w.name, (t, t))
    for name, text in conf.items():
        (d / name).write_text(text)
        os.utime(d / name, (base.cfg.t0, base.cfg.t0))
    (d / "label.toml").write_text(label_toml(base, fault, f, twin, files, conf, per_file, notes, check_time))
