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
        tmux.wait_for("the detail view", lambda t: "y: linear" in t and "findings" in t and "/ Metrics" in t, 10)
        time.sleep(0.3)  # Escape then another key at once reads as Alt+key
        tmux("send-keys", "-t", "rw", "Escape")
        tmux.wait_for("the run table", lambda t: "verdict" in t and "/ Metrics" not in t, 10)
        tmux("send-keys", "-t", "rw", "c")
        tmux.wait_for("the compare view", lambda t: "compare " in t and "slope/1k" in t, 10)
        time.sleep(0.3)
        tmux("send-keys", "-t", "rw", "Escape")
        tmux.wait_for("the run table again", lambda t: "verdict" in t and "slope/1k" not in t, 10)
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


def _yolo_csv(path: Path) -> None:
    keys = ["train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/precision", "metrics/recall"]
    keys += ["metrics/mAP_0.5", "metrics/mAP_0.5:0.95", "val/box_loss", "val/obj_loss", "val/cls_loss"]
    keys += ["x/lr0", "x/lr1", "x/lr2"]
    lines = [",".join(f"{k:>20}" for k in ["epoch", *keys])]
    for e in range(60):
        d = 0.97**e
        vals = [0.02 + 0.08 * d, 0.01 + 0.02 * d, 0.0, 0.9 - 0.8 * d, 0.85 - 0.5 * d, 0.88 - 0.85 * d, 0.6 - 0.59 * d]
        vals += [0.025 + 0.06 * d, 0.012 + 0.01 * d, 0.0, 0.01 * (1 - e / 60), 0.01 * (1 - e / 60), 0.01 * (1 - e / 60)]
        lines.append(",".join(f"{v:>20}" for v in [e, *(round(v, 6) for v in vals)]))
    path.write_text("\n".join(lines) + "\n")


def _type_filter(tmux: Tmux, text: str) -> None:
    """`/`, the text once the box has the focus (else its letters are keys), Enter twice: open the run."""
    tmux("send-keys", "-t", "rw", "/")
    tmux.wait_for("the filter box", lambda t: "filter runs:" in t, 10)
    tmux("send-keys", "-t", "rw", "-l", text)
    time.sleep(0.5)
    tmux("send-keys", "-t", "rw", "Enter")
    time.sleep(0.5)
    tmux("send-keys", "-t", "rw", "Enter")


@pytest.mark.timeout(120)
def test_real_files_fill_the_detail_view_in_tmux(tmp_path: Path) -> None:
    """The issue's bar at 120x40: loss-only fills the view, YOLO shows 4+ metrics, 1,000,000 in full."""
    loss = tmp_path / "lossonly.log"
    loss.write_text("".join(f"step={s} loss={2 + 8 * 0.999**s:.4f}\n" for s in range(0, 3000, 10)))
    big = tmp_path / "million.log"
    big.write_text("".join(f"step={s} loss={2 + 8 * 0.99999**s:.4f}\n" for s in range(0, 1_000_001, 5000)))
    yolo = tmp_path / "results.csv"
    _yolo_csv(yolo)
    tmux = Tmux()
    try:
        tmux("new-session", "-d", "-s", "rw", "-x", "120", "-y", "40", f"{RUNWATCH} {big} {loss} {yolo}")
        tmux.wait_for("three runs, the big one at 1,000,000", lambda t: "1,000,000" in t and t.count("✓") >= 3, 30)
        _type_filter(tmux, "lossonly")
        text = tmux.wait_for("the loss-only detail", lambda t: "/ Metrics" in t and "╭─ loss" in t, 15)
        assert text.count("╭─") == 3, text  # one plot pane, findings and log: nothing else
        assert "not logged" not in text and "no driver" not in text
        time.sleep(0.3)
        tmux("send-keys", "-t", "rw", "Escape")
        tmux.wait_for("the table", lambda t: "verdict" in t and "/ Metrics" not in t, 10)
        time.sleep(0.3)
        tmux("send-keys", "-t", "rw", "Escape")  # clears the filter
        tmux.wait_for("every run", lambda t: "1,000,000" in t and "/results" in t, 10)
        _type_filter(tmux, "results")
        text = tmux.wait_for("the YOLO detail", lambda t: "/ Metrics" in t and "mAP_0.5" in t, 15)
        metrics = {m for m in ("box_loss", "obj_loss", "cls_loss", "precision", "recall", "mAP_0.5", "learning rate")}
        assert sum(f"─ {m}" in text or f"metrics/{m}" in text for m in metrics) >= 4, text
        tmux("send-keys", "-t", "rw", "q")
    finally:
        tmux("kill-server", check=False)
