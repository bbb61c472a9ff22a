"""Whether a local file still has a writer: a process holding it open for writing (Linux `/proc`).

A run whose log had a writer and no longer has one has finished, whatever its last line says;
a log that never had a visible writer (written elsewhere, or before runwatch looked) tells
nothing, and its run keeps the states its rows give it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

_PROC = Path("/proc")


def writers_of(path: Path, proc: Path = _PROC) -> int | None:
    """How many processes have `path` open for writing now; None where `/proc` cannot tell."""
    return writer_counts([path], proc)[path]


def writer_counts(paths: Iterable[Path], proc: Path = _PROC) -> dict[Path, int | None]:
    """For each path, how many processes have it open for writing now; None where `/proc` cannot tell.

    One pass over `/proc/*/fd` serves every path: a fleet's hundreds of logs cost one scan of the
    machine's open files, not one scan each (that was most of a 500-run `watch`'s CPU).
    """
    counts: dict[Path, int | None] = {}
    wanted: dict[str, list[tuple[Path, tuple[int, int]]]] = {}  # resolved path -> (path, (dev, ino))
    for path in paths:
        try:
            st = path.stat()
            real = os.path.realpath(path)
        except OSError:
            counts[path] = None
            continue
        counts[path] = 0
        wanted.setdefault(real, []).append((path, (st.st_dev, st.st_ino)))
    if not wanted:
        return counts
    root = os.fspath(proc)
    try:
        pids = [e.name for e in os.scandir(root) if e.name.isdigit()]
    except OSError:
        return dict.fromkeys(counts)
    for pid in pids:
        fd_dir = f"{root}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or not ours to look at
        counted: set[Path] = set()  # one process counts once per path, however many fds it holds
        for fd in fds:
            link = f"{fd_dir}/{fd}"
            try:
                entries = wanted.get(os.readlink(link))
                if entries is None:
                    continue
                st = os.stat(link)
                with open(f"{root}/{pid}/fdinfo/{fd}") as info:
                    flags = info.read().split("flags:", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if int(flags, 8) & 0o3 not in (0o1, 0o2):
                continue
            for path, ident in entries:
                if ident == (st.st_dev, st.st_ino) and path not in counted:
                    counted.add(path)
                    counts[path] = (counts[path] or 0) + 1
    return counts
