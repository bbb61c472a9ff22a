"""Backfilling a big finished log on two cores: a worker process parses, this process judges.

Parsing and judging are both per-line Python work; for a file of millions of lines a second
process parses while the first runs the detectors and the store. What crosses the pipe is
`Columns` blocks (a few numpy arrays per batch), which pickle at memcpy speed; rows as dicts
would cost more to pickle than to parse. Detectors stay in one process because they are
sequential by nature.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from monitor.columns import Columns, to_columns
from monitor.forkworker import end_worker, fork_worker
from monitor.parsers import Parser, feed_lines, make_parser
from monitor.parsers.sniff import log_text

if TYPE_CHECKING:
    from monitor.wandb.resume import ResumeState

#: Files at least this big are parsed in a worker process (smaller ones are not worth its start-up).
PARALLEL_BYTES = 16 << 20
_BATCH_LINES = 8192
_CHUNK = 1 << 20


@dataclass
class ParseSummary:
    """What the parser learned besides the rows (sent once the file is done)."""

    format: str
    step_key: str
    config: dict[str, Any] = field(default_factory=dict)
    total_steps: float | None = None
    finished: bool = False
    lines: int = 0
    noise: int = 0
    malformed: int = 0
    tail: list[str] = field(default_factory=list)
    axis: str = "step"
    """The step axis's unit (`Parser.axis`): step, epoch, ..."""


def worth_parallel(path: Path) -> bool:
    """Whether a file is big enough, and the machine has a second core, for a parse worker."""
    try:
        return (
            (os.cpu_count() or 1) > 1 and path.stat().st_size >= PARALLEL_BYTES and "fork" in mp.get_all_start_methods()
        )
    except OSError:
        return False


def parse_batch(parser: Parser, batch: list[str]) -> list[Columns]:
    """One batch of lines into column blocks, through the parser's column fast path when it has one."""
    blocks = parser.feed_columns(batch)
    return blocks if blocks is not None else to_columns(feed_lines(parser, batch))


def text_chunks(stream: IO[bytes], size: int = _CHUNK) -> Iterator[str]:
    """Decoded text of a byte stream in large pieces, each ending at a newline (invalid UTF-8
    replaced, never fatal); a last line without its newline comes last, on its own."""
    rest = b""
    while chunk := stream.read(size):
        data = rest + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        rest = data[cut + 1 :]
        yield log_text(data[: cut + 1])
    if rest:
        yield log_text(rest)


def _worker(path: str, fmt: str, conn: Connection) -> None:
    try:
        parser = make_parser(fmt)
        from monitor.runstate import marks_end

        tail: list[str] = []
        pending: list[str] = []
        ended = False
        with Path(path).open("rb") as f:
            for text in text_chunks(f):
                ended = ended or marks_end(text)
                blocks = parser.feed_text(text) if not pending and text.endswith("\n") else None
                if blocks is not None:
                    conn.send(("blocks", blocks, (parser.total_steps, f.tell())))
                    tail = text[-20000:].splitlines()[-200:]
                    continue
                pending += text.splitlines()
                if len(pending) >= _BATCH_LINES:
                    conn.send(("blocks", parse_batch(parser, pending), (parser.total_steps, f.tell())))
                    tail, pending = pending[-200:], []
            size = f.tell()
        last = pending
        blocks = parse_batch(parser, last) + to_columns(parser.finish())
        conn.send(("blocks", blocks, (parser.total_steps, size)))
        st = parser.stats
        tail = (tail + last)[-200:]
        summary = ParseSummary(
            parser.name,
            parser.step_key,
            dict(parser.config),
            parser.total_steps,
            parser.finished or ended,
            st.lines,
            st.noise,
            st.malformed,
            tail,
            parser.axis,
        )
        conn.send(("done", summary, None))
    except BaseException as e:  # the parent turns this into one clear line
        conn.send(("error", f"{type(e).__name__}: {e}", None))
    finally:
        conn.close()


def _wandb_worker(path: str, out: Connection) -> None:
    """Read a `.wandb` file and send its rows as blocks through `out`."""
    from monitor.wandb import reader as wandb_log
    from monitor.wandb.bulk import WandbBulkReader

    try:
        reader = WandbBulkReader()
        keep = (wandb_log.RunMeta, wandb_log.Exit, wandb_log.ConsoleOutput, wandb_log.ConfigUpdate)
        with Path(path).open("rb") as f:
            for blocks, events in reader.read(f):
                # System stats are for the live GPU pane: not needed here.
                out.send(("blocks", blocks, ([e for e in events if isinstance(e, keep)], reader.resume_offset)))
        out.send(("done", {"step_key": reader.step_key, "records": reader.records}, None))
    except BaseException as e:  # the parent turns this into one clear line
        out.send(("error", f"{type(e).__name__}: {e}", None))
    finally:
        out.close()


def _wandb_live_worker(path: str, out: Connection) -> None:
    """Read a `.wandb` file as it stands for a live view: every event of each piece (system stats
    too) with its rows and the offset reached, then where a record-by-record reader goes on."""
    from monitor.wandb.bulk import WandbBulkReader

    try:
        reader = WandbBulkReader()
        with Path(path).open("rb") as f:
            for blocks, events in reader.read(f):
                out.send(("blocks", blocks, (events, reader.resume_offset)))
        out.send(("done", reader.resume_state(), None))
    except BaseException as e:  # the parent turns this into one clear line
        out.send(("error", f"{type(e).__name__}: {e}", None))
    finally:
        out.close()


def _worker_messages(
    target: Callable[..., None], args: tuple[Any, ...], started: tuple[Any, Connection] | None = None
) -> Generator[tuple[str, Any, Any]]:
    """Run `target(*args, conn)` in a forked worker (or take one `started` already, a process and
    its receiving end); its `(kind, payload, extra)` messages up to and with `done` (an `error`
    one raises OSError)."""
    proc, recv = started if started is not None else fork_worker(target, *args)
    try:
        while True:
            kind, payload, extra = recv.recv()
            if kind == "error":
                raise OSError(f"parse worker failed: {payload}")
            yield kind, payload, extra
            if kind == "done":
                return
    except EOFError:
        raise OSError("parse worker ended without finishing") from None
    finally:
        end_worker(proc, recv)


def _run_worker(
    target: Callable[..., None], args: tuple[Any, ...], on_blocks: Callable[[list[Columns], Any], None]
) -> Any:
    with contextlib.closing(_worker_messages(target, args)) as messages:
        for kind, payload, extra in messages:
            if kind == "blocks":
                on_blocks(payload, extra)
            else:
                return payload
    raise OSError("parse worker ended without finishing")  # (not reached: `done` ends the messages)


def parse_in_worker(
    path: Path,
    fmt: str,
    on_blocks: Callable[[list[Columns], float | None], None],
    on_offset: Callable[[int], None] | None = None,
) -> ParseSummary:
    """Parse a text log in a forked worker, handing each batch of blocks (and the planned total
    steps so far) to `on_blocks` as it arrives, then how far into the file it came to `on_offset`."""

    def take(blocks: list[Columns], extra: tuple[float | None, int]) -> None:
        on_blocks(blocks, extra[0])
        if on_offset is not None:
            on_offset(extra[1])

    summary: ParseSummary = _run_worker(_worker, (str(path), fmt), take)
    return summary


def read_wandb_in_worker(
    path: Path,
    on_blocks: Callable[[list[Columns], list[Any]], None],
    on_offset: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Read a finished `.wandb` file in a forked worker: `on_blocks(rows as blocks, other events)`,
    then how far into the file it came to `on_offset`.

    One reader is enough: it reads faster than the detectors judge (bench/throughput.py), and a
    second one would only take the judging process's core.
    """

    def take(blocks: list[Columns], extra: tuple[list[Any], int]) -> None:
        on_blocks(blocks, extra[0])
        if on_offset is not None:
            on_offset(extra[1])

    done: dict[str, Any] = _run_worker(_wandb_worker, (str(path),), take)
    return done


def read_wandb_pieces(path: Path) -> Generator[tuple[list[Columns], list[Any], int] | ResumeState]:
    """A `.wandb` file as it stands, read by the bulk reader in a forked worker, for a live view:
    each piece's (rows as blocks, every other event, offset reached), then the `ResumeState` a
    record-by-record reader goes on from. The pieces are those the bulk reader gives in-process."""
    from monitor import prefetch

    started = prefetch.take(path)  # a reader `runwatch` started before the UI was up
    with contextlib.closing(_worker_messages(_wandb_live_worker, (str(path),), started)) as messages:
        for kind, payload, extra in messages:
            if kind == "blocks":
                yield payload, extra[0], extra[1]
            else:
                yield payload
