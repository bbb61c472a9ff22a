"""Remote file tails: `RemoteTail` streams and the per-host `TailMux` that feeds them.

A `RemoteTail` keeps `offset`, the absolute position of the next byte it has not delivered, and
the mux keeps asking the host for bytes from where the stream's received data ends, so a
reconnect neither loses nor repeats a byte. All tails on a host share one remote follower
process (see `monitor.sources.ssh_remote`); without Python there, each tail gets its own
`tail -c +N -F` channel, at most `SSHSettings.tail_channels` of them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging

import asyncssh

from monitor.sources import ssh_remote
from monitor.sources.base import Chunk
from monitor.sources.ssh_host import Backoff, HostState, SSHHost, cancel_and_wait
from monitor.sources.ssh_targets import SSHTarget

log = logging.getLogger(__name__)

_STREAM_ERRORS = (asyncio.IncompleteReadError, asyncssh.Error, OSError, EOFError)


class RemoteTail:
    """The bytes of one remote file from a byte offset onward, forever, across reconnects.

    Iterate it (`async for chunk in tail`) or take what has arrived with `take()`. `close()` ends
    it. Made by `SSHPool.follow`; not constructed directly.
    """

    def __init__(self, target: SSHTarget, host: SSHHost, mux: TailMux, offset: int) -> None:
        self.target = target
        self.host = host
        self.offset = offset
        """Absolute offset of the next byte not yet delivered to the consumer."""
        self.problem: str | None = None
        """Why the file cannot be read right now, or None."""
        self.inode = 0
        self._mux = mux
        self._received = offset
        self._queue: asyncio.Queue[Chunk | None] = asyncio.Queue()
        self._buffered = 0
        self._paused = False
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False
        self.idx = mux.add(self)

    @property
    def state(self) -> HostState:
        """The state of the host this file is read from."""
        return self.host.state

    @property
    def buffered(self) -> int:
        """Bytes received from the host and not yet delivered to the consumer."""
        return self._buffered

    @property
    def mode(self) -> str | None:
        """How the host is read now: "follower" (shared Python process), "tail" (a channel each) or None."""
        return self._mux.mode

    @property
    def resume_offset(self) -> int:
        """Where the remote side resumes: the end of what has been received (delivered or queued)."""
        return self._received

    def __aiter__(self) -> RemoteTail:
        return self

    async def __anext__(self) -> Chunk:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)
            raise StopAsyncIteration
        return self._delivered(item)

    def take(self) -> list[Chunk]:
        """All chunks that have arrived, without waiting (may be empty)."""
        chunks: list[Chunk] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                self._queue.put_nowait(None)
                break
            chunks.append(self._delivered(item))
        return chunks

    def close(self) -> None:
        """Stop following; iteration ends after the chunks already queued."""
        if not self._closed:
            self._closed = True
            self._mux.remove(self.idx)
            self._queue.put_nowait(None)
            self._drained.set()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def paused(self) -> bool:
        """True while the consumer is behind and the remote side has been asked to pause."""
        return self._paused

    async def wait_drained(self) -> None:
        """Wait until the consumer has taken enough of what is buffered."""
        await self._drained.wait()

    def _delivered(self, chunk: Chunk) -> Chunk:
        self._buffered -= len(chunk.data)
        self.offset = chunk.end if (chunk.data or chunk.reset) else self.offset
        if self._buffered <= self._mux.settings.high_water // 4:
            self._drained.set()
            if self._paused:
                self._paused = False
                self._mux.resume(self.idx)
        return chunk

    def _put(self, chunk: Chunk) -> None:
        if self._closed:
            return
        self._buffered += len(chunk.data)
        self._queue.put_nowait(chunk)
        if self._buffered > self._mux.settings.high_water:
            self._drained.clear()
            if not self._paused:
                self._paused = True
                self._mux.pause(self.idx)

    # Called by the mux as frames arrive.
    def on_data(self, offset: int, data: bytes) -> None:
        if offset + len(data) <= self._received:
            return  # already have these bytes
        if offset < self._received:
            data, offset = data[self._received - offset :], self._received
        elif offset > self._received:
            log.warning("%s: gap in remote data (%d..%d)", self.target, self._received, offset)
        self._received = offset + len(data)
        self.problem = None
        self._put(Chunk(offset, data))

    def on_reset(self, reason: str) -> None:
        self._received = 0
        self._put(Chunk(0, b"", reset=reason))

    def on_open(self, inode: int) -> None:
        self.inode = inode
        self.problem = None

    def on_problem(self, message: str) -> None:
        if message != self.problem:
            self.problem = message
            self._put(Chunk(self._received, b"", problem=f"{self.target}: {message}"))


class TailMux:
    """Feeds all the `RemoteTail`s of one host from one follower process (or `tail` channels)."""

    def __init__(self, host: SSHHost) -> None:
        self.host = host
        self.settings = host.settings
        self.streams: dict[int, RemoteTail] = {}
        self._next_idx = 0
        self._task: asyncio.Task[None] | None = None
        self._stdin: asyncssh.SSHWriter[bytes] | None = None
        self._tail_conn: asyncssh.SSHClientConnection | None = None
        self._tail_tasks: dict[int, asyncio.Task[None]] = {}
        self._tail_slots = asyncio.Semaphore(self.settings.tail_channels)
        self.mode: str | None = None
        """"follower" or "tail" while serving a connection, else None."""
        self.follower_pid: int | None = None
        """The remote follower's process id while it runs (for diagnostics)."""

    def add(self, stream: RemoteTail) -> int:
        idx = self._next_idx
        self._next_idx += 1
        self.streams[idx] = stream
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"tails {self.host.name}")
        if self._stdin is not None:
            self._send(self._add_line(idx, stream))
        elif self._tail_conn is not None:
            self._start_tail(self._tail_conn, idx)
        return idx

    def remove(self, idx: int) -> None:
        if self.streams.pop(idx, None) is None:
            return
        self._send(b"X %d\n" % idx)
        task = self._tail_tasks.pop(idx, None)
        if task is not None:
            task.cancel()

    def pause(self, idx: int) -> None:
        self._send(b"P %d\n" % idx)

    def resume(self, idx: int) -> None:
        self._send(b"C %d\n" % idx)

    async def close(self) -> None:
        for stream in list(self.streams.values()):
            stream.close()
        tasks = [t for t in (self._task, *self._tail_tasks.values()) if t is not None]
        self._task = None
        for task in tasks:
            await cancel_and_wait(task)

    def _send(self, line: bytes) -> None:
        if self._stdin is not None:
            try:
                self._stdin.write(line)
            except _STREAM_ERRORS as exc:
                log.debug("%s: follower stdin closed: %s", self.host.name, exc)

    @staticmethod
    def _add_line(idx: int, stream: RemoteTail) -> bytes:
        return ssh_remote.add_command(idx, stream.resume_offset, stream.inode, stream.target.path)

    async def _run(self) -> None:
        restarts = Backoff(self.settings.backoff_initial, 30.0, self.settings.backoff_jitter)
        loop = asyncio.get_running_loop()
        while True:
            conn = await self.host.wait_connection()
            try:
                outcome, started = "no-python", loop.time()
                if self.settings.remote_python:
                    outcome = await self._serve_follower(conn)
                if conn.is_closed() or self.host.connection is not conn:
                    continue
                if outcome == "no-python":
                    await self._serve_tails(conn)
                    continue
                # The follower died on a live connection: restart it, slower if it keeps dying.
                if outcome == "ran" and loop.time() - started >= self.settings.stable_after:
                    restarts.reset()
            except Exception:
                log.exception("%s: remote tails failed; restarting them", self.host.name)
            await asyncio.sleep(restarts.next_delay())

    async def _serve_follower(self, conn: asyncssh.SSHClientConnection) -> str:
        """Run the follower until it or the connection ends: "ran", "failed" or "no-python"."""
        command = ssh_remote.follower_command(self.settings.remote_python or "python3", self.settings.poll_interval)
        async with self.host.channels:
            try:
                proc = await conn.create_process(command, encoding=None)
            except _STREAM_ERRORS as exc:
                log.info("%s: cannot start the follower: %s", self.host.name, exc)
                return "failed"
            stderr: collections.deque[bytes] = collections.deque(maxlen=20)
            drain = asyncio.ensure_future(_collect(proc.stderr, stderr))
            try:
                pid = await _await_hello(proc.stdout, ssh_remote.HELLO)
                if pid is None:
                    await asyncio.wait([drain], timeout=1.0)
                    if proc.exit_status is None:
                        return "failed"  # the channel or connection broke, not the program
                    why = b" | ".join(stderr).decode(errors="replace") or f"exit {proc.exit_status}"
                    log.info("%s: no remote follower (%s); using tail -F", self.host.name, why[:300])
                    return "no-python"
                self.mode = "follower"
                self.follower_pid = pid
                self._stdin = proc.stdin
                for idx, stream in list(self.streams.items()):
                    self._send(self._add_line(idx, stream))
                    if stream.paused:
                        self.pause(idx)
                try:
                    await self._read_frames(proc.stdout)
                except _STREAM_ERRORS as exc:
                    log.info("%s: follower stream ended: %s", self.host.name, exc)
                except ValueError as exc:
                    log.warning("%s: bad frame from the follower: %s", self.host.name, exc)
                if stderr:
                    log.info("%s: follower said: %s", self.host.name, b" | ".join(stderr)[:300])
                return "ran"
            finally:
                self._stdin = None
                self.mode = self.follower_pid = None
                drain.cancel()
                proc.close()

    async def _read_frames(self, stdout: asyncssh.SSHReader[bytes]) -> None:
        while True:
            head = await stdout.readuntil(b"\n")
            kind, _, rest = head.rstrip(b"\n").partition(b" ")
            if kind == b"D":
                idx_s, off_s, len_s = rest.split(b" ")
                data = await stdout.readexactly(int(len_s))
                if (stream := self.streams.get(int(idx_s))) is not None:
                    stream.on_data(int(off_s), data)
                continue
            if kind not in (b"T", b"O", b"E"):
                raise ValueError(f"unknown frame {head[:80]!r}")
            idx_s, _, arg = rest.partition(b" ")
            stream = self.streams.get(int(idx_s))
            if stream is None:
                continue
            if kind == b"T":
                stream.on_reset(arg.decode())
            elif kind == b"O":
                stream.on_open(int(arg))
            else:
                stream.on_problem(arg.decode(errors="replace"))

    async def _serve_tails(self, conn: asyncssh.SSHClientConnection) -> None:
        """One `tail -F` channel per stream (at most `tail_channels`) until the connection drops."""
        self.mode = "tail"
        self._tail_conn = conn
        try:
            for idx in list(self.streams):
                self._start_tail(conn, idx)
            await conn.wait_closed()
        finally:
            self._tail_conn = None
            self.mode = None
            tasks = list(self._tail_tasks.values())
            self._tail_tasks.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start_tail(self, conn: asyncssh.SSHClientConnection, idx: int) -> None:
        self._tail_tasks[idx] = asyncio.get_running_loop().create_task(self._tail_one(conn, idx))

    async def _tail_one(self, conn: asyncssh.SSHClientConnection, idx: int) -> None:
        stream = self.streams.get(idx)
        if stream is None:
            return
        if self._tail_slots.locked():
            stream.on_problem(
                f"waiting for a channel: without python3 on the host at most "
                f"{self.settings.tail_channels} files are followed at once"
            )
        retry = Backoff(self.settings.backoff_initial, 30.0, self.settings.backoff_jitter)
        async with self._tail_slots, self.host.channels:
            while idx in self.streams and not conn.is_closed():
                restart_at_zero = await self._tail_channel(conn, stream)
                if restart_at_zero is not None:
                    if stream.resume_offset > 0:
                        stream.on_reset(restart_at_zero)
                    continue
                await asyncio.sleep(retry.next_delay())

    async def _tail_channel(self, conn: asyncssh.SSHClientConnection, stream: RemoteTail) -> str | None:
        """Run one `tail` until it ends; returns a reset reason when it must restart at 0."""
        requested = stream.resume_offset
        try:
            proc = await conn.create_process("sh -s", encoding=None)
        except _STREAM_ERRORS as exc:
            stream.on_problem(f"cannot open a channel: {exc}")
            return None
        restart: list[str] = []
        watcher = asyncio.ensure_future(_watch_tail_stderr(proc.stderr, stream, restart))
        try:
            proc.stdin.write(ssh_remote.tail_script(stream.target.path, requested).encode())
            proc.stdin.write_eof()
            head = b""
            while not head.startswith(b"RW S "):
                head = await proc.stdout.readuntil(b"\n")
            offset = int(head.split()[2])
            if offset < requested:
                stream.on_reset("truncated")
            while not restart:
                data = await proc.stdout.read(65536)
                if not data:
                    break
                stream.on_data(offset, data)
                offset += len(data)
                await stream.wait_drained()
        except _STREAM_ERRORS as exc:
            log.info("%s: tail of %s ended: %s", self.host.name, stream.target.path, exc)
        finally:
            watcher.cancel()
            proc.close()
        return restart[0] if restart else None


async def _await_hello(stdout: asyncssh.SSHReader[bytes], hello: bytes) -> int | None:
    """Skip login noise up to the hello line and return the pid in it; None when the program ended."""
    try:
        for _ in range(200):
            line = await stdout.readuntil(b"\n")
            if line.startswith(hello):
                return int(line[len(hello) :])
    except (*_STREAM_ERRORS, ValueError):
        return None
    return None


async def _collect(reader: asyncssh.SSHReader[bytes], into: collections.deque[bytes]) -> None:
    with contextlib.suppress(*_STREAM_ERRORS):
        async for line in reader:
            if line:
                into.append(line.rstrip(b"\n"))


async def _watch_tail_stderr(reader: asyncssh.SSHReader[bytes], stream: RemoteTail, restart: list[str]) -> None:
    """Turn GNU/busybox tail's notices into problems and restarts."""
    with contextlib.suppress(*_STREAM_ERRORS):
        async for raw in reader:
            line = raw.decode(errors="replace").strip()
            if "truncated" in line:
                restart.append("truncated")
            elif "has been replaced" in line or "has appeared" in line:
                restart.append("rotated")
            elif line:
                stream.on_problem(line.removeprefix("tail: "))
            if restart:
                # Wake the reader so it stops and restarts the channel from byte 0.
                reader.channel.close()
                return
