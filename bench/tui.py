"""TUI benchmark: the real `runwatch` app on 32 live runs in a pseudo-terminal; prints figures, asserts nothing.

31 demo simulators (`python -m monitor.demo healthy PATH --rate R`) plus one probe log this script
writes itself; the app runs as its own process on a pty of a fixed size, as it would in tmux.
Measured: the app process's CPU (% of one core) and RSS over a steady window, frames per second
(Textual's synchronized-update frames on the wire), and the time from writing a NaN line to the
probe log until a ✗ first reaches the terminal (the badge and the header count turn together).

    .venv/bin/python bench/tui.py [--runs 32] [--rate 10] [--warmup 15] [--seconds 30]

`--first-view 10000,1000000` measures instead, for one finished run of each length, the time from
starting the process to the frame showing its whole run: the table row at its last step (`1,000,000`)
and the preview plot's x axis reaching it, the CPU time the process and its workers spent until then,
and the peak RSS of the whole process tree (goals: 10k steps <= 0.8 s, 1M steps <= 3 s at <= 200 MB).
`--format text` (the default) writes a `step= loss= lr=` log; `--format wandb` a `.wandb` file written
by the real wandb SDK offline (as `wandb leet` reads; slow to write the first time: cached under
`bench/.cache/`); `--repeat N` measures each N times and prints the median.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import pty
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import NamedTuple

RUNWATCH = Path(sys.executable).parent / "runwatch"
SYNC_START = b"\x1b[?2026h"
SYNC_QUERY = b"\x1b[?2026$p"
SYNC_REPLY = b"\x1b[?2026;2$y"  # "supported, currently off": Textual then frames each update
BAD = "✗".encode()
TICKS = os.sysconf("SC_CLK_TCK")
CACHE = Path(__file__).resolve().parent / ".cache"
ROOT = Path(__file__).resolve().parents[1]


def app_env() -> dict[str, str]:
    """The app's environment: a plain terminal, and bytecode caches used as an installed package uses
    them (a sandbox's PYTHONDONTWRITEBYTECODE would recompile every module at each start)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "PYTHONDONTWRITEBYTECODE")}
    env["TERM"] = "xterm-256color"
    return env


def compile_sources() -> None:
    """Write the project's bytecode caches, as `pip install` does for an installed package."""
    dirs = [str(ROOT / d) for d in ("tui", "monitor", "detectors") if (ROOT / d).is_dir()]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *dirs], check=False, stdout=subprocess.DEVNULL)


class Terminal:
    """A pty the app draws on; a thread drains it, answers the sync query, and timestamps what arrives."""

    def __init__(self, cols: int, rows: int) -> None:
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.frames = 0
        self.bytes = 0
        self.bad_at: float | None = None
        self.watch_bad_after: float | None = None
        self._tail = b""
        self._stop = False
        self._thread = threading.Thread(target=self._drain, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop:
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:
                return
            if not data:
                return
            now = time.monotonic()
            buf = self._tail + data
            if SYNC_QUERY in buf:
                os.write(self.master, SYNC_REPLY)
            self.frames += buf.count(SYNC_START) - self._tail.count(SYNC_START)
            self.bytes += len(data)
            if self.watch_bad_after is not None and self.bad_at is None and BAD in buf:
                self.bad_at = now
            self._tail = buf[-16:]

    def close(self) -> None:
        self._stop = True
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree(pid: int) -> list[int]:
    """`pid` and its live descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for t in os.listdir(f"/proc/{p}/task"):
                todo += map(int, Path(f"/proc/{p}/task/{t}/children").read_text().split())
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of `pid`, its live descendants, and the children it has reaped."""
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
            if p == pid:
                total += (int(fields[13]) + int(fields[14])) / TICKS
    return total


def tree_rss_mb(pid: int) -> float:
    """The summed current RSS of `pid` and its live descendants, MB."""
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            total += rss_mb(p)[0]
    return total


def tree_pss_mb(pid: int) -> float:
    """The summed proportional set size of `pid` and its live descendants, MB: the memory the tree
    holds, pages a forked worker shares with its parent counted once (a sum of RSS counts them twice)."""
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
                    break
    return total


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MB."""
    vals = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            vals[line.split(":")[0]] = int(line.split()[1]) / 1024
    return vals.get("VmRSS", 0.0), vals.get("VmHWM", 0.0)


class Watcher:
    """Drains a pty and timestamps the first arrival of each of some byte strings."""

    def __init__(self, master: int, wanted: dict[str, bytes]) -> None:
        self.master = master
        self.wanted = dict(wanted)
        self.seen: dict[str, float] = {}
        self._tail = b""
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:
                return
            if not data:
                return
            now = time.monotonic()
            buf = self._tail + data
            if SYNC_QUERY in buf:
                os.write(self.master, SYNC_REPLY)
            for name, pattern in self.wanted.items():
                if name not in self.seen and pattern in buf:
                    self.seen[name] = now
            self._tail = buf[-64:]


def _final_tick(n: int) -> str:
    """The preview's last x tick label for a run ending at a round step n (`10k`, `1M`), as tui.format.si."""
    for scale, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if n >= scale:
            return f"{n / scale:g}{suffix}"
    return str(n)


def write_text_run(steps: int, log: Path) -> None:
    with log.open("w") as f:
        f.writelines(f"step={i} loss={2.0 + 8.0 * 0.9999**i:.5f} lr=0.0003\n" for i in range(steps + 1))


_WANDB_WRITER = """
import sys, wandb
n = int(sys.argv[1])
run = wandb.init(mode="offline", project="runwatch-bench-tui")
for i in range(n + 1):
    run.log({"loss": 2.0 + 8.0 * 0.9999**i, "lr": 0.0003}, step=i)
run.finish()
"""


def wandb_run(steps: int) -> Path:
    """A `.wandb` file of steps 0..`steps` (loss and lr, as the text run) written by the real SDK offline (cached)."""
    d = CACHE / f"tui-wandb-{steps}"
    found = sorted(d.glob("wandb/offline-run-*/run-*.wandb"))
    if found:
        return found[-1]
    print(f"writing a {steps:,}-step .wandb run with the wandb SDK (once, cached in {d}) ...", flush=True)
    d.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(d))
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):  # keep it out of $HOME
        env[var] = str(d / var.lower())
    subprocess.run([sys.executable, "-c", _WANDB_WRITER, str(steps)], env=env, cwd=d, check=True, timeout=7200)
    return sorted(d.glob("wandb/offline-run-*/run-*.wandb"))[-1]


class View(NamedTuple):
    """Seconds from process start to the first frame, the table row at the last step, the whole view
    (None: not seen); CPU seconds of the process tree until then; the tree's peak summed RSS and
    peak summed PSS, MB. On a machine shared with other work the wall times stretch; the CPU
    times do not (much)."""

    frame: float | None
    table: float | None
    whole: float | None
    cpu: float
    peak_mb: float
    peak_pss_mb: float
    cpu_main: float = 0.0
    """CPU seconds of the app's own process (the one that judges and draws) until the whole view."""


def first_view(steps: int, cols: int, rows: int, fmt: str = "text", timeout: float = 120.0) -> View:
    """Start the app on one finished run of `steps` steps and time its first full view."""
    tmp = Path(tempfile.mkdtemp(prefix="runwatch-bench-view-"))
    if fmt == "wandb":
        target = wandb_run(steps)
    else:
        target = tmp / f"run{steps}.log"
        write_text_run(steps, target)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = app_env()
    wanted = {"frame": b"runwatch", "table": f"{steps:,}".encode(), "plot": f" {_final_tick(steps)} ".encode()}
    t0 = time.monotonic()
    app = subprocess.Popen(
        [str(RUNWATCH), str(target)], stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    watcher = Watcher(master, wanted)
    peak = pss = 0.0
    cpu = cpu_main = 0.0
    try:
        deadline = t0 + timeout
        while len(watcher.seen) < len(wanted) and time.monotonic() < deadline and app.poll() is None:
            with contextlib.suppress(OSError):
                peak = max(peak, tree_rss_mb(app.pid))
                pss = max(pss, tree_pss_mb(app.pid))
                cpu, cpu_main = tree_cpu_seconds(app.pid), cpu_seconds(app.pid)
            time.sleep(0.01)
        with contextlib.suppress(OSError):
            # (to the whole view, give or take one sampling period)
            cpu, cpu_main = tree_cpu_seconds(app.pid), cpu_seconds(app.pid)
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            with contextlib.suppress(OSError):
                peak = max(peak, tree_rss_mb(app.pid), rss_mb(app.pid)[1])
                pss = max(pss, tree_pss_mb(app.pid))
            time.sleep(0.01)
    finally:
        if app.poll() is None:
            app.send_signal(signal.SIGTERM)
            try:
                app.wait(10)
            except subprocess.TimeoutExpired:
                app.kill()
        with contextlib.suppress(OSError):  # a parse worker of the app, if one is left
            os.killpg(app.pid, signal.SIGKILL)
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)
    frame, table, plot = watcher.seen.get("frame"), watcher.seen.get("table"), watcher.seen.get("plot")
    # The plot's axis label can only count once the table shows the whole run (an earlier partial
    # view may pass through the same tick).
    if plot is not None and table is not None:
        plot = max(plot, table)
    frame_s, table_s, plot_s = (None if t is None else t - t0 for t in (frame, table, plot))
    return View(frame_s, table_s, plot_s, cpu, peak, pss, cpu_main)


def _median(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else statistics.median(v for v in values if v is not None)


def first_view_report(lengths: list[int], cols: int, rows: int, fmt: str = "text", repeat: int = 1) -> None:
    goals = {10_000: 0.8, 1_000_000: 3.0}
    what = "a .wandb file written by the wandb SDK" if fmt == "wandb" else "a text log (step= loss= lr=)"
    compile_sources()
    print(f"runwatch TUI first view of {what}: process start -> frame showing the whole run, terminal {cols}x{rows}")
    if repeat > 1:
        print(f"(median of {repeat} runs each)")
    for n in lengths:
        views = [first_view(n, cols, rows, fmt) for _ in range(repeat)]
        frame, table, whole = (_median([getattr(v, f) for v in views]) for f in ("frame", "table", "whole"))
        cpu = statistics.median(v.cpu for v in views)
        cpu_main = statistics.median(v.cpu_main for v in views)
        peak = statistics.median(v.peak_mb for v in views)
        pss = statistics.median(v.peak_pss_mb for v in views)
        goal = goals.get(n)

        def s(t: float | None) -> str:
            return "not seen" if t is None else f"{t:5.2f} s"

        print(
            f"{n:>9,} steps: first frame {s(frame)}, table row {s(table)}, "
            f"whole view {s(whole)}{f' (goal <= {goal:g} s)' if goal else ''}, "
            f"CPU {cpu:5.2f} s (app process {cpu_main:5.2f} s), "
            f"peak memory of the process tree: PSS {pss:5.1f} MB{' (goal <= 200 MB)' if n >= 1_000_000 else ''}, "
            f"summed RSS {peak:5.1f} MB"
        )
        if repeat > 1:
            print("           whole view each run: " + ", ".join(s(v.whole) for v in views))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--first-view", default="", help="comma-separated run lengths: time to the first full view")
    ap.add_argument("--format", choices=("text", "wandb"), default="text", help="the run's file for --first-view")
    ap.add_argument("--repeat", type=int, default=1, help="--first-view: measure each this many times (median)")
    ap.add_argument("--runs", type=int, default=32)
    ap.add_argument("--rate", type=float, default=10.0, help="lines per second per simulated run")
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    ap.add_argument("--size", default="160x50", help="terminal COLSxROWS")
    a = ap.parse_args()
    cols, rows = (int(v) for v in a.size.split("x"))
    if a.first_view:
        first_view_report([int(v) for v in a.first_view.split(",")], cols, rows, a.format, a.repeat)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="runwatch-bench-"))
    sims: list[subprocess.Popen[bytes]] = []
    app: subprocess.Popen[bytes] | None = None
    term = Terminal(cols, rows)
    try:
        paths = []
        for i in range(a.runs - 1):
            p = tmp / f"sim{i:02d}.log"
            p.touch()
            paths.append(p)
            sims.append(
                subprocess.Popen(
                    [sys.executable, "-m", "monitor.demo", "healthy", str(p), "--rate", str(a.rate), "--seed", str(i)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        probe = tmp / "probe.log"
        paths.append(probe)
        probe_f = probe.open("a", buffering=1)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
        env["TERM"] = "xterm-256color"
        app = subprocess.Popen(
            [str(RUNWATCH), *map(str, paths)],
            stdin=term.slave,
            stdout=term.slave,
            stderr=term.slave,
            env=env,
            start_new_session=True,
        )
        term.start()
        step = 0

        def write_probe(until: float) -> None:
            nonlocal step
            while time.monotonic() < until:
                probe_f.write(f"step={step} loss={2.0 + 8.0 * 0.97**step:.5f} lr=0.0003\n")
                step += 1
                time.sleep(1.0 / a.rate)

        write_probe(time.monotonic() + a.warmup)
        c0, f0, b0, t0 = cpu_seconds(app.pid), term.frames, term.bytes, time.monotonic()
        write_probe(t0 + a.seconds)
        c1, f1, b1, t1 = cpu_seconds(app.pid), term.frames, term.bytes, time.monotonic()
        rss, peak = rss_mb(app.pid)
        wall = t1 - t0
        term.watch_bad_after = time.monotonic()
        probe_f.write(f"step={step} loss=nan lr=0.0003\n")
        probe_f.flush()
        nan_at = time.monotonic()
        deadline = nan_at + 10
        while term.bad_at is None and time.monotonic() < deadline:
            time.sleep(0.005)
        print(f"runwatch TUI benchmark: {a.runs} live runs ({a.runs - 1} simulators at {a.rate:g} lines/s + 1 probe)")
        print(f"terminal {cols}x{rows}, warm-up {a.warmup:g} s, window {wall:.1f} s, {os.cpu_count()} CPUs")
        print(f"app CPU:            {100 * (c1 - c0) / wall:6.1f} % of one core   (goal <= 15 %)")
        print(f"app RSS:            {rss:6.1f} MB (peak {peak:.1f} MB)   (goal <= 300 MB)")
        print(f"frames/s:           {(f1 - f0) / wall:6.1f}   ({(b1 - b0) / wall / 1024:.1f} KiB/s to the terminal)")
        if term.bad_at is None:
            print("NaN -> ✗ latency:   not seen within 10 s")
        else:
            print(f"NaN -> ✗ latency:   {1000 * (term.bad_at - nan_at):6.0f} ms   (goal <= 1000 ms)")
        return 0
    finally:
        if app is not None and app.poll() is None:
            app.send_signal(signal.SIGTERM)
            try:
                app.wait(10)
            except subprocess.TimeoutExpired:
                app.kill()
        for s in sims:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(s.pid, signal.SIGKILL)
            s.wait()
        term.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
