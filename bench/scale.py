"""Scale benchmark: many live runs over SSH, and backfilling a long finished `.wandb` run.

    python bench/scale.py [--runs 32] [--hosts 4] [--rate 10] [--seconds 30] [--backfill-steps 1000000]
    python bench/scale.py --fleet [--fleet-local 40 --fleet-ssh 20 --fleet-hosts 4 --fleet-wandb 5] [--fleet-full]

1. `runwatch watch --jsonl` follows RUNS log files spread over HOSTS ssh aliases (all pointing at one
   real OpenSSH sshd on loopback, so one connection per alias), while writer threads append RATE
   lines/s to each file. We sample the watch process's CPU (utime+stime from /proc) and RSS over
   SECONDS after a warm-up. Needs root and openssh-server.
2. `runwatch check` on a finished `.wandb` run of BACKFILL_STEPS steps x 4 metrics written by the
   real SDK offline (cached; writing 1M steps takes minutes).
3. `--fleet` (only this part): one `runwatch watch --metrics-addr` following local logs, SSH paths
   over ssh aliases of the loopback sshd (when root) and W&B runs of one project on the local
   GraphQL test server, all written at RATE rows/s, with the endpoint scraped every 5 s. Prints
   CPU % of one core, peak RSS, scrape time and size, and write->metric latency (a line appended to
   a probe log until Prometheus would see its step). `--fleet-full` is issue 12's figure: 500 runs
   (250 local, 200 over 20 aliases, 50 W&B); the default size is modest for shared machines.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

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


def _get(url: str) -> tuple[str, float]:
    import urllib.request

    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        text = r.read().decode()
    return text, time.perf_counter() - t0


def _last_step(text: str, run: str) -> float | None:
    needle = f'run="{run}"'
    for line in text.splitlines():
        if line.startswith("runwatch_run_last_step{") and needle in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def _wandb_env(tmp: Path, n: int, rate: float, stop: threading.Event) -> tuple[Any, dict[str, str], list[str]]:
    """The local W&B GraphQL test server with `n` running runs in one project, rows appended at `rate`."""
    sys.path.insert(0, str(ROOT / "tests"))  # the test server imports its GraphQL helper as a top-level module
    from tests.wandb_server import FakeWandbServer

    server = FakeWandbServer().start()
    runs = [server.add_run("bench", "fleet", f"run{k:03d}", rows=[{"loss": 3.0, "lr": 3e-4}] * 5) for k in range(n)]

    def write() -> None:
        i = 5
        while not stop.wait(1.0 / rate):
            for k, run in enumerate(runs):
                server.append(run, {"loss": 3.0 * math.exp(-i / 5000) + 0.01 * math.sin(i + k), "lr": 3e-4})
            i += 1

    threading.Thread(target=write, daemon=True).start()
    home = tmp / "wandb-home"
    home.mkdir()
    env = {
        "WANDB_BASE_URL": server.url,
        "WANDB_API_KEY": server.api_key,
        "WANDB_SILENT": "true",
        "WANDB_CONFIG_DIR": str(home / "config"),
        "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_DATA_DIR": str(home / "data"),
        "WANDB_ERROR_REPORTING": "false",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    return server, env, ["wandb://bench/fleet"] if n else []


def bench_fleet(
    local: int, ssh: int, hosts: int, wandb_runs: int, rate: float, seconds: float, tmp: Path, profile: Path | None
) -> None:
    if ssh and not loopback_ssh.available():
        print("fleet: SSH runs skipped (needs root and /usr/sbin/sshd: apt-get install openssh-server)")
        ssh = 0
    stop = threading.Event()
    started: list[Any] = []  # released in reverse order whatever happens
    try:
        env = dict(os.environ)
        if ssh:
            server, env = loopback_ssh.start(tmp, [f"gpu{h}" for h in range(hosts)])
            started.append(lambda: loopback_ssh.stop(server))
        wb_server, wb_env, wb_targets = _wandb_env(tmp, wandb_runs, rate, stop)
        started.append(wb_server.stop)
        env.update(wb_env)
        _measure_fleet(local, ssh, hosts, wandb_runs, wb_targets, rate, seconds, tmp, env, stop, started, profile)
    finally:
        stop.set()
        for release in reversed(started):
            release()


def _stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _measure_fleet(
    local: int,
    ssh: int,
    hosts: int,
    wandb_runs: int,
    wb_targets: list[str],
    rate: float,
    seconds: float,
    tmp: Path,
    env: dict[str, str],
    stop: threading.Event,
    started: list[Any],
    profile: Path | None,
) -> None:
    import socket

    logs = [tmp / f"local{k:03d}.log" for k in range(local)]
    ssh_logs = [tmp / f"ssh{k:03d}.log" for k in range(ssh)]
    for p in (*logs, *ssh_logs):
        p.write_text("")
    probe = tmp / "probe.log"
    probe.write_text("".join(f"iter {i}: loss 3.0000, time 100.00ms, mfu 40.00%\n" for i in range(10)))
    targets = [str(p) for p in logs] + [f"gpu{k % hosts}:{p}" for k, p in enumerate(ssh_logs)] + [str(probe)]
    writer = _writers([*logs, *ssh_logs], rate, stop)
    started.append(lambda: writer.join(5))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tf = tmp / "targets"
    tf.write_text("\n".join([*targets, *wb_targets]) + "\n")
    url = f"http://127.0.0.1:{port}/metrics"
    total = len(targets) + wandb_runs
    argv = ["watch", "--jsonl", "--targets-file", str(tf), "--metrics-addr", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else []), "-m", "tui.cli", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "watch.err").open("w"),
    )
    # SIGINT: a clean stop that also lets cProfile write its file.
    started.append(lambda: _stop_process(proc, signal.SIGINT if profile else signal.SIGTERM))
    what = f"{local} local + {ssh} SSH over {hosts if ssh else 0} aliases + {wandb_runs} W&B + 1 probe"
    t_start, seen, live = time.monotonic(), 0, 0
    while time.monotonic() - t_start < 180:
        time.sleep(1)
        try:
            text, _ = _get(url)
        except OSError:
            continue
        seen = sum(1 for x in text.splitlines() if x.startswith("runwatch_run_verdict{"))
        live = sum(1 for x in text.splitlines() if 'runwatch_run_state="live"' in x and x.endswith(" 1.0"))
        if seen >= total and live >= total - 1:
            break
    print(f"fleet: {seen}/{total} runs exported ({live} live) after {time.monotonic() - t_start:.0f} s")
    c0, t0 = _cpu_seconds(proc.pid), time.monotonic()
    time.sleep(min(15.0, seconds))  # the hub's own cost, with nothing scraping
    quiet = (_cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0) * 100
    c0, t0 = _cpu_seconds(proc.pid), time.monotonic()
    peak, scrapes, size = 0.0, [], 0
    while time.monotonic() - t0 < seconds:
        text, took = _get(url)
        scrapes.append(took)
        size = len(text)
        peak = max(peak, _rss_mb(proc.pid))
        time.sleep(max(0.0, 5.0 - took))
    cpu_s, wall_s = _cpu_seconds(proc.pid) - c0, time.monotonic() - t0
    cpu = cpu_s / wall_s * 100
    lat = []
    for k in range(5):
        step = 1000 + k
        with probe.open("a") as f:
            f.write(f"iter {step}: loss 2.9000, time 100.00ms, mfu 40.00%\n")
        wrote = time.monotonic()
        while time.monotonic() - wrote < 30 and _last_step(_get(url)[0], str(probe)) != step:
            time.sleep(0.05)
        lat.append(time.monotonic() - wrote)
        time.sleep(1)
    scrapes.sort()
    lat.sort()
    print(
        f"fleet: {what} = {total} runs, {rate:g} rows/s each, scraped every 5 s for {seconds:g} s: "
        f"watch CPU {cpu:.1f}% of one core ({cpu_s:.1f} s user+sys in {wall_s:.0f} s; {quiet:.1f}% unscraped), "
        f"peak RSS {peak:.0f} MB, "
        f"scrape median {scrapes[len(scrapes) // 2] * 1000:.0f} ms / max {scrapes[-1] * 1000:.0f} ms "
        f"({size / 1024:.0f} KiB), write->metric latency median {lat[2]:.2f} s / max {lat[-1]:.2f} s"
    )


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
    ap.add_argument("--fleet", action="store_true", help="only the fleet bench (metrics endpoint)")
    ap.add_argument("--fleet-local", type=int, default=40)
    ap.add_argument("--fleet-ssh", type=int, default=20)
    ap.add_argument("--fleet-hosts", type=int, default=4)
    ap.add_argument("--fleet-wandb", type=int, default=5)
    ap.add_argument("--fleet-full", action="store_true", help="500 runs: 250 local, 200 SSH over 20 aliases, 50 W&B")
    ap.add_argument("--profile", type=Path, help="run the fleet's watch under cProfile, writing this file")
    a = ap.parse_args()
    a.cache.mkdir(parents=True, exist_ok=True)
    if a.fleet or a.fleet_full:
        if a.fleet_full:
            a.fleet_local, a.fleet_ssh, a.fleet_hosts, a.fleet_wandb = 250, 200, 20, 50
        with tempfile.TemporaryDirectory(prefix="runwatch-fleet-") as tmp:
            args = (a.fleet_local, a.fleet_ssh, a.fleet_hosts, a.fleet_wandb, a.rate, a.seconds, Path(tmp), a.profile)
            bench_fleet(*args)
        return 0
    with tempfile.TemporaryDirectory(prefix="runwatch-scale-") as tmp:
        bench_ssh(a.runs, a.hosts, a.rate, a.seconds, Path(tmp))
    if a.backfill_steps:
        bench_backfill(a.backfill_steps, a.cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
