"""SSH test peers: a real OpenSSH sshd on 127.0.0.1 and an in-process asyncssh server.

Import the fixtures explicitly (`from tests.sshd import sshd, ssh_home`). The real sshd needs
`/usr/sbin/sshd` (Debian: `apt-get install -y openssh-server`); the in-process server needs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import pytest

SSHD = "/usr/sbin/sshd"
SSHD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_key(path: Path) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    path.chmod(0o600)
    key.write_public_key(str(path) + ".pub")
    return key


def _public_line(key: asyncssh.SSHKey) -> str:
    return key.export_public_key("openssh").decode().strip()


def _descendants(pid: int) -> list[int]:
    """All processes below `pid` (sshd's per-connection children and what they run)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def remote_python() -> str:
    """The interpreter the remote side (this machine, through sshd) should run the follower with."""
    return "python3" if shutil.which("python3", path=SSHD_PATH) else os.path.realpath(sys.executable)


@dataclass
class RealSSHD:
    """A running OpenSSH server: its port, user and the client key it accepts."""

    port: int
    user: str
    client_key: Path
    host_key: asyncssh.SSHKey
    dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {_public_line(self.host_key)}"

    def log(self) -> str:
        path = self.dir / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _start_sshd(root: Path) -> RealSSHD:
    if not os.path.exists(SSHD):
        if os.geteuid() != 0:
            pytest.skip(f"{SSHD} is absent and not running as root (apt-get install -y openssh-server)")
        pytest.fail(f"{SSHD} is absent: run `apt-get install -y openssh-server` (as root, as CI does)")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    host_key = _write_key(root / "host_ed25519")
    client_key = root / "client_ed25519"
    _write_key(client_key)
    (root / "authorized_keys").write_text(Path(str(client_key) + ".pub").read_text())
    port = _free_port()
    user = getpass.getuser()
    config = root / "sshd_config"
    config.write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {root}/host_ed25519
PidFile {root}/sshd.pid
AuthorizedKeysFile {root}/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding yes
MaxSessions 10
LogLevel VERBOSE
"""
    )
    log = open(root / "sshd.log", "wb")  # noqa: SIM115 - handed to the child, closed on stop
    proc = subprocess.Popen([SSHD, "-f", str(config), "-D", "-e"], stdout=log, stderr=log)
    log.close()
    server = RealSSHD(port, user, client_key, host_key, root, proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited with {proc.returncode}: {server.log()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return server
        time.sleep(0.05)
    _stop_sshd(server)
    pytest.fail(f"sshd did not listen on port {port}: {server.log()[-2000:]}")


def _stop_sshd(server: RealSSHD) -> None:
    proc = server.process
    if proc is None:
        return
    stragglers = _descendants(proc.pid)
    proc.terminate()
    for pid in stragglers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    server.process = None


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealSSHD]:
    """A real OpenSSH server on 127.0.0.1 for the module; killed with its children even on failure."""
    server = _start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        _stop_sshd(server)


@dataclass
class SSHHome:
    """A client HOME with ~/.ssh/config (aliases `testhost` and `jumped`) and known_hosts."""

    home: Path
    server: RealSSHD

    @property
    def ssh(self) -> Path:
        return self.home / ".ssh"

    def write_config(self, identity: str = "~/.ssh/id_ed25519") -> None:
        port, user = self.server.port, self.server.user
        (self.ssh / "config").write_text(
            f"""Host testhost
    HostName 127.0.0.1
    Port {port}
    User {user}
    IdentityFile {identity}
    IdentitiesOnly yes

Host jumped
    HostName 127.0.0.1
    Port {port}
    User {user}
    IdentityFile {identity}
    IdentitiesOnly yes
    ProxyJump testhost
"""
        )

    def trust(self, *lines: str) -> None:
        (self.ssh / "known_hosts").write_text("".join(line + "\n" for line in lines))

    def use_other_key(self) -> None:
        """Point the aliases at a key the server does not accept."""
        _write_key(self.ssh / "id_other")
        self.write_config("~/.ssh/id_other")


@pytest.fixture
def ssh_home(sshd: RealSSHD, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SSHHome:
    """HOME for the client: config with the aliases, the test key as ~/.ssh/id_ed25519, sshd trusted.

    asyncssh finds ~/.ssh/config and known_hosts with `Path('~').expanduser()` at connect time,
    so setting HOME is enough. The agent is hidden so the developer's keys play no part.
    """
    home = SSHHome(tmp_path / "home", sshd)
    home.ssh.mkdir(parents=True, mode=0o700)
    shutil.copy(sshd.client_key, home.ssh / "id_ed25519")
    (home.ssh / "id_ed25519").chmod(0o600)
    shutil.copy(str(sshd.client_key) + ".pub", home.ssh / "id_ed25519.pub")
    home.write_config()
    home.trust(sshd.known_hosts_line())
    monkeypatch.setenv("HOME", str(home.home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


class InProcessSSHD:
    """An asyncssh server on 127.0.0.1 that runs each exec request as a local shell command.

    No authentication. `drop_all()` aborts every client connection (and kills what it ran), as a
    network failure or a restarted sshd would.
    """

    def __init__(self) -> None:
        self.key = asyncssh.generate_private_key("ssh-ed25519")
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self.children: dict[object, set[asyncio.subprocess.Process]] = {}
        self.handlers: set[asyncio.Task[object]] = set()
        self.port = 0
        self.drops = 0
        self._acceptor: asyncssh.SSHAcceptor | None = None

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {_public_line(self.key)}"

    async def start(self) -> None:
        server = self

        class _Server(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                self.conn = conn
                server.connections.add(conn)
                server.children[conn] = set()

            def connection_lost(self, exc: Exception | None) -> None:
                server.connections.discard(self.conn)
                for child in server.children.pop(self.conn, set()):
                    _kill_group(child)

            def begin_auth(self, username: str) -> bool:
                return False

        self._acceptor = await asyncssh.listen(
            "127.0.0.1",
            0,
            server_factory=_Server,
            server_host_keys=[self.key],
            process_factory=self._handle,
            encoding=None,
        )
        self.port = self._acceptor.sockets[0].getsockname()[1]

    async def _handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        conn = process.channel.get_connection()
        child = await asyncio.create_subprocess_shell(
            process.command or "sh",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self.children.setdefault(conn, set()).add(child)
        assert child.stdin and child.stdout and child.stderr
        pumps = [
            asyncio.ensure_future(_pump_stdin(process.stdin, child.stdin)),
            asyncio.ensure_future(_pump(child.stdout, process.stdout)),
            asyncio.ensure_future(_pump(child.stderr, process.stderr)),
        ]
        try:
            await asyncio.gather(*pumps[1:])
            status = await child.wait()
            process.exit(status if status >= 0 else 255)
        except (asyncssh.Error, OSError):
            pass  # the connection was dropped under us: that is the point of these tests
        finally:
            _kill_group(child)
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            await child.wait()
            self.children.get(conn, set()).discard(child)
            self.handlers.discard(task)

    def drop_all(self) -> int:
        """Abort every connection from the server side; returns how many were dropped."""
        conns = list(self.connections)
        for conn in conns:
            conn.abort()
        self.drops += len(conns)
        return len(conns)

    async def stop(self) -> None:
        self.drop_all()
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
        # The handlers end by themselves once their connection is gone; cancelling them would
        # cut their cleanup short and leave subprocess transports to be collected after the loop.
        handlers = list(self.handlers)
        if handlers:
            await asyncio.wait(handlers, timeout=5)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


def _kill_group(child: asyncio.subprocess.Process) -> None:
    """Kill the shell and what it started (a `sh -c` child may have forked `tail`)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)


async def _pump(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
    while data := await source.read(65536):
        sink.write(data)
        await sink.drain()


async def _pump_stdin(source: asyncssh.SSHReader[bytes], sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(asyncssh.Error, OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    with contextlib.suppress(OSError):
        sink.close()


@contextlib.asynccontextmanager
async def in_process_sshd(home: Path) -> AsyncIterator[InProcessSSHD]:
    """Start an `InProcessSSHD` and trust its key in `home`/.ssh/known_hosts (HOME must be `home`)."""
    server = InProcessSSHD()
    await server.start()
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    with open(ssh / "known_hosts", "a") as f:
        f.write(server.known_hosts_line() + "\n")
    try:
        yield server
    finally:
        await server.stop()
