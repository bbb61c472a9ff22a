"""The hub with real peers: local files being written, a real sshd, the W&B API test server, `watch`."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Config
from monitor.hub import Hub, HubEvent, HubSnapshot
from monitor.model import Verdict
from tests.sshd import SSHHome, ssh_home, sshd  # noqa: F401  (fixtures)
from tests.test_wandb_api import server  # noqa: F401  (fixture)
from tests.wandb_server import FakeWandbServer

ROOT = Path(__file__).resolve().parents[1]


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


async def until(pred: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def nanogpt_lines(n: int, nan_at: int | None = None) -> list[str]:
    out = []
    for i in range(n):
        loss = math.nan if nan_at is not None and i >= nan_at else 4.0 * math.exp(-i / 50) + 1.0
        out.append(f"iter {i}: loss {loss:.4f}, time 100.00ms, mfu 10.00%\n")
    return out


class Recorder:
    def __init__(self, hub: Hub) -> None:
        self.events: list[HubEvent] = []
        self.snapshots: list[HubSnapshot] = []
        hub.add_event_listener(self.events.append)
        hub.add_snapshot_listener(self.snapshots.append)

    def kinds(self, kind: str) -> list[HubEvent]:
        return [e for e in self.events if e.kind == kind]

    def verdicts(self) -> list[Verdict]:
        return [e.verdict for e in self.kinds("verdict")]


async def write_slowly(path: Path, lines: list[str], every: float = 0.005) -> None:
    with path.open("a") as f:
        for line in lines:
            f.write(line)
            f.flush()
            await asyncio.sleep(every)


@pytest.mark.timeout(60)
def test_local_file_being_written_turns_bad_on_nan_and_snapshots_coalesce(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("")

    async def main() -> None:
        async with Hub([str(log)], gpu=False, publish_interval=0.2, poll=0.05) as hub:
            rec = Recorder(hub)
            await write_slowly(log, nanogpt_lines(300, nan_at=250), every=0.002)
            await until(lambda: Verdict.BAD in rec.verdicts(), what="a bad verdict")
            await asyncio.sleep(0.5)
            snap = hub.snapshot()
            (r,) = snap.runs
            assert r.state == "live" and r.format == "nanogpt" and r.last_step == 299
            assert r.verdict is Verdict.BAD and "NaN at step 250" in r.reason
            assert r.loss_key == "loss" and len(r.loss_trend) > 10
            # 300 lines over ~1 s: snapshots are coalesced to the publish rate, not one per line.
            assert 1 <= len(rec.snapshots) < 30
            bad = [e for e in rec.kinds("verdict") if e.verdict is Verdict.BAD]
            assert bad and bad[0].findings and bad[0].findings[0].onset_step == 250

    run(main())


@pytest.mark.timeout(60)
def test_missing_file_is_a_state_not_a_verdict_and_recovers(tmp_path: Path) -> None:
    log = tmp_path / "later.log"

    async def main() -> None:
        async with Hub([str(log)], gpu=False, poll=0.05) as hub:
            rec = Recorder(hub)
            await until(lambda: hub.snapshot().runs[0].state == "waiting", what="waiting state")
            assert [e.detail for e in rec.kinds("caught_up")] == ["nothing to read yet; following"]
            r = hub.snapshot().runs[0]
            assert r.stale and r.source_error and "no such file" in r.source_error
            assert r.verdict is Verdict.HEALTHY  # unreachable is not broken
            log.write_text("".join(nanogpt_lines(50)))
            await until(lambda: hub.snapshot().runs[0].state == "live", what="live state")
            await until(lambda: hub.snapshot().runs[0].last_step == 49, what="rows")
            r = hub.snapshot().runs[0]
            assert not r.stale and r.verdict is Verdict.HEALTHY
            assert [e.state for e in rec.kinds("state")][-1] == "live"

    run(main())


@pytest.mark.timeout(60)
def test_stall_is_judged_from_the_runs_own_interval(tmp_path: Path) -> None:
    log = tmp_path / "s.jsonl"
    t0 = time.time() - 1000
    log.write_text("".join(json.dumps({"step": i, "loss": 2.0, "_timestamp": t0 + i}) + "\n" for i in range(100)))
    cfg = Config(thresholds=Config().thresholds.with_overrides({"stall_min_seconds": 30.0}))

    async def main() -> None:
        async with Hub([str(log)], cfg, gpu=False, poll=0.05, tick_interval=0.1) as hub:
            await until(lambda: any(f.kind == "stalled" for f in hub.snapshot().runs[0].findings), what="stall")
            assert hub.snapshot().runs[0].verdict is Verdict.UNSURE

    run(main())


@pytest.mark.timeout(90)
@pytest.mark.slow
def test_ssh_target_via_config_alias_reaches_a_verdict(ssh_home: SSHHome, tmp_path: Path) -> None:  # noqa: F811
    log = tmp_path / "remote.log"
    log.write_text("".join(nanogpt_lines(40)))
    target = f"testhost:{log}"

    async def main() -> None:
        async with Hub([target], gpu=True, poll=0.05) as hub:
            rec = Recorder(hub)
            await until(lambda: hub.snapshot().runs[0].last_step == 39, timeout=40, what="remote rows")
            await write_slowly(log, nanogpt_lines(60, nan_at=45)[40:], every=0.01)
            await until(lambda: Verdict.BAD in rec.verdicts(), timeout=20, what="bad over ssh")
            snap = hub.snapshot()
            assert snap.runs[0].state == "live" and snap.runs[0].source == "testhost"
            assert any(h.startswith("testhost") and "live" in line for h, line in snap.hosts)
            # No nvidia-smi on the test host: the GPU is a status (N/A), never an error loop.
            await until(lambda: any(h == "testhost" for h, _ in hub.snapshot().gpus), timeout=20, what="gpu status")
            gpu = dict(hub.snapshot().gpus)["testhost"]
            assert not gpu.gpus and gpu.status == "nvidia-smi not found"
            assert hub.snapshot().runs[0].gpu_util is None

    run(main())


@pytest.mark.timeout(60)
def test_wandb_api_run_judged_and_unreachable_api_is_a_state(server: FakeWandbServer) -> None:  # noqa: F811
    fr = server.add_run("ent", "proj", "r1", rows=[{"loss": 3.0 - i * 0.01} for i in range(30)])
    server.append(fr, {"loss": float("nan")})

    async def main() -> None:
        async with Hub(["wandb://ent/proj/r1"], gpu=False) as hub:
            rec = Recorder(hub)
            await until(lambda: Verdict.BAD in rec.verdicts(), what="bad from the API")
            r = hub.snapshot().runs[0]
            assert r.last_step == 30 and r.state == "live" and r.url == "wandb://ent/proj/r1"
            assert rec.kinds("caught_up")  # views stop showing 'reading' once the API answered
        server.stop()
        async with Hub(["wandb://ent/proj/r1"], gpu=False) as hub:
            await until(lambda: hub.snapshot().runs and hub.snapshot().runs[0].stale, what="stale state")
            r = hub.snapshot().runs[0]
            assert r.state == "stale" and r.state_detail in ("unreachable", "api_error")
            assert r.verdict is Verdict.HEALTHY and r.shown_verdict == "stale"
        server.start()

    run(main())


_WANDB_WRITER = """
import math, os, sys, time, wandb
run = wandb.init(mode="offline", project="hubtest")
for i in range(40):
    run.log({"train/loss": 3.0 * math.exp(-i / 20) if i < 30 else float("nan")})
    time.sleep(0.05)
run.finish()
"""


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_live_wandb_folder_is_followed_while_written(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(tmp_path), WANDB__TRANSACTION_LOG_FLUSH_INTERVAL="1"
    )
    (tmp_path / "wandb").mkdir()

    async def main() -> None:
        async with Hub([str(tmp_path / "wandb")], gpu=False, poll=0.05) as hub:
            rec = Recorder(hub)
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _WANDB_WRITER, env=env)
            try:
                await until(lambda: Verdict.BAD in rec.verdicts(), timeout=90, what="NaN from .wandb")
                await asyncio.wait_for(proc.wait(), 60)
                await until(lambda: hub.snapshot().runs[0].state == "finished", timeout=30, what="exit record")
            finally:
                if proc.returncode is None:
                    proc.kill()
            r = hub.snapshot().runs[0]
            # An offline run has no entity, hence no W&B URL; the folder is where it lives.
            assert r.format == "wandb" and r.last_step == 39 and r.url is None and "offline-run-" in r.id

    run(main())


@pytest.mark.timeout(60)
def test_watch_jsonl_prints_changes_and_exits_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_text("".join(nanogpt_lines(20)))
    cfg = tmp_path / "runwatch.toml"
    cfg.write_text(f'[[run]]\ntarget = "{log}"\nname = "from-config"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "--config", str(cfg), "watch", "--jsonl"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[dict[str, Any]] = []
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        wrote = False
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(json.loads(line))
            if lines[-1]["event"] == "state" and not wrote:
                with log.open("a") as f:
                    f.writelines(nanogpt_lines(30, nan_at=25)[20:])
                wrote = True
            if lines[-1]["event"] == "verdict" and lines[-1]["verdict"] == "bad":
                break
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert lines[0]["event"] == "run" and lines[0]["name"] == "from-config"
    bad = lines[-1]
    assert bad["verdict"] == "bad" and bad["decision"] == "stop" and bad["findings"][0]["onset_step"] == 25
    assert bad["time"].endswith("+00:00") and isinstance(bad["ts"], float)


def test_unknown_target_scheme_is_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tui.cli", "watch", "ssh://"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "runwatch:" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.timeout(60)
def test_idle_gpu_under_a_live_run_is_a_warning_and_clears(tmp_path: Path) -> None:
    from monitor.gpu import GpuSample, GpuSnapshot

    log = tmp_path / "g.log"
    log.write_text("".join(nanogpt_lines(50)))
    clock = [time.time()]

    async def main() -> None:
        hub = Hub([str(log)], gpu=False, poll=0.05, tick_interval=3600, clock=lambda: clock[0])
        async with hub:
            await until(lambda: hub.snapshot().runs[0].last_step == 49, what="rows")

            def feed(util: float, n: int) -> None:
                for _ in range(n):
                    clock[0] += 5
                    hub._on_gpu(GpuSnapshot("localhost", clock[0], (GpuSample(0, "H100", util, 1000.0, 80000.0),)))

            feed(0.0, 12)
            with log.open("a") as f:
                f.writelines(nanogpt_lines(52)[50:])
            await until(lambda: hub.snapshot().runs[0].last_step == 51, what="more rows")
            hub.tick()
            r = hub.snapshot().runs[0]
            assert r.gpu_util == 0.0
            idle = [f for f in r.findings if f.kind == "gpu_idle"]
            assert idle and idle[0].active and r.verdict is Verdict.UNSURE
            feed(95.0, 30)
            hub.tick()
            assert not any(f.kind == "gpu_idle" for f in hub.snapshot().runs[0].findings)

    run(main())


@pytest.mark.timeout(60)
def test_a_long_wandb_run_is_caught_up_in_bulk_then_tailed_without_gaps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitor.analysis import RunAnalysis, RunInfo
    from monitor.sources.base import Chunk
    from monitor.wandb import feed
    from monitor.wandb.feed import WandbFeed
    from tests.test_wandb_log import frame, history

    monkeypatch.setattr(feed, "BULK_BYTES", 0)  # every .wandb file is "long": caught up in bulk
    records = [
        history(n, {("_step",): str(n), ("train/loss",): repr(3.0 / n), ("lr",): "0.001"}) for n in range(1, 6001)
    ]
    data = frame(records)
    path = tmp_path / "run-x.wandb"
    cut = len(data) * 2 // 3 + 5  # inside a record: the bulk read must leave it to the tail
    path.write_bytes(data[:cut])
    # What record-by-record reading of the whole file gives.
    want = RunAnalysis(RunInfo(target="x", name="x"), None, Config().thresholds)
    WandbFeed(want, "localhost").chunk(Chunk(0, data), time.time())

    async def main() -> None:
        async with Hub([str(path)], gpu=False, poll=0.05) as hub:
            await until(lambda: len(hub.runs) == 1, what="the run")
            (run_id,) = hub.runs
            store = hub.analysis(run_id).store
            await until(lambda: store.rows >= 3000, what="the bulk read")
            assert store.rows < 6000
            with path.open("ab") as f:
                f.write(data[cut:])
            await until(lambda: store.rows == 6000, what="the tail")
            await asyncio.sleep(0.3)
            assert store.rows == 6000
            for key in want.store.metrics:
                s1, v1 = want.store.metrics[key].series()
                s2, v2 = store.metrics[key].series()
                assert list(s1) == list(s2) and list(v1) == list(v2), key
            assert hub.runs[run_id].state.word == "live"

    run(main())


@pytest.mark.timeout(60)
def test_a_file_refused_as_not_a_log_is_still_caught_up(tmp_path: Path) -> None:
    # Whoever waits for every run to be caught up (a script on `watch --jsonl`, the parity test) must
    # not wait forever for a file that was read and refused.
    junk = tmp_path / "model.bin"
    junk.write_bytes(bytes(range(256)) * 64)
    good = tmp_path / "train.log"
    good.write_text("".join(nanogpt_lines(30)))

    async def main() -> None:
        async with Hub([str(junk), str(good)], gpu=False, poll=0.05) as hub:
            rec = Recorder(hub)
            await until(lambda: len(rec.kinds("caught_up")) == 2, what="both caught up")
            by_run = {e.run_id: e for e in rec.kinds("caught_up")}
            assert by_run[str(junk)].state == "unreadable" and "binary data" in by_run[str(junk)].detail

    run(main())
