"""`runwatch demo`: the built-in simulators as background processes writing real logs, and the TUI on them.

Each scenario of `monitor.demo` runs as `python -m monitor.demo SCENARIO PATH --rate R` in its own
process group inside a temp dir; where `wandb` imports, one real offline `.wandb` run is logged by
`tui.demo_wandb`. Everything is watched through the same hub, parsers and detectors as real runs.
`DemoRuns` always cleans up: process groups killed and the temp dir removed, on quit, Ctrl-C,
SIGTERM/SIGHUP and exceptions (and the children die with the parent even on SIGKILL, on Linux).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from monitor import demo as sims
from monitor.config import Config, RunConfig

RATE = 10.0
"""Lines per second: every scenario tells its story within about a minute."""
STALL_SECONDS = 20.0
"""The demo's `stall_min_seconds`, so the hung run is called stalled ~35 s in (default: 120 s)."""
_PR_SET_PDEATHSIG = 1

# Lines real frameworks print when training completes. A simulator that ran to its end gets its
# framework's line appended, so a finished run reads as finished rather than stalled.
_END_LINES = {
    "hf-trainer": "{'train_runtime': 61.2, 'train_samples_per_second': 83.6, 'train_loss': 2.51, 'epoch': 6.0}",
    "megatron": "[after training is done] datetime: 2026-01-01 00:00:00",
}


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def wandb_available() -> bool:
    """Whether the `wandb` SDK is installed (the demo then adds one offline `.wandb` run)."""
    return importlib.util.find_spec("wandb") is not None


class DemoRuns:
    """The simulators and their temp dir; a context manager that always cleans up."""

    def __init__(
        self, rate: float = RATE, *, wandb: bool | None = None, scenarios: tuple[str, ...] = tuple(sims.SCENARIOS)
    ) -> None:
        self.rate = rate
        self.wandb = wandb_available() if wandb is None else wandb
        self.scenarios = scenarios
        self.dir: Path | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.paths: dict[str, Path] = {}
        self.targets: list[str] = []
        """What the hub watches: each simulator's log, and the W&B folder."""
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._watcher: threading.Thread | None = None

    def __enter__(self) -> DemoRuns:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> list[str]:
        """Create the temp dir, start every simulator; returns the targets to watch."""
        self.dir = Path(tempfile.mkdtemp(prefix="runwatch-demo-"))
        atexit.register(self.stop)
        targets = []
        for name in self.scenarios:
            s = sims.SCENARIOS[name]
            path = self.dir / s.filename
            path.touch()
            self.paths[name] = path
            self._spawn(name, [sys.executable, "-m", "monitor.demo", name, str(path), "--rate", str(self.rate)])
            targets.append(str(path))
        if self.wandb:
            wb = self.dir / "wandb-run"
            # The `wandb/` folder inside makes the target a W&B folder before the first run exists.
            (wb / "wandb").mkdir(parents=True)
            env = {
                "WANDB_MODE": "offline",
                "WANDB_SILENT": "true",
                "WANDB__TRANSACTION_LOG_FLUSH_INTERVAL": "1",
                "WANDB_DIR": str(wb),
            }
            self._spawn("wandb", [sys.executable, "-m", "tui.demo_wandb", "--rate", str(self.rate)], env)
            targets.append(str(wb))
        self._watcher = threading.Thread(target=self._watch, name="demo-watcher", daemon=True)
        self._watcher.start()
        self.targets = targets
        return targets

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        assert self.dir is not None
        log = open(self.dir / f"{name}.stderr", "wb")  # noqa: SIM115 - the child owns it from here
        with log:
            self.procs[name] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=self.dir,
                env={**os.environ, **(env or {})},
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    def _watch(self) -> None:
        finished: set[str] = set()
        while not self._stopped.wait(1.0):
            for name, proc in list(self.procs.items()):
                if name in finished or proc.poll() is None:
                    continue
                finished.add(name)
                fmt = sims.SCENARIOS[name].fmt if name in sims.SCENARIOS else None
                if proc.returncode == 0 and fmt in _END_LINES and name in self.paths:
                    with self._lock, contextlib.suppress(OSError), self.paths[name].open("a") as f:
                        if not self._stopped.is_set():
                            f.write(_END_LINES[fmt] + "\n")

    def config(self, base: Config) -> Config:
        """`base` with the demo's runs (named after their scenarios) and a short stall threshold."""
        runs = tuple(
            RunConfig(target=str(p), name=f"{name} ({sims.SCENARIOS[name].fmt})") for name, p in self.paths.items()
        )
        th = base.thresholds.with_overrides({"stall_min_seconds": STALL_SECONDS})
        return dataclasses.replace(base, runs=runs, thresholds=th)

    def stop(self) -> None:
        """Kill every simulator's process group and remove the temp dir (idempotent)."""
        with self._lock:
            self._stopped.set()
            procs = list(self.procs.values())
            for p in procs:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGTERM)
            deadline = time.monotonic() + 3.0
            for p in procs:
                try:
                    p.wait(max(0.05, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(p.pid, signal.SIGKILL)
                    p.wait(2.0)
            # Grandchildren (wandb's service) share the group: make sure none survives its leader.
            for p in procs:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None


def run_demo(base: Config, *, theme: str | None = None, rate: float = RATE) -> int:
    """Start the simulators, open the TUI on them, clean up however it ends."""
    from tui.app import make_app

    with DemoRuns(rate) as demo:
        story = "; ".join(f"{n}: {sims.SCENARIOS[n].story}" for n in demo.scenarios)
        banner = (
            f"{len(demo.targets)} simulated runs writing real logs in {demo.dir}. Within about a minute: {story}."
            + (" Plus one offline W&B run." if demo.wandb else "")
        )
        app = make_app(demo.config(base), demo.targets, theme=theme, banner=banner)
        app.exit_hooks.append(demo.stop)  # a forced exit (closed terminal) still stops the simulators
        return app.run() or 0
