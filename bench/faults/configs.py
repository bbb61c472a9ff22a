"""A run's configuration where its framework writes it: printed arguments at the top of a log, files beside it."""

from __future__ import annotations

import json
from typing import Any

from bench.faults.train import RunConfig

HF_SCHEDULERS = {
    "constant": "constant_with_warmup",
    "linear": "linear",
    "cosine": "cosine",
    "restarts": "cosine_with_restarts",
    "plateau": "reduce_lr_on_plateau",
}
HF_OPTIM = {"adamw": "adamw_torch", "adam": "adamw_torch", "sgd": "sgd", "momentum": "sgd"}


def declared(cfg: RunConfig) -> dict[str, Any]:
    """The whole declared config, as `config.json` holds it."""
    d: dict[str, Any] = {
        "model": cfg.family,
        "seed": cfg.seed,
        "max_steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "optimizer": cfg.optimizer,
        "weight_decay": cfg.weight_decay,
        "momentum": 0.9 if cfg.optimizer == "momentum" else 0.0,
    }
    d.update(cfg.schedule.declared())
    d.update(
        {
            "fp16": cfg.fp16,
            "max_grad_norm": cfg.clip,
            "log_interval": cfg.log_every,
            "eval_interval": cfg.eval_every,
        }
    )
    if cfg.resume_at:
        d["resume_from_checkpoint"] = f"checkpoints/step_{cfg.resume_at - 1}"
    return d


def config_json(cfg: RunConfig) -> str:
    return json.dumps(declared(cfg), indent=2) + "\n"


def training_arguments(cfg: RunConfig, n_train: int, spe: int) -> str:
    """HF Trainer's `TrainingArguments(...)` print and its `***** Running training *****` banner."""
    sch = cfg.schedule
    kwargs = ""
    if sch.kind == "restarts":
        kwargs = "{'num_cycles': 3}"
    fields = {
        "_n_gpu": 1,
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "adam_epsilon": 1e-08,
        "bf16": False,
        "eval_steps": cfg.eval_every,
        "eval_strategy": "steps",
        "fp16": cfg.fp16,
        "gradient_accumulation_steps": 1,
        "learning_rate": sch.peak,
        "logging_first_step": False,
        "logging_steps": cfg.log_every,
        "logging_strategy": "steps",
        "lr_scheduler_kwargs": kwargs or "{}",
        "lr_scheduler_type": HF_SCHEDULERS[sch.kind],
        "max_grad_norm": cfg.clip if cfg.clip else 0.0,
        "max_steps": cfg.steps,
        "num_train_epochs": 3.0,
        "optim": HF_OPTIM[cfg.optimizer],
        "output_dir": f"out/{cfg.family}",
        "per_device_eval_batch_size": 64,
        "per_device_train_batch_size": cfg.batch_size,
        "resume_from_checkpoint": f"out/{cfg.family}/checkpoint-{cfg.resume_at - 1}" if cfg.resume_at else None,
        "save_steps": 500,
        "seed": cfg.seed,
        "warmup_ratio": 0.0,
        "warmup_steps": sch.warmup,
        "weight_decay": cfg.weight_decay,
    }
    lines = ["TrainingArguments("] + [f"{k}={v}," for k, v in fields.items()] + [")"]
    epochs = -(-cfg.steps // spe)
    lines += [
        "***** Running training *****",
        f"  Num examples = {n_train:,}",
        f"  Num Epochs = {epochs:,}",
        f"  Instantaneous batch size per device = {cfg.batch_size:,}",
        f"  Total train batch size (w. parallel, distributed & accumulation) = {cfg.batch_size:,}",
        "  Gradient Accumulation steps = 1",
        f"  Total optimization steps = {cfg.steps:,}",
    ]
    return "\n".join(lines) + "\n"


def nanogpt_header(cfg: RunConfig) -> str:
    """nanoGPT's configurator echo of the config file, then its start-up lines."""
    sch = cfg.schedule
    decay = sch.kind in ("linear", "cosine")
    lines = [
        f"Overriding config with config/train_{cfg.family}.py:",
        f"out_dir = 'out-{cfg.family}'",
        f"eval_interval = {cfg.eval_every}",
        f"log_interval = {cfg.log_every}",
        f"batch_size = {cfg.batch_size}",
        f"learning_rate = {sch.peak!r}",
        f"max_iters = {cfg.steps}",
        f"decay_lr = {decay}",
        f"lr_decay_iters = {sch.decay_end if decay else cfg.steps}",
        f"min_lr = {sch.floor!r}",
        f"warmup_iters = {sch.warmup}",
        f"grad_clip = {cfg.clip or 0.0}",
        f"weight_decay = {cfg.weight_decay!r}",
        f"dtype = '{'float16' if cfg.fp16 else 'float32'}'",
        "",
        f"tokens per iteration will be: {cfg.batch_size * 256:,}",
        "Initializing a new model from scratch",
        "number of parameters: 0.01M",
        f"using fused AdamW: {cfg.optimizer == 'adamw'}",
    ]
    return "\n".join(lines) + "\n"


MEGATRON_STYLE = {"constant": "constant", "linear": "linear", "cosine": "cosine", "step": "step"}


def megatron_args(cfg: RunConfig) -> str:
    """Megatron-LM's `arguments` block (dotted padding, alphabetical)."""
    sch = cfg.schedule
    args: dict[str, Any] = {
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "clip_grad": cfg.clip or 0.0,
        "eval_interval": cfg.eval_every,
        "fp16": cfg.fp16,
        "global_batch_size": cfg.batch_size,
        "log_interval": cfg.log_every,
        "lr": sch.peak,
        "lr_decay_iters": sch.decay_end if sch.kind in ("linear", "cosine") else None,
        "lr_decay_style": MEGATRON_STYLE[sch.kind],
        "lr_warmup_iters": sch.warmup,
        "micro_batch_size": cfg.batch_size,
        "min_lr": sch.floor,
        "optimizer": "adam" if cfg.optimizer.startswith("adam") else "sgd",
        "seed": cfg.seed,
        "sgd_momentum": 0.9,
        "train_iters": cfg.steps,
        "weight_decay": cfg.weight_decay,
    }
    lines = ["------------------------ arguments ------------------------"]
    for k, v in sorted(args.items()):
        lines.append(f"  {k} {'.' * max(3, 48 - len(k))} {v}")
    lines.append("-------------------- end of arguments ---------------------")
    return "\n".join(lines) + "\n"


def hparams_yaml(cfg: RunConfig) -> str:
    """Lightning's `hparams.yaml` (the module's saved hyperparameters)."""
    return "".join(f"{k}: {_yaml(v)}\n" for k, v in declared(cfg).items())


def yolo_yamls(cfg: RunConfig, epochs: int) -> dict[str, str]:
    """YOLOv5's `hyp.yaml` and `opt.yaml` beside results.csv."""
    sch = cfg.schedule
    lrf = sch.floor / sch.peak if sch.peak else 0.01
    hyp = {
        "lr0": sch.peak,
        "lrf": round(lrf, 6),
        "momentum": 0.937,
        "weight_decay": cfg.weight_decay,
        "warmup_epochs": round(sch.warmup / max(1, cfg.log_every), 3),
        "warmup_momentum": 0.8,
        "warmup_bias_lr": 0.1,
        "box": 0.05,
        "cls": 0.5,
        "obj": 1.0,
    }
    opt = {
        "weights": "yolov5s.pt",
        "epochs": epochs,
        "batch_size": cfg.batch_size,
        "optimizer": {"sgd": "SGD", "momentum": "SGD", "adam": "Adam", "adamw": "AdamW"}[cfg.optimizer],
        "cos_lr": sch.kind == "cosine",
        "seed": cfg.seed,
        "resume": bool(cfg.resume_at),
    }
    return {
        "hyp.yaml": "".join(f"{k}: {_yaml(v)}\n" for k, v in hyp.items()),
        "opt.yaml": "".join(f"{k}: {_yaml(v)}\n" for k, v in opt.items()),
    }


def _yaml(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
