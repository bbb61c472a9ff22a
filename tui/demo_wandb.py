"""One real offline W&B run for `runwatch demo`: the healthy scenario logged through the `wandb` SDK.

Run as `python -m tui.demo_wandb --rate R` with `WANDB_MODE=offline` and `WANDB_DIR` set by the
demo; it writes a genuine `.wandb` transaction log that runwatch tails like any local W&B run.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from monitor.demo import SCENARIOS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tui.demo_wandb")
    ap.add_argument("--rate", type=float, default=10.0, help="steps per second")
    ap.add_argument("--steps", type=int, default=600)
    a = ap.parse_args(argv)
    import wandb

    scenario = SCENARIOS["healthy"]
    rnd = random.Random(1)
    run = wandb.init(project="runwatch-demo", name="wandb-healthy", config={"lr": 3e-4, "scenario": "healthy"})
    try:
        for step in range(a.steps):
            m = scenario.series(step, rnd)
            if m is not None:
                run.log(
                    {
                        "train/loss": m["loss"],
                        "train/lr": m["lr"],
                        "train/grad_norm": m["grad_norm"],
                        "train/global_step": step,
                    },
                    step=step,
                )
            time.sleep(1.0 / a.rate if a.rate > 0 else 0)
    except KeyboardInterrupt:
        run.finish(exit_code=130)
        return 130
    run.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
