"""Whether a local file still has a writer: a process holding it open for writing (Linux `/proc`).

A run whose log had a writer and no longer has one has finished, whatever its last line says;
a log that never had a visible writer (written elsewhere, or before runwatch looked) tells
nothing, and its run keeps the states its rows give it.
"""

from __future__ import annotations

import os
from pathlib import Path

_PROC = Path("/proc")


def writers_of(path: Path, proc: Path = _PROC) -> int | None:
    """How many processes have `path` open for writing now; None where `/proc` cannot tell."""
    try:
        st = path.stat()
        pids = [e.name for e in os.scandir(proc) if e.name.isdigit()]
    except OSError:
        return None
    want = str(path.resolve())
    ident = (st.st_dev, st.st_ino)
    found = 0
    for pid in pids:
        fd_dir = proc / pid / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or not ours to look at
        for fd in fds:
            try:
                if os.readlink(fd_dir / fd) != want or _ident(fd_dir / fd) != ident:
                    continue
                flags = (proc / pid / "fdinfo" / fd).read_text().split("flags:", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if int(flags, 8) & 0o3 in (0o1, 0o2):
                found += 1
                break
    return found


def _ident(link: Path) -> tuple[int, int]:
    st = os.stat(link)
    return st.st_dev, st.st_ino
