"""Bytes from any source into one run's analysis, the same way for `check`, `watch` and the TUI.

`make_feed(kind, ...)` is the one factory: text logs (line formats and whole documents such as
`trainer_state.json` or golden values), `.wandb` transaction logs and TensorBoard event files.
Every feed has `catch_up(path, now, final)`, which reads what a local file holds now (a generator
that yields after each batch, whether a finding changed), and `chunk(chunk, now)` for the bytes
that come after, from `resume_offset` on. `check` catches up with `final=True` (the input is
complete: a last line without its newline counts, documents are read as they stand); a live view
catches up, then follows. Rows read while catching up are dated `now` (the file's modification
time) unless they carry their own time. Which format a text log is in is decided by
`monitor.parsers` (`guess_format` / `detect_format`); a feed only decides when it has seen enough
lines to ask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from monitor.analysis import RunAnalysis
from monitor.backfill import parse_batch, parse_in_worker, worth_parallel
from monitor.catchup import Piece, parse_rest, worth_it
from monitor.columns import Columns
from monitor.errors import FormatError
from monitor.gpu import GpuSnapshot
from monitor.model import Row
from monitor.parsers import CONFIDENT, Parser, detect_format, guess_format, make_parser, sniff_binary
from monitor.parsers.base import DocumentParser
from monitor.runstate import marks_end
from monitor.sources.base import TEXT, TFEVENTS, WANDB, Chunk
from monitor.sources.local import LineSplitter

#: Lines a live feed waits for before settling on a format that only hints matched.
_DETECT_LINES = 2000
#: Lines catching up may look at for the same (metrics can start late, after a long banner).
_CATCH_UP_DETECT_LINES = 20_000
#: Seconds a live feed waits for the same.
_DETECT_SECONDS = 3.0
#: Bytes read at a time while catching up.
_PIECE = 1 << 20
#: Lines judged at a time while catching up.
_BATCH = 4096
#: Log lines kept per batch for the log pane (the store keeps a bounded tail anyway).
_TAIL = 200
#: How much of a file's start the binary sniff reads.
_SNIFF_BYTES = 4096


class Feed(Protocol):
    """What every feed offers; see the module docstring."""

    analysis: RunAnalysis
    resume_offset: int
    on_progress: Callable[[int], None] | None
    """Called while catching up with how many bytes of the file have been read (for a progress line)."""

    def catch_up(self, path: Path, now: float, final: bool) -> Iterator[bool]: ...

    def chunk(self, chunk: Chunk, now: float) -> bool: ...

    def tick(self, now: float) -> bool: ...

    def end(self, now: float) -> bool: ...


def make_feed(
    kind: str,
    analysis: RunAnalysis,
    *,
    fmt: str | None = None,
    filename: str = "",
    host: str = "localhost",
    on_gpu: Callable[[GpuSnapshot], Any] | None = None,
) -> Feed:
    """The feed for a run whose bytes are `kind` (`TEXT`, `WANDB` or `TFEVENTS`)."""
    if kind == WANDB:
        from monitor.wandb.feed import WandbFeed

        return WandbFeed(analysis, host, on_gpu)
    if kind == TFEVENTS:
        return TfeventsFeed(analysis)
    if kind == TEXT:
        return TextFeed(analysis, fmt, filename)
    raise ValueError(f"no feed for {kind!r}")


def file_pieces(path: Path) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of what `path` holds now, in pieces; bytes appended meanwhile are left."""
    with path.open("rb") as f:
        size = path.stat().st_size
        offset = 0
        while offset < size and (data := f.read(min(_PIECE, size - offset))):
            yield offset, data
            offset += len(data)


class TextFeed:
    """A text log's bytes into rows; the format is forced or detected from its first lines."""

    def __init__(self, analysis: RunAnalysis, fmt: str | None, filename: str) -> None:
        self.analysis = analysis
        self.filename = filename
        self.splitter = LineSplitter()
        self.parser: Parser | None = make_parser(fmt) if fmt else None
        self.resume_offset = 0
        self.on_progress: Callable[[int], None] | None = None
        self._pending: list[str] = []
        self._pending_since: float | None = None
        self._detect_lines = _DETECT_LINES
        self._doc: list[str] = []
        self._doc_last_step: float | None = None
        if self.parser is not None:
            self._adopt(self.parser)

    def _adopt(self, parser: Parser) -> None:
        self.parser = parser
        self.analysis.info.format = parser.name

    def catch_up(self, path: Path, now: float, final: bool) -> Iterator[bool]:
        """Read what `path` holds now (see the module docstring)."""
        if final and worth_parallel(path) and not self._is_document():
            yield from self._catch_up_in_worker(path, now)
            return
        self._detect_lines = _CATCH_UP_DETECT_LINES
        try:
            size = path.stat().st_size
            for offset, data in file_pieces(path):
                yield self.chunk(Chunk(offset, data), now)
                self.resume_offset = offset + len(data)
                if self.on_progress is not None:
                    self.on_progress(self.resume_offset)
                if self.parser is not None and not self._is_document() and worth_it(size - self.resume_offset):
                    # The format is settled and much is left: a worker parses the rest meanwhile.
                    yield from self._rest_in_worker(path, size, now)
                    break
        finally:
            self._detect_lines = _DETECT_LINES
        if final:
            yield self.end(now)
        elif self.parser is None and len(self._pending) >= self._detect_lines:
            # Enough lines to settle the format as the next live line or tick would (on the same
            # first lines): settle it now, so the view does not wait a tick for the rows.
            yield self._try_detect(now, force=False)
        # Else a log just started (a launcher banner, no metric line yet) keeps waiting, live, for
        # lines that say its format (`tick`).

    def _rest_in_worker(self, path: Path, stop: int, now: float) -> Iterator[bool]:
        """Catch up from `resume_offset` to `stop` with a worker parsing (see `monitor.catchup`)."""
        assert self.parser is not None
        a = self.analysis
        pieces = parse_rest(path, self.resume_offset, stop, self.splitter, self.parser, _PIECE, _BATCH, _TAIL)
        for piece in pieces:
            if not isinstance(piece, Piece):
                self.splitter, self.resume_offset = piece
                return
            # As `_parse` does with the same lines, in the same order.
            a.store.add_log_lines(piece.tail)
            changed = False
            for blocks, total in piece.batches:
                a.set_total_steps(total)
                if blocks:
                    changed = a.add_columns(blocks, now) or changed
            self.parser = piece.parser
            a.info.read_parser(piece.parser)
            ended = piece.parser.finished or (a.info.state == "running" and piece.marks_end)
            if ended and a.info.state == "running":
                a.finish()
                changed = True
            yield changed
            self.resume_offset = piece.end
            if self.on_progress is not None:
                self.on_progress(piece.end)

    def _is_document(self) -> bool:
        return isinstance(self.parser, DocumentParser)

    def _catch_up_in_worker(self, path: Path, now: float) -> Iterator[bool]:
        """A big finished log: a worker process parses while this one judges."""
        a = self.analysis
        if self.parser is None:
            head: list[str] = []
            for _, data in file_pieces(path):
                head += self.splitter.feed(data)
                if len(head) >= _CATCH_UP_DETECT_LINES:
                    break
            self.splitter.reset()
            self._adopt(make_parser(detect_format(head, self.filename)))
        assert self.parser is not None
        changed: list[bool] = []

        def on_blocks(blocks: list[Columns], total: float | None) -> None:
            a.set_total_steps(total)
            changed.append(a.add_columns(blocks, now))

        summary = parse_in_worker(path, self.parser.name, on_blocks, self.on_progress)
        info = a.info
        info.format, info.step_key, info.config = summary.format, summary.step_key, summary.config
        info.lines, info.noise, info.malformed = summary.lines, summary.noise, summary.malformed
        info.axis = summary.axis
        a.store.add_log_lines(summary.tail)
        if summary.finished:
            a.finish()
        self.resume_offset = path.stat().st_size
        yield any(changed)

    def chunk(self, chunk: Chunk, now: float) -> bool:
        """Take one chunk of bytes; True when a finding changed."""
        if chunk.reset:
            self.splitter.reset()
            self._doc.clear()
        if not chunk.data:
            return False
        if chunk.offset == 0 and (refused := sniff_binary(chunk.data[:_SNIFF_BYTES])) is not None:
            # Not text at all (a binary, an archive, a checkpoint): refused before any parsing.
            raise FormatError(f"{self.filename or 'input'}: {refused}; no metrics read")
        return self.lines(self.splitter.feed(chunk.data), now)

    def lines(self, lines: list[str], now: float) -> bool:
        """Take complete lines; True when a finding changed."""
        if not lines and not (self._is_document() and self.splitter.pending):
            return False
        if self.parser is None:
            self._pending += lines
            if self._pending_since is None:
                self._pending_since = now
            return self._try_detect(now, force=False)
        return self._parse(lines, now)

    def tick(self, now: float) -> bool:
        """Commit to a format once waiting longer for a confident one is not worth it."""
        if self.parser is None and self._pending:
            return self._try_detect(now, force=False)
        return False

    def _settle(self, now: float) -> bool:
        """The input is complete: commit to a format with what there is."""
        return self._try_detect(now, force=True) if self.parser is None and self._pending else False

    def end(self, now: float) -> bool:
        """The input is complete (a finished file, stdin closed): take its last line and finish."""
        partial = self.splitter.take_partial()
        changed = self.lines([partial], now) if partial else False
        changed = self._settle(now) or changed
        parser = self.parser
        if parser is None:
            return changed
        if self._is_document():
            changed = self._document([], now, final=True) or changed
        else:
            rows = parser.finish()
            if rows:
                changed = self.analysis.add_rows(rows, now) or changed
        if parser.finished and self.analysis.info.state == "running":
            self.analysis.finish()
            changed = True
        return changed

    def _try_detect(self, now: float, force: bool) -> bool:
        pending = self._pending
        _, score = guess_format(pending[:200], self.filename)
        waited = now - (self._pending_since or now)
        enough = len(pending) >= self._detect_lines or waited >= _DETECT_SECONDS
        if score < CONFIDENT and not force and not enough:
            return False
        self._adopt(make_parser(detect_format(pending[: self._detect_lines], self.filename)))
        self._pending = []
        return self._parse(pending, now)

    def _parse(self, lines: list[str], now: float) -> bool:
        parser = self.parser
        assert parser is not None
        # The log tail grows as lines are read, not before: what the crash check sees after the
        # last metric line is the same however the bytes were cut.
        self.analysis.store.add_log_lines(lines[-_TAIL:])
        if isinstance(parser, DocumentParser):
            return self._document(lines, now)
        a = self.analysis
        changed = False
        for i in range(0, len(lines), _BATCH):
            blocks = parse_batch(parser, lines[i : i + _BATCH])
            a.set_total_steps(parser.total_steps)
            # What the parser learned from these lines (the step axis: epochs or steps) before
            # their rows are judged, so the first batch is judged like the others.
            a.info.read_parser(parser)
            if blocks:
                changed = a.add_columns(blocks, now) or changed
        a.info.read_parser(parser)
        ended = parser.finished or (a.info.state == "running" and marks_end("\n".join(lines)))
        if ended and a.info.state == "running":
            a.finish()
            changed = True
        return changed

    def _document(self, lines: list[str], now: float, final: bool = False) -> bool:
        """A whole document (re-read whenever it grows or is rewritten): only new steps are judged."""
        parser = self.parser
        assert isinstance(parser, DocumentParser)
        self._doc += lines
        partial = self.splitter.peek_partial()
        text = "\n".join([*self._doc, partial] if partial else self._doc)
        info = self.analysis.info
        info.format, info.step_key, info.lines = parser.name, parser.step_key, len(self._doc) + bool(partial)
        try:
            rows, config, _skipped = parser.read(text)
        except ValueError as err:
            if final and text.strip():
                parser.stats.count_malformed(f"{parser.what}: {err}")
                info.malformed = parser.stats.malformed
            return False  # else not a complete document yet: the writer is mid-rewrite
        parser.config.update(config)
        parser.learned(rows, config)
        if parser.config:
            info.config = dict(parser.config)
        self.analysis.set_total_steps(parser.total_steps)
        last = self._doc_last_step
        new = [r for r in rows if last is None or r.step > last]
        changed = False
        if new:
            self._doc_last_step = new[-1].step
            changed = self.analysis.add_rows(new, now)
        if parser.finished and info.state == "running":
            self.analysis.finish()
            changed = True
        return changed


class TfeventsFeed:
    """A TensorBoard event file's bytes into rows, followed as the writer appends records."""

    def __init__(self, analysis: RunAnalysis) -> None:
        from monitor.parsers.tfevents import TfeventsReader

        self.analysis = analysis
        self.reader = TfeventsReader()
        self.resume_offset = 0
        self.on_progress: Callable[[int], None] | None = None
        analysis.info.format = "tfevents"

    def catch_up(self, path: Path, now: float, final: bool) -> Iterator[bool]:
        """Read what `path` holds now; its rows are judged in step order (scalars may come out of order)."""
        rows: list[Row] = []
        for offset, data in file_pieces(path):
            rows += self.reader.feed(data)
            self.resume_offset = offset + len(data)
            if self.on_progress is not None:
                self.on_progress(self.resume_offset)
        yield self._rows(sorted(rows, key=lambda r: r.step), now)

    def chunk(self, chunk: Chunk, now: float) -> bool:
        if chunk.reset:
            from monitor.parsers.tfevents import TfeventsReader

            self.reader = TfeventsReader()
        return self._rows(self.reader.feed(chunk.data), now) if chunk.data else False

    def _rows(self, rows: list[Row], now: float) -> bool:
        info = self.analysis.info
        st = self.reader.stats
        info.step_key, info.lines = self.reader.step_key, st.records
        return self.analysis.add_rows(rows, now) if rows else False

    def tick(self, now: float) -> bool:
        return False

    def end(self, now: float) -> bool:
        return False
