"""Start reading big `.wandb` files before the terminal UI has even imported itself.

A 1M-step `.wandb` file takes its forked bulk reader about two seconds; the UI's imports and first
frame take the main core about 0.4 s before its hub opens the run. On two cores both can happen at
once: `runwatch` forks the reader of each big `.wandb` target first thing (this module imports
nothing heavy), the reader reads ahead into a queue while nobody receives yet, and the hub's live
catch-up (`backfill.read_wandb_pieces`) takes the running reader instead of forking its own. The
pieces are the same ones, read the same way, so what is judged does not change.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import threading
from collections.abc import Iterable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from monitor.forkworker import fork_worker

#: From this size a `.wandb` file is caught up by the bulk reader (smaller: record by record).
BULK_BYTES = 16 << 20

_started: dict[str, tuple[Any, Connection, int]] = {}
"""Real path -> (worker process, its receiving end, a descriptor of the file the worker reads).
The descriptor is held open so that file's inode cannot be freed and handed to a new file at the
same path: the inodes compared in `take` then tell the same file from a replaced one."""


class _SendAhead:
    """A worker's sending end that sends from a thread: the worker reads on while nobody receives."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._conn.send(item)
            except OSError:
                return  # nobody will read it: the UI went away

    def send(self, obj: Any) -> None:
        self._queue.put(obj)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._conn.close()


def _ahead_worker(path: str, out: Connection) -> None:
    from monitor.backfill import _wandb_live_worker

    _wandb_live_worker(path, _SendAhead(out))  # type: ignore[arg-type]  # a Connection's send/close


def _wandb_file(raw: str) -> Path | None:
    """The one `.wandb` file a target names (the file, or a run folder holding one), else None."""
    p = Path(raw).expanduser()
    if p.is_dir():
        found = sorted(p.glob("run-*.wandb"))
        return found[0] if len(found) == 1 else None
    return p if p.suffix == ".wandb" and p.is_file() else None


def start(targets: Iterable[str]) -> None:
    """Fork the bulk reader of each big local `.wandb` file among `targets`, now."""
    if (os.cpu_count() or 1) < 2 or "fork" not in mp.get_all_start_methods():
        return  # one core: the reader would only take the UI's
    for raw in targets:
        try:
            path = _wandb_file(raw)
            if path is None:
                continue
            st = path.stat()
        except OSError:
            continue
        real = os.path.realpath(path)
        if st.st_size < BULK_BYTES or real in _started:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        proc, recv = fork_worker(_ahead_worker, str(path))
        _started[real] = (proc, recv, fd)


def take(path: Path) -> tuple[Any, Connection] | None:
    """The reader started for `path` (the same file still), handed over once; else None."""
    got = _started.pop(os.path.realpath(path), None)
    if got is None:
        return None
    proc, recv, fd = got
    try:
        held, now = os.fstat(fd), path.stat()
        same = (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)
    except OSError:
        same = False
    finally:
        os.close(fd)
    if same:
        return proc, recv
    with contextlib.suppress(Exception):
        recv.close()
        proc.kill()
    return None
