"""Latency from a line written to its verdict event in `runwatch watch --jsonl`.

    python bench/latency.py [--samples 40] [--skip-ssh] [--skip-wandb]

A writer appends a slowly falling loss and, every 0.4 s, alternately a NaN (the run turns bad) and a
finite value (the NaN clears, the run turns healthy again), so each written flip is one verdict
event. We time from the write (the writer's clock) to the event line arriving on `watch`'s stdout
(the same machine's clock), for: a local file, a file over SSH on loopback (a real OpenSSH sshd,
needs root and openssh-server), and a live `.wandb` run written by the real SDK offline with
`WANDB__TRANSACTION_LOG_FLUSH_INTERVAL=1`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import loopback_ssh  # noqa: E402

FLIP_EVERY = 0.4


def _line(i: int, nan: bool) -> str:
    loss = math.nan if nan else 3.0 * (1 - 5e-4 * i)
    return f"iter {i}: loss {loss:.4f}, time 100.00ms, mfu 10.00%\n"


class Watch:
    """`runwatch watch --jsonl` in a subprocess; records (arrival time, event) pairs."""

    def __init__(self, targets: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "watch", "--jsonl", *targets],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.events: list[tuple[float, dict]] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append((time.time(), json.loads(line)))

    def wait_for(self, pred, timeout: float) -> float | None:  # type: ignore[no-untyped-def]
        deadline = time.time() + timeout
        seen = 0
        while time.time() < deadline:
            for t, ev in self.events[seen:]:
                if pred(ev):
                    return t
            seen = len(self.events)
            time.sleep(0.002)
        return None

    def stop(self) -> None:
        self.proc.send_signal(2)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _flips(path: Path, watch: Watch, samples: int, start: int) -> list[float]:
    lat = []
    i = start
    with path.open("a") as f:
        for k in range(samples):
            want = "bad" if k % 2 == 0 else "healthy"
            mark = len(watch.events)
            t0 = time.time()
            f.write(_line(i, nan=want == "bad"))
            f.flush()
            i += 1
            t = _wait_new(watch, mark, want, 5.0)
            if t is not None:
                lat.append(t - t0)
            time.sleep(FLIP_EVERY + random.random() * 0.1)  # no phase-lock with the poll
    return lat


def _wait_new(watch: Watch, mark: int, verdict: str, timeout: float) -> float | None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for t, ev in watch.events[mark:]:
            if ev["event"] == "verdict" and ev["verdict"] == verdict:
                return t
        time.sleep(0.002)
    return None


def _prime(path: Path, n: int = 60) -> None:
    path.write_text("".join(_line(i, False) for i in range(n)))


def _report(name: str, lat: list[float], samples: int) -> None:
    if not lat:
        print(f"{name:28} no events arrived")
        return
    lat = sorted(lat)
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, math.ceil(0.99 * len(lat)) - 1)]
    print(
        f"{name:28} n={len(lat):3d}/{samples}  p50 {p50 * 1000:6.0f} ms  p99 {p99 * 1000:6.0f} ms  "
        f"max {lat[-1] * 1000:6.0f} ms"
    )


def bench_local(samples: int, tmp: Path) -> None:
    log = tmp / "local.log"
    _prime(log)
    w = Watch([str(log)])
    try:
        w.wait_for(lambda e: e["event"] == "state" and e["state"] == "live", 20)
        time.sleep(0.5)
        _report("local file", _flips(log, w, samples, 60), samples)
    finally:
        w.stop()


def bench_ssh(samples: int, tmp: Path) -> None:
    if not loopback_ssh.available():
        print(f"{'ssh (loopback sshd)':28} skipped: needs root and /usr/sbin/sshd (apt-get install openssh-server)")
        return
    server, env = loopback_ssh.start(tmp, ["benchhost"])
    log = tmp / "remote.log"
    _prime(log)
    w = Watch([f"benchhost:{log}"], env=env)
    try:
        if w.wait_for(lambda e: e["event"] == "state" and e["state"] == "live", 30) is None:
            print(f"{'ssh (loopback sshd)':28} never went live")
            return
        time.sleep(1.0)
        _report("ssh (loopback sshd)", _flips(log, w, samples, 60), samples)
    finally:
        w.stop()
        loopback_ssh.stop(server)


_WANDB_WRITER = """
import math, sys, time, wandb
run = wandb.init(mode="offline", project="latency")
for i in range(60):
    run.log({"train/loss": 3.0 * (1 - 5e-4 * i)})
time.sleep(3)
for k in range(int(sys.argv[1])):
    bad = k % 2 == 0
    run.log({"train/loss": float("nan") if bad else 3.0 * (1 - 5e-4 * (60 + k))})
    print(time.time(), "bad" if bad else "healthy", flush=True)
    time.sleep(1.6)
run.finish()
"""


def bench_wandb(samples: int, tmp: Path) -> None:
    d = tmp / "wb"
    (d / "wandb").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(d), WANDB__TRANSACTION_LOG_FLUSH_INTERVAL="1")
    w = Watch([str(d / "wandb")])
    writer = subprocess.Popen(
        [sys.executable, "-c", _WANDB_WRITER, str(samples)], env=env, stdout=subprocess.PIPE, text=True
    )
    writes: list[tuple[float, str]] = []
    try:
        assert writer.stdout is not None
        for line in writer.stdout:
            t0, want = line.split()
            writes.append((float(t0), want))
        writer.wait(60)
        time.sleep(3)
    finally:
        w.stop()
        if writer.poll() is None:
            writer.kill()
    # Each write is answered by the first event of its verdict that arrived after it.
    verdicts = [(t, ev["verdict"]) for t, ev in w.events if ev["event"] == "verdict"]
    lat = []
    for t0, want in writes:
        t = next((t for t, v in verdicts if v == want and t >= t0), None)
        if t is not None:
            lat.append(t - t0)
    _report(".wandb (flush 1 s)", lat, samples)
    if os.environ.get("RUNWATCH_BENCH_DEBUG"):
        for t, ev in w.events:
            print(f"  {t:.3f} {ev['event']} {ev['verdict']} {ev['state']} {ev['reason'][:60]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--skip-ssh", action="store_true")
    ap.add_argument("--skip-wandb", action="store_true")
    a = ap.parse_args()
    print(f"write -> verdict event latency through `runwatch watch --jsonl` ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory(prefix="runwatch-latency-") as tmp:
        bench_local(a.samples, Path(tmp))
        if not a.skip_ssh:
            bench_ssh(a.samples, Path(tmp))
        if not a.skip_wandb:
            bench_wandb(max(10, a.samples // 2), Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
