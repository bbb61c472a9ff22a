"""Bytes from any source (local tail, SSH tail, stdin) into rows for one run's analysis.

A feed knows the format: text logs are split into lines, the format is detected from the first
lines (waiting a little for confidence when only hints match), and each batch of lines is parsed;
whole-JSON documents (`trainer_state.json`) are re-read when rewritten and only new steps kept;
`.wandb` logs go through the transaction-log reader.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np

from monitor import wandb_log
from monitor.analysis import RunAnalysis
from monitor.columns import Columns
from monitor.gpu import GpuSnapshot, snapshot_from_wandb_stats
from monitor.model import Row
from monitor.parsers import CONFIDENT, Parser, feed_lines, golden, guess_format, hfstate, make_parser
from monitor.parsers.common import clean_line
from monitor.sources.local import LineSplitter
from monitor.sources.ssh_tail import Chunk

_DOCUMENTS: dict[str, Callable[[str], list[Row]]] = {
    "hf-trainer-state": hfstate.parse_document,
    "megatron-golden": golden.parse_document,
}
#: Lines to wait for before settling on a format that only hints matched.
_DETECT_LINES = 2000
#: Seconds to wait for the same.
_DETECT_SECONDS = 3.0
#: A `.wandb` file this big when a live tail starts is first read with the bulk reader.
BULK_BYTES = 16 << 20
#: Rows judged at a time while catching up, between which the event loop gets its turn.
_CATCH_UP_ROWS = 8192


class TextFeed:
    """A text log's bytes into rows; the format is forced or detected from its first lines."""

    def __init__(self, analysis: RunAnalysis, fmt: str | None, filename: str) -> None:
        self.analysis = analysis
        self.filename = filename
        self.splitter = LineSplitter()
        self.parser: Parser | None = make_parser(fmt) if fmt else None
        self._pending: list[str] = []
        self._pending_since: float | None = None
        self._doc: list[str] = []
        self._doc_last_step: float | None = None
        if self.parser is not None:
            self._adopt(self.parser)

    def _adopt(self, parser: Parser) -> None:
        self.parser = parser
        self.analysis.info.format = parser.name

    def chunk(self, chunk: Chunk, now: float) -> bool:
        """Take one chunk of bytes; True when a finding changed."""
        if chunk.reset:
            self.splitter.reset()
            self._doc.clear()
        if not chunk.data:
            return False
        return self.lines(self.splitter.feed(chunk.data), now)

    def lines(self, lines: list[str], now: float) -> bool:
        """Take complete lines; True when a finding changed."""
        if not lines:
            return False
        self.analysis.store.add_log_lines(lines)
        if self.parser is None:
            self._pending += lines
            if self._pending_since is None:
                self._pending_since = now
            return self._try_detect(now, force=False)
        return self._parse(lines, now)

    def tick(self, now: float) -> bool:
        """Commit to a format after waiting long enough for a confident one."""
        if self.parser is None and self._pending:
            return self._try_detect(now, force=True)
        return False

    def _try_detect(self, now: float, force: bool) -> bool:
        name, score = guess_format([clean_line(x) for x in self._pending[:_DETECT_LINES]], self.filename)
        waited = now - (self._pending_since or now)
        if score < CONFIDENT and not force and len(self._pending) < _DETECT_LINES and waited < _DETECT_SECONDS:
            return False
        self._adopt(make_parser(name))
        pending, self._pending = self._pending, []
        return self._parse(pending, now)

    def _parse(self, lines: list[str], now: float) -> bool:
        parser = self.parser
        assert parser is not None
        info = self.analysis.info
        if getattr(parser, "document", False):
            return self._document(lines, now)
        rows = feed_lines(parser, lines)
        self.analysis.set_total_steps(parser.total_steps)
        info.read_parser(parser)
        changed = self.analysis.add_rows(rows, now) if rows else False
        if parser.finished and info.state != "finished":
            self.analysis.finish()
            changed = True
        return changed

    def _document(self, lines: list[str], now: float) -> bool:
        self._doc += lines
        assert self.parser is not None
        try:
            rows = _DOCUMENTS[self.parser.name]("\n".join(self._doc))
        except ValueError:
            return False  # not a complete document yet: the writer is mid-rewrite
        last = self._doc_last_step
        new = [r for r in rows if last is None or r.step > last]
        if new:
            self._doc_last_step = new[-1].step
        self.analysis.info.lines = len(self._doc)
        self.analysis.info.step_key = self.parser.step_key
        return self.analysis.add_rows(new, now) if new else False


class WandbFeed:
    """A `.wandb` transaction log's bytes into rows, run metadata, console lines and GPU stats."""

    def __init__(self, analysis: RunAnalysis, host: str, on_gpu: Callable[[GpuSnapshot], Any] | None = None) -> None:
        self.analysis = analysis
        self.host = host
        self.on_gpu = on_gpu
        self.reader = wandb_log.WandbLogReader()
        self._last_step: float | None = None
        self._replay_until: float | None = None
        """After the file was rewritten and is re-read from 0, rows up to this step were seen already."""
        self.resume_offset = 0
        """Where the bytes `chunk` expects start (after `catch_up`, past what it read)."""
        analysis.info.format = "wandb"

    async def catch_up(self, path: Path, clock: Callable[[], float]) -> AsyncIterator[bool]:
        """Read what `path` holds now with the bulk reader, a piece at a time in a thread, judging it
        here a slice at a time (yielding whether a finding changed after each); afterwards
        `resume_offset` is where a tail goes on, and `chunk` takes its bytes from there."""
        from monitor.wandb_bulk import WandbBulkReader

        bulk = WandbBulkReader()
        with path.open("rb") as f:
            pieces = bulk.read(f)
            while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                blocks, events = piece
                changed = self.events(events, clock())
                for part in _row_slices(blocks, _CATCH_UP_ROWS):
                    changed = self.analysis.add_columns(part, clock()) or changed
                    top = max(float(np.max(c.steps)) for c in part)
                    self._last_step = top if self._last_step is None else max(self._last_step, top)
                    yield changed
                    changed = False
                    await asyncio.sleep(0)
                if changed:
                    yield changed
        self.reader = bulk.live_reader()
        self.resume_offset = bulk.resume_offset
        self.analysis.info.step_key = self.reader.step_key
        self.analysis.info.lines = self.reader.records

    def chunk(self, chunk: Chunk, now: float) -> bool:
        if chunk.reset:
            self.reader = wandb_log.WandbLogReader()
            self._replay_until = self._last_step
        if not chunk.data:
            return False
        return self.events(self.reader.feed(chunk.data), now)

    def events(self, events: list[Any], now: float) -> bool:
        a = self.analysis
        info = a.info
        rows: list[Row] = []
        changed = False
        last = self._last_step
        replay = self._replay_until
        for ev in events:
            if isinstance(ev, Row):
                # Several rows may share a step (train and eval logged at one global step): keep
                # them all, except while re-reading a rewritten file up to what was seen before.
                if replay is not None:
                    if ev.step <= replay:
                        continue
                    replay = self._replay_until = None
                rows.append(ev)
                if last is None or ev.step > last:
                    last = ev.step
            elif isinstance(ev, wandb_log.RunMeta):
                info.name = ev.display_name or ev.run_id or info.name
                info.config = dict(ev.config)
                if ev.entity and ev.project and ev.run_id:
                    info.url = f"wandb://{ev.entity}/{ev.project}/{ev.run_id}"
            elif isinstance(ev, wandb_log.ConsoleOutput):
                a.store.add_log_lines(ev.lines)
            elif isinstance(ev, wandb_log.SystemStats) and self.on_gpu is not None:
                snap = snapshot_from_wandb_stats(ev.values, host=self.host, now=ev.time or now)
                if snap.gpus:
                    self.on_gpu(snap)
            elif isinstance(ev, wandb_log.Exit):
                a.finish("finished" if ev.exit_code == 0 else "failed")
                changed = True
        self._last_step = last
        info.step_key = self.reader.step_key
        info.lines = self.reader.records
        if rows:
            changed = a.add_rows(rows, now) or changed
        return changed


def _row_slices(blocks: list[Columns], rows: int) -> list[list[Columns]]:
    """`blocks` cut into lists of about `rows` rows each, in order."""
    out: list[list[Columns]] = []
    part: list[Columns] = []
    size = 0
    for c in blocks:
        a, n = 0, len(c.steps)
        while a < n:
            z = min(n, a + rows - size)
            part.append(Columns(c.keys, c.steps[a:z], c.values[a:z], None if c.times is None else c.times[a:z]))
            size += z - a
            a = z
            if size >= rows:
                out.append(part)
                part, size = [], 0
    if part:
        out.append(part)
    return out
