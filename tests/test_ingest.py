"""The ingest path: targets into runs (folders recursively), live TensorBoard files, the hub's
supervised sources (a source that raises, hangs or holds garbage), `check` on remote targets."""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from monitor import check as check_mod
from monitor.config import Config
from monitor.hub import Hub, HubEvent
from monitor.model import Verdict
from monitor.sources import base
from monitor.sources.base import Chunk, RunRef, SourceContext, open_sources
from monitor.sources.local import LocalTail
from tests.sshd import SSHHome, ssh_home, sshd  # noqa: F401  (fixtures)
from tests.test_tfevents import event, field, record, simple
from tests.test_wandb_api import server  # noqa: F401  (fixture)
from tests.test_wandb_log import frame, history
from tests.wandb_server import FakeWandbServer

ROOT = Path(__file__).resolve().parents[1]


async def until(pred: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def log_lines(n: int, nan_at: int | None = None, start: int = 0) -> str:
    out = []
    for i in range(start, n):
        loss = math.nan if nan_at is not None and i >= nan_at else 3 * math.exp(-i / 40) + 1
        out.append(f"step={i} loss={loss:.4f} lr=0.0003\n")
    return "".join(out)


def tf_file(steps: range, nan_at: int | None = None, wall: float = 1700000000.0) -> bytes:
    head = record(field(1, b"\0" * 8, wt=1) + field(3, b"brain.Event:2"))
    body = b"".join(
        event(
            i,
            simple("loss", math.nan if nan_at is not None and i >= nan_at else 2 * math.exp(-i / 20) + 0.3),
            wall=wall,
        )
        for i in steps
    )
    return head + body


def wandb_bytes(n: int, nan_at: int | None = None) -> bytes:
    rows = []
    for i in range(1, n + 1):
        loss = "NaN" if nan_at is not None and i >= nan_at else repr(3.0 / i + 1)
        rows.append(history(i, {("_step",): str(i), ("train/loss",): loss}))
    return frame(rows)


def test_check_imports_neither_asyncssh_nor_textual(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text(log_lines(50))
    code = (
        "import sys; from tui.cli import main; rc = main(['check', sys.argv[1]]); "
        "print('LOADED', 'asyncssh' in sys.modules, 'textual' in sys.modules, rc)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(log)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "LOADED False False 0" in out.stdout, out.stdout + out.stderr


def test_a_folder_is_every_run_inside_it_once(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "train.log").write_text(log_lines(10))
    hf = tmp_path / "b" / "out"
    for sub in ("checkpoint-5", "checkpoint-10", ""):
        (hf / sub).mkdir(parents=True, exist_ok=True)
        (hf / sub / "trainer_state.json").write_text('{"log_history": [], "max_steps": 10}\n')
    run_dir = tmp_path / "c" / "wandb" / "run-20240101_000000-abc"
    (run_dir / "files").mkdir(parents=True)
    (run_dir / "run-abc.wandb").write_bytes(wandb_bytes(3))
    (run_dir / "files" / "output.log").write_text("console\n")
    (tmp_path / "c" / "wandb" / "latest-run").symlink_to(run_dir)
    (tmp_path / "c" / "wandb" / "debug.log").write_text("wandb's own log\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "events.out.tfevents.1.host").write_bytes(tf_file(range(3)))
    (tmp_path / "README.md").write_text("step=1 loss=2\n" * 300)
    (tmp_path / "notes.txt").write_text("nothing to see\n")
    (tmp_path / "hyp.yaml").write_text("lr0: 0.01\n")
    deep = tmp_path.joinpath(*"123456789")
    deep.mkdir(parents=True)
    (deep / "too-deep.log").write_text(log_lines(5))
    opened = open_sources(str(tmp_path))
    got = {str(Path(r.id).relative_to(tmp_path)): r.feed for r in opened.runs}
    assert got == {
        "a/train.log": "text",
        "b/out/trainer_state.json": "text",
        "c/wandb/run-20240101_000000-abc/run-abc.wandb": "wandb",
        "d/events.out.tfevents.1.host": "tfevents",
    }
    assert all(r.origin == str(tmp_path) for r in opened.runs) and opened.discover is not None


def test_check_a_folder_reports_each_run_and_an_empty_one_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "runs" / "nan").mkdir(parents=True)
    (tmp_path / "runs" / "ok.log").write_text(log_lines(100))
    (tmp_path / "runs" / "nan" / "train.log").write_text(log_lines(100, nan_at=90))
    (tmp_path / "runs" / "nothing.log").write_text("hello\nworld\n")
    (tmp_path / "empty").mkdir()
    results = check_mod.check([str(tmp_path / "runs"), str(tmp_path / "empty")], Config())
    by = {Path(r.target).name: r for r in results}
    assert by["ok.log"].analysis is not None and by["ok.log"].analysis.judgement().verdict is Verdict.HEALTHY
    assert by["train.log"].analysis is not None and by["train.log"].analysis.judgement().verdict is Verdict.BAD
    nothing = check_mod.to_json([by["nothing.log"]])["runs"][0]
    assert nothing["verdict"] == "unreadable" and nothing["findings"][0]["kind"] == "source_error"
    assert by["empty"].error and "no runs found" in by["empty"].error
    assert check_mod.exit_code(results) == 3
    assert check_mod.exit_code([by["ok.log"], by["train.log"]]) == 2


@pytest.mark.timeout(60)
def test_an_empty_folder_is_watched_and_runs_appear_in_it(tmp_path: Path) -> None:
    async def main() -> None:
        async with Hub([str(tmp_path)], gpu=False, poll=0.05, discover_poll=0.1) as hub:
            await asyncio.sleep(0.3)
            assert hub.snapshot().runs == ()
            (tmp_path / "job1").mkdir()
            (tmp_path / "job1" / "train.log").write_text(log_lines(60, nan_at=50))
            await until(lambda: len(hub.runs) == 1, what="the new run")
            await until(lambda: hub.snapshot().runs[0].verdict is Verdict.BAD, what="its verdict")
            (tmp_path / "job2.jsonl").write_text("".join(json.dumps({"step": i, "loss": 1.0}) + "\n" for i in range(5)))
            await until(lambda: len(hub.runs) == 2, what="a second run")

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_a_tensorboard_file_is_followed_live(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.1700000000.host.1.0"
    now = time.time()
    data = tf_file(range(60), nan_at=50, wall=now)
    cut = len(tf_file(range(40), wall=now)) + 7  # a torn record: waits for its rest
    path.write_bytes(data[:cut])

    async def main() -> None:
        async with Hub([str(path)], gpu=False, poll=0.05) as hub:
            await until(lambda: bool(hub.runs) and hub.snapshot().runs[0].last_step == 39, what="the first records")
            r = hub.snapshot().runs[0]
            assert r.format == "tfevents" and r.verdict is Verdict.HEALTHY and r.state == "live"
            with path.open("ab") as f:
                f.write(data[cut:])
            await until(lambda: hub.snapshot().runs[0].verdict is Verdict.BAD, what="NaN from the tail")
            assert hub.snapshot().runs[0].last_step == 59

    asyncio.run(main())


def _watch_lines(target: str, seconds: float) -> list[dict[str, Any]]:
    from monitor.watch import watch

    out = io.StringIO()

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        await watch([target], Config(), jsonl=True, out=out, stop=stop)

    asyncio.run(main())
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.mark.timeout(90)
def test_a_junk_wandb_file_is_unreadable_in_check_watch_and_the_hub_and_recovers(tmp_path: Path) -> None:
    junk = tmp_path / "run-junk.wandb"
    junk.write_bytes(b"this is not a W&B transaction log at all\n" * 50)
    (r,) = check_mod.check([str(junk)], Config())
    doc = check_mod.to_json([r])["runs"][0]
    assert doc["verdict"] == "unreadable" and doc["state"] == "unreadable"
    assert any(f["kind"] == "source_error" for f in doc["findings"])
    assert check_mod.exit_code([r]) == 3
    lines = _watch_lines(str(junk), 1.0)
    states = [e for e in lines if e["event"] == "state"]
    assert states and states[-1]["verdict"] == "unreadable" and states[-1]["state"] == "unreadable"
    assert not any(e["verdict"] == "healthy" for e in lines if e["event"] != "run")

    async def main() -> None:
        async with Hub([str(junk)], gpu=False, poll=0.05, retry_initial=0.05, retry_cap=0.2) as hub:
            events: list[HubEvent] = []
            hub.add_event_listener(events.append)
            await until(lambda: hub.snapshot().runs[0].state == "unreadable", what="unreadable")
            run = hub.runs[hub.snapshot().runs[0].id]
            await until(lambda: run.retries >= 3, what="retries")
            snap = hub.snapshot().runs[0]
            assert snap.stale and snap.shown_verdict == "unreadable" and snap.source_error
            assert any(f.kind == "source_error" for f in snap.findings)
            assert len([e for e in events if e.kind == "state"]) <= 1  # one outage, one notice
            junk.write_bytes(wandb_bytes(30, nan_at=25))
            await until(lambda: hub.snapshot().runs[0].verdict is Verdict.BAD, what="the fixed file judged")
            await until(lambda: not hub.snapshot().runs[0].stale, what="recovered")
            assert hub.snapshot().runs[0].source_error is None

    asyncio.run(main())


class _Flaky:
    """A local tail that fails `failures` times (on its first read) before working."""

    calls = 0

    def __init__(self, ref: RunRef, ctx: SourceContext, offset: int, failures: int, hang: bool) -> None:
        type(self).calls += 1
        self.failing = type(self).calls <= failures
        self.hang = hang and self.failing
        self.tail = LocalTail(ref.path or Path(ref.id), offset=offset, poll=ctx.poll)

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Chunk]:
        if self.hang:
            await asyncio.sleep(3600)
        if self.failing:
            raise ConnectionResetError("peer went away")
        async for chunk in self.tail:
            yield chunk

    def close(self) -> None:
        self.tail.close()


@pytest.mark.timeout(60)
def test_a_source_that_raises_is_stale_retried_and_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "train.log"
    log.write_text(log_lines(50))
    written = time.time() - 60  # finished writing a minute ago: read as it stands
    os.utime(log, (written, written))
    _Flaky.calls = 0
    monkeypatch.setitem(base.SOURCES, "file", lambda ref, ctx, off: _Flaky(ref, ctx, off, failures=3, hang=False))

    async def main() -> None:
        async with Hub([str(log)], gpu=False, poll=0.05, retry_initial=0.1, retry_cap=0.3) as hub:
            events: list[HubEvent] = []
            hub.add_event_listener(events.append)
            await until(lambda: hub.snapshot().runs[0].state == "stale", what="stale")
            snap = hub.snapshot().runs[0]
            assert "ConnectionResetError: peer went away" in (snap.source_error or "")
            assert snap.shown_verdict == "stale" and snap.last_step == 49  # the last reading stays visible
            await until(lambda: _Flaky.calls >= 4, what="retries")
            await until(lambda: hub.snapshot().runs[0].state == "live", timeout=10, what="recovered")
            with log.open("a") as f:
                f.write(log_lines(60, nan_at=55, start=50))
            await until(lambda: hub.snapshot().runs[0].verdict is Verdict.BAD, what="new rows judged")
            states = [e for e in events if e.kind == "state"]
            errored = [i for i, e in enumerate(states) if any(f.kind == "source_error" for f in e.findings)]
            # One outage over three failed tries: one event when it began, one when it ended.
            assert len(errored) == 1 and [e.state for e in states[errored[0] :]] == ["stale", "live"]

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_a_source_that_hangs_is_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "remote.log"
    _Flaky.calls = 0
    monkeypatch.setitem(base.SOURCES, "file", lambda ref, ctx, off: _Flaky(ref, ctx, off, failures=1, hang=True))

    async def main() -> None:
        async with Hub([str(path)], gpu=False, poll=0.05, tick_interval=0.05, connect_timeout=0.5) as hub:
            await until(lambda: hub.snapshot().runs[0].stale, what="stale")
            snap = hub.snapshot().runs[0]
            assert "no answer from the source" in (snap.source_error or "") and snap.shown_verdict == "stale"

    asyncio.run(main())


@pytest.mark.timeout(90)
def test_check_reads_a_wandb_api_run_like_the_tui(server: FakeWandbServer) -> None:  # noqa: F811
    fr = server.add_run("ent", "proj", "r1", rows=[{"loss": 3.0 - i * 0.01} for i in range(30)])
    server.append(fr, {"loss": float("nan")})
    (r,) = check_mod.check(["wandb://ent/proj/r1"], Config())
    assert r.analysis is not None, r.error
    doc = check_mod.to_json([r])["runs"][0]
    assert doc["verdict"] == "bad" and doc["last_step"] == 30 and doc["findings"][0]["kind"] == "nan"


def test_check_of_an_unreachable_ssh_host_is_a_stale_result_exit_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check_mod, "REMOTE_TIMEOUT", 5.0)
    results = check_mod.check(["no-such-host.invalid:/var/log/train.log"], Config())
    assert check_mod.exit_code(results) == 3
    (r,) = results
    assert r.error or (r.state is not None and r.state.word in ("stale", "connecting"))


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_check_reads_an_ssh_path_and_a_remote_tfevents_file(ssh_home: SSHHome, tmp_path: Path) -> None:  # noqa: F811
    log = tmp_path / "remote.log"
    log.write_text(log_lines(100, nan_at=80))
    tb = tmp_path / "events.out.tfevents.1.host"
    tb.write_bytes(tf_file(range(50), wall=time.time()))
    old = tmp_path / "old.log"
    old.write_text(log_lines(100))
    written = time.time() - 3 * 3600
    os.utime(old, (written, written))
    targets = [f"testhost:{log}", f"ssh://testhost{tb}", f"testhost:{old}"]
    results = check_mod.check(targets, Config())
    docs = check_mod.to_json(results)["runs"]
    assert [d["verdict"] for d in docs] == ["bad", "healthy", "healthy"], docs
    assert docs[0]["last_step"] == 99 and docs[1]["last_step"] == 49 and docs[1]["format"] == "tfevents"
    # The remote file's own modification time dates its rows, as a local file's does.
    assert docs[2]["state"] == "idle" and docs[2]["last_update"] == pytest.approx(written, abs=2)
    local = check_mod.to_json(check_mod.check([str(old)], Config()))["runs"][0]
    assert local["state"] == "idle"
    assert [(f["kind"], f["step"], f["message"]) for f in local["findings"]] == [
        (f["kind"], f["step"], f["message"]) for f in docs[2]["findings"]
    ]
    assert check_mod.exit_code(results) == 2


_WRITER = """
import math, sys, time
with open(sys.argv[1], "a") as f:
    for i in range(40):
        f.write(f"step={i} loss={3 * math.exp(-i / 40) + 1:.4f}\\n")
        f.flush()
        time.sleep(0.02)
    time.sleep(6.0)  # alive a while after its last line (a key=value log's format is settled after 3 s)
"""


@pytest.mark.timeout(60)
def test_a_run_whose_writer_process_has_gone_is_finished(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("")

    async def main() -> None:
        async with Hub([str(log)], gpu=False, poll=0.05, writer_poll=0.1) as hub:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _WRITER, str(log))
            try:
                await until(lambda: hub.snapshot().runs[0].last_step == 39, what="rows")
                assert hub.snapshot().runs[0].state == "live"
                await asyncio.wait_for(proc.wait(), 20)
            finally:
                if proc.returncode is None:
                    proc.kill()
            await until(lambda: hub.snapshot().runs[0].state == "finished", what="finished once the writer exits")
            with log.open("a") as f:  # a resumed job writes again: running after all
                f.write("step=40 loss=1.5\n")
            await until(lambda: hub.snapshot().runs[0].state == "live", what="live again")

    asyncio.run(main())


@pytest.mark.timeout(90)
def test_check_expands_a_wandb_project_into_its_running_runs(server: FakeWandbServer) -> None:  # noqa: F811
    server.add_run("ent", "proj", "good", rows=[{"loss": 3.0 * math.exp(-i / 20) + 1} for i in range(40)])
    bad = server.add_run("ent", "proj", "bad", rows=[{"loss": 3.0 - i * 0.01} for i in range(30)])
    server.append(bad, {"loss": float("nan")})
    results = check_mod.check(["wandb://ent/proj"], Config())
    docs = {d["target"]: d for d in check_mod.to_json(results)["runs"]}
    assert set(docs) == {"wandb://ent/proj/good", "wandb://ent/proj/bad"}, docs
    assert docs["wandb://ent/proj/bad"]["verdict"] == "bad" and docs["wandb://ent/proj/good"]["verdict"] == "healthy"
    assert check_mod.exit_code(results) == 2


@pytest.mark.timeout(60)
def test_an_unresolvable_ssh_host_is_one_outage_not_a_flip_per_retry() -> None:
    async def main() -> None:
        async with Hub(["no-such-host.invalid:/var/log/train.log"], gpu=False) as hub:
            events: list[HubEvent] = []
            hub.add_event_listener(events.append)
            await until(lambda: hub.snapshot().runs[0].stale, what="stale")
            await asyncio.sleep(4.0)  # a few retries (1 s, 2 s, ...)
            r = hub.snapshot().runs[0]
            assert r.state == "stale" and r.shown_verdict == "stale" and "retrying" in r.state_detail
            states = [e for e in events if e.kind == "state"]
            assert [(e.state, e.shown_verdict) for e in states] == [("stale", "stale")]

    asyncio.run(main())


def test_junk_event_file_and_a_broken_document_are_unreadable_not_healthy(tmp_path: Path) -> None:
    tb = tmp_path / "events.out.tfevents.1.host"
    tb.write_bytes(b"\x00garbage, not TFRecords" * 100)
    state = tmp_path / "out" / "trainer_state.json"
    state.parent.mkdir()
    state.write_text('{\n  "log_history": [\n    {"loss": 2.0, "step": 1},\n')  # cut off mid-document
    results = check_mod.check([str(tb), str(state)], Config())
    docs = check_mod.to_json(results)["runs"]
    assert [d["verdict"] for d in docs] == ["unreadable", "unreadable"], docs
    assert all(any(f["kind"] == "source_error" for f in d["findings"]) for d in docs)
    assert check_mod.exit_code(results) == 3


@pytest.mark.parametrize(
    "last",
    [
        "Training completed. Do not forget to share your model on huggingface.co/models =)",
        "`Trainer.fit` stopped: `max_epochs=3` reached.",
    ],
)
def test_a_frameworks_end_line_finishes_the_run(tmp_path: Path, last: str) -> None:
    log = tmp_path / "train.log"
    log.write_text(log_lines(50) + last + "\n")
    old = time.time() - 1800  # would be stalled without an end marker
    os.utime(log, (old, old))
    (r,) = check_mod.check([str(log)], Config())
    assert r.state is not None and r.state.word == "finished" and check_mod.exit_code([r]) == 0


@pytest.mark.timeout(60)
def test_a_log_without_metrics_is_unreadable_until_they_come(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_text("loading model...\nbuilding dataloaders...\n")

    async def main() -> None:
        async with Hub([str(log)], gpu=False, poll=0.05, tick_interval=0.1) as hub:
            await until(lambda: hub.snapshot().runs[0].state == "unreadable", what="unreadable")
            r = hub.snapshot().runs[0]
            assert r.shown_verdict == "unreadable" and any(f.kind == "source_error" for f in r.findings)
            with log.open("a") as f:
                f.write(log_lines(30))
            await until(lambda: hub.snapshot().runs[0].state == "live", what="live")
            r = hub.snapshot().runs[0]
            assert r.shown_verdict == "healthy" and not any(f.kind == "source_error" for f in r.findings)

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_a_log_opened_before_its_first_metric_line_waits_to_know_its_format(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("using world size: 8\nbatch_size=12 lr=0.0006 warmup=100\n")

    async def main() -> None:
        async with Hub([str(log)], gpu=False, poll=0.05, tick_interval=0.1) as hub:
            await until(lambda: bool(hub.runs) and hub.runs[str(log)].facts.caught_up, what="caught up")
            await asyncio.sleep(0.5)
            with log.open("a") as f:
                f.writelines(f"iter {i}: loss {4 - i / 100:.4f}, time 100.00ms, mfu 10.00%\n" for i in range(50))
            await until(lambda: hub.snapshot().runs[0].last_step == 49, what="rows")
            r = hub.snapshot().runs[0]
            assert r.format == "nanogpt" and r.loss_key == "loss"  # not the banner's key=value line

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_catching_up_a_big_file_reports_its_progress(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text(log_lines(120_000))  # a few MiB: several pieces

    async def main() -> None:
        seen: list[tuple[int, int] | None] = []
        async with Hub([str(log)], gpu=False, poll=0.05, publish_interval=0.0) as hub:
            hub.add_snapshot_listener(lambda snap: seen.extend(r.progress for r in snap.runs))
            await until(lambda: bool(hub.runs) and hub.runs[str(log)].told_caught_up, what="caught up")
            hub.publish()
        partial = [p for p in seen if p is not None]
        assert partial and all(0 <= done <= total == log.stat().st_size for done, total in partial)
        assert seen[-1] is None  # caught up: no bar any more

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_check_of_a_wandb_project_without_running_runs_ends_when_the_api_answered(
    server: FakeWandbServer,  # noqa: F811
) -> None:
    server.add_run("ent", "quiet", "old", state="finished", rows=[{"loss": 1.0}])
    t0 = time.monotonic()
    results = check_mod.check(["wandb://ent/quiet"], Config())
    assert time.monotonic() - t0 < 20
    assert results[0].error and "no runs found" in results[0].error and check_mod.exit_code(results) == 3
