"""Where stop commands run: this machine, or a host over the session's SSH connection.

Both take a POSIX `sh` script and run it under `sh -c`, whatever the remote user's login shell is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from typing import Any, Protocol

from monitor.aiotime import wait_for
from monitor.errors import TargetError
from monitor.sources.ssh import CommandResult, SSHEndpoint


class Shell(Protocol):
    """Runs a POSIX shell script somewhere and reports its exit status and output."""

    @property
    def where(self) -> str:
        """The machine, for a person: `gpu1`, `this machine (vm)`."""
        ...

    async def run(self, script: str, timeout: float = 30.0) -> CommandResult:
        """Run `script`; raises `TargetError` when the machine cannot be reached or it times out."""
        ...


class LocalShell:
    """Scripts on this machine."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname

    @property
    def where(self) -> str:
        return f"this machine ({self.hostname})"

    async def run(self, script: str, timeout: float = 30.0) -> CommandResult:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            script,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await wait_for(proc.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise TargetError(f"{self.where}: the command did not finish within {timeout:g} s") from None
        status = proc.returncode if proc.returncode is not None else -1
        return CommandResult(status, out.decode(errors="replace"), err.decode(errors="replace"))


class SSHShell:
    """Scripts on a remote host, over a connection of an `SSHPool`."""

    def __init__(self, pool: Any, endpoint: SSHEndpoint) -> None:
        self.pool = pool
        self.endpoint = endpoint

    @property
    def where(self) -> str:
        return str(self.endpoint)

    async def run(self, script: str, timeout: float = 30.0) -> CommandResult:
        result: CommandResult = await self.pool.run(self.endpoint, "sh -c " + shlex.quote(script), timeout=timeout)
        return result
