"""SSH target strings: `ssh://[user@]host[:port]/abs/path` and scp-style `[user@]host:/abs/path`.

`host` may be an `~/.ssh/config` alias; it is passed to asyncssh unchanged, which resolves it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from monitor.errors import TargetError

# A host name, an alias from ~/.ssh/config, or an IPv4 address. OpenSSH allows a few more
# characters in aliases than DNS does; a slash or a backslash never appears.
_HOST = r"[A-Za-z0-9_][A-Za-z0-9_.%+-]*"
_SCP = re.compile(
    rf"^(?:(?P<user>[^@/:\s\\]+)@)?(?:(?P<host>{_HOST})|\[(?P<host6>[0-9A-Fa-f:.%]+)\]):(?P<path>[/~].*)$"
)
_ENDPOINT = re.compile(
    rf"^(?:(?P<user>[^@/:\s\\]+)@)?(?:(?P<host>{_HOST})|\[(?P<host6>[0-9A-Fa-f:.%]+)\])(?::(?P<port>\d+))?$"
)


@dataclass(frozen=True, slots=True)
class SSHEndpoint:
    """Where to connect: a host (or config alias), and the port and user when given explicitly.

    `None` means "whatever ~/.ssh/config says, else the default" (port 22, the local user).
    One connection is kept per endpoint.
    """

    host: str
    port: int | None = None
    user: str | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"{user}{host}{port}"


@dataclass(frozen=True, slots=True)
class SSHTarget:
    """A file on a remote host. `path` is absolute or starts with `~` (the remote home)."""

    host: str
    port: int | None
    user: str | None
    path: str

    @property
    def endpoint(self) -> SSHEndpoint:
        """The connection this target is read over."""
        return SSHEndpoint(self.host, self.port, self.user)

    def __str__(self) -> str:
        """The canonical spelling: scp style when there is no port, else an `ssh://` URL."""
        ep = self.endpoint
        if self.port is None:
            return f"{ep}:{self.path}"
        path = self.path if self.path.startswith("/") else "/" + self.path
        return f"ssh://{ep}{path}"


def parse_ssh_target(text: str) -> SSHTarget | None:
    """Parse an SSH target, or return None when `text` is not one (a local path, `wandb://`, `-`).

    Accepted: `ssh://[user@]host[:port]/abs/path` (`ssh://host/~/p` means `~/p`) and
    `[user@]host:/abs/path` or `[user@]host:~/path`. A one-letter host followed by `:\\` or `:/`
    is a Windows drive, and anything with a slash before the first colon is a local path, so
    `./x:y` and `C:\\logs` are not targets. Raises `TargetError` for an `ssh://` URL that is
    malformed (no host, no path, a bad port).
    """
    if text.lower().startswith("ssh://"):
        return _parse_url(text)
    if "://" in text:
        return None
    m = _SCP.match(text)
    if m is None:
        return None
    host = m["host"] or m["host6"]
    if len(host) == 1 and m["user"] is None:
        return None  # a Windows drive letter such as C:/logs/train.log
    return SSHTarget(host=host, port=None, user=m["user"], path=m["path"])


def parse_ssh_endpoint(text: str) -> SSHEndpoint:
    """Parse `[user@]host[:port]` (or a full target, whose path is ignored); raises `TargetError`."""
    target = parse_ssh_target(text)
    if target is not None:
        return target.endpoint
    m = _ENDPOINT.match(text)
    if m is None:
        raise TargetError(f"{text!r} is not an SSH host: expected [user@]host[:port]")
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 0 < port < 65536:
        raise TargetError(f"{text!r}: port {port} is out of range")
    return SSHEndpoint(m["host"] or m["host6"], port, m["user"])


def _parse_url(text: str) -> SSHTarget:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise TargetError(f"{text!r} is not a valid ssh:// URL: {exc}") from None
    host = parts.hostname
    if not host:
        raise TargetError(f"{text!r} names no host: expected ssh://[user@]host[:port]/path")
    # urlsplit lower-cases the host; config aliases are case-sensitive, so take it verbatim.
    netloc_host = parts.netloc.rsplit("@", 1)[-1]
    if netloc_host.startswith("["):
        host = netloc_host[1 : netloc_host.index("]")]
    else:
        host = netloc_host.rsplit(":", 1)[0] if parts.port is not None else netloc_host
    path = unquote(parts.path)
    if parts.query or parts.fragment:
        path += ("?" + parts.query if parts.query else "") + ("#" + parts.fragment if parts.fragment else "")
    if path.startswith("/~"):
        path = path[1:]
    if path in ("", "/"):
        raise TargetError(f"{text!r} names no file: expected ssh://[user@]host[:port]/path/to/log")
    user = unquote(parts.username) if parts.username else None
    return SSHTarget(host=host, port=port, user=user, path=path)
