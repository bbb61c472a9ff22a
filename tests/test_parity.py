"""One path from any target to a judged run: `check --json`, `watch --jsonl` (a real subprocess)
and the TUI's hub end on the same verdict, active findings (kind, step) and last step, for every
file of both real-log corpora, held-out runs of the fault benchmark and a few generated here (text
logs, JSONL with timestamps, a TensorBoard file)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Config
from monitor.hub import Hub
from tests.test_tfevents import event, simple

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "real"
BENCH_CORPUS = ROOT / "bench" / "corpus" / "real"

Outcome = tuple[str, tuple[tuple[str, float], ...], float | None]
"""(shown verdict, active findings as (kind, step) sorted, last step)"""


def generated_runs(folder: Path) -> None:
    """A few runs of every kind of ending: healthy, NaN, divergence, plateau, stalled, idle, finished."""
    rnd = random.Random(7)
    folder.mkdir(parents=True, exist_ok=True)
    healthy = [f"step={i} loss={2 + 3 * math.exp(-i / 40) + rnd.gauss(0, 0.01):.4f} lr=0.0003" for i in range(300)]
    (folder / "healthy.log").write_text("\n".join(healthy) + "\n")
    nan = [f"iter {i}: loss {4 * math.exp(-i / 50) + 1:.4f}, time 100.00ms, mfu 10.00%" for i in range(120)]
    nan += [f"iter {i}: loss nan, time 100.00ms, mfu 10.00%" for i in range(120, 130)]
    (folder / "nan" / "train.log").parent.mkdir()
    (folder / "nan" / "train.log").write_text("\n".join(nan) + "\n")
    div = [f"step={i} loss={3 * math.exp(-i / 30) + 1 + (0 if i < 150 else 0.05 * (i - 150)):.4f}" for i in range(260)]
    (folder / "diverge.log").write_text("\n".join(div) + "\n")
    flat = [f"step={i} loss={2.0 + rnd.gauss(0, 0.002):.4f} lr=0.001" for i in range(200)]
    (folder / "flat.log").write_text("\n".join(flat) + "\n")
    # Timestamped rows: the last update is their last time, not the file's.
    t0 = time.time() - 5 * 3600
    rows = [{"step": i, "loss": 3 * math.exp(-i / 50) + 0.5, "_timestamp": t0 + 10 * i} for i in range(200)]
    (folder / "old.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    t1 = time.time() - 1800
    rows = [{"step": i, "loss": 3 * math.exp(-i / 50) + 0.5, "_timestamp": t1 + i} for i in range(100)]
    (folder / "stalled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ev = b"".join(
        event(i, simple("train/loss", 2 * math.exp(-i / 20) + (math.nan if i >= 70 else 0.3)), wall=t1 + i)
        for i in range(80)
    )
    (folder / "tb").mkdir()
    (folder / "tb" / "events.out.tfevents.1700000000.host.1.0").write_bytes(_tf_header() + ev)


def _tf_header() -> bytes:
    from tests.test_tfevents import field, record

    return record(field(1, b"\0" * 8, wt=1) + field(3, b"brain.Event:2"))


def outcome_from_json(verdict: str, findings: list[dict[str, Any]], last_step: Any) -> Outcome:
    active = tuple(sorted((f["kind"], float(f["step"])) for f in findings if f.get("active", True)))
    return verdict, active, None if last_step is None else float(last_step)


def by_check(folders: list[Path]) -> dict[str, Outcome]:
    out = subprocess.run(
        [sys.executable, "-m", "tui.cli", "check", "--json", "--compact", *map(str, folders)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    doc = json.loads(out.stdout)
    return {r["target"]: outcome_from_json(r["verdict"], r["findings"], r.get("last_step")) for r in doc["runs"]}


def by_watch(folders: list[Path], runs: int, timeout: float = 90.0) -> dict[str, Outcome]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "watch", "--jsonl", *map(str, folders)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    last: dict[str, dict[str, Any]] = {}
    caught: set[str] = set()
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout or ()], daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            try:
                ev = json.loads(lines.get(timeout=0.1))
            except queue.Empty:
                ev = None
            if ev is not None:
                last[ev["run"]] = ev
                if ev["event"] == "caught_up":
                    caught.add(ev["run"])
            if ev is not None:
                quiet_since = time.monotonic()
            if len(caught) >= runs and time.monotonic() - quiet_since > 5.0:  # formats waited on, ticks
                break
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        reader.join(5)
        while not lines.empty():
            ev = json.loads(lines.get())
            last[ev["run"]] = ev
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(caught) >= runs, f"only {len(caught)} of {runs} runs caught up"
    return {k: outcome_from_json(v["verdict"], v["findings"], v.get("last_step")) for k, v in last.items()}


def _decided(feed: Any) -> bool:
    """Whether a run's feed has settled on its format (a fresh log waits a few seconds for that)."""
    return feed is not None and getattr(feed, "parser", True) is not None


def by_hub(folders: list[Path], runs: int) -> dict[str, Outcome]:
    async def main() -> dict[str, Outcome]:
        async with Hub([str(f) for f in folders], Config(), gpu=False, poll=0.05) as hub:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                if len(hub.runs) >= runs and all(r.facts.caught_up and _decided(r.feed) for r in hub.runs.values()):
                    break
                await asyncio.sleep(0.05)
            hub.tick()
            out = {}
            for snap in hub.snapshot().runs:
                active = tuple(sorted((f.kind, float(f.step)) for f in snap.findings if f.active))
                out[snap.id] = (snap.shown_verdict, active, snap.last_step)
            return out

    return asyncio.run(main())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_check_watch_and_hub_agree_on_every_run(tmp_path: Path) -> None:
    folders = [tmp_path / "generated", tmp_path / "faults"]
    generated_runs(folders[0])
    # Held-out generated runs: the fault benchmark's test families, one base each (seconds).
    from bench.faults.plan import TEST_FAMILIES
    from bench.make_faults import generate

    generate(folders[1], quick=True, only=list(TEST_FAMILIES))
    for name, corpus in (("corpus", CORPUS), ("bench-corpus", BENCH_CORPUS)):
        if corpus.is_dir():
            # A copy keeps the shared folders out of it; its files are dated days ago, so that no
            # run crosses a time threshold (stalled after 15 min, idle after 2 h) between channels.
            shutil.copytree(corpus, tmp_path / name)
            old = time.time() - 3 * 86400
            for f in (tmp_path / name).rglob("*"):
                os.utime(f, (old, old))
            folders.append(tmp_path / name)
    checked = by_check(folders)
    assert len(checked) >= 30
    hub = by_hub(folders, len(checked))
    watched = by_watch(folders, len(checked))
    assert set(hub) == set(checked) == set(watched)
    differ = {k: (checked[k], watched[k], hub[k]) for k in checked if not checked[k] == watched[k] == hub[k]}
    assert not differ, json.dumps(differ, indent=1)
    verdicts = {str(Path(k).relative_to(folders[0])): v[0] for k, v in checked.items() if k.startswith(str(folders[0]))}
    assert verdicts["healthy.log"] == "healthy" and verdicts["nan/train.log"] == "bad"
    assert verdicts["stalled.jsonl"] == "unsure" and verdicts["old.jsonl"] == "healthy"
    assert verdicts["tb/events.out.tfevents.1700000000.host.1.0"] == "bad"
