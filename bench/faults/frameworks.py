"""HF Trainer (stdout dicts, trainer_state.json), Lightning `metrics.csv` and YOLOv5 `results.csv` writers."""

from __future__ import annotations

import json
import math
from typing import Any

from bench.faults.train import RunConfig, Trajectory
from bench.faults.writers import Row, Written, _evals, eval_row, hf_filtered_loss, logged, overflow_mark

_EVAL_N = 512


def _epoch(cfg: RunConfig, s: int, spe: int) -> float:
    return round(s / spe, 2)


def _hf_train(cfg: RunConfig, traj: Trajectory, r: dict[str, Any], spe: int, comps: tuple[str, ...]) -> dict:
    s = r["step"]
    d: dict[str, Any] = {"loss": hf_filtered_loss(traj, s, cfg.log_every), "grad_norm": r["gnorm"]}
    for c in comps:
        d[c] = round(sum(x[c] for x in traj.train[s - cfg.log_every : s]) / cfg.log_every, 4)
    d["learning_rate"] = r["lr"]
    d["epoch"] = _epoch(cfg, s, spe)
    return d


def _hf_eval(cfg: RunConfig, ev: dict[str, Any], spe: int, prev_t: float) -> dict[str, Any]:
    d: dict[str, Any] = {k: v for k, v in ev.items() if k.startswith("eval_")}
    rt = round(ev["t"] - prev_t, 4)
    d.update(
        {
            "eval_runtime": rt,
            "eval_samples_per_second": round(_EVAL_N / rt, 3),
            "eval_steps_per_second": round(_EVAL_N / 64 / rt, 3),
            "epoch": _epoch(cfg, ev["step"], spe),
        }
    )
    return d


def _hf_row(d: dict[str, Any], comps: tuple[str, ...]) -> dict[str, float]:
    row = {"loss": d["loss"], "lr": d["learning_rate"], "gnorm": d["grad_norm"]}
    row.update({c: d[c] for c in comps})
    return row


def hf_log(cfg: RunConfig, traj: Trajectory, comps: tuple[str, ...], header: str, tail: str, spe: int) -> Written:
    """HF Trainer stdout: `TrainingArguments(...)`, then `{'loss': ..}` / `{'eval_loss': ..}` dicts."""
    out, rows = [header], []
    evs = {e["step"]: e for e in _evals(cfg, traj, False)}
    for r in logged(cfg, traj):
        s = r["step"]
        if cfg.resume_at and s - cfg.log_every < cfg.resume_at <= s:
            out.append("  Continuing training from checkpoint, will skip to saved global_step\n")
            out.append(f"  Continuing training from epoch {int((cfg.resume_at - 1) // spe)}\n")
            out.append(f"  Continuing training from global step {cfg.resume_at - 1}\n")
        d = _hf_train(cfg, traj, r, spe, comps)
        out.append(repr(d) + "\n")
        rows.append((float(s), overflow_mark(r, _hf_row(d, comps))))
        if s in evs:
            out.append("***** Running Evaluation *****\n")
            out.append(f"  Num examples = {_EVAL_N}\n  Batch size = 64\n")
            e = _hf_eval(cfg, evs[s], spe, r["t"])
            out.append(repr(e) + "\n")
            rows.append((float(s), eval_row(evs[s])))
    if traj.end == "finished":
        out.append("\n\nTraining completed. Do not forget to share your model on huggingface.co/models =)\n\n\n")
        out.append(repr(_summary(cfg, traj, spe)) + "\n")
    out.append(tail)
    return Written("train.log", "".join(out), rows)


def _summary(cfg: RunConfig, traj: Trajectory, spe: int) -> dict[str, Any]:
    rt = round(traj.end_time - cfg.t0, 4)
    finite = [r["loss"] for r in traj.train if math.isfinite(r["loss"])]
    return {
        "train_runtime": rt,
        "train_samples_per_second": round(cfg.steps * cfg.batch_size / rt, 3),
        "train_steps_per_second": round(cfg.steps / rt, 3),
        "train_loss": sum(finite) / max(1, len(finite)),
        "epoch": _epoch(cfg, cfg.steps, spe),
    }


def hf_state(cfg: RunConfig, traj: Trajectory, comps: tuple[str, ...], spe: int) -> Written:
    """`trainer_state.json` as HF saves it (at the end, or at the last checkpoint before a crash or hang)."""
    save = 100 if cfg.steps <= 2000 else 500
    last = traj.train[-1]["step"] if traj.train else 0
    upto = last if traj.end == "finished" else last - last % save
    history: list[dict[str, Any]] = []
    rows: list[Row] = []
    evs = {e["step"]: e for e in _evals(cfg, traj, False)}
    prev_t = cfg.t0
    for r in logged(cfg, traj):
        s = r["step"]
        if s > upto:
            break
        d = _hf_train(cfg, traj, r, spe, comps)
        d["epoch"] = s / spe
        d["step"] = s
        history.append(dict(sorted(d.items())))
        rows.append((float(s), overflow_mark(r, _hf_row(d, comps))))
        if s in evs:
            e = _hf_eval(cfg, evs[s], spe, r["t"])
            e["epoch"] = s / spe
            e["step"] = s
            history.append(dict(sorted(e.items())))
            rows.append((float(s), eval_row(evs[s])))
        prev_t = r["t"]
    if traj.end == "finished":
        summ = _summary(cfg, traj, spe)
        summ.update({"epoch": cfg.steps / spe, "step": cfg.steps, "total_flos": 0.0})
        history.append(dict(sorted(summ.items())))
    del prev_t
    doc = {
        "best_metric": None,
        "best_model_checkpoint": None,
        "epoch": upto / spe,
        "eval_steps": cfg.eval_every,
        "global_step": upto,
        "is_hyper_param_search": False,
        "is_local_process_zero": True,
        "is_world_process_zero": True,
        "log_history": history,
        "logging_steps": cfg.log_every,
        "max_steps": cfg.steps,
        "num_input_tokens_seen": 0,
        "num_train_epochs": -(-cfg.steps // spe),
        "save_steps": save,
        "total_flos": 0.0,
        "train_batch_size": cfg.batch_size,
        "trial_name": None,
        "trial_params": None,
    }
    saved = traj.train[upto - 1]["t"] if 0 < upto <= len(traj.train) else cfg.t0
    return Written("trainer_state.json", json.dumps(doc, indent=2) + "\n", rows, stream=False, mtime=saved)


def lightning(cfg: RunConfig, traj: Trajectory, comps: tuple[str, ...], spe: int) -> Written:
    """Lightning CSVLogger `metrics.csv`: sparse rows, columns sorted, `step` = global_step - 1 at log time."""
    opt = {"sgd": "SGD", "momentum": "SGD", "adam": "Adam", "adamw": "AdamW"}[cfg.optimizer]
    lr_col = f"lr-{opt}"
    evs = {e["step"]: e for e in _evals(cfg, traj, False)}
    ekeys = sorted(k for k in (traj.evals[0] if traj.evals else {}) if k.startswith("eval_"))
    vcols = {k: "val_" + k[5:] for k in ekeys}
    tcols = ["train_loss_step"] + [f"train_{c}_step" for c in comps]
    cols = sorted(["epoch", "step", lr_col, *tcols, *vcols.values()])
    lines = [",".join(cols)]
    rows: list[Row] = []

    def emit(vals: dict[str, Any]) -> None:
        lines.append(",".join(_cell(vals.get(c)) for c in cols))

    for r in logged(cfg, traj):
        s = r["step"]
        e = (s - 1) // spe
        v = {"epoch": e, "step": s - 1, lr_col: r["lr"], "train_loss_step": r["loss"]}
        v.update({f"train_{c}_step": r[c] for c in comps})
        emit(v)
        row = {"loss": r["loss"], "lr": r["lr"]}
        row.update({c: r[c] for c in comps})
        rows.append((float(s - 1), row))
        if s in evs:
            ev = evs[s]
            emit({"epoch": e, "step": s - 1, **{vcols[k]: ev[k] for k in ekeys}})
            rows.append((float(s - 1), eval_row(ev)))
    return Written("metrics.csv", "\n".join(lines) + "\n", rows, axis=lambda s: float(s - 1))


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, int):
        return str(v)
    return repr(float(v)) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))


_YOLO_COLS = (
    "epoch",
    "train/box_loss",
    "train/obj_loss",
    "train/cls_loss",
    "metrics/precision",
    "metrics/recall",
    "metrics/mAP_0.5",
    "metrics/mAP_0.5:0.95",
    "val/box_loss",
    "val/obj_loss",
    "val/cls_loss",
    "x/lr0",
    "x/lr1",
    "x/lr2",
)


def yolov5(cfg: RunConfig, traj: Trajectory, comps: tuple[str, ...], spe: int) -> Written:
    """YOLOv5 `results.csv`: one row per epoch, every field `%20.5g`, epoch counted from 0."""
    n = len(_YOLO_COLS)
    lines = [("%20s," * n % _YOLO_COLS).rstrip(",")]
    rows: list[Row] = []
    evs = {e["step"]: e for e in traj.evals}
    done = len(traj.train) // spe
    for e in range(done):
        part = traj.train[e * spe : (e + 1) * spe]
        ev = evs.get((e + 1) * spe)
        if ev is None:
            break
        tr = [sum(x[c] for x in part) / spe for c in ("box_loss", "obj_loss", "cls_loss")]
        lr = part[-1]["lr"]
        vals = [e, *tr, ev["eval_precision"], ev["eval_recall"], ev["eval_mAP_0.5"], ev["eval_mAP_0.5:0.95"]]
        vals += [ev["eval_box_loss"], ev["eval_obj_loss"], ev["eval_cls_loss"], lr, lr, lr]
        lines.append(("%20.5g," * n % tuple(vals)).rstrip(","))
        shown = [float(f"{v:.5g}") for v in vals]
        row = {"loss": sum(shown[1:4]), "box_loss": shown[1], "obj_loss": shown[2], "cls_loss": shown[3], "lr": lr}
        rows.append((float(e), row))
        erow = {"eval_loss": sum(shown[8:11]), "eval_box_loss": shown[8], "eval_obj_loss": shown[9]}
        erow.update({"eval_cls_loss": shown[10], "eval_precision": shown[4], "eval_mAP_0.5": shown[6]})
        rows.append((float(e), erow))
    return Written("results.csv", "\n".join(lines) + "\n", rows, axis=lambda s: float((s - 1) // spe))
