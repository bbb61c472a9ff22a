"""`watch` as a service: targets added and removed while running (hub API, targets file, SIGHUP),
the other runs keeping their state; SIGTERM a clean stop; one log line per thing that happened."""

from __future__ import annotations

import asyncio
import io
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.errors import RunwatchError
from monitor.fleet import Fleet, read_targets
from monitor.hub import Hub
from monitor.model import Verdict
from tests.sshd import SSHHome, ssh_home, sshd  # noqa: F401  (fixtures)
from tests.test_wandb_api import server  # noqa: F401  (fixture)
from tests.wandb_server import FakeWandbServer

ROOT = Path(__file__).resolve().parents[1]


def lines(n: int, start: int = 0, nan_at: int | None = None) -> str:
    out = []
    for i in range(start, start + n):
        loss = math.nan if nan_at is not None and i >= nan_at else 4.0 * math.exp(-i / 50) + 1.0
        out.append(f"iter {i}: loss {loss:.4f}, time 100.00ms, mfu 10.00%\n")
    return "".join(out)


async def until(pred: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_read_targets(tmp_path: Path) -> None:
    f = tmp_path / "targets"
    f.write_text("# runs on cluster A\n\n  a.log  \ngpu1:/x/train.log\na.log\n# b.log\n")
    assert read_targets(f) == ["a.log", "gpu1:/x/train.log"]
    with pytest.raises(RunwatchError, match="No such file"):
        read_targets(tmp_path / "missing")


def test_hub_adds_and_removes_runs_keeping_the_others(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text(lines(60, nan_at=50))
    b.write_text(lines(30))
    folder = tmp_path / "runs"
    folder.mkdir()

    async def go() -> None:
        async with Hub([str(a)], gpu=False, writer_poll=0, discover_poll=0.1) as hub:
            await until(lambda: hub.runs[str(a)].analysis.store.rows == 60, what="a read")
            run_a = hub.runs[str(a)]
            assert hub.add_target(str(b)) is None
            assert hub.add_target(str(b)) is None  # twice is once
            await until(lambda: str(b) in hub.runs and hub.runs[str(b)].analysis.store.rows == 30, what="b read")
            assert hub.runs[str(a)] is run_a and run_a.analysis.store.rows == 60
            assert run_a.analysis.judgement().verdict is Verdict.BAD  # a's state untouched

            assert hub.add_target(str(folder)) is None
            (folder / "c.log").write_text(lines(20))
            await until(lambda: any(r.endswith("c.log") for r in hub.runs), what="c found in the folder")

            assert await hub.remove_target(str(b)) is None
            assert await hub.remove_target(str(folder)) is None
            assert set(hub.runs) == {str(a)} and hub.runs[str(a)] is run_a
            assert [r.id for r in hub.snapshot().runs] == [str(a)]
            (folder / "d.log").write_text(lines(20))  # no longer looked for
            with b.open("a") as f:
                f.write(lines(5, start=30))
            await asyncio.sleep(0.5)
            assert set(hub.runs) == {str(a)}

            assert hub.add_target(str(b)) is None  # back again: read afresh
            await until(lambda: str(b) in hub.runs and hub.runs[str(b)].analysis.store.rows == 35, what="b again")

    asyncio.run(go())


@pytest.mark.slow
def test_ssh_target_added_and_removed_while_running(ssh_home: SSHHome, tmp_path: Path) -> None:  # noqa: F811
    local, remote = tmp_path / "local.log", tmp_path / "remote.log"
    local.write_text(lines(30))
    remote.write_text(lines(40, nan_at=35))
    target = f"testhost:{remote}"

    async def go() -> None:
        async with Hub([str(local)], gpu=True, writer_poll=0, poll=0.05) as hub:
            await until(lambda: hub.runs[str(local)].analysis.store.rows == 30, what="local read")
            assert hub.add_target(target) is None
            await until(
                lambda: target in hub.runs and hub.runs[target].analysis.judgement().verdict is Verdict.BAD,
                timeout=40,
                what="the SSH run read and judged",
            )
            # Its host's GPU stream starts with it (no nvidia-smi there: a status, not an error loop).
            await until(lambda: "testhost" in dict(hub.snapshot().gpus), timeout=20, what="gpu status")
            assert await hub.remove_target(target) is None
            assert set(hub.runs) == {str(local)} and hub.runs[str(local)].analysis.store.rows == 30
            # Its host's last run went: its GPU stream and rows go too.
            assert "testhost" not in dict(hub.snapshot().gpus) and "testhost" not in hub._gpu_streams

    asyncio.run(go())


@pytest.mark.timeout(90)
def test_wandb_targets_added_and_removed_while_running(server: FakeWandbServer, tmp_path: Path) -> None:  # noqa: F811
    first = server.add_run("ent", "proj", "r1", rows=[{"loss": 3.0 - i * 0.01} for i in range(20)])
    later = server.add_run("ent", "other", "r2", rows=[{"loss": 3.0 - i * 0.01} for i in range(20)])
    server.append(later, {"loss": float("nan")})
    listed = server.add_run("ent", "team", "p1", rows=[{"loss": 2.0}] * 10)
    r1, r2, p1 = "wandb://ent/proj/r1", "wandb://ent/other/r2", "wandb://ent/team/p1"
    local = tmp_path / "a.log"
    local.write_text(lines(30))

    async def go() -> None:
        async with Hub([r1, "wandb://ent/team", str(local)], gpu=False, writer_poll=0) as hub:
            await until(lambda: hub.runs[r1].analysis.store.rows == 20, what="r1 read")
            await until(lambda: p1 in hub.runs and hub.runs[p1].analysis.store.rows == 10, what="project listed")
            poller = hub._poller
            kept = {r: hub.runs[r].analysis for r in (p1, str(local))}
            assert hub.add_target(r2) is None
            await until(
                lambda: r2 in hub.runs and hub.runs[r2].analysis.judgement().verdict is Verdict.BAD,
                timeout=30,
                what="r2 read and judged, by the same batched poller",
            )
            assert hub._poller is poller
            # A target given at start goes like one added later; the others keep their state.
            assert await hub.remove_target(r1) is None
            assert set(hub.runs) == {p1, r2, str(local)}
            assert all(hub.runs[r].analysis is kept[r] for r in kept)
            server.append(first, {"loss": 2.5})
            server.append(later, {"loss": 1.0})
            hub.note_anomaly()
            await until(lambda: hub.runs[r2].analysis.store.rows == 22, timeout=30, what="r2 polled on")
            assert r1 not in hub.runs  # forgotten by the poller: nothing brings it back
            assert await hub.remove_target("wandb://ent/team") is None
            assert set(hub.runs) == {r2, str(local)}
            server.append(listed, {"loss": 1.9})
            # Named again, a removed run starts over: every row once, none twice.
            assert hub.add_target(r1) is None
            await until(lambda: r1 in hub.runs and hub.runs[r1].analysis.store.rows == 21, timeout=30, what="r1 back")
            assert p1 not in hub.runs  # the poll that read r1 again no longer lists its project
            assert hub.runs[str(local)].analysis is kept[str(local)]
        assert not server.problems

    asyncio.run(go())


def test_fleet_follows_the_targets_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text(lines(40))
    b.write_text(lines(40))
    tf = tmp_path / "targets"
    tf.write_text(f"{a}\n")
    log = io.StringIO()

    async def go() -> None:
        fleet = Fleet(None, tf, log=log, poll=0.05)
        assert fleet.targets == [str(a)]
        async with Hub(fleet.targets, gpu=False, writer_poll=0) as hub:
            fleet.start(hub)
            try:
                tf.write_text(f"{a}\n{b}\nnot a target://\x00\n")
                await until(lambda: str(b) in hub.runs, what="b added on change")
                tf.write_text(f"{b}\n")
                await until(lambda: str(a) not in hub.runs, what="a removed on change")
                tf.unlink()  # a file gone keeps what is watched
                fleet.request_reload()
                await until(lambda: "keeping" in log.getvalue(), what="the missing file noted")
                assert set(hub.runs) == {str(b)}
            finally:
                await fleet.aclose()

    asyncio.run(go())
    out = log.getvalue().splitlines()
    assert any("1 added, 0 removed, 2 watched" in x or "1 added, 0 removed" in x for x in out), out
    assert any("0 added, 1 removed, 1 watched" in x for x in out), out
    assert all(" runwatch: " in x for x in out) and out[-1].endswith(")") and "stopped" in out[-1]


@pytest.mark.timeout(90)
def test_fleet_removes_and_adds_wandb_targets_on_reload(server: FakeWandbServer, tmp_path: Path) -> None:  # noqa: F811
    server.add_run("ent", "proj", "r1", rows=[{"loss": 3.0 - i * 0.01} for i in range(20)])
    server.add_run("ent", "proj", "r2", rows=[{"loss": 3.0 - i * 0.01} for i in range(15)])
    r1, r2 = "wandb://ent/proj/r1", "wandb://ent/proj/r2"
    a = tmp_path / "a.log"
    a.write_text(lines(40))
    tf = tmp_path / "targets"
    tf.write_text(f"{a}\n{r1}\n{r2}\n")
    log = io.StringIO()

    async def go() -> None:
        fleet = Fleet(None, tf, log=log, poll=0.05)
        async with Hub(fleet.targets, gpu=False, writer_poll=0) as hub:
            fleet.start(hub)
            try:
                await until(lambda: r2 in hub.runs and hub.runs[r2].analysis.store.rows == 15, what="r2 read")
                await until(lambda: hub.runs[r1].analysis.store.rows == 20, what="r1 read")
                kept = hub.runs[r2].analysis, hub.runs[str(a)].analysis
                tf.write_text(f"{a}\n{r2}\n")
                await until(lambda: r1 not in hub.runs, what="r1 removed on change")
                assert (hub.runs[r2].analysis, hub.runs[str(a)].analysis) == kept
                tf.write_text(f"{a}\n{r2}\n{r1}\n")
                fleet.request_reload()  # what SIGHUP does
                await until(lambda: r1 in hub.runs and hub.runs[r1].analysis.store.rows == 20, what="r1 back")
                assert (hub.runs[r2].analysis, hub.runs[str(a)].analysis) == kept
            finally:
                await fleet.aclose()

    asyncio.run(go())
    out = log.getvalue()
    assert f"0 added, 1 removed, 2 watched (-{r1})" in out and f"1 added, 0 removed, 3 watched (+{r1})" in out, out
    assert "restart" not in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


@pytest.mark.slow
def test_service_targets_file_sighup_and_sigterm(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text(lines(40, nan_at=35))
    b.write_text(lines(40))
    tf = tmp_path / "targets"
    tf.write_text(f"{a}\n")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "watch", "--targets-file", str(tf), "--metrics-addr", f"127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def wait_for(pred: Callable[[str], bool], what: str) -> str:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                try:
                    text = _scrape(port)
                    if pred(text):
                        return text
                except OSError:
                    pass
                time.sleep(0.2)
            raise AssertionError(f"timed out waiting for {what}")

        wait_for(lambda t: f'run="{a}"' in t and "runwatch_run_verdict{" in t, "a scraped")
        # Written in place with the same size and mtime kept: only SIGHUP tells the service.
        st = tf.stat()
        tf.write_text(f"{b}\n".ljust(st.st_size))

        os.utime(tf, ns=(st.st_atime_ns, st.st_mtime_ns))
        proc.send_signal(signal.SIGHUP)
        text = wait_for(lambda t: f'run="{b}"' in t and f'run="{a}"' not in t, "b instead of a after SIGHUP")
        assert "runwatch_run_last_step{" in text
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    logged = err.strip().splitlines()
    assert any("metrics on http://127.0.0.1" in x for x in logged), logged
    assert any("1 added, 1 removed, 1 watched" in x for x in logged), logged
    assert "stopped" in logged[-1], logged
