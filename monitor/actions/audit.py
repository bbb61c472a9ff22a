"""The audit log: one JSON line per action taken (or refused, or only rehearsed) on a run.

`audit.jsonl` under the evidence directory answers the next morning's questions: who did what to
which run, when, with which command, and what came of it. Each entry is one `write()` on a file
opened for appending, so concurrent runwatch processes do not interleave lines.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import socket
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from monitor.errors import RunwatchError
from monitor.redact import Redactor

AUDIT_FILE = "audit.jsonl"


def whoami() -> str:
    """`user@host` of this runwatch process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class AuditLog:
    """Appends action records to `audit.jsonl`; secrets in them are redacted."""

    def __init__(self, path: Path, *, who: str | None = None) -> None:
        self.path = path
        self.who = who or whoami()

    def record(
        self, action: str, run: str, *, now: float, result: str, known: Iterable[str] = (), **details: Any
    ) -> dict[str, Any]:
        """Append one entry and return it. Raises `RunwatchError` when the log cannot be written.

        `known`: secret values (from the run's config) to scrub besides what the redactor recognises.
        """
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(now).astimezone().isoformat(timespec="seconds"),
            "ts": round(now, 3),
            "who": self.who,
            "action": action,
            "run": run,
            "result": result,
            **details,
        }
        redactor = Redactor(known)
        redactor.remember_env(os.environ)
        entry = redactor.data(_plain(entry))
        # ASCII-only: a name's escape sequence or bidi override stays `\u001b` text for `cat` and `tail`.
        line = json.dumps(entry, ensure_ascii=True, allow_nan=False) + "\n"
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise RunwatchError(f"cannot write {self.path}: {e.strerror or e}", title="Audit log") from None
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """Every entry so far, oldest first (a torn last line is skipped)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def _plain(obj: Any) -> Any:
    """JSON-safe: paths and other objects as strings, non-finite floats as strings."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return str(obj)
