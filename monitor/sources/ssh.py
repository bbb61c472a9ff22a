"""The SSH transport: follow remote files, run remote commands, watch connection state.

Usage (inside a running asyncio loop)::

    from monitor.sources.ssh import SSHPool, parse_ssh_target

    async with SSHPool(on_state=print) as pool:          # or pool = SSHPool(); await pool.close()
        tail = pool.follow("gpu1:/runs/a/train.log", offset=0)
        async for chunk in tail:                          # Chunk(offset, data, reset, problem)
            if chunk.reset:                               # "truncated" / "rotated": restarted at 0
                partial_line = b""
            feed(chunk.offset, chunk.data)                # tail.offset = next undelivered byte
        status, out, err = await pool.run("gpu1", "squeue -u $USER")
        async for line in pool.lines("gpu1", "nvidia-smi --query-gpu=... -l 1"):
            ...
        pool.states()                                     # {"gpu1": HostState(status=live, ...)}

Pieces:

- `parse_ssh_target(text) -> SSHTarget | None` (in `ssh_targets`): `ssh://[user@]host[:port]/path`
  and `[user@]host:/path`; None for anything else (local paths, `wandb://`).
- `SSHPool`: one `SSHHost` per endpoint (host, port, user), created on first use and shared by all
  its streams. `follow()` returns a `RemoteTail`; `lines()` a `RemoteLines`; `run()` a
  `CommandResult(exit_status, stdout, stderr)`. `close()` ends everything.
- Connections honour `~/.ssh/config` (aliases, User, Port, IdentityFile, ProxyJump), ssh-agent and
  `~/.ssh/known_hosts` because the host is handed to asyncssh as written. An unknown host key is
  refused (`host_key_unknown`, with the ssh-keyscan line to run); an auth failure is
  `auth_failed`; both retry only every `SSHSettings.slow_retry` seconds. Drops reconnect with
  exponential backoff and jitter (`retrying`, with `retry_in`). Keepalive is 15 s × 3.
- State: every change is a frozen `HostState(host, status, retry_in, error, since)` passed to each
  listener (`on_state=` or `add_listener`); any callable works, e.g. `asyncio.Queue.put_nowait`.
- `RemoteTail`: yields `Chunk`s of the remote file from `offset` on, across reconnects, with no byte
  lost or repeated (`take()` returns what has arrived without waiting; `close()` ends it). Binary
  files (`.wandb`) work the same. A file that shrinks or is replaced yields a chunk with `reset`
  set; one that cannot be read yields a chunk with `problem` set and is retried. All tails of a
  host share one remote Python follower on one channel (files join it live; a file replaced while
  disconnected is caught by its inode). Without Python on the host each file gets a
  `tail -c +N -F` channel, at most `tail_channels` at once; there a rotation during a disconnect
  goes unnoticed, as with `tail -F` itself. A consumer that falls behind by `high_water` bytes
  pauses that file's remote reads until it catches up.
- `pool.retry_now(host)` cuts a backoff wait short (after the person fixed a key, say).
  `SSHSettings` holds every knob; `clock`, `sleep` and `rand` are injectable for tests.
- `RemoteLines`: the output lines of a long-running command; re-run after a reconnect; ends when
  the command exits (`exit_status`, `stderr_tail`).

Expected failures of `run()` raise `monitor.errors.TargetError`; streams never raise for network
trouble, they wait and the host state says why.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import NamedTuple

import asyncssh

from monitor.aiotime import wait_for
from monitor.errors import TargetError
from monitor.sources.base import Chunk
from monitor.sources.ssh_host import (
    Backoff,
    HostState,
    HostStatus,
    Sleep,
    SSHHost,
    SSHSettings,
    StateListener,
    cancel_and_wait,
)
from monitor.sources.ssh_tail import RemoteTail, TailMux
from monitor.sources.ssh_targets import SSHEndpoint, SSHTarget, parse_ssh_endpoint, parse_ssh_target

__all__ = [
    "Backoff",
    "Chunk",
    "CommandResult",
    "HostState",
    "HostStatus",
    "RemoteLines",
    "RemoteTail",
    "SSHEndpoint",
    "SSHHost",
    "SSHPool",
    "SSHSettings",
    "SSHTarget",
    "parse_ssh_endpoint",
    "parse_ssh_target",
]

log = logging.getLogger(__name__)

Where = SSHTarget | SSHEndpoint | str
_ERRORS = (asyncssh.Error, OSError, asyncio.IncompleteReadError)


class CommandResult(NamedTuple):
    """What a one-shot remote command did. `exit_status` is -N when killed by signal N."""

    exit_status: int
    stdout: str
    stderr: str


class SSHPool:
    """All SSH connections of a runwatch session, one per endpoint, and the streams over them."""

    def __init__(
        self,
        settings: SSHSettings | None = None,
        *,
        on_state: StateListener | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings or SSHSettings()
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._listeners: list[StateListener] = [on_state] if on_state else []
        self._hosts: dict[SSHEndpoint, SSHHost] = {}
        self._muxes: dict[SSHEndpoint, TailMux] = {}
        self._lines: set[RemoteLines] = set()
        self._closed = False

    async def __aenter__(self) -> SSHPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def add_listener(self, listener: StateListener) -> None:
        """Call `listener(HostState)` on every state change of every host."""
        self._listeners.append(listener)

    def remove_listener(self, listener: StateListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def host(self, where: Where) -> SSHHost:
        """The shared connection for a target, endpoint or `[user@]host[:port]` string."""
        if self._closed:
            raise TargetError("the SSH pool is closed")
        endpoint = _endpoint(where)
        host = self._hosts.get(endpoint)
        if host is None:
            host = SSHHost(
                endpoint,
                self.settings,
                clock=self._clock,
                sleep=self._sleep,
                rand=self._rand,
                listeners=self._listeners,
            )
            self._hosts[endpoint] = host
        host.start()
        return host

    def follow(self, target: SSHTarget | str, offset: int = 0) -> RemoteTail:
        """Follow a remote file from byte `offset` (0 = the beginning) until closed."""
        if isinstance(target, str):
            parsed = parse_ssh_target(target)
            if parsed is None:
                raise TargetError(f"{target!r} is not an SSH target (expected host:/path or ssh://...)")
            target = parsed
        if offset < 0:
            raise ValueError("offset must be >= 0")
        host = self.host(target)
        mux = self._muxes.get(target.endpoint)
        if mux is None:
            mux = self._muxes[target.endpoint] = TailMux(host)
        return RemoteTail(target, host, mux, offset)

    def lines(self, where: Where, command: str) -> RemoteLines:
        """Stream the output lines of a long-running remote command (re-run after reconnects)."""
        stream = RemoteLines(self.host(where), command, self.settings)
        self._lines.add(stream)
        stream.done_callbacks.append(self._lines.discard)
        return stream

    async def run(self, where: Where, command: str, *, timeout: float = 60.0) -> CommandResult:
        """Run a command once and wait for it; `TargetError` if the host cannot be reached in time."""
        host = self.host(where)
        deadline = self._clock() + timeout
        conn = await host.connect_once(timeout)
        try:
            async with host.channels:
                left = max(0.1, deadline - self._clock())
                done = await wait_for(conn.run(command, check=False, encoding="utf-8", errors="replace"), left)
        except TimeoutError:
            raise TargetError(f"{host.name}: {command!r} did not finish within {timeout:g} s") from None
        except _ERRORS as exc:
            raise TargetError(f"{host.name}: {command!r} failed: {exc}") from None
        status = done.returncode if done.returncode is not None else -1
        return CommandResult(status, _text(done.stdout), _text(done.stderr))

    def states(self) -> dict[str, HostState]:
        """The current state of every host, by host name (`[user@]host[:port]`)."""
        return {host.name: host.state for host in self._hosts.values()}

    def retry_now(self, where: Where | None = None) -> None:
        """Cut the backoff wait short for one host, or for all."""
        hosts = [self.host(where)] if where is not None else list(self._hosts.values())
        for host in hosts:
            host.retry_now()

    async def close(self) -> None:
        """End every stream and close every connection."""
        self._closed = True
        for stream in list(self._lines):
            await stream.aclose()
        for mux in list(self._muxes.values()):
            await mux.close()
        await asyncio.gather(*(host.close() for host in self._hosts.values()))


class RemoteLines:
    """Lines printed by a long-running remote command, without their newlines.

    The command is started when the host is live and started again after a reconnect; the
    stream ends when the command exits by itself (`exit_status` then says how).
    """

    def __init__(self, host: SSHHost, command: str, settings: SSHSettings) -> None:
        self.host = host
        self.command = command
        self.exit_status: int | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        """The last lines the command wrote to stderr."""
        self.done_callbacks: list[Callable[[RemoteLines], object]] = []
        self._settings = settings
        self._closed = False
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=10_000)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"lines {host.name}")

    def __aiter__(self) -> RemoteLines:
        return self

    async def __anext__(self) -> str:
        line = await self._queue.get()
        if line is None:
            self._queue.put_nowait(None)
            raise StopAsyncIteration
        return line

    async def aclose(self) -> None:
        """Stop the command and end the stream."""
        self._closed = True
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        retry = Backoff(self._settings.backoff_initial, 30.0, self._settings.backoff_jitter)
        try:
            while not self._closed:
                conn = await self.host.wait_connection()
                status = await self._run_once(conn)
                if status is not None and not conn.is_closed():
                    self.exit_status = status
                    return
                if not conn.is_closed():
                    await asyncio.sleep(retry.next_delay())
        finally:
            if self._queue.full():
                self._queue.get_nowait()  # the reader is gone or far behind: room for the end marker
            self._queue.put_nowait(None)
            for callback in self.done_callbacks:
                callback(self)

    async def _run_once(self, conn: asyncssh.SSHClientConnection) -> int | None:
        """Run the command once; its exit status, or None when it did not finish by itself."""
        async with self.host.channels:
            try:
                proc = await conn.create_process(self.command, encoding="utf-8", errors="replace")
            except _ERRORS as exc:
                self.stderr_tail.append(f"cannot start {self.command!r}: {exc}")
                return None
            err = asyncio.ensure_future(self._collect_stderr(proc.stderr))
            try:
                async for line in proc.stdout:
                    if line:  # asyncssh yields "" at EOF
                        await self._queue.put(line.rstrip("\n"))
                await wait_for(proc.wait_closed(), 5)
            except (*_ERRORS, TimeoutError) as exc:
                log.info("%s: %r ended: %s", self.host.name, self.command, exc)
                return None
            finally:
                proc.close()
                with contextlib.suppress(asyncio.TimeoutError, *_ERRORS):
                    await wait_for(err, 1)
            return proc.returncode

    async def _collect_stderr(self, reader: asyncssh.SSHReader[str]) -> None:
        with contextlib.suppress(*_ERRORS):
            async for line in reader:
                if line:
                    self.stderr_tail.append(line.rstrip("\n"))


def _endpoint(where: Where) -> SSHEndpoint:
    if isinstance(where, SSHEndpoint):
        return where
    if isinstance(where, SSHTarget):
        return where.endpoint
    return parse_ssh_endpoint(where)


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
