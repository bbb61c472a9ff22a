"""Speed benchmark: lines/s parsed + judged per log format, `.wandb` rows/s, peak memory.

    python bench/throughput.py [--lines 1000000] [--wandb-steps 100000] [--formats megatron,hf-trainer]

Each measurement runs the same code as `runwatch check` in a fresh subprocess (so its peak RSS is
its own). Log files are generated once into a cache directory; the `.wandb` file is written by the
real `wandb` SDK in offline mode (slow: minutes for 100k steps), also cached.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FORMATS = ("megatron", "hf-trainer", "nanogpt", "llmc", "jsonl", "csv", "kv")


def _line(fmt: str, i: int, rnd: random.Random) -> str:
    loss = (2.0 + 8.0 * math.exp(-i / 20000)) * (1 + rnd.gauss(0, 0.01))
    lr = 3e-4 * min(1.0, i / 2000) * (0.1 + 0.9 * (1 - i / 1_000_000))
    gn = 0.5 + 3 * math.exp(-i / 5000) + rnd.random() * 0.1
    if fmt == "megatron":
        return (
            f" iteration {i:8d}/ 1000000 | consumed samples: {i * 512:12d} | elapsed time per iteration (ms): "
            f"{400 + rnd.random() * 20:.1f} | learning rate: {lr:.3E} | global batch size:   512 | lm loss: "
            f"{loss:.6E} | loss scale: 65536.0 | grad norm: {gn:.3f} | number of skipped iterations:   0 | "
            f"number of nan iterations:   0 |"
        )
    if fmt == "hf-trainer":
        return f"{{'loss': {loss:.4f}, 'grad_norm': {gn!r}, 'learning_rate': {lr!r}, 'epoch': {i / 10000:.2f}}}"
    if fmt == "nanogpt":
        return f"iter {i}: loss {loss:.4f}, time {150 + rnd.random():.2f}ms, mfu 41.20%"
    if fmt == "llmc":
        return f"s:{i} trl:{loss:.4f} lr:{lr:.6f} norm:{gn:.2f}"
    if fmt == "jsonl":
        return json.dumps({"step": i, "train/loss": loss, "lr": lr, "grad_norm": gn})
    if fmt == "csv":
        return f"{i},{loss:.6f},{lr:.6g},{gn:.4f}"
    if fmt == "kv":
        return f"step={i} loss={loss:.5f} lr={lr:.4g} grad_norm={gn:.4f}"
    raise ValueError(fmt)


def make_log(fmt: str, n: int, cache: Path) -> Path:
    path = cache / f"bench-{fmt}-{n}.log"
    if path.exists():
        return path
    rnd = random.Random(0)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        if fmt == "hf-trainer":
            f.write("TrainingArguments(output_dir=out, logging_steps=1)\n")
        if fmt == "csv":
            f.write("step,loss,lr,grad_norm\n")
        for i in range(n):
            f.write(_line(fmt, i, rnd) + "\n")
    tmp.rename(path)
    return path


_WANDB_WRITER = """
import math, os, sys, wandb
n = int(sys.argv[1])
run = wandb.init(mode="offline", project="runwatch-bench", config={"lr": 3e-4})
for i in range(n):
    run.log({"train/loss": 2 + 8 * math.exp(-i / 20000), "lr": 3e-4, "grad_norm": 1.0, "eval/acc": i / n})
run.finish()
"""


def make_wandb(steps: int, cache: Path) -> tuple[Path, float | None]:
    """A `.wandb` file of `steps` x 4 metrics written by the real SDK offline (cached)."""
    d = cache / f"wandb-{steps}"
    found = sorted(d.glob("wandb/offline-run-*/run-*.wandb"))
    if found:
        return found[-1], None
    d.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(d)}
    env.pop("WANDB_API_KEY", None)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", _WANDB_WRITER, str(steps)], env=env, check=True, timeout=3600)
    took = time.perf_counter() - t0
    return sorted(d.glob("wandb/offline-run-*/run-*.wandb"))[-1], took


def measure_one(path: str, fmt: str | None) -> dict[str, float | str]:
    """Time `check` on one file in this process (called in a subprocess)."""
    from monitor.check import check_target
    from monitor.config import Config

    t0, c0 = time.perf_counter(), time.process_time()
    a = check_target(path, Config(), fmt=fmt, now=time.time())
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "seconds": dt,
        "cpu_seconds": cpu,
        "lines": a.info.lines,
        "rows": a.store.rows,
        "verdict": str(a.judgement().verdict),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "store_mb": a.store.nbytes() / 2**20,
    }


def measure_reader(path: str, repeat: int = 5) -> dict[str, float]:
    """The `.wandb` readers alone, in this process (called in a subprocess): best of `repeat`.

    `bulk` is what `check` runs in its worker (`WandbBulkReader`), `record` the record-by-record
    reader of live tails (`WandbLogReader`), both from the file to rows.
    """
    from monitor.model import Row
    from monitor.wandb.bulk import WandbBulkReader
    from monitor.wandb.reader import WandbLogReader

    out: dict[str, float] = {}
    for name in ("bulk", "record"):
        best = math.inf
        for _ in range(repeat if name == "bulk" else 2):
            t0 = time.perf_counter()
            with open(path, "rb") as f:
                if name == "bulk":
                    rows = sum(len(c.steps) for blocks, _ in WandbBulkReader().read(f) for c in blocks)
                else:
                    rows = sum(isinstance(e, Row) for e in WandbLogReader().feed(f.read()))
            best = min(best, time.perf_counter() - t0)
        out[name] = rows / best
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _sub(path: Path, fmt: str | None, what: str = "--one") -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, what, str(path), *(["--format", fmt] if fmt else [])],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--wandb-steps", type=int, default=100_000, help="0 to skip the .wandb measurement")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "runwatch-bench")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--format", help=argparse.SUPPRESS)
    ap.add_argument("--reader", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(measure_one(a.one, a.format)))
        return 0
    if a.reader:
        print(json.dumps(measure_reader(a.reader)))
        return 0
    a.cache.mkdir(parents=True, exist_ok=True)
    print(f"runwatch throughput benchmark (python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    print("lines/s parsed + judged, wall clock of `check` (files >= 16 MiB: a worker process parses while the")
    print("main process judges and stores); main-process CPU seconds alongside")
    head = ("format", "lines", "rows", "wall s", "lines/s", "main cpu s", "peak RSS MB", "store MB")
    print("{:12} {:>9} {:>9} {:>7} {:>10} {:>10} {:>12} {:>9}".format(*head))
    for fmt in a.formats.split(","):
        path = make_log(fmt, a.lines, a.cache)
        r = _sub(path, fmt)
        print(
            f"{fmt:12} {int(r['lines']):9d} {int(r['rows']):9d} {r['seconds']:7.2f} "
            f"{r['lines'] / r['seconds']:10,.0f} {r['cpu_seconds']:10.2f} "
            f"{r['peak_rss_mb']:12.0f} {r['store_mb']:9.1f}"
        )
    if a.wandb_steps:
        path, took = make_wandb(a.wandb_steps, a.cache)
        if took is not None:
            print(f"\nwrote {a.wandb_steps} steps x 4 metrics with the wandb SDK offline in {took:.1f} s")
        r = _sub(path, None)
        print(
            f"\n.wandb {path.stat().st_size / 2**20:.1f} MiB: {int(r['rows'])} history rows "
            f"in {r['seconds']:.2f} s = {r['rows'] / r['seconds']:,.0f} rows/s read + judged (wall clock), "
            f"peak RSS {r['peak_rss_mb']:.0f} MB"
        )
        r = _sub(path, None, "--reader")
        print(
            f".wandb reading alone, one process, best of 5: {r['bulk']:,.0f} rows/s (bulk reader, as `check` "
            f"reads), {r['record']:,.0f} rows/s (record-by-record reader, as live tails read)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
