"""One real offline W&B run for `runwatch demo`: the healthy scenario logged through the `wandb` SDK,
with per-layer gradient histograms every few steps as `wandb.watch(model, log="gradients")` logs them
(the detail view's layer heat map).

Run as `python -m tui.demo_wandb --rate R` with `WANDB_MODE=offline` and `WANDB_DIR` set by the
demo; it writes a genuine `.wandb` transaction log that runwatch tails like any local W&B run.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

import numpy as np

from monitor.demo import SCENARIOS

#: The demo model's layers (input side first) and their usual gradient scale relative to the run's grad norm.
LAYERS: tuple[tuple[str, float], ...] = (
    ("embed.weight", 0.3),
    ("blocks.0.weight", 0.5),
    ("blocks.1.weight", 0.6),
    ("blocks.2.weight", 0.7),
    ("blocks.3.weight", 0.8),
    ("head.weight", 1.0),
)
WATCH_EVERY = 10
"""Steps between gradient histograms (`wandb.watch`'s `log_freq`)."""


def _histograms(wandb: Any, grad_norm: float, rng: Any) -> dict[str, Any]:
    """`gradients/<param>` histograms of one step (64 bins between the gradient's min and max)."""
    out = {}
    for name, share in LAYERS:
        g = rng.standard_normal(256) * (grad_norm * share / 16.0)
        counts, edges = np.histogram(g, bins=64)
        out[f"gradients/{name}"] = wandb.Histogram(np_histogram=(counts.tolist(), edges.tolist()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tui.demo_wandb")
    ap.add_argument("--rate", type=float, default=10.0, help="steps per second")
    ap.add_argument("--steps", type=int, default=600)
    a = ap.parse_args(argv)
    import wandb

    scenario = SCENARIOS["healthy"]
    rnd = random.Random(1)
    rng = np.random.default_rng(1)
    run = wandb.init(project="runwatch-demo", name="wandb-healthy", config={"lr": 3e-4, "scenario": "healthy"})
    try:
        for step in range(a.steps):
            m = scenario.series(step, rnd)
            if m is not None:
                row = {
                    "train/loss": m["loss"],
                    "train/lr": m["lr"],
                    "train/grad_norm": m["grad_norm"],
                    "train/global_step": step,
                }
                if step % WATCH_EVERY == 0 and np.isfinite(m["grad_norm"]):
                    row.update(_histograms(wandb, float(m["grad_norm"]), rng))
                run.log(row, step=step)
            time.sleep(1.0 / a.rate if a.rate > 0 else 0)
    except KeyboardInterrupt:
        run.finish(exit_code=130)
        return 130
    run.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
