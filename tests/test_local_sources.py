"""Local tails and the W&B run-folder watcher against real files in `tmp_path` (and the real wandb SDK).

Single-task scenarios run on a fake clock: the tail's sleep advances it, and `pending()` takes every
chunk the tail has before it first naps, i.e. what one reader would see now. Scenarios with a writer
thread or process run in real time with small poll intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from monitor.errors import TargetError
from monitor.model import Row
from monitor.sources.base import Chunk
from monitor.sources.local import PATH_CHECK, LineSplitter, LocalTail, WandbDirWatcher
from monitor.wandb.reader import Exit, WandbLogReader


class FakeTime:
    """A clock that only the code under test's sleeps advance; counts the naps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.naps = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.naps += 1
        self.now += delay
        await asyncio.sleep(0)


def fake_tail(path: Path, fake: FakeTime, offset: int = 0, **kw: Any) -> LocalTail:
    return LocalTail(path, offset, poll=0.1, clock=fake.clock, sleep=fake.sleep, **kw)


async def pending(tail: LocalTail | WandbDirWatcher, fake: FakeTime) -> list[Any]:
    """Every item the iterator yields before it next naps (all it has now)."""
    items: list[Any] = []
    while True:
        naps = fake.naps
        task = asyncio.ensure_future(anext(tail))
        while not task.done() and fake.naps == naps:
            await asyncio.sleep(0)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return items
        try:
            items.append(task.result())
        except StopAsyncIteration:
            return items


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def joined(chunks: list[Chunk]) -> bytes:
    return b"".join(c.data for c in chunks)


def assert_contiguous(chunks: list[Chunk], start: int = 0) -> None:
    pos = start
    for c in chunks:
        if c.reset:
            pos = 0
        assert c.offset == pos, (c.offset, pos)
        pos = c.end


# --- LineSplitter -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pieces", "lines", "pending_bytes"),
    [
        ([b"a\nb\n"], ["a", "b"], 0),
        ([b"a\nbc"], ["a"], 2),
        ([b"ab", b"c\n"], ["abc"], 0),
        ([b"win\r\n", b"dows\r", b"\n"], ["win", "dows"], 0),  # \r\n split across reads
        ([b"caf\xc3", b"\xa9\n"], ["café"], 0),  # a UTF-8 character split across reads
        ([b"bad \xff byte\n"], ["bad \ufffd byte"], 0),
        ([b"\n\n"], ["", ""], 0),
        ([b"keep\rlast\n"], ["keep\rlast"], 0),  # a lone \r is text, not an end of line
        ([b""], [], 0),
    ],
)
def test_line_splitter(pieces: list[bytes], lines: list[str], pending_bytes: int) -> None:
    splitter = LineSplitter()
    got = [line for piece in pieces for line in splitter.feed(piece)]
    assert got == lines
    assert splitter.pending == pending_bytes


def test_line_splitter_reset_drops_the_partial_line_and_long_lines_are_cut() -> None:
    splitter = LineSplitter(max_line=4)
    assert splitter.feed(b"abcdefghij") == ["abcd", "efgh"]
    assert splitter.pending == 2
    splitter.reset()
    assert splitter.feed(b"x\n") == ["x"]


# --- LocalTail ----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_appends_arrive_in_order_with_offsets(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"step 1\n")
    fake = FakeTime()

    async def scenario() -> None:
        tail = fake_tail(log, fake)
        assert await pending(tail, fake) == [Chunk(0, b"step 1\n")]
        assert tail.offset == 7
        assert await pending(tail, fake) == []
        with log.open("ab") as f:
            f.write(b"step 2\n")
            f.flush()
            assert await pending(tail, fake) == [Chunk(7, b"step 2\n")]
            f.write(b"step 3\nstep 4\n")
            f.flush()
            assert await pending(tail, fake) == [Chunk(14, b"step 3\nstep 4\n")]
        assert tail.offset == 28
        tail.close()
        assert await pending(tail, fake) == []

    run(scenario())


@pytest.mark.timeout(60)
def test_big_backlog_arrives_complete_in_bounded_pieces(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    content = b"".join(b"step %d loss %.6f\n" % (i, 1 / (i + 1)) for i in range(260_000))
    assert len(content) > 5 * 2**20
    log.write_bytes(content)
    fake = FakeTime()

    async def scenario() -> None:
        tail = fake_tail(log, fake)
        chunks = await pending(tail, fake)
        assert len(chunks) == -(-len(content) // 2**20)  # full 1 MiB pieces, then the rest
        assert all(0 < len(c.data) <= 2**20 for c in chunks)
        assert_contiguous(chunks)
        assert joined(chunks) == content
        assert tail.offset == len(content)

    run(scenario())


@pytest.mark.timeout(60)
def test_partial_last_line_is_held_until_its_newline(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    fake = FakeTime()

    async def scenario() -> None:
        tail = fake_tail(log, fake)
        splitter = LineSplitter()
        with log.open("wb") as f:
            f.write(b"step 1 loss 2.0\nstep 2 lo")
            f.flush()
            lines = [ln for c in await pending(tail, fake) for ln in splitter.feed(c.data)]
            assert lines == ["step 1 loss 2.0"]
            f.write(b"ss 1.9\n")
            f.flush()
            lines = [ln for c in await pending(tail, fake) for ln in splitter.feed(c.data)]
            assert lines == ["step 2 loss 1.9"]

    run(scenario())


@pytest.mark.timeout(60)
def test_start_offset_resumes_and_an_offset_past_the_end_is_a_truncation(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"one\ntwo\n")
    fake = FakeTime()

    async def scenario() -> None:
        assert await pending(fake_tail(log, fake, offset=4), fake) == [Chunk(4, b"two\n")]
        assert await pending(fake_tail(log, fake, offset=100), fake) == [
            Chunk(0, b"", reset="truncated"),
            Chunk(0, b"one\ntwo\n"),
        ]

    run(scenario())


@pytest.mark.timeout(60)
def test_truncation_restarts_at_zero(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"old line one\nold line two\n")
    fake = FakeTime()

    async def scenario() -> None:
        tail = fake_tail(log, fake)
        assert joined(await pending(tail, fake)) == b"old line one\nold line two\n"
        with open(log, "w") as f:  # truncated in place, as a restarted job's logger does
            f.write("new\n")
        assert await pending(tail, fake) == [Chunk(0, b"", reset="truncated"), Chunk(0, b"new\n")]
        assert tail.offset == 4

    run(scenario())


@pytest.mark.timeout(60)
def test_rotation_delivers_the_rest_of_the_old_file_first(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    fake = FakeTime()

    async def scenario() -> None:
        tail = fake_tail(log, fake)
        with log.open("wb") as old:
            old.write(b"old 1\n")
            old.flush()
            assert await pending(tail, fake) == [Chunk(0, b"old 1\n")]
            old.write(b"old 2\n")
            old.flush()
            os.rename(log, f"{log}.1")
            old.write(b"old 3\n")  # the writer still had the old file open
        log.write_bytes(b"new 1\n")
        seen: list[Any] = []
        start = fake.now
        while fake.now - start <= PATH_CHECK + 0.2:  # the path is looked at again within PATH_CHECK
            seen += await pending(tail, fake)  # each round ends at a nap, which moves the fake clock
        assert seen == [
            Chunk(6, b"old 2\nold 3\n"),
            Chunk(0, b"", reset="rotated"),
            Chunk(0, b"new 1\n"),
        ]

    run(scenario())


@pytest.mark.timeout(60)
def test_missing_file_is_one_problem_then_content(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    fake = FakeTime()

    async def scenario() -> None:
        tail = fake_tail(log, fake)
        seen: list[Chunk] = []
        for _ in range(5):
            seen += await pending(tail, fake)
        assert [c.problem for c in seen] == [f"{log}: no such file; waiting for it to appear"]
        assert tail.problem is not None
        log.write_bytes(b"hello\n")
        assert await pending(tail, fake) == [Chunk(0, b"hello\n")]  # a new file, not a reset
        assert tail.problem is None

    run(scenario())


@pytest.mark.timeout(60)
def test_removed_file_is_a_problem_after_the_grace_then_a_rotation(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"a\n")
    fake = FakeTime()

    async def scenario() -> None:
        tail = fake_tail(log, fake, vanish_grace=1.0)
        assert await pending(tail, fake) == [Chunk(0, b"a\n")]
        log.unlink()
        seen: list[Chunk] = []
        for _ in range(5):  # 0.5 s of polls: within the grace a rename's gap is not a problem
            seen += await pending(tail, fake)
        assert seen == []
        while fake.now < 0.5 + 1.0 + PATH_CHECK + 0.2:  # the grace, from when the path was next looked at
            seen += await pending(tail, fake)
        assert [c.problem for c in seen] == [f"{log}: file removed or renamed; waiting for it to reappear"]
        log.write_bytes(b"b\n")
        assert await pending(tail, fake) == [Chunk(0, b"", reset="rotated"), Chunk(0, b"b\n")]

    run(scenario())


@pytest.mark.timeout(60)
def test_unreadable_path_is_a_problem(tmp_path: Path) -> None:
    fake = FakeTime()

    async def scenario() -> None:
        tail = fake_tail(tmp_path, fake)  # a directory
        seen = [c for _ in range(3) for c in await pending(tail, fake)]
        assert [c.problem for c in seen] == [f"{tmp_path}: not a regular file; waiting for one"]

    run(scenario())


@pytest.mark.timeout(60)
def test_close_wakes_a_waiting_reader(tmp_path: Path) -> None:
    log = tmp_path / "quiet.log"
    log.write_bytes(b"")

    async def scenario() -> None:
        tail = LocalTail(log, poll=30.0)
        reader = asyncio.ensure_future(anext(tail))
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        tail.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(reader, 5)
        assert time.monotonic() - t0 < 1.0

    run(scenario())


@pytest.mark.timeout(60)
def test_every_line_arrives_once_across_two_rotations(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    total, rotate_at = 3000, (1000, 2000)
    rotations_seen = threading.Semaphore(0)

    def writer() -> None:
        f = open(log, "w")  # noqa: SIM115 - reopened at each rotation
        try:
            for i in range(total):
                if i in rotate_at:
                    if i != rotate_at[0]:  # one rotation at a time: polling cannot see a file it skipped
                        assert rotations_seen.acquire(timeout=20)
                    os.rename(log, f"{log}.{rotate_at.index(i) + 1}")
                    for j in range(3):  # written after the rename, to the old file
                        f.write(f"late {i} {j}\n")
                        f.flush()
                    f.close()
                    f = open(log, "w")  # noqa: SIM115
                f.write(f"line {i}\n")
                f.flush()
                if i % 100 == 0:
                    time.sleep(0.002)
        finally:
            f.close()

    expected = []
    for i in range(total):
        if i in rotate_at:
            expected += [f"late {i} {j}" for j in range(3)]
        expected.append(f"line {i}")

    async def scenario() -> None:
        tail = LocalTail(log, poll=0.005)
        splitter = LineSplitter()
        lines: list[str] = []
        resets: list[str] = []
        thread = threading.Thread(target=writer)
        thread.start()

        async def consume() -> None:
            async for chunk in tail:
                if chunk.reset:
                    resets.append(chunk.reset)
                    splitter.reset()
                    rotations_seen.release()
                lines.extend(splitter.feed(chunk.data))
                if lines and lines[-1] == f"line {total - 1}":
                    return

        try:
            await asyncio.wait_for(consume(), 30)
        finally:
            tail.close()
            thread.join(10)
        assert resets == ["rotated", "rotated"]
        assert lines == expected

    run(scenario())


@pytest.mark.timeout(60)
def test_write_to_chunk_latency_is_about_half_a_poll(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"")
    poll, n = 0.02, 25
    written: dict[int, float] = {}

    def writer() -> None:
        with log.open("ab") as f:
            for i in range(n):
                time.sleep(poll * (0.5 + (i * 0.37) % 1))  # land at varied points of the poll cycle
                written[i] = time.monotonic()
                f.write(b"%d\n" % i)
                f.flush()

    async def scenario() -> None:
        tail = LocalTail(log, poll=poll)
        splitter = LineSplitter()
        lags: list[float] = []
        thread = threading.Thread(target=writer)
        thread.start()

        async def consume() -> None:
            async for chunk in tail:
                now = time.monotonic()
                lags.extend(now - written[int(line)] for line in splitter.feed(chunk.data))
                if len(lags) == n:
                    return

        try:
            await asyncio.wait_for(consume(), 20)
        finally:
            tail.close()
            thread.join(10)
        assert statistics.median(lags) < 5 * poll, lags

    run(scenario())


# --- WandbDirWatcher ----------------------------------------------------------------------------


def make_run(root: Path, name: str) -> Path:
    """A run directory as wandb lays it out, with an (empty) transaction log."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    f = run_dir / f"run-{name.rsplit('-', 1)[1]}.wandb"
    f.write_bytes(b"")
    return f


@pytest.mark.timeout(60)
def test_dir_watcher_yields_runs_as_they_appear(tmp_path: Path) -> None:
    fake = FakeTime()

    async def scenario() -> None:
        watcher = WandbDirWatcher(tmp_path, poll=0.1, sleep=fake.sleep)  # `wandb/` does not exist yet
        assert await pending(watcher, fake) == []
        first = make_run(tmp_path / "wandb", "offline-run-20260101_100000-aaaa1111")
        (tmp_path / "wandb" / "latest-run").symlink_to("offline-run-20260101_100000-aaaa1111")
        (tmp_path / "wandb" / "run-20260101_110000-bbbb2222").mkdir()  # its file comes later
        assert await pending(watcher, fake) == [first]
        second = tmp_path / "wandb" / "run-20260101_110000-bbbb2222" / "run-bbbb2222.wandb"
        second.write_bytes(b"")
        assert await pending(watcher, fake) == [second]
        assert await pending(watcher, fake) == []
        watcher.close()
        assert await pending(watcher, fake) == []

    run(scenario())


@pytest.mark.timeout(60)
def test_dir_watcher_on_a_wandb_folder_lists_existing_runs_oldest_first(tmp_path: Path) -> None:
    fake = FakeTime()
    wandb_dir = tmp_path / "wandb"
    b = make_run(wandb_dir, "run-20260102_000000-bbbb")
    a = make_run(wandb_dir, "offline-run-20260101_000000-aaaa")
    (wandb_dir / "debug.log").write_text("")

    async def scenario() -> None:
        assert await pending(WandbDirWatcher(wandb_dir, sleep=fake.sleep), fake) == [a, b]

    run(scenario())


@pytest.mark.timeout(60)
def test_dir_watcher_on_a_run_directory_or_file_yields_just_that_file(tmp_path: Path) -> None:
    fake = FakeTime()
    f = make_run(tmp_path / "wandb", "run-20260101_000000-aaaa")
    make_run(tmp_path / "wandb", "run-20260102_000000-bbbb")

    async def scenario() -> None:
        for target in (f, f.parent):
            watcher = WandbDirWatcher(target, sleep=fake.sleep)
            assert [p async for p in watcher] == [f]  # then iteration ends

    run(scenario())


@pytest.mark.timeout(60)
def test_dir_watcher_follows_latest_run_as_it_moves(tmp_path: Path) -> None:
    fake = FakeTime()
    wandb_dir = tmp_path / "wandb"
    a = make_run(wandb_dir, "run-20260101_000000-aaaa")
    link = wandb_dir / "latest-run"
    link.symlink_to(a.parent.name)

    async def scenario() -> None:
        watcher = WandbDirWatcher(link, poll=0.1, sleep=fake.sleep)
        assert await pending(watcher, fake) == [a]
        b = make_run(wandb_dir, "run-20260102_000000-bbbb")
        assert await pending(watcher, fake) == []  # not the latest run until the link says so
        link.unlink()
        link.symlink_to(b.parent.name)
        assert await pending(watcher, fake) == [b]

    run(scenario())


def test_dir_watcher_on_a_missing_path_is_a_target_error(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="no such file"):
        WandbDirWatcher(tmp_path / "nope")


# --- live .wandb written by the real SDK --------------------------------------------------------

WRITER = """
import time
import wandb

run = wandb.init(project="live-tail")
for i in range(30):
    wandb.log({"loss": 1.0 / (i + 1), "i": i})
    time.sleep(0.1)
print("logged", flush=True)
run.finish()
"""


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_live_wandb_rows_arrive_once_in_order_while_the_run_writes(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env |= {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(tmp_path),
        "WANDB__TRANSACTION_LOG_FLUSH_INTERVAL": "1",
    }

    async def scenario() -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRITER,
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        logged = asyncio.Event()

        async def watch_stdout() -> None:
            assert proc.stdout is not None
            async for line in proc.stdout:
                if line.strip() == b"logged":
                    logged.set()

        stdout_task = asyncio.ensure_future(watch_stdout())
        stderr_task = asyncio.ensure_future(proc.stderr.read())
        watcher = WandbDirWatcher(tmp_path, poll=0.05)
        rows: list[Row] = []
        rows_while_logging = 0
        lags: list[float] = []
        try:
            path = await asyncio.wait_for(anext(watcher), 30)
            assert path.parent.name.startswith("offline-run-") and path.suffix == ".wandb"
            tail = LocalTail(path, poll=0.05)
            reader = WandbLogReader()

            async def consume() -> None:
                nonlocal rows_while_logging
                async for chunk in tail:
                    assert not chunk.reset and not chunk.problem, chunk
                    for event in reader.feed(chunk.data):
                        if isinstance(event, Row):
                            rows.append(event)
                            rows_while_logging += not logged.is_set()
                            if event.time is not None:
                                lags.append(time.time() - event.time)
                        elif isinstance(event, Exit):
                            return

            await asyncio.wait_for(consume(), 45)
            tail.close()
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        finally:
            watcher.close()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            stdout_task.cancel()
            err = await stderr_task
        assert [r.step for r in rows] == [float(i) for i in range(30)], err.decode(errors="replace")[-2000:]
        assert [r.values["loss"] for r in rows] == [1.0 / (i + 1) for i in range(30)]
        assert rows_while_logging > 0, "no row arrived before the writer finished logging"
        assert reader.resume_offset == path.stat().st_size or reader.skipped_bytes == 0
        print(
            f"rows live: {rows_while_logging}/30; lag from wandb.log to row: "
            f"median {statistics.median(lags):.2f} s, max {max(lags):.2f} s"
        )

    run(scenario())
