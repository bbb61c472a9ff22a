"""A real OpenSSH sshd on loopback plus a client HOME whose ~/.ssh/config names it, for benchmarks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any


def available() -> bool:
    """sshd can be started here (root and openssh-server installed)."""
    return Path("/usr/sbin/sshd").exists() and os.geteuid() == 0


def start(tmp: Path, aliases: list[str]) -> tuple[Any, dict[str, str]]:
    """Start sshd; return it and an environment whose HOME has `aliases` pointing at it."""
    from tests.sshd import _start_sshd

    server = _start_sshd(tmp / "sshd")
    ssh = tmp / "home" / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    shutil.copy(server.client_key, ssh / "id_ed25519")
    (ssh / "id_ed25519").chmod(0o600)
    (ssh / "config").write_text(
        "".join(
            f"Host {alias}\n    HostName 127.0.0.1\n    Port {server.port}\n    User {server.user}\n"
            "    IdentityFile ~/.ssh/id_ed25519\n    IdentitiesOnly yes\n"
            for alias in aliases
        )
    )
    (ssh / "known_hosts").write_text(server.known_hosts_line() + "\n")
    env = {**os.environ, "HOME": str(tmp / "home")}
    env.pop("SSH_AUTH_SOCK", None)
    return server, env


def stop(server: Any) -> None:
    from tests.sshd import _stop_sshd

    _stop_sshd(server)
