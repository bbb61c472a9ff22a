"""Built-in simulated training runs for `runwatch demo`: real log files in several real formats.

Each scenario is a deterministic metric series; a writer prints it in one framework's format.
`python -m monitor.demo SCENARIO PATH [--rate R]` runs one simulator as a background process that
appends to PATH at R lines per second, as a real training job would.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

Metrics = dict[str, float]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A simulated run: its name, the story it tells, its log format and its length."""

    name: str
    story: str
    fmt: str
    filename: str
    steps: int
    series: Callable[[int, random.Random], Metrics | None]
    """Metrics at a step (None: this step is not logged / the run hangs)."""
    stall_after: int | None = None


def _lr(step: int, total: int, peak: float = 3e-4, warmup: int = 20) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))


def _base_loss(step: int, rnd: random.Random, noise: float = 0.015) -> float:
    return (2.2 + 8.6 * math.exp(-step / 25.0) + 0.9 * math.exp(-step / 200.0)) * (1 + rnd.gauss(0, noise))


def _healthy(step: int, rnd: random.Random) -> Metrics:
    return {"loss": _base_loss(step, rnd), "lr": _lr(step, 600), "grad_norm": 0.8 + 4 * math.exp(-step / 30)}


def _nan(step: int, rnd: random.Random) -> Metrics:
    loss = _base_loss(step, rnd) if step < 260 else math.nan
    return {"loss": loss}


def _diverge(step: int, rnd: random.Random) -> Metrics:
    loss = _base_loss(step, rnd, 0.01)
    if step > 220:
        loss *= 1 + 0.012 * (step - 220)
    gn = 0.7 + 3 * math.exp(-step / 30) + (0 if step < 220 else 0.05 * (step - 220))
    return {"loss": loss, "learning_rate": 6e-4, "grad_norm": gn}


def _spike(step: int, rnd: random.Random) -> Metrics:
    loss = _base_loss(step, rnd, 0.01)
    if 240 <= step < 252:
        loss *= 1 + 1.6 * math.exp(-(step - 240) / 3.0)
    return {"lm loss": loss, "learning rate": _lr(step, 600), "grad norm": 1.1, "loss scale": 65536.0}


def _plateau(step: int, rnd: random.Random) -> Metrics:
    loss = (3.1 + 7 * math.exp(-step / 15.0)) * (1 + rnd.gauss(0, 0.004))
    return {"trl": loss, "lr": 6e-4, "norm": 0.5}


def _stall(step: int, rnd: random.Random) -> Metrics | None:
    return {"train/loss": _base_loss(step, rnd), "train/global_step": float(step)}


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "healthy",
            "loss falls steadily with warm-up and cosine decay",
            "hf-trainer",
            "healthy.log",
            600,
            _healthy,
        ),
        Scenario("nan", "fp16 overflow: the loss turns NaN at step 260", "nanogpt", "nan.log", 600, _nan),
        Scenario("diverge", "LR too high: the loss climbs from step 220", "kv", "diverge.log", 600, _diverge),
        Scenario("spike", "a loss spike at step 240 that recovers", "megatron", "spike.log", 600, _spike),
        Scenario(
            "plateau",
            "the loss goes flat at 3.1 while the LR stays high",
            "llmc",
            "plateau.log",
            600,
            _plateau,
        ),
        Scenario(
            "stall",
            "the job hangs after step 150 (a dead NCCL rank)",
            "jsonl",
            "stall.jsonl",
            600,
            _stall,
            150,
        ),
    )
}


def format_line(fmt: str, step: int, m: Metrics, total: int, t: float | None = None) -> str:
    """One log line in the given framework's format."""
    if fmt == "hf-trainer":
        return "{" + ", ".join(f"'{k}': {v!r}" for k, v in {**m, "epoch": round(step / 100, 2)}.items()) + "}"
    if fmt == "nanogpt":
        return f"iter {step}: loss {m['loss']:.4f}, time 152.31ms, mfu 12.40%"
    if fmt == "kv":
        return f"step={step} " + " ".join(f"{k}={v:.6g}" for k, v in m.items())
    if fmt == "megatron":
        return (
            f" iteration {step:8d}/{total:8d} | consumed samples: {step * 512:12d} | "
            f"elapsed time per iteration (ms): 412.3 | learning rate: {m['learning rate']:.3E} | "
            f"global batch size:   512 | lm loss: {m['lm loss']:.6E} | loss scale: {m['loss scale']:.1f} | "
            f"grad norm: {m['grad norm']:.3f} | number of skipped iterations:   0 | number of nan iterations:   0 |"
        )
    if fmt == "llmc":
        return f"s:{step} trl:{m['trl']:.4f} lr:{m['lr']:.6f} norm:{m['norm']:.2f}"
    if fmt == "jsonl":
        return json.dumps({**m, "_timestamp": round(time.time() if t is None else t, 3)})
    raise ValueError(fmt)


def header(s: Scenario) -> list[str]:
    """Lines a real framework prints before its metrics."""
    if s.fmt == "hf-trainer":
        return ["TrainingArguments(output_dir=out, logging_steps=10, learning_rate=0.0003)", ""]
    if s.fmt == "megatron":
        return ["using world size: 8, data-parallel size: 8", "training ..."]
    return []


def lines(s: Scenario, seed: int = 0, end_time: float | None = None) -> Iterator[tuple[int, str]]:
    """(step, line) pairs of a scenario, header first (step -1).

    With `end_time`, timestamped formats get times one second apart ending then (a run written
    at once that looks as if it ran); without, the current time.
    """
    for h in header(s):
        yield -1, h
    rnd = random.Random(seed)
    step_stride = 10 if s.fmt == "hf-trainer" else 1
    for i in range(s.steps):
        if s.stall_after is not None and i > s.stall_after:
            return
        m = s.series(i, rnd)
        if m is None:
            continue
        last = s.stall_after if s.stall_after is not None else s.steps - 1
        t = None if end_time is None else end_time - (last - i)
        yield i, format_line(s.fmt, i * step_stride if s.fmt != "hf-trainer" else i, m, s.steps, t)


def write_all(directory: Path, seed: int = 0, stalled_for: float = 20 * 60) -> dict[str, Path]:
    """Write every scenario's complete log at once (for the headless demo and tests).

    The stalled run's last line is dated `stalled_for` seconds ago (its times and the file's mtime).
    """
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    now = time.time()
    for s in SCENARIOS.values():
        path = directory / s.filename
        end = now - stalled_for if s.stall_after is not None else now
        path.write_text("\n".join(line for _, line in lines(s, seed, end)) + "\n")
        if s.stall_after is not None:
            os.utime(path, (end, end))
        out[s.name] = path
    return out


def simulate(s: Scenario, out: TextIO, rate: float, seed: int = 0) -> None:
    """Append a scenario's lines to `out` at `rate` lines per second; a stalled run then hangs."""
    delay = 1.0 / rate if rate > 0 else 0.0
    for step, line in lines(s, seed):
        out.write(line + "\n")
        out.flush()
        if step >= 0 and delay:
            time.sleep(delay)
    if s.stall_after is not None:
        while True:  # a hung job: alive, silent
            time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m monitor.demo", description="Run one simulated training job.")
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("path", type=Path)
    ap.add_argument("--rate", type=float, default=10.0, help="lines per second (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    with a.path.open("a", encoding="utf-8") as f:
        try:
            simulate(SCENARIOS[a.scenario], f, a.rate, a.seed)
        except KeyboardInterrupt:
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
