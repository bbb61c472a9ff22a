"""Stopping runs: over SSH against a real loopback sshd, on this machine, and through W&B's StopRun."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from wandb_server import FakeWandbServer

from monitor.actions import procs
from monitor.actions.api import Actions
from monitor.actions.audit import AUDIT_FILE
from monitor.analysis import RunAnalysis, RunInfo
from monitor.config import Config, RunConfig
from monitor.model import Row
from monitor.sources.ssh import SSHPool, SSHSettings
from monitor.sources.wandb_api import WandbClient, WandbCredentials
from tests.sshd import SSHHome, remote_python, ssh_home, sshd

__all__ = ["ssh_home", "sshd"]  # fixtures, imported for pytest

pytestmark = pytest.mark.timeout(60)  # every test here is bounded; slower ones say so

WRITER = """\
import os, signal, sys, time
if "--int" in sys.argv:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # like a job started in a terminal
# SIGUSR1 turns this PID into another program: what a reused PID looks like from outside.
signal.signal(signal.SIGUSR1, lambda *_: os.execv("/bin/sleep", ["sleep", "300"]))
i = 0
try:
    while True:
        i += 1
        print(f"step={i} loss={3.0 / (1 + i / 50):.4f}", flush=True)
        time.sleep(0.05)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


async def _until(cond: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _analysis(target: str, name: str) -> RunAnalysis:
    a = RunAnalysis(RunInfo(target=target, name=name, format="kv"))
    a.add_rows([Row(float(s), {"loss": 3.0 / (1 + s / 50)}) for s in range(1, 50)], now=1000.0)
    return a


@pytest.fixture
def pids() -> Iterator[list[int]]:
    """PIDs of the writers a test starts; each one still alive is killed at the end."""
    started: list[int] = []
    yield started
    for pid in started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ---- over SSH ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_ssh_stop_finds_confirms_refuses_a_changed_pid_and_stops(
    ssh_home: SSHHome, tmp_path: Path, pids: list[int]
) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    log_a, log_b = tmp_path / "a" / "train.log", tmp_path / "b" / "train.log"
    log_a.parent.mkdir()
    log_b.parent.mkdir()
    target_a, target_b = f"ssh://testhost{log_a}", f"ssh://testhost{log_b}"
    py = remote_python()
    cfg = Config(evidence_dir=tmp_path / "ev")

    async def go() -> None:
        pool = SSHPool(SSHSettings(connect_timeout=10))
        actions = Actions(cfg, ssh_pool=pool, settle=1.0)
        actions.add_run(target_a, _analysis(target_a, "run-a"))
        actions.add_run(target_b, _analysis(target_b, "run-b"))
        try:
            for log in (log_a, log_b):
                start = f"cd {tmp_path} || exit 1; nohup {py} -u writer.py --int > {log} 2>&1 < /dev/null & echo $!"
                res = await pool.run("testhost", start, timeout=20)
                assert res.exit_status == 0, res
                pids.append(int(res.stdout.split()[-1]))
            pid_a, pid_b = pids
            await _until(lambda: len(_lines(log_a)) > 3 and len(_lines(log_b)) > 3)

            plan = await actions.plan_stop(target_a)
            assert plan.ok, plan.problem
            assert (plan.method, plan.where, plan.signal) == ("process", "testhost", "INT")
            (proc,) = plan.processes
            assert proc.pid == pid_a and "writer.py --int" in proc.cmdline and proc.writes
            text = plan.describe()
            assert f"send SIGINT to pid {pid_a} on testhost" in text and "writer.py --int" in text
            assert f"{log_a} open for writing" in text and "Evidence is saved first" in text

            # A PID that now belongs to a process started at another time: refused, not signalled.
            reused = replace(proc, start_ticks=proc.start_ticks + 1)
            forged = replace(plan, processes=(reused,), command=procs.stop_script([reused], "INT"))
            out = await actions.execute_stop(forged)
            assert out.status == "refused" and out.exit_status == procs.EXIT_CHANGED, out
            assert "no longer the confirmed process" in out.detail
            assert _alive(pid_a)

            # The same PID running another program (exec): refused too.
            plan_b = await actions.plan_stop(target_b)
            assert plan_b.ok and plan_b.processes[0].pid == pid_b
            await pool.run("testhost", f"kill -USR1 {pid_b}")
            await _until(lambda: "sleep" in Path(f"/proc/{pid_b}/cmdline").read_text())
            out_b = await actions.execute_stop(plan_b)
            assert out_b.status == "refused", out_b
            assert _alive(pid_b)

            # The confirmed process: stopped, evidence first.
            lines_before = len(_lines(log_a))
            done = await actions.execute_stop(plan)
            assert done.status == "sent" and done.ok, done
            assert "the process exited within 1 s" in done.detail
            assert done.evidence is not None and (done.evidence.path / "action.json").exists()
            await _until(lambda: not _alive(pid_a))
            assert _lines(log_a)[-1] == "interrupted" and len(_lines(log_a)) >= lines_before

            gone = await actions.execute_stop(plan)
            assert gone.status == "gone" and gone.exit_status == procs.EXIT_GONE
        finally:
            await actions.aclose()
            await pool.close()

    asyncio.run(go())
    audit = [json.loads(line) for line in (tmp_path / "ev" / AUDIT_FILE).read_text().splitlines()]
    assert [e["result"] for e in audit] == ["refused", "refused", "sent", "gone"]
    assert all(e["action"] == "stop" and "@" in e["who"] and e["where"] == "testhost" for e in audit)
    assert audit[2]["run"] == target_a and f"kill -INT {pids[0]}" in audit[2]["command"]
    assert audit[2]["processes"][0]["cmdline"].endswith("writer.py --int")
    assert audit[2]["evidence"] and Path(audit[2]["evidence"]).is_dir()
    summary = (Path(audit[2]["evidence"]) / "summary.md").read_text()
    assert "saved before stopping the run" in summary and f"pid {pids[0]}" in summary


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_ssh_stop_with_a_configured_command_over_ssh(ssh_home: SSHHome, tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("step=1 loss=2\n")
    marker = tmp_path / "scancel called with"
    target = f"ssh://testhost{log}"
    run = RunConfig(
        target=target, stop={"command": "printf %s {job_id} > {out}", "job_id": "123; rm -rf ~", "out": str(marker)}
    )
    cfg = Config(evidence_dir=tmp_path / "ev", runs=(run,))

    async def go() -> None:
        pool = SSHPool(SSHSettings(connect_timeout=10))
        actions = Actions(cfg, ssh_pool=pool)
        actions.add_run(target, _analysis(target, "cmd-run"))
        try:
            plan = await actions.plan_stop(target)
            assert plan.ok and plan.method == "command" and plan.where == "testhost"
            assert plan.summary == f"run `printf %s '123; rm -rf ~' > '{marker}'` on testhost"
            out = await actions.execute_stop(plan)
            assert out.status == "sent", out
        finally:
            await pool.close()

    asyncio.run(go())
    assert marker.read_text() == "123; rm -rf ~"


# ---- on this machine --------------------------------------------------------------------------


def _start_local(tmp_path: Path, name: str, *args: str) -> tuple[int, Path]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    log = tmp_path / name / "train.log"
    log.parent.mkdir()
    # Started with `&` by a script, as a batch job often is: it ignores SIGINT.
    cmd = f"nohup {sys.executable} -u {script} {' '.join(args)} > {log} 2>&1 < /dev/null & echo $!"
    out = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, check=True, timeout=10)
    pid = int(out.stdout.split()[-1])
    deadline = time.monotonic() + 10
    while len(_lines(log)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid, log


@pytest.mark.timeout(60)
def test_local_stop_dry_run_then_sigterm_for_a_job_that_ignores_sigint(tmp_path: Path, pids: list[int]) -> None:
    pid, log = _start_local(tmp_path, "a")
    pids.append(pid)
    cfg = Config(evidence_dir=tmp_path / "ev")
    actions = Actions(cfg, settle=1.0)
    actions.add_run(str(log), _analysis(str(log), "local-run"))

    async def go() -> None:
        plan = await actions.plan_stop(str(log))
        assert plan.ok, plan.problem
        assert plan.method == "process" and plan.where.startswith("this machine")
        assert plan.signal == "TERM" and "ignores SIGINT" in plan.describe()
        assert [p.pid for p in plan.processes] == [pid]

        dry = await actions.execute_stop(plan, dry_run=True)
        assert dry.status == "dry-run" and not dry.ok and dry.evidence is None
        assert f"kill -TERM {pid}" in dry.detail
        assert _alive(pid)
        assert not any(p.is_dir() for p in (tmp_path / "ev").iterdir())  # a dry run writes no bundle

        done = await actions.execute_stop(plan)
        assert done.status == "sent", done
        await _until(lambda: not _alive(pid))

    asyncio.run(go())
    audit = [json.loads(line) for line in (tmp_path / "ev" / AUDIT_FILE).read_text().splitlines()]
    assert [(e["result"], e["dry_run"]) for e in audit] == [("dry-run", True), ("sent", False)]


@pytest.mark.timeout(60)
def test_local_command_template_with_a_found_pid_is_guarded(tmp_path: Path, pids: list[int]) -> None:
    pid, log = _start_local(tmp_path, "a")
    pids.append(pid)
    run = RunConfig(target=str(log), stop={"command": "kill -KILL {pid}"})
    actions = Actions(Config(evidence_dir=tmp_path / "ev", runs=(run,)), settle=0)
    actions.add_run(str(log), _analysis(str(log), "local-run"))

    async def go() -> None:
        plan = await actions.plan_stop(str(log))
        assert plan.ok and plan.method == "command", plan.problem
        assert plan.summary.startswith(f"run `kill -KILL {pid}`")
        assert plan.command is not None and f"chk {pid} " in plan.command
        assert "writer.py" in plan.describe()
        done = await actions.execute_stop(plan)
        assert done.status == "sent", done
        await _until(lambda: not _alive(pid))

    asyncio.run(go())


@pytest.mark.timeout(30)
def test_plans_that_cannot_be_carried_out_say_why(tmp_path: Path) -> None:
    quiet = tmp_path / "finished.log"
    quiet.write_text("step=1 loss=2\n")
    runs = (RunConfig(target="job.log", stop={"command": "scancel {job_id}"}),)
    actions = Actions(Config(evidence_dir=tmp_path / "ev", runs=runs))
    actions.add_run(str(quiet), _analysis(str(quiet), "finished"))
    actions.add_run("-", _analysis("-", "stdin"))
    actions.add_run("job.log", _analysis("job.log", "job"))

    async def go() -> None:
        plan = await actions.plan_stop(str(quiet))
        assert not plan.ok and "no process on this machine" in (plan.problem or "")
        assert "open for writing" in plan.describe()
        out = await actions.execute_stop(plan)
        assert out.status == "impossible"
        assert not (await actions.plan_stop("-")).ok
        missing = await actions.plan_stop("job.log")
        assert missing.problem == "the stop command 'scancel {job_id}' needs job_id = \"…\" in this run's stop table"

    asyncio.run(go())
    audit = [json.loads(line) for line in (tmp_path / "ev" / AUDIT_FILE).read_text().splitlines()]
    assert [e["result"] for e in audit] == ["impossible"]


# ---- W&B ---------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_wandb_stop_sends_stoprun_with_the_runs_id(tmp_path: Path) -> None:
    with FakeWandbServer() as server:
        run = server.add_run("ent", "proj", "r1", rows=[{"loss": 1.0}])
        server.add_run("ent", "proj", "done", state="finished")
        target = "wandb://ent/proj/r1"
        actions = Actions(
            Config(evidence_dir=tmp_path / "ev"),
            wandb_client_factory=lambda base: WandbClient(WandbCredentials(server.url, server.api_key), timeout=5),
        )
        actions.add_run(target, _analysis(target, "r1"))
        actions.add_run("wandb://ent/proj/done", _analysis("wandb://ent/proj/done", "done"))

        async def go() -> None:
            plan = await actions.plan_stop(target)
            assert plan.ok and plan.method == "wandb" and plan.wandb_target is not None
            assert "StopRun" in plan.summary and "15-30 s" in plan.describe()
            assert server.graphql_requests("StopRun") == []  # planning sends nothing
            out = await actions.execute_stop(plan)
            assert out.status == "sent", out
            assert "W&B accepted the stop request for ent/proj/r1" in out.detail
            assert out.evidence is not None

            finished = await actions.execute_stop(await actions.plan_stop("wandb://ent/proj/done"))
            assert finished.status == "failed" and "already finished" in finished.detail

            server.stop()  # W&B unreachable: the outcome says so, nothing is raised
            unreachable = await actions.execute_stop(plan)
            assert unreachable.status == "failed" and "cannot reach" in unreachable.detail

        asyncio.run(go())
        stops = server.graphql_requests("StopRun")
        assert [r.variables for r in stops] == [{"id": run.storage_id}]
        assert run.stop_requested
        assert server.problems == []
    audit = [json.loads(line) for line in (tmp_path / "ev" / AUDIT_FILE).read_text().splitlines()]
    assert [(e["result"], e["method"]) for e in audit] == [("sent", "wandb"), ("failed", "wandb"), ("failed", "wandb")]
    assert server.api_key not in (tmp_path / "ev" / AUDIT_FILE).read_text()
