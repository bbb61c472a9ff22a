"""One SSH connection per endpoint, kept alive and re-opened with backoff; its state is observable.

`SSHHost` owns a background task that connects, waits for the connection to drop, and connects
again after an exponential backoff with jitter. Users of the connection call `wait_connection()`
and get the live `asyncssh.SSHClientConnection` (the same one for every stream on the host).
State changes (`HostState`) go to plain callables; nothing here knows about a UI.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from monitor.aiotime import wait_for
from monitor.errors import TargetError
from monitor.sources.ssh_targets import SSHEndpoint

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class HostStatus(enum.Enum):
    """Where a host's connection stands."""

    CONNECTING = "connecting"
    LIVE = "live"
    RETRYING = "retrying"
    AUTH_FAILED = "auth_failed"
    HOST_KEY_UNKNOWN = "host_key_unknown"
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class HostState:
    """A snapshot of one host's connection, as delivered to listeners.

    `retry_in` is the seconds until the next attempt, when one is scheduled (in `retrying`,
    `auth_failed` and `host_key_unknown`). `error` is the last failure as one line.
    `since` is the clock reading when this state began.
    """

    host: str
    status: HostStatus
    retry_in: float | None = None
    error: str | None = None
    since: float = 0.0

    def describe(self) -> str:
        """One line for a person: `gpu1: retrying in 8 s (Connection refused)`."""
        text = f"{self.host}: {str(self.status).replace('_', ' ')}"
        if self.retry_in is not None and self.status is not HostStatus.HOST_KEY_UNKNOWN:
            text += f" (next try in {self.retry_in:.0f} s)"
        if self.error:
            text += f": {self.error}"
        return text


StateListener = Callable[[HostState], Any]


@dataclass(frozen=True, slots=True)
class SSHSettings:
    """Knobs for connections, reconnects and remote tails. Defaults suit real use; tests shrink them."""

    keepalive_interval: float = 15.0
    keepalive_count_max: int = 3
    connect_timeout: float = 20.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    backoff_jitter: float = 0.2
    stable_after: float = 30.0
    """A connection that lived this long resets the backoff to `backoff_initial`."""
    slow_retry: float = 120.0
    """Wait after an auth failure or an unknown host key: the person has to act first."""
    max_channels: int = 10
    """Channels open at once per connection (OpenSSH's default MaxSessions is 10)."""
    tail_channels: int = 6
    """Channels used for `tail -F` when the remote has no Python (leaves room for commands)."""
    remote_python: str | None = "python3"
    """Interpreter for the multiplexing follower; None forces one `tail -F` channel per file."""
    poll_interval: float = 0.25
    """How often the remote follower checks its files for new bytes."""
    high_water: int = 8 << 20
    """Bytes buffered for an unread stream before its remote reads pause."""
    connect_options: Mapping[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for `asyncssh.connect` (e.g. `known_hosts=` in tests)."""


class Backoff:
    """Exponential backoff with jitter: initial, ×2, … up to `maximum`, each ±`jitter` (a fraction)."""

    def __init__(
        self,
        initial: float = 1.0,
        maximum: float = 60.0,
        jitter: float = 0.2,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._rand = rand
        self._next = initial

    def reset(self) -> None:
        """Start again from `initial` (after a connection that stayed up)."""
        self._next = self.initial

    def next_delay(self) -> float:
        """The delay before the next try; each call doubles the base up to the maximum."""
        base = self._next
        self._next = min(self.maximum, base * 2)
        return max(0.0, base * (1 + self.jitter * (2 * self._rand() - 1)))


class _Client(asyncssh.SSHClient):
    """Remembers why the connection ended, for the one-line error."""

    def __init__(self) -> None:
        self.lost: Exception | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc


class SSHHost:
    """The shared connection to one endpoint: connects lazily, reconnects forever until closed."""

    def __init__(
        self,
        endpoint: SSHEndpoint,
        settings: SSHSettings,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        listeners: list[StateListener] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.name = str(endpoint)
        self.settings = settings
        self._clock = clock
        self._sleep = sleep
        self._listeners = listeners if listeners is not None else []
        self._backoff = Backoff(settings.backoff_initial, settings.backoff_max, settings.backoff_jitter, rand)
        self._state = HostState(self.name, HostStatus.CONNECTING, since=clock())
        self._conn: asyncssh.SSHClientConnection | None = None
        self._changed = asyncio.Event()
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.channels = asyncio.Semaphore(settings.max_channels)
        """Taken by every channel opened on this host, so the count stays under MaxSessions."""
        self.attempts = 0
        """Connection attempts made so far (for tests and diagnostics)."""

    @property
    def state(self) -> HostState:
        """The current state."""
        return self._state

    @property
    def connection(self) -> asyncssh.SSHClientConnection | None:
        """The live connection, or None while there is none."""
        conn = self._conn
        return conn if conn is not None and not conn.is_closed() else None

    def start(self) -> None:
        """Start connecting in the background (idempotent; needs a running event loop)."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"ssh {self.name}")

    def retry_now(self) -> None:
        """Cut the current wait short and try to connect at once."""
        self._kick.set()

    async def wait_connection(self) -> asyncssh.SSHClientConnection:
        """Wait until the host is live and return its connection; raises CancelledError when closed."""
        self.start()
        while True:
            if self._closed:
                raise asyncio.CancelledError(f"{self.name} closed")
            if (conn := self.connection) is not None:
                return conn
            self._changed.clear()
            await self._changed.wait()

    async def connect_once(self, timeout: float | None = None) -> asyncssh.SSHClientConnection:
        """The live connection, or `TargetError` when it is refused for good or not up in `timeout` s.

        For one-shot commands: an auth failure or unknown host key fails at once with its hint.
        """
        self.start()

        async def wait() -> asyncssh.SSHClientConnection:
            while True:
                if (conn := self.connection) is not None:
                    return conn
                if self._closed:
                    raise TargetError(f"{self.name}: connection closed")
                st = self._state
                if st.status in (HostStatus.AUTH_FAILED, HostStatus.HOST_KEY_UNKNOWN):
                    raise TargetError(st.describe())
                self._changed.clear()
                await self._changed.wait()

        try:
            return await wait_for(wait(), timeout)
        except TimeoutError:
            raise TargetError(f"{self._state.describe()} (gave up after {timeout:g} s)") from None

    async def close(self) -> None:
        """Close the connection and stop reconnecting."""
        self._closed = True
        conn = self._conn  # taken first: cancelling the task clears it
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        conn = conn or self._conn
        self._conn = None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await wait_for(conn.wait_closed(), 5)
        self._set(HostStatus.CLOSED, error=self._state.error)

    def _set(self, status: HostStatus, *, retry_in: float | None = None, error: str | None = None) -> None:
        self._state = HostState(self.name, status, retry_in, error, self._clock())
        self._changed.set()
        for listener in list(self._listeners):
            try:
                listener(self._state)
            except Exception:
                log.exception("SSH state listener %r failed", listener)

    async def _connect(self) -> asyncssh.SSHClientConnection:
        ep, s = self.endpoint, self.settings
        options: dict[str, Any] = {
            "keepalive_interval": s.keepalive_interval,
            "keepalive_count_max": s.keepalive_count_max,
            "connect_timeout": s.connect_timeout,
            "client_factory": _Client,
        }
        if ep.port is not None:
            options["port"] = ep.port
        if ep.user is not None:
            options["username"] = ep.user
        options.update(s.connect_options)
        return await asyncssh.connect(ep.host, **options)

    async def _run(self) -> None:
        while not self._closed:
            self._set(HostStatus.CONNECTING, error=self._state.error)
            self.attempts += 1
            try:
                conn = await self._connect()
            except asyncssh.HostKeyNotVerifiable:
                status, delay = HostStatus.HOST_KEY_UNKNOWN, self.settings.slow_retry
                error = await self._host_key_hint()
            except asyncssh.PermissionDenied as exc:
                status, delay = HostStatus.AUTH_FAILED, self.settings.slow_retry
                error = f"authentication failed ({_one_line(exc)}); check your key, ssh-agent and User"
            except (OSError, TimeoutError, asyncssh.Error, ValueError) as exc:
                # ValueError covers a bad ~/.ssh/config or key file: asyncssh reports those so.
                status, delay, error = HostStatus.RETRYING, self._backoff.next_delay(), _one_line(exc)
            except Exception as exc:
                log.exception("%s: unexpected error while connecting", self.name)
                status, delay, error = HostStatus.RETRYING, self._backoff.next_delay(), _one_line(exc)
            else:
                if self._closed:  # closed while connecting (a cancel can be lost, see cancel_and_wait)
                    conn.close()
                    break
                error = await self._hold(conn)
                status, delay = HostStatus.RETRYING, self._backoff.next_delay()
            if self._closed:
                break
            log.info("%s: %s (%s); next try in %.1f s", self.name, status, error, delay)
            self._set(status, retry_in=delay, error=error)
            await self._pause(delay)

    async def _hold(self, conn: asyncssh.SSHClientConnection) -> str:
        """Publish a live connection, wait for it to drop, and say why it dropped."""
        started = self._clock()
        self._conn = conn
        self._set(HostStatus.LIVE)
        try:
            await conn.wait_closed()
        finally:
            self._conn = None
            self._changed.set()
        if self._clock() - started >= self.settings.stable_after:
            self._backoff.reset()
        client = conn.get_owner()
        lost = client.lost if isinstance(client, _Client) else None
        return "connection lost" + (f" ({_one_line(lost)})" if lost else "")

    async def _pause(self, delay: float) -> None:
        self._kick.clear()
        sleeper = asyncio.ensure_future(self._sleep(delay))
        kicked = asyncio.ensure_future(self._kick.wait())
        try:
            await asyncio.wait({sleeper, kicked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (sleeper, kicked):
                fut.cancel()

    async def _host_key_hint(self) -> str:
        """The one line that says how to trust this host's key (never trusted silently)."""
        ep = self.endpoint
        host, port = ep.host, ep.port
        with contextlib.suppress(Exception):
            # Resolve a config alias to the HostName/Port ssh-keyscan needs (it reads no config).
            opts = await asyncssh.SSHClientConnectionOptions.construct(
                host=ep.host, port=ep.port if ep.port is not None else (), config=(), known_hosts=None
            )
            host, port = opts.host, opts.port
        scan = f"ssh-keyscan{f' -p {port}' if port and port != 22 else ''} {host}"
        login = f"ssh {ep.user + '@' if ep.user else ''}{ep.host}{f' -p {ep.port}' if ep.port else ''}"
        return (
            f"host key for {ep.host} is not in ~/.ssh/known_hosts; check it and run: "
            f"{scan} >> ~/.ssh/known_hosts (or connect once with {login})"
        )


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel a task and wait until it has ended.

    Python 3.11's `asyncio.wait_for` (used inside asyncssh) can swallow a cancel that arrives as
    the awaited thing completes, so the cancel is repeated until the task is done.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    if not task.cancelled() and task.exception() is not None:
        log.warning("%s ended with %r", task.get_name(), task.exception())


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    reason = getattr(exc, "reason", None)
    if isinstance(exc, asyncssh.DisconnectError) and reason and reason not in text:
        text = f"{text} ({reason})"
    return " ".join(text.split())
