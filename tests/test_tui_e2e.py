"""`runwatch demo` in a real terminal (tmux on a private socket): runs and a ✗ appear, keys work, q cleans up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

RUNWATCH = Path(sys.executable).parent / "runwatch"
DEMO_WAIT = 120.0
SCENARIOS = ("healthy", "nan", "diverge", "spike", "plateau", "stall")
# Under pytest COLUMNS/LINES may be set (80x24); the app would take them over the pane's real size.
ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (scripts/test.sh installs it)"),
    pytest.mark.skipif(not RUNWATCH.exists(), reason="the runwatch entry point is not installed"),
]


class Tmux:
    """One tmux server on a private socket; only ever kills that server."""

    def __init__(self) -> None:
        self.socket = f"rw-test-{os.getpid()}"

    def __call__(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(
            ["tmux", "-u", "-L", self.socket, *args], capture_output=True, text=True, timeout=20, check=False, env=ENV
        )
        if check and out.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "rw")

    def alive(self) -> bool:
        return (
            subprocess.run(["tmux", "-L", self.socket, "has-session", "-t", "rw"], capture_output=True).returncode == 0
        )

    def wait_for(self, what: str, ok: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen() if self.alive() else ""
            if ok(text):
                return text
            time.sleep(0.5)
        size = self("display-message", "-p", "-t", "rw", "#{window_width}x#{window_height}", check=False).strip()
        raise AssertionError(f"waited {timeout:.0f} s for {what}; the screen ({size}) was:\n{text}")


def _descendants(root: int) -> dict[int, str]:
    """pid -> command line of every process below `root`."""
    parents: dict[int, int] = {}
    cmds: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmds[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out: dict[int, str] = {}
    frontier = [root]
    while frontier:
        p = frontier.pop()
        for child, parent in parents.items():
            if parent == p and child not in out:
                out[child] = cmds.get(child, "")
                frontier.append(child)
    return out


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.mark.timeout(300)
def test_demo_in_tmux_shows_runs_and_a_bad_one_then_quits_clean() -> None:
    tmux = Tmux()
    try:
        tmux("new-session", "-d", "-s", "rw", "-x", "120", "-y", "40", f"{RUNWATCH} demo")
        pane_pid = int(tmux("display-message", "-p", "-t", "rw", "#{pane_pid}").strip())
        text = tmux.wait_for(
            "the six runs and a ✗",
            lambda t: all(f"{s} (" in t for s in SCENARIOS) and "✗ bad" in t,
            DEMO_WAIT,
        )
        assert "runwatch ·" in text and "verdict" in text
        sims = {pid: cmd for pid, cmd in _descendants(pane_pid).items() if "monitor.demo" in cmd}
        assert len(sims) == len(SCENARIOS), sims
        demo_dir = Path(next(iter(sims.values())).split()[-3]).parent  # ... SCENARIO PATH --rate R
        assert demo_dir.name.startswith("runwatch-demo-") and demo_dir.is_dir()

        tmux("send-keys", "-t", "rw", "?")
        tmux.wait_for("the help", lambda t: "runwatch keys" in t and "compare the marked runs" in t, 10)
        tmux("send-keys", "-t", "rw", "Escape")
        tmux.wait_for("the help to close", lambda t: "runwatch keys" not in t and "verdict" in t, 10)
        tmux("send-keys", "-t", "rw", "Enter")
        tmux.wait_for("the detail view", lambda t: "step axis" in t and "findings" in t, 10)
        time.sleep(0.3)  # Escape then another key at once reads as Alt+key
        tmux("send-keys", "-t", "rw", "Escape")
        tmux.wait_for("the run table", lambda t: "verdict" in t and "step axis" not in t, 10)
        tmux("send-keys", "-t", "rw", "q")
        deadline = time.monotonic() + 20
        while tmux.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not tmux.alive(), "q did not exit"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(_gone(p) for p in sims):
            time.sleep(0.2)
        left = [cmd for pid, cmd in sims.items() if not _gone(pid)]
        assert not left, f"simulators still running after q: {left}"
        assert not demo_dir.exists(), f"demo dir left behind: {demo_dir}"
    finally:
        tmux("kill-server", check=False)
