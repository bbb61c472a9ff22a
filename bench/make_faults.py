"""Generate real CPU training runs with injected faults, each with a healthy twin, for the detection benchmark.

    python bench/make_faults.py [--out DIR] [--quick] [--only NAME…] [--jobs N]

Numpy models (11 families, see `bench/faults/plan.py`) are trained with minibatch SGD, momentum,
Adam or AdamW under various LR schedules, batch sizes 2-512 and fp16-style loss scaling. Each base
configuration is trained once healthy; faults are switched on at known steps in copies of its state,
so a fault run is byte-identical to its twin before the fault. Every run directory holds a
framework-style log (HF Trainer stdout or trainer_state.json, nanoGPT, Megatron, llm.c, Lightning
metrics.csv or YOLOv5 results.csv), a JSONL or CSV metrics file with wall-clock timestamps, the
config where the framework keeps it, and `label.toml` (the corpus schema plus generator fields).
Output is deterministic: no clock is read; timestamps are simulated from a fixed start.
Default output: bench/.cache/faults/.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.faults.plan import Base, plan
from bench.faults.runs import generate_base

DEFAULT_OUT = Path(__file__).resolve().parent / ".cache" / "faults"


def _one(args: tuple[Base, Path]) -> list[str]:
    return generate_base(*args)


def generate(out: Path, quick: bool = False, only: list[str] | None = None, jobs: int = 1) -> list[str]:
    """Write the planned runs under `out` (replacing what was there); returns the run ids."""
    bases = [b for b in plan(quick) if not only or b.name in only or b.cfg.family in only]
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    work = [(b, out) for b in bases]
    if jobs > 1:
        with ProcessPoolExecutor(min(jobs, 2)) as pool:
            done = list(pool.map(_one, work))
    else:
        done = [_one(w) for w in work]
    return [r for runs in done for r in runs]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--quick", action="store_true", help="one short base per family (a smoke test)")
    ap.add_argument("--only", nargs="*", help="base names (softmax-003) or families to generate")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (at most 2)")
    a = ap.parse_args(argv)
    runs = generate(a.out, a.quick, a.only, a.jobs)
    faults = sum(1 for r in runs if not r.endswith("-healthy"))
    print(f"{len(runs)} runs ({len(runs) - faults} healthy, {faults} with a fault) under {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
