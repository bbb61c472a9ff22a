"""Scale benchmark: many live runs over SSH, and backfilling a long finished `.wandb` run.

    python bench/scale.py [--runs 32] [--hosts 4] [--rate 10] [--seconds 30] [--backfill-steps 1000000]

1. `runwatch watch --jsonl` follows RUNS log files spread over HOSTS ssh aliases (all pointing at one
   real OpenSSH sshd on loopback, so one connection per alias), while writer threads append RATE
   lines/s to each file. We sample the watch process's CPU (utime+stime from /proc) and RSS over
   SECONDS after a warm-up. Needs root and openssh-server.
2. `runwatch check` on a finished `.wandb` run of BACKFILL_STEPS steps x 4 metrics written by the
   real SDK offline (cached; writing 1M steps takes minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import loopback_ssh  # noqa: E402
from bench.throughput import make_wandb  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def _writers(paths: list[Path], rate: float, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        files = [p.open("a") for p in paths]
        i = 0
        next_t = time.monotonic()
        while not stop.is_set():
            for k, f in enumerate(files):
                loss = 3.0 * math.exp(-i / 5000) + 0.01 * math.sin(i + k)
                f.write(f"iter {i}: loss {loss:.4f}, time 100.00ms, mfu 40.00%\n")
                f.flush()
            i += 1
            next_t += 1.0 / rate
            time.sleep(max(0.0, next_t - time.monotonic()))
        for f in files:
            f.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def bench_ssh(runs: int, hosts: int, rate: float, seconds: float, tmp: Path) -> None:
    if not loopback_ssh.available():
        print("live SSH runs: skipped (needs root and /usr/sbin/sshd: apt-get install openssh-server)")
        return
    server, env = loopback_ssh.start(tmp, [f"gpu{h}" for h in range(hosts)])
    logs = [tmp / f"run{k:02d}.log" for k in range(runs)]
    for p in logs:
        p.write_text("")
    targets = [f"gpu{k % hosts}:{p}" for k, p in enumerate(logs)]
    stop = threading.Event()
    writer = _writers(logs, rate, stop)
    events = (tmp / "events.jsonl").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "watch", "--jsonl", *targets],
        cwd=ROOT,
        env=env,
        stdout=events,
    )
    try:
        time.sleep(10)  # connect, start followers, catch up
        c0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        peak = 0.0
        while time.monotonic() - t0 < seconds:
            time.sleep(1)
            peak = max(peak, _rss_mb(proc.pid))
        cpu = (_cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0) * 100
        live = {json.loads(x)["run"] for x in (tmp / "events.jsonl").read_text().splitlines() if '"live"' in x}
        print(f"runs live over SSH: {len(live)}/{runs}")
        print(
            f"live SSH runs: {runs} runs x {rate:g} lines/s over {hosts} ssh aliases ({runs * rate:g} lines/s): "
            f"watch process CPU {cpu:.1f}% of one core, peak RSS {peak:.0f} MB (over {seconds:g} s)"
        )
    finally:
        stop.set()
        writer.join(5)
        proc.send_signal(2)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        loopback_ssh.stop(server)


def bench_backfill(steps: int, cache: Path) -> None:
    path, took = make_wandb(steps, cache)
    if took is not None:
        print(f"wrote {steps} steps x 4 metrics with the wandb SDK offline in {took:.0f} s")
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "tui.cli", "check", "--json", "--compact", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    dt = time.perf_counter() - t0
    print(
        f"backfill: `runwatch check` of a finished {steps}-step .wandb run ({path.stat().st_size / 2**20:.0f} MiB) "
        f"took {dt:.1f} s end to end (exit {out.returncode})"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=32)
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--backfill-steps", type=int, default=1_000_000, help="0 to skip")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "runwatch-bench")
    a = ap.parse_args()
    a.cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="runwatch-scale-") as tmp:
        bench_ssh(a.runs, a.hosts, a.rate, a.seconds, Path(tmp))
    if a.backfill_steps:
        bench_backfill(a.backfill_steps, a.cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
