"""The W&B API source against a local fake backend (tests/wandb_server.py) on 127.0.0.1.

No test reaches past this machine: every test points `WANDB_BASE_URL` (and the clients) at the
fake server, uses a dummy key, drops proxy variables, and the real-client test checks with strace
(where available) that wandb and wandb-core connect to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wandb_server import KNOWN_OPERATIONS, FakeWandbServer

from monitor.errors import RunwatchError, TargetError
from monitor.model import Row
from monitor.sources.wandb_api import (
    NO_CREDENTIALS,
    WandbClient,
    WandbCredentials,
    WandbTarget,
    default_base_url,
    parse_wandb_target,
    resolve_credentials,
    retry_after_seconds,
)
from monitor.sources.wandb_poller import PollScheduler, WandbPoller, WandbRunStatus

E, P = "ent", "proj"
ROOT = Path(__file__).resolve().parents[1]


class FakeClock:
    """Monotonic time that moves only when a test (or the poller's sleep) moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeWandbServer]:
    for name in list(os.environ):
        if name.startswith("WANDB_") or name.lower().endswith("_proxy") or name == "NETRC":
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    with FakeWandbServer() as s:
        env = {
            "HOME": str(home),
            "WANDB_BASE_URL": s.url,
            "WANDB_API_KEY": s.api_key,
            "WANDB_DISABLE_GIT": "true",
            "WANDB_SILENT": "true",
            "WANDB_CONFIG_DIR": str(home / "wandb-config"),
            "WANDB_CACHE_DIR": str(home / "wandb-cache"),
            "WANDB_DATA_DIR": str(home / "wandb-data"),
            "WANDB_DIR": str(home),
            "WANDB_ERROR_REPORTING": "false",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        yield s
    assert s.problems == [], "the fake backend was asked for something it does not model"


class Sink:
    """Collects what the poller hands out."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Row]] = {}
        self.states: list[WandbRunStatus] = []

    def on_rows(self, target: WandbTarget, rows: tuple[Row, ...]) -> None:
        assert rows
        self.rows.setdefault(target.run_id or "", []).extend(rows)

    def on_state(self, status: WandbRunStatus) -> None:
        self.states.append(status)

    def last(self, run_id: str) -> WandbRunStatus:
        return [s for s in self.states if s.target.run_id == run_id][-1]


def make_poller(
    targets: list[WandbTarget], clock: FakeClock, sink: Sink, *, timeout: float = 10.0, **kw: Any
) -> WandbPoller:
    scheduler = PollScheduler(clock=clock, rng=lambda: 0.0)
    return WandbPoller(
        targets,
        sink.on_rows,
        sink.on_state,
        client_factory=lambda base: WandbClient(resolve_credentials(base), timeout=timeout),
        scheduler=scheduler,
        sleep=clock.sleep,
        **kw,
    )


def run_target(run_id: str) -> WandbTarget:
    return WandbTarget(E, P, run_id)


def poll(poller: WandbPoller) -> float:
    return asyncio.run(poller.poll_once())


# -- the real client against the fake backend ----------------------------------------------------

REAL_CLIENT = textwrap.dedent(
    """
    import json, os, wandb
    api = wandb.Api(overrides={"base_url": os.environ["WANDB_BASE_URL"]}, api_key=os.environ["WANDB_API_KEY"])
    run = api.run("ent/proj/run1")
    out = {"state": run.state, "storage_id": run.storage_id}
    out["scan"] = list(run.scan_history())
    out["scan_from_3"] = [r["_step"] for r in run.scan_history(min_step=3)]
    out["history"] = run.history(pandas=False)
    out["history_keys"] = run.history(keys=["loss"], pandas=False)
    out["running"] = [r.id for r in api.runs("ent/proj", filters={"state": "running"})]
    run.stop()
    print("RESULT " + json.dumps(out))
    """
)


def _strace_works() -> bool:
    if not shutil.which("strace"):
        return False
    probe = subprocess.run(["strace", "-f", "-qq", "-e", "trace=connect", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_real_wandb_client_reads_what_the_fake_backend_serves(
    server: FakeWandbServer, tmp_path: Path
) -> None:
    rows = [{"loss": 1.0 / (i + 1), "train/global_step": 10 * i} for i in range(6)]
    run = server.add_run(E, P, "run1", rows=rows)
    server.add_run(E, P, "done1", state="finished", rows=rows[:2])
    script = tmp_path / "client.py"
    script.write_text(REAL_CLIENT)
    cmd = [sys.executable, str(script)]
    trace = tmp_path / "connect.trace"
    traced = _strace_works()
    if traced:  # record every connect() of python and wandb-core to prove nothing leaves the machine
        cmd = ["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(trace), *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=50, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT ", 1)[1])

    assert out["state"] == "running"
    assert out["storage_id"] == run.storage_id
    assert out["scan"] == run.rows
    assert out["scan_from_3"] == [3, 4, 5]
    assert [r["loss"] for r in out["history"]] == [r["loss"] for r in rows]
    assert out["history_keys"] == [{"_step": i, "loss": r["loss"]} for i, r in enumerate(rows)]
    assert out["running"] == ["run1"]
    assert run.stop_requested
    ops = server.operations()
    assert set(ops) <= KNOWN_OPERATIONS
    for op in ("Run", "RunHistoryKeys", "RunParquetHistory", "HistoryPage", "Runs", "StopRun"):
        assert op in ops
    assert {r.path for r in server.requests} <= {"/graphql", "/sdk/otel/v1/metrics", "/sdk/otel/v1/logs"}
    if traced:
        inet = [ln for ln in trace.read_text().splitlines() if "AF_INET" in ln]
        assert inet, "strace saw no TCP connect at all"
        for line in inet:
            assert re.search(r'inet_addr\("127\.0\.0\.1"\)|inet_pton\(AF_INET6, "::1"', line), line


# -- runwatch's poller ---------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_rows_arrive_incrementally_without_duplicates(server: FakeWandbServer) -> None:
    run = server.add_run(E, P, "r1", rows=[{"loss": 2.0 - i / 10} for i in range(5)])
    clock, sink = FakeClock(), Sink()
    poller = make_poller([run_target("r1")], clock, sink)
    poll(poller)
    assert [r.step for r in sink.rows["r1"]] == [0, 1, 2, 3, 4]
    for i in range(5, 8):
        server.append(run, {"loss": 2.0 - i / 10})
    poll(poller)
    poll(poller)  # nothing new
    server.append(run, {"loss": 1.0})
    poll(poller)
    steps = [r.step for r in sink.rows["r1"]]
    assert steps == list(range(9))
    assert [r.values["loss"] for r in sink.rows["r1"]] == [row["loss"] for row in run.rows]
    assert all(r.time is not None for r in sink.rows["r1"])
    mins = [r.variables["min0_0"] for r in server.graphql_requests("RunwatchPoll")]
    assert mins == [0, 5, 8, 8]
    status = sink.last("r1")
    assert (status.state, status.last_step, status.history_line_count, status.storage_id) == (
        "running",
        8,
        9,
        run.storage_id,
    )


@pytest.mark.timeout(60)
def test_one_post_per_poll_for_three_runs(server: FakeWandbServer) -> None:
    for name in ("a", "b", "c"):
        server.add_run(E, P, name, rows=[{"loss": 1.0}] * 3)
    clock, sink = FakeClock(), Sink()
    poller = make_poller([run_target(n) for n in ("a", "b", "c")], clock, sink)
    poll(poller)
    assert len(server.requests) == 1
    assert server.operations() == ["RunwatchPoll"]
    assert {server.requests[0].variables[f"n0_{j}"] for j in range(3)} == {"a", "b", "c"}
    assert {k: len(v) for k, v in sink.rows.items()} == {"a": 3, "b": 3, "c": 3}
    poll(poller)
    assert server.operations() == ["RunwatchPoll", "RunwatchPoll"]


@pytest.mark.timeout(60)
def test_project_target_discovers_new_running_runs_and_keeps_finished_ones(server: FakeWandbServer) -> None:
    a = server.add_run(E, P, "a", rows=[{"loss": 1.0}] * 2)
    server.add_run(E, P, "old", state="finished", rows=[{"loss": 1.0}])
    clock, sink = FakeClock(), Sink()
    project = WandbTarget(E, P)
    assert project.is_project
    poller = make_poller([project], clock, sink, discover_every=3)
    poll(poller)  # lists the running runs
    assert set(poller.statuses) == {project.with_run("a")}
    assert json.loads(server.requests[0].variables["f0"]) == {"state": "running"}
    poll(poller)  # fetches a's rows
    assert len(sink.rows["a"]) == 2
    b = server.add_run(E, P, "b", rows=[{"loss": 3.0}])
    poll(poller)
    listed = ["running:" in r.query for r in server.graphql_requests()]
    while "b" not in sink.rows:
        poll(poller)
    assert listed == [True, False, False]
    assert sum("running:" in r.query for r in server.graphql_requests()) == 2  # every third poll
    assert len(server.graphql_requests()) <= 6
    server.set_state(a, "finished")
    server.set_state(b, "failed")
    for _ in range(3):
        poll(poller)
    assert poller.statuses[project.with_run("a")].state == "finished"
    assert poller.statuses[project.with_run("b")].state == "failed"
    assert "old" not in {t.run_id for t in poller.statuses}
    ended_at = len(server.requests)
    for _ in range(3):
        poll(poller)
    for req in server.requests[ended_at:]:  # ended runs are no longer asked for, only listed ones
        assert {k for k in req.variables if k.startswith("n")} == set()
    assert not poller.done  # a project target is watched for new runs forever
    assert len(server.requests) - ended_at == 1  # polls with nothing to ask send nothing
    server.add_run(E, P, "c", rows=[{"loss": 2.0}])
    for _ in range(4):
        poll(poller)
    assert sink.rows["c"][0].values == {"loss": 2.0}


@pytest.mark.timeout(60)
def test_rate_limit_reset_delays_the_next_request(
    server: FakeWandbServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.add_run(E, P, "r1", rows=[{"loss": 1.0}])
    clock, sink = FakeClock(), Sink()
    poller = make_poller([run_target("r1")], clock, sink)
    server.rate_limit(1, reset=45)
    assert poll(poller) == pytest.approx(45)
    assert sink.last("r1").state == "api_error"
    assert "429" in (sink.last("r1").error or "")
    sent_at: list[float] = []
    original = WandbClient.poll

    def timed_poll(self: WandbClient, *a: Any) -> Any:
        sent_at.append(clock.now)
        return original(self, *a)

    start = clock.now
    monkeypatch.setattr(WandbClient, "poll", timed_poll)
    asyncio.run(_run_until(poller, clock, lambda: len(sent_at) >= 1))
    assert sent_at[0] - start == pytest.approx(45)
    assert sink.last("r1").state == "running" and sink.last("r1").error is None
    # Retry-After (as an alternative header) is honoured the same way, with jitter on top.
    assert poller.scheduler.interval == 10
    server.rate_limit(1, reset=25, retry_after=True)
    poller.scheduler._rng = lambda: 0.5
    delay = poll(poller)
    assert 25 < delay <= 25 + 2.5


@pytest.mark.timeout(60)
def test_spent_rate_limit_on_a_good_answer_is_a_floor_too(server: FakeWandbServer) -> None:
    server.add_run(E, P, "r1", rows=[{"loss": 1.0}])
    clock, sink = FakeClock(), Sink()
    poller = make_poller([run_target("r1")], clock, sink)
    server.spend_limit(1, reset=33)
    assert poll(poller) == pytest.approx(33)
    assert len(sink.rows["r1"]) == 1 and sink.last("r1").state == "running"


class _Enough(Exception):
    pass


async def _run_until(poller: WandbPoller, clock: FakeClock, cond: Any) -> None:
    """Run the poller on the fake clock until `cond()` holds when it next sleeps."""

    async def sleep(seconds: float) -> None:
        if cond():
            raise _Enough
        await clock.sleep(seconds)

    poller._sleep = sleep
    with pytest.raises(_Enough):
        await asyncio.wait_for(poller.run(), timeout=30)


def test_retry_after_header_forms() -> None:
    assert retry_after_seconds({"RateLimit-Reset": "12"}) == 12
    assert retry_after_seconds({"Retry-After": "3", "RateLimit-Reset": "9"}) == 9
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10
    assert retry_after_seconds({"RateLimit-Reset": "1445412500"}, now=1445412480.0) == 20
    assert retry_after_seconds({}) is None


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_server_errors_and_outages_become_states_and_recover(server: FakeWandbServer) -> None:
    run = server.add_run(E, P, "r1", rows=[{"loss": 1.0}])
    clock, sink = FakeClock(), Sink()
    poller = make_poller([run_target("r1")], clock, sink, timeout=0.5)
    poll(poller)
    server.fail(2, status=500)
    d1, d2 = poll(poller), poll(poller)
    assert sink.last("r1").state == "api_error"
    assert sink.last("r1").run_state == "running"  # the last known W&B state stays visible
    assert "HTTP 500" in (sink.last("r1").error or "")
    assert (d1, d2) == (pytest.approx(9), pytest.approx(18))  # 10 s, 20 s backoff, jitter at its low end
    server.append(run, {"loss": 0.5})
    poll(poller)
    assert sink.last("r1").state == "running" and sink.last("r1").error is None
    assert len(sink.rows["r1"]) == 2

    server.stop()
    poll(poller)
    down = sink.last("r1")
    assert down.state == "unreachable" and down.stale
    assert "connection refused" in (down.error or "")
    assert "\n" not in (down.error or "")
    server.start()  # same port
    poll(poller)
    assert sink.last("r1").state == "running"

    server.hang(1, seconds=2.0)
    poll(poller)
    assert sink.last("r1").state == "unreachable"
    assert "timed out" in (sink.last("r1").error or "")
    poll(poller)
    assert sink.last("r1").state == "running"
    assert [r.step for r in sink.rows["r1"]] == [0, 1]


@pytest.mark.timeout(60)
def test_wrong_key_is_an_api_error_not_an_exception(server: FakeWandbServer, monkeypatch: Any) -> None:
    server.add_run(E, P, "r1")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    clock, sink = FakeClock(), Sink()
    poll(make_poller([run_target("r1")], clock, sink))
    assert sink.last("r1").state == "api_error"
    assert "rejected the API key (HTTP 401)" in (sink.last("r1").error or "")


@pytest.mark.timeout(60)
def test_adaptive_interval_doubles_to_60_and_snaps_back(server: FakeWandbServer) -> None:
    run = server.add_run(E, P, "r1", rows=[{"loss": 1.0}])
    clock, sink = FakeClock(), Sink()
    poller = make_poller([run_target("r1")], clock, sink)
    delays = []
    for _ in range(9):
        delays.append(poll(poller))
        clock.now += delays[-1]
    assert delays == [10, 10, 20, 20, 40, 40, 60, 60, 60]
    assert poll(poller) == 60
    clock.now += 5
    poller.scheduler.anomaly()  # a detector flagged something: the pending wait shrinks too
    assert poller.scheduler.due_in() == 5
    clock.now += 5
    assert poll(poller) == 10
    # A state change snaps back as well.
    for _ in range(6):
        clock.now += poll(poller)
    assert poller.scheduler.interval == 60
    server.set_state(run, "crashed")
    assert poll(poller) == 10
    # So do rows after a long quiet spell (a stalled run coming back).
    for _ in range(6):
        clock.now += poll(poller)
    clock.now += 400
    server.append(run, {"loss": 0.9})
    assert poll(poller) == 10


def test_scheduler_steady_data_still_backs_off() -> None:
    clock = FakeClock()
    s = PollScheduler(clock=clock, rng=lambda: 0.0)
    for _ in range(8):
        s.succeeded(new_data=True, changed=False, backlog=False)
        clock.now += s.due_in()
    assert s.interval == 60


@pytest.mark.timeout(60)
def test_backlog_is_fetched_in_pages_without_waiting(server: FakeWandbServer) -> None:
    server.add_run(E, P, "r1", rows=[{"loss": 1.0}] * 25)
    clock, sink = FakeClock(), Sink()
    poller = make_poller([run_target("r1")], clock, sink, page_size=10)
    assert [poll(poller) for _ in range(3)] == [0, 0, 10]
    assert [r.step for r in sink.rows["r1"]] == list(range(25))


@pytest.mark.timeout(60)
def test_sparse_and_changing_step_spacing_loses_no_row(server: FakeWandbServer) -> None:
    # wandb.log(step=...) leaves gaps in _step; later the run logs densely. Nothing may be sampled away.
    steps = [100 * i for i in range(30)] + [3000 + i for i in range(40)]
    server.add_run(E, P, "r1", rows=[{"_step": s, "loss": float(s)} for s in steps])
    clock, sink = FakeClock(), Sink()
    poller = make_poller([run_target("r1")], clock, sink, page_size=10)
    for _ in range(30):
        if poll(poller) > 0:
            break
    assert [r.step for r in sink.rows["r1"]] == steps
    assert len(server.requests) < 40


@pytest.mark.timeout(60)
def test_rows_keep_numeric_scalars_on_the_run_step_axis(server: FakeWandbServer) -> None:
    rows: list[dict[str, Any]] = [
        {"train/global_step": 100, "loss": "NaN", "grad": {"norm": 2.5}, "hist": {"_type": "histogram"}},
        {"train/global_step": 200, "loss": 1.5, "note": "text", "flag": True, "lr": "Infinity"},
        {"eval/loss": 1.7},  # an eval row without the global step: it belongs to the latest one
    ]
    server.add_run(E, P, "r1", rows=rows)
    clock, sink = FakeClock(), Sink()
    poll(make_poller([run_target("r1")], clock, sink))
    got = sink.rows["r1"]
    assert [r.step for r in got] == [100, 200, 200]
    assert got[0].values.keys() == {"train/global_step", "loss", "grad/norm"}
    assert got[0].values["loss"] != got[0].values["loss"]  # NaN kept: it is what detectors look for
    assert got[1].values == {"train/global_step": 200, "loss": 1.5, "lr": float("inf")}
    assert got[2].values == {"eval/loss": 1.7}
    assert sink.last("r1").step_key == "train/global_step"


@pytest.mark.timeout(60)
def test_stop_run_sends_the_mutation_with_the_storage_id(server: FakeWandbServer) -> None:
    run = server.add_run(E, P, "r1", rows=[{"loss": 1.0}])
    clock, sink = FakeClock(), Sink()
    poller = make_poller([run_target("r1")], clock, sink)
    with pytest.raises(RunwatchError):
        asyncio.run(poller.stop_run(run_target("r1")))  # not polled yet: its storage id is unknown
    poll(poller)
    assert asyncio.run(poller.stop_run(run_target("r1"))) is True
    stops = server.graphql_requests("StopRun")
    assert [r.variables for r in stops] == [{"id": run.storage_id}]
    assert "stopRun(input: {id: $id})" in stops[0].query
    assert run.stop_requested
    client = WandbClient(resolve_credentials())
    assert client.stop_run("bm8tc3VjaC1ydW4=") is False


@pytest.mark.timeout(60)
def test_finished_run_targets_end_the_poller(server: FakeWandbServer) -> None:
    run = server.add_run(E, P, "r1", rows=[{"loss": 1.0}])
    clock, sink = FakeClock(), Sink()
    poller = make_poller([run_target("r1")], clock, sink)
    poll(poller)
    server.append(run, {"loss": 0.5})
    server.set_state(run, "finished")
    asyncio.run(asyncio.wait_for(poller.run(), timeout=30))
    assert poller.done
    assert sink.last("r1").state == "finished"
    assert len(sink.rows["r1"]) == 2


@pytest.mark.timeout(60)
def test_missing_credentials_is_one_line(server: FakeWandbServer, monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.delenv("WANDB_API_KEY")
    with pytest.raises(RunwatchError) as err:
        resolve_credentials()
    assert str(err.value) == NO_CREDENTIALS
    assert "\n" not in err.value.one_line()
    with pytest.raises(RunwatchError, match="no W&B credentials"):
        WandbPoller([run_target("r1")], lambda t, r: None, lambda s: None)
    assert server.requests == []
    # What `wandb login` writes is found: a ~/.netrc entry for the base URL's host.
    netrc = Path(os.environ["HOME"]) / ".netrc"
    netrc.write_text(f"machine 127.0.0.1:{server.port}\n  login user\n  password {server.api_key}\n")
    netrc.chmod(0o600)
    assert resolve_credentials() == WandbCredentials(server.url, server.api_key)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)  # the environment wins
    assert resolve_credentials().api_key == "k" * 40


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("wandb://ent/proj/abc123", WandbTarget("ent", "proj", "abc123")),
        ("wandb://ent/proj", WandbTarget("ent", "proj")),
        ("wandb://ent/proj/", WandbTarget("ent", "proj")),
        ("wandb://my-team/my.proj_2/runs/x1y2", WandbTarget("my-team", "my.proj_2", "x1y2")),
        (
            "https://wandb.ai/ent/proj/runs/abc123",
            WandbTarget("ent", "proj", "abc123", "https://api.wandb.ai"),
        ),
        (
            "https://wandb.ai/ent/proj/runs/abc123?nw=nwuser&workspace=user-x",
            WandbTarget("ent", "proj", "abc123", "https://api.wandb.ai"),
        ),
        (
            "https://wandb.ai/ent/proj/runs/abc123/overview/",
            WandbTarget("ent", "proj", "abc123", "https://api.wandb.ai"),
        ),
        (
            "https://forge.coreweave.com/wandb/ent/proj/runs/abc123",
            WandbTarget("ent", "proj", "abc123", "https://api.forge.coreweave.com"),
        ),
        (
            "https://app.wandb.corp.example/ent/proj/runs/abc123#logs",
            WandbTarget("ent", "proj", "abc123", "https://api.wandb.corp.example"),
        ),
        (
            "http://wandb.local:8080/ent/proj/runs/abc123",
            WandbTarget("ent", "proj", "abc123", "http://wandb.local:8080"),
        ),
        ("https://wandb.ai/ent/proj", None),
        ("https://example.com/logs/train.log", None),
        ("runs/train.log", None),
        ("gpu1:/data/run/log.txt", None),
        ("-", None),
    ],
)
def test_parse_wandb_target(text: str, expected: WandbTarget | None) -> None:
    assert parse_wandb_target(text) == expected


@pytest.mark.parametrize(
    "text", ["wandb://", "wandb://ent", "wandb://ent/proj/run/extra", "wandb://e/p/r id"]
)
def test_malformed_wandb_target_says_what_is_expected(text: str) -> None:
    with pytest.raises(TargetError, match="wandb://ENTITY/PROJECT"):
        parse_wandb_target(text)


def test_target_spelling() -> None:
    t = WandbTarget("e", "p", "r")
    assert (str(t), t.path, str(WandbTarget("e", "p"))) == ("wandb://e/p/r", "e/p/r", "wandb://e/p")
    assert WandbTarget("e", "p").with_run("r") == t


@pytest.mark.timeout(60)
def test_fake_backend_checks_the_key_and_reports_what_it_does_not_model(server: FakeWandbServer) -> None:
    good = WandbClient(WandbCredentials(server.url, server.api_key))
    bad = WandbClient(WandbCredentials(server.url, "y" * 40))
    with pytest.raises(RunwatchError, match="HTTP 401"):
        bad.graphql("query Viewer { viewer { id } }", {})
    assert server.requests[-1].status == 401
    data, _ = good.graphql("query Viewer { viewer { id entity } }", {})
    assert data["viewer"]["entity"] == server.default_entity
    assert server.requests[-1].headers["Authorization"].startswith("Basic ")
    good.graphql("query Mystery { viewer { shoeSize } }", {})
    assert server.problems == [
        "unknown GraphQL operation 'Mystery': query Mystery { viewer { shoeSize } }",
        "unknown field Mystery.viewer.shoeSize",
    ]
    server.problems.clear()
    for status in (404, 200):
        server.otel_status = status
        req = urllib.request.Request(f"{server.url}/sdk/otel/v1/metrics", b"\x00", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert resp.status == status
        except urllib.error.HTTPError as e:
            assert e.code == status


@pytest.mark.timeout(60)
def test_default_base_url_comes_from_wandb_settings_without_a_request(server: FakeWandbServer) -> None:
    assert default_base_url() == server.url
    # Without WANDB_BASE_URL it is whatever wandb's settings say: `wandb login --host` writes it to
    # the settings file. In a subprocess, because wandb keeps its settings in a process singleton.
    settings = Path(os.environ["WANDB_CONFIG_DIR"]) / "settings"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text("[default]\nbase_url = http://wandb.selfhosted.invalid:8080\n")
    env = {k: v for k, v in os.environ.items() if k != "WANDB_BASE_URL"}
    code = "from monitor.sources.wandb_api import default_base_url as d; print(d())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=50
    )
    assert out.stdout.strip() == "http://wandb.selfhosted.invalid:8080", out.stderr[-2000:]
    settings.unlink()
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=50
    )
    assert out.stdout.strip().startswith("https://"), out.stderr[-2000:]
    assert server.requests == []


@pytest.mark.timeout(60)
def test_live_run_with_sparse_steps_gets_every_row(server: FakeWandbServer) -> None:
    run = server.add_run(E, P, "r1", rows=[{"_step": 0, "loss": 1.0}])
    clock, sink = FakeClock(), Sink()
    poller = make_poller([run_target("r1")], clock, sink, page_size=10)
    poll(poller)
    for step in range(50, 2000, 50):  # logged with wandb.log(step=...) while runwatch polls
        server.append(run, {"_step": step, "loss": 1.0 / step})
        if step % 200 == 0:
            for _ in range(10):
                if poll(poller) > 0:
                    break
    for _ in range(20):
        if poll(poller) > 0:
            break
    assert [r.step for r in sink.rows["r1"]] == [row["_step"] for row in run.rows]


@pytest.mark.timeout(60)
def test_unknown_run_is_an_api_error_state(server: FakeWandbServer) -> None:
    server.add_run(E, P, "real")
    clock, sink = FakeClock(), Sink()
    poll(make_poller([run_target("real"), run_target("ghost")], clock, sink))
    assert sink.last("ghost").state == "api_error"
    assert sink.last("ghost").error == "run ent/proj/ghost not found on W&B"
    assert sink.last("real").state == "running"


@pytest.mark.timeout(60)
def test_targets_added_and_removed_between_and_during_polls(server: FakeWandbServer) -> None:
    r1 = server.add_run(E, P, "r1", rows=[{"loss": 3.0}, {"loss": 2.9}])
    server.add_run(E, P, "r2", rows=[{"loss": 2.0}])
    server.add_run(E, "team", "t1", rows=[{"loss": 1.0}])
    clock, sink = FakeClock(), Sink()
    poller = make_poller([run_target("r1")], clock, sink)
    poll(poller)
    poller.add(run_target("r2"))
    poller.add(WandbTarget(E, "team", None))
    poll(poller)  # lists the project's running runs...
    poll(poller)  # ...and reads them
    assert {k: len(v) for k, v in sink.rows.items()} == {"r1": 2, "r2": 1, "t1": 1}
    assert len(server.graphql_requests()) == 3  # still one POST a poll for all of them

    async def remove_while_polling() -> None:
        server.append(r1, {"loss": 2.8})
        server.hang(1, seconds=0.5)  # answered late, but answered: the request is in flight meanwhile
        task = asyncio.ensure_future(poller.poll_once())
        await asyncio.sleep(0.2)
        poller.remove(run_target("r1"))
        poller.remove(WandbTarget(E, "team", None), [WandbTarget(E, "team", "t1")])
        await task

    asyncio.run(remove_while_polling())
    assert len(sink.rows["r1"]) == 2 and set(poller.statuses) == {run_target("r2")}
    assert not poller.done
    poller.remove(run_target("r2"))
    assert poller.done
    poller.add(run_target("r1"))  # named again: from its first row
    poll(poller)
    assert [r.values["loss"] for r in sink.rows["r1"]] == [3.0, 2.9, 3.0, 2.9, 2.8]
