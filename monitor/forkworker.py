"""Forked reader/parser workers, started and ended the one way (the text-log catch-up, the `.wandb`
bulk readers and the readers `runwatch` starts before its UI). Imports nothing heavy: `prefetch`
forks from here before the UI has imported anything."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any


def in_child(parent_end: Connection, target: Callable[..., None], *args: Any) -> None:
    """Run a forked worker's `target(*args)` without the parent's end of their pipe: were the parent
    killed, the worker's next send then fails (nobody reads) instead of blocking forever."""
    parent_end.close()
    target(*args)


def fork_worker(target: Callable[..., None], *args: Any) -> tuple[BaseProcess, Connection]:
    """Start `target(*args, send_end)` in a forked daemon process: the process and the receiving end."""
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=in_child, args=(recv, target, *args, send), daemon=True)
    proc.start()
    send.close()
    return proc, recv


def end_worker(proc: BaseProcess, recv: Connection) -> None:
    """Done with a worker: close its pipe, give it a moment to end, else kill it."""
    recv.close()
    proc.join(5)
    if proc.is_alive():
        proc.kill()
