"""The SSH transport against a real OpenSSH sshd and an in-process asyncssh server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from monitor.errors import TargetError
from monitor.sources.ssh import (
    Backoff,
    Chunk,
    HostState,
    HostStatus,
    RemoteTail,
    SSHEndpoint,
    SSHPool,
    SSHSettings,
    SSHTarget,
    parse_ssh_endpoint,
    parse_ssh_target,
)
from monitor.sources.ssh_remote import add_command, shell_path
from tests.sshd import SSHHome, in_process_sshd, remote_python, ssh_home, sshd

__all__ = ["ssh_home", "sshd"]  # fixtures, imported for pytest

FAST = SSHSettings(
    backoff_initial=0.05,
    backoff_max=0.3,
    poll_interval=0.02,
    slow_retry=300.0,
    connect_timeout=10.0,
    remote_python=remote_python(),
)


def fast(**changes: object) -> SSHSettings:
    from dataclasses import replace

    return replace(FAST, **changes)  # type: ignore[arg-type]


class Collector:
    """Reassembles a tail's chunks into bytes, checking offsets are contiguous."""

    def __init__(self, tail: RemoteTail) -> None:
        self.tail = tail
        self.data = bytearray()
        self.resets: list[str] = []
        self.problems: list[str] = []

    async def until(self, done: Callable[[bytes], bool], timeout: float = 20.0) -> bytes:
        async def pump() -> None:
            while not done(bytes(self.data)):
                self.feed(await anext(self.tail))

        await asyncio.wait_for(pump(), timeout)
        return bytes(self.data)

    def feed(self, chunk: Chunk) -> None:
        if chunk.reset:
            self.resets.append(chunk.reset)
            self.data.clear()
        if chunk.problem:
            self.problems.append(chunk.problem)
        assert chunk.offset == len(self.data), (chunk.offset, len(self.data))
        self.data += chunk.data

    def lines(self) -> list[str]:
        return bytes(self.data).decode().splitlines()


def has_lines(n: int) -> Callable[[bytes], bool]:
    return lambda data: data.count(b"\n") >= n


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 55))


async def wait_for_state(pool: SSHPool, host: str, status: HostStatus, timeout: float = 15) -> HostState:
    async def poll() -> HostState:
        while (st := pool.states().get(host)) is None or st.status is not status:
            await asyncio.sleep(0.02)
        return st

    return await asyncio.wait_for(poll(), timeout)


async def until(predicate: Callable[[], bool], timeout: float = 15) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


async def append_lines(path: Path, start: int, stop: int, pause: float = 0.0, every: int = 1) -> None:
    with open(path, "ab", buffering=0) as f:
        for i in range(start, stop):
            f.write(f"line {i}\n".encode())
            if pause and i % every == 0:
                await asyncio.sleep(pause)


# -- targets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gpu1:/runs/a/train.log", SSHTarget("gpu1", None, None, "/runs/a/train.log")),
        ("alice@gpu1:/runs/a.log", SSHTarget("gpu1", None, "alice", "/runs/a.log")),
        ("gpu1:~/runs/a.log", SSHTarget("gpu1", None, None, "~/runs/a.log")),
        ("10.0.0.7:/x", SSHTarget("10.0.0.7", None, None, "/x")),
        ("[::1]:/x", SSHTarget("::1", None, None, "/x")),
        ("ssh://gpu1/runs/a.log", SSHTarget("gpu1", None, None, "/runs/a.log")),
        ("ssh://bob@GPU-1:2222/runs/a.log", SSHTarget("GPU-1", 2222, "bob", "/runs/a.log")),
        ("ssh://[::1]:2200/x/y", SSHTarget("::1", 2200, None, "/x/y")),
        ("ssh://gpu1/~/x.log", SSHTarget("gpu1", None, None, "~/x.log")),
        ("ssh://gpu1/a%20b.log", SSHTarget("gpu1", None, None, "/a b.log")),
        ("./x:y", None),
        ("x:y", None),
        ("runs/a:/b", None),
        ("C:\\logs\\train.log", None),
        ("C:/logs/train.log", None),
        ("wandb://ent/proj/run", None),
        ("https://wandb.ai/ent/proj/runs/abc", None),
        ("-", None),
        ("/abs/path.log", None),
        ("train.log", None),
    ],
)
def test_parse_ssh_target(text: str, expected: SSHTarget | None) -> None:
    assert parse_ssh_target(text) == expected


@pytest.mark.parametrize("text", ["ssh://", "ssh:///x", "ssh://gpu1", "ssh://gpu1/", "ssh://gpu1:99999/x"])
def test_malformed_ssh_url_is_a_target_error(text: str) -> None:
    with pytest.raises(TargetError):
        parse_ssh_target(text)


def test_endpoints_and_canonical_spelling() -> None:
    assert parse_ssh_endpoint("gpu1") == SSHEndpoint("gpu1")
    assert parse_ssh_endpoint("bob@gpu1:2222") == SSHEndpoint("gpu1", 2222, "bob")
    assert parse_ssh_endpoint("gpu1:/x") == SSHEndpoint("gpu1")
    with pytest.raises(TargetError):
        parse_ssh_endpoint("not a host")
    assert str(SSHTarget("gpu1", None, "bob", "/x")) == "bob@gpu1:/x"
    assert str(SSHTarget("gpu1", 2222, None, "/x")) == "ssh://gpu1:2222/x"
    for text in ("bob@gpu1:/x", "ssh://gpu1:2222/x"):
        assert str(parse_ssh_target(text)) == text


def test_backoff_doubles_caps_jitters_and_resets() -> None:
    mid = Backoff(1, 60, 0.2, rand=lambda: 0.5)
    assert [mid.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    mid.reset()
    assert mid.next_delay() == 1
    assert Backoff(10, 60, 0.2, rand=lambda: 0.0).next_delay() == pytest.approx(8)
    assert Backoff(10, 60, 0.2, rand=lambda: 1.0).next_delay() == pytest.approx(12)
    rng = random.Random(1)
    spread = [Backoff(10, 60, 0.2, rand=rng.random).next_delay() for _ in range(200)]
    assert 8 <= min(spread) < 8.5 and 11.5 < max(spread) <= 12


# -- real OpenSSH sshd ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_follow_via_config_alias_while_writer_appends(ssh_home: SSHHome, tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_bytes(b"")
    states: list[HostState] = []

    async def scenario() -> None:
        async with SSHPool(fast(), on_state=states.append) as pool:
            tail = pool.follow(f"testhost:{log}")
            writer = asyncio.create_task(append_lines(log, 0, 300, pause=0.005, every=10))
            got = await Collector(tail).until(has_lines(300))
            await writer
            assert got.decode().splitlines() == [f"line {i}" for i in range(300)]
            assert tail.offset == log.stat().st_size
            assert pool.states()["testhost"].status is HostStatus.LIVE
            conn = pool.host("testhost").connection
        assert conn is not None and conn.is_closed()  # closing the pool closed the connection
        assert [c async for c in tail] == []

    run(scenario())
    assert [s.status for s in states][:2] == [HostStatus.CONNECTING, HostStatus.LIVE]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_scp_and_url_forms_share_one_connection(ssh_home: SSHHome, tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in ("a.log", "b.log", "c.bin"))
    a.write_bytes(b"alpha\n")
    b.write_bytes(b"bravo\n")
    blob = os.urandom(300_000)
    c.write_bytes(blob)
    user, port = ssh_home.server.user, ssh_home.server.port

    async def scenario() -> None:
        async with SSHPool(fast()) as pool:
            ta = pool.follow(f"testhost:{a}")
            tb = pool.follow(f"ssh://testhost{b}")
            tc = pool.follow(f"ssh://{user}@127.0.0.1:{port}{c}", offset=1000)
            assert ta.host is tb.host and tc.host is not ta.host
            assert await Collector(ta).until(has_lines(1)) == b"alpha\n"
            assert await Collector(tb).until(has_lines(1)) == b"bravo\n"
            col = Collector(tc)
            col.data += b"\0" * 1000  # the chunks start at the requested offset
            assert await col.until(lambda d: len(d) >= len(blob)) == b"\0" * 1000 + blob[1000:]
            assert set(pool.states()) == {"testhost", f"{user}@127.0.0.1:{port}"}

    run(scenario())


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_unknown_host_key_is_refused_with_a_one_line_hint(ssh_home: SSHHome, tmp_path: Path) -> None:
    ssh_home.trust()  # empty known_hosts
    log = tmp_path / "x.log"
    log.write_text("secret\n")

    async def scenario() -> None:
        async with SSHPool(fast()) as pool:
            tail = pool.follow(f"testhost:{log}")
            st = await wait_for_state(pool, "testhost", HostStatus.HOST_KEY_UNKNOWN)
            assert st.error is not None and "\n" not in st.error
            assert f"ssh-keyscan -p {ssh_home.server.port} 127.0.0.1 >> ~/.ssh/known_hosts" in st.error
            assert "ssh testhost" in st.error
            assert st.retry_in == FAST.slow_retry
            assert tail.host.connection is None
            assert tail.take() == []
            with pytest.raises(TargetError, match="known_hosts"):
                await pool.run("testhost", "true", timeout=5)
            assert tail.host.attempts == 1

    run(scenario())


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_wrong_key_is_auth_failed_and_not_retried_hot(ssh_home: SSHHome, tmp_path: Path) -> None:
    ssh_home.use_other_key()
    states: list[HostState] = []

    async def scenario() -> None:
        async with SSHPool(fast(slow_retry=30.0), on_state=states.append) as pool:
            pool.follow(f"testhost:{tmp_path}/x.log")
            st = await wait_for_state(pool, "testhost", HostStatus.AUTH_FAILED)
            assert st.retry_in == 30.0 and st.error and "authentication failed" in st.error
            await asyncio.sleep(1.0)
            assert pool.host("testhost").attempts == 1
            pool.retry_now("testhost")  # a person fixed it and asked again
            await asyncio.sleep(0.5)
            assert pool.host("testhost").attempts == 2

    run(scenario())
    assert HostStatus.LIVE not in {s.status for s in states}


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_more_files_than_max_sessions_on_one_host(ssh_home: SSHHome, tmp_path: Path) -> None:
    paths = [tmp_path / f"rank{i}.log" for i in range(14)]
    for i, p in enumerate(paths):
        p.write_text(f"file {i} start\n")

    async def scenario() -> None:
        async with SSHPool(fast()) as pool:
            first = [Collector(pool.follow(f"testhost:{p}")) for p in paths[:7]]
            for col in first:
                await col.until(has_lines(1))
            # Files added to a live host join the running follower; earlier ones keep their place.
            writers = [asyncio.create_task(append_lines(p, 1, 200, 0.002, 20)) for p in paths]
            later = [Collector(pool.follow(f"testhost:{p}")) for p in paths[7:]]
            await asyncio.gather(*writers)
            assert first[0].tail.mode == "follower"  # one channel for all fourteen files
            for i, col in enumerate(first + later):
                got = await col.until(has_lines(200))
                assert got.decode().splitlines() == [f"file {i} start"] + [f"line {n}" for n in range(1, 200)]
            # Commands still get channels next to the follower.
            results = await asyncio.gather(*(pool.run("testhost", f"echo {i}") for i in range(8)))
            assert [r.stdout for r in results] == [f"{i}\n" for i in range(8)]

    run(scenario())


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_proxyjump_alias(ssh_home: SSHHome, tmp_path: Path) -> None:
    log = tmp_path / "jump.log"
    log.write_text("through the jump host\n")
    logins_before = ssh_home.server.log().count("Accepted publickey")

    async def scenario() -> None:
        async with SSHPool(fast()) as pool:
            got = await Collector(pool.follow(f"jumped:{log}")).until(has_lines(1))
            assert got == b"through the jump host\n"
            assert pool.states()["jumped"].status is HostStatus.LIVE

    run(scenario())
    # Two logins: one to the jump host, one through it to the target.
    assert ssh_home.server.log().count("Accepted publickey") - logins_before == 2


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["follower", "tail"])
def test_truncation_and_rotation_restart_at_zero(ssh_home: SSHHome, tmp_path: Path, mode: str) -> None:
    log = tmp_path / "t.log"
    log.write_text("one\ntwo\n")
    settings = fast() if mode == "follower" else fast(remote_python=None)

    async def scenario() -> None:
        async with SSHPool(settings) as pool:
            col = Collector(pool.follow(f"testhost:{log}"))
            await col.until(has_lines(2))
            await asyncio.sleep(0.3)
            log.write_text("x\n")  # truncated in place
            assert await col.until(lambda d: d == b"x\n") == b"x\n"
            assert col.resets == ["truncated"]
            await asyncio.sleep(0.3)
            log.rename(tmp_path / "t.log.1")
            log.write_text("fresh\n")  # rotated: a new file under the old name
            assert await col.until(lambda d: d == b"fresh\n") == b"fresh\n"
            assert col.resets == ["truncated", "rotated"]

    run(scenario())


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_killed_follower_is_restarted_where_it_left_off(ssh_home: SSHHome, tmp_path: Path) -> None:
    log = tmp_path / "k.log"
    log.write_bytes(b"")

    async def scenario() -> None:
        async with SSHPool(fast()) as pool:
            tail = pool.follow(f"testhost:{log}")
            col = Collector(tail)
            await append_lines(log, 0, 100)
            await col.until(has_lines(100))
            mux = pool._muxes[tail.target.endpoint]
            pid = mux.follower_pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)  # sshd runs on this machine, so its child is ours to kill
            await until(lambda: mux.follower_pid not in (None, pid))
            await append_lines(log, 100, 200)
            got = await col.until(has_lines(200))
            assert got.decode().splitlines() == [f"line {i}" for i in range(200)]
            assert not col.resets and pool.states()["testhost"].status is HostStatus.LIVE

    run(scenario())


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_missing_python_falls_back_to_tail_and_missing_file_is_a_problem(ssh_home: SSHHome, tmp_path: Path) -> None:
    log = tmp_path / "later.log"

    async def scenario() -> None:
        async with SSHPool(fast(remote_python="no-such-python3")) as pool:
            tail = pool.follow(f"testhost:{log}")
            first = await asyncio.wait_for(anext(tail), 15)
            assert first.problem and "No such file" in first.problem and str(log) in first.problem
            await append_lines(log, 0, 50)
            col = Collector(tail)
            assert (await col.until(has_lines(50))).decode().splitlines() == [f"line {i}" for i in range(50)]

    run(scenario())


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_run_and_line_stream(ssh_home: SSHHome) -> None:
    async def scenario() -> None:
        async with SSHPool(fast()) as pool:
            status, out, err = await pool.run("testhost", "echo hi; echo oops >&2; exit 3")
            assert (status, out, err) == (3, "hi\n", "oops\n")
            stream = pool.lines("testhost", "for i in 1 2 3; do echo gpu $i; sleep 0.05; done")
            assert [line async for line in stream] == ["gpu 1", "gpu 2", "gpu 3"]
            assert stream.exit_status == 0
            missing = pool.lines("testhost", "nvidia-smi-not-installed -l 1")
            assert [line async for line in missing] == []
            assert missing.exit_status == 127 and "not found" in " ".join(missing.stderr_tail)

    run(scenario())


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["follower", "tail"])
def test_a_slow_reader_pauses_the_remote_side(ssh_home: SSHHome, tmp_path: Path, mode: str) -> None:
    big = tmp_path / "big.wandb"
    blob = os.urandom(16 << 20)
    big.write_bytes(blob)
    high = 256 << 10
    settings = fast(high_water=high, remote_python=FAST.remote_python if mode == "follower" else None)

    async def scenario() -> None:
        async with SSHPool(settings) as pool:
            tail = pool.follow(f"testhost:{big}")
            await until(lambda: tail.paused or tail.buffered >= len(blob))
            await asyncio.sleep(1.0)  # nobody reads: what is buffered must stay bounded
            print("buffered while paused:", tail.buffered)
            assert tail.paused and tail.buffered < 6 << 20, tail.buffered
            col = Collector(tail)
            assert await col.until(lambda d: len(d) >= len(blob), timeout=40) == blob
            assert tail.offset == len(blob) and not tail.paused

    run(scenario())


def test_remote_paths_are_quoted_for_sh() -> None:
    assert shell_path("/runs/a b/train.log") == "'/runs/a b/train.log'"
    assert shell_path("~/runs/x;rm -rf ~") == "\"$HOME\"/'runs/x;rm -rf ~'"
    assert shell_path("~") == '"$HOME"'
    assert add_command(3, 10, 0, "/a b") == b"A 3 10 0 2f612062\n"


# -- fault injection against an in-process server ------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["follower", "tail"])
def test_every_byte_exactly_once_across_repeated_drops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    texts = [tmp_path / "a.log", tmp_path / "b.log"]
    binary = tmp_path / "run.wandb"
    for p in (*texts, binary):
        p.write_bytes(b"")
    blob = os.urandom(1_500_000)
    settings = fast(remote_python="python3" if mode == "follower" else None, stable_after=100.0)
    lives: list[HostState] = []

    async def write_binary() -> None:
        with open(binary, "ab", buffering=0) as f:
            for i in range(0, len(blob), 7_001):
                f.write(blob[i : i + 7_001])
                await asyncio.sleep(0.01)

    async def scenario() -> None:
        async with in_process_sshd(home) as server, SSHPool(settings) as pool:
            pool.add_listener(lambda s: lives.append(s) if s.status is HostStatus.LIVE else None)
            base = f"ssh://127.0.0.1:{server.port}"
            cols = [Collector(pool.follow(f"{base}{p}")) for p in (*texts, binary)]
            writers = [asyncio.create_task(append_lines(p, 0, 2000, 0.01, 8)) for p in texts]
            writers.append(asyncio.create_task(write_binary()))
            for _ in range(6):
                await asyncio.sleep(0.35)
                await wait_for_state(pool, f"127.0.0.1:{server.port}", HostStatus.LIVE)
                await asyncio.sleep(0.05)
                assert server.drop_all() >= 1
            await asyncio.gather(*writers)
            for col in cols[:2]:
                got = await col.until(has_lines(2000), timeout=30)
                assert got.decode().splitlines() == [f"line {i}" for i in range(2000)]
            assert await cols[2].until(lambda d: len(d) >= len(blob), timeout=30) == blob
            assert all(not col.resets for col in cols)
            assert server.drops >= 6

    run(scenario())
    assert len(lives) >= 7  # the first connection and one per drop


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_line_stream_is_rerun_after_a_drop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)

    async def scenario() -> None:
        lives: list[HostState] = []
        async with in_process_sshd(tmp_path) as server, SSHPool(fast()) as pool:
            pool.add_listener(lambda s: lives.append(s) if s.status is HostStatus.LIVE else None)
            stream = pool.lines(f"127.0.0.1:{server.port}", "while true; do echo tick; sleep 0.02; done")
            assert await anext(stream) == "tick"
            server.drop_all()
            await until(lambda: len(lives) == 2)
            for _ in range(100):  # what was queued before the drop, then the re-run command's
                assert await asyncio.wait_for(anext(stream), 5) == "tick"
            assert stream.exit_status is None
            await stream.aclose()
            assert set([line async for line in stream]) <= {"tick"}  # the rest, then the end

    run(scenario())


@pytest.mark.timeout(60)
def test_backoff_grows_on_drops_and_resets_after_a_stable_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    now = [1000.0]
    waits: list[float] = []

    async def fake_sleep(delay: float) -> None:
        waits.append(delay)
        await asyncio.sleep(0)

    settings = SSHSettings(backoff_initial=1.0, backoff_max=4.0, stable_after=30.0, connect_timeout=10.0)

    async def scenario() -> None:
        async with in_process_sshd(home) as server:
            pool = SSHPool(settings, clock=lambda: now[0], sleep=fake_sleep, rand=lambda: 0.5)
            seen: list[HostState] = []
            pool.add_listener(seen.append)
            host = pool.host(f"127.0.0.1:{server.port}")

            def count(status: HostStatus) -> int:
                return sum(s.status is status for s in seen)

            for n in range(1, 6):
                await until(lambda n=n: count(HostStatus.LIVE) == n)  # type: ignore[misc]
                if n == 5:
                    now[0] += 31  # this connection stayed up long enough
                server.drop_all()
                await until(lambda n=n: count(HostStatus.RETRYING) == n)  # type: ignore[misc]
            await pool.close()
            retries = [s.retry_in for s in seen if s.status is HostStatus.RETRYING]
            assert retries == [1.0, 2.0, 4.0, 4.0, 1.0]
            assert waits[:5] == retries
            assert all(s.error == "connection lost" for s in seen if s.status is HostStatus.RETRYING)
            assert pool.states()[host.name].status is HostStatus.CLOSED

    run(scenario())


@pytest.mark.timeout(60)
def test_refused_port_retries_with_growing_delay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    waits: list[float] = []

    async def fake_sleep(delay: float) -> None:
        waits.append(delay)
        await asyncio.sleep(0.01)

    async def scenario() -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # nothing listens here
        pool = SSHPool(SSHSettings(), sleep=fake_sleep, rand=lambda: 0.5)
        tail = pool.follow(f"ssh://127.0.0.1:{port}/x.log")
        while len(waits) < 4:
            await asyncio.sleep(0.01)
        st = tail.state
        assert st.status in (HostStatus.RETRYING, HostStatus.CONNECTING)
        assert st.error and "\n" not in st.error
        await pool.close()
        assert waits[:4] == [1.0, 2.0, 4.0, 8.0]
        assert tail.closed and [c async for c in tail] == []

    run(scenario())
