"""Catching up a big live text log on two cores: a forked worker parses the rest, this process judges.

`TextFeed.catch_up` reads a live log piece by piece. Once the log's format is settled and a big
rest is left (`worth_it`), that rest, up to where the file ended when catching up began, is read in
a forked child. The child inherits the parser and the line splitter as they stand, so it cuts and
parses the same pieces into the same lines and rows as this process would have. For each piece it
sends back the column blocks of each batch (with the planned total steps after it), the piece's
last lines for the log tail, whether they mark the run's end, and the parser as it stands after
the piece (what it learned: axis, line counts, config; it pickles small). At the end the splitter
comes back too (an unfinished last line waits in it for the live tail). Judging stays here, in
the same order, so findings are those of the one-process catch-up; only the wall time differs.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from monitor.backfill import PARALLEL_BYTES, parse_batch
from monitor.columns import Columns
from monitor.forkworker import end_worker, fork_worker
from monitor.parsers import Parser
from monitor.runstate import marks_end
from monitor.sources.local import LineSplitter


@dataclass
class Piece:
    """What the worker made of one piece of the file."""

    batches: list[tuple[list[Columns], float | None]]
    """Each batch's column blocks and the parser's planned total steps after it."""
    tail: list[str]
    """The piece's last lines, for the log tail."""
    marks_end: bool
    """Whether the piece's lines hold a framework's end-of-training line."""
    parser: Parser
    """The parser after the piece."""
    end: int
    """Offset just past the piece."""


def worth_it(rest: int) -> bool:
    """Whether `rest` bytes are enough to be parsed by a worker on this machine."""
    return rest >= PARALLEL_BYTES and (os.cpu_count() or 1) > 1 and "fork" in mp.get_all_start_methods()


def _worker(
    path: str, start: int, stop: int, splitter: LineSplitter, parser: Parser, piece: int, batch: int, tail: int,
    conn: Connection,
) -> None:  # fmt: skip
    try:
        with Path(path).open("rb") as f:
            f.seek(start)
            pos = start
            while pos < stop and (data := f.read(min(piece, stop - pos))):
                pos += len(data)
                lines = splitter.feed(data)
                if not lines:
                    continue
                batches = [
                    (parse_batch(parser, lines[i : i + batch]), parser.total_steps) for i in range(0, len(lines), batch)
                ]
                conn.send(("piece", Piece(batches, lines[-tail:], marks_end("\n".join(lines)), parser, pos)))
        conn.send(("done", splitter, pos))
    except BaseException as e:  # the parent turns this into one clear line
        conn.send(("error", f"{type(e).__name__}: {e}", None))
    finally:
        conn.close()


def parse_rest(
    path: Path, start: int, stop: int, splitter: LineSplitter, parser: Parser, piece: int, batch: int, tail: int
) -> Iterator[Piece | tuple[LineSplitter, int]]:
    """The pieces of `path` from `start` to `stop` as the worker parses them, then (splitter, offset)."""
    proc, recv = fork_worker(_worker, str(path), start, stop, splitter, parser, piece, batch, tail)
    try:
        while True:
            kind, payload, *extra = recv.recv()
            if kind == "piece":
                yield payload
            elif kind == "done":
                yield payload, extra[0]
                return
            else:
                raise OSError(f"parse worker failed: {payload}")
    except EOFError:
        raise OSError("parse worker ended without finishing") from None
    finally:
        end_worker(proc, recv)
