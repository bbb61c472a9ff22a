"""A `.wandb` transaction log's bytes into one run's analysis: rows, run metadata, console lines,
GPU stats and the exit record (see `monitor.feeds` for what every feed offers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from monitor.analysis import RunAnalysis
from monitor.backfill import read_wandb_in_worker, worth_parallel
from monitor.columns import Columns
from monitor.errors import FormatError
from monitor.gpu import GpuSnapshot, snapshot_from_wandb_stats
from monitor.model import Row
from monitor.prefetch import BULK_BYTES
from monitor.sources.base import Chunk
from monitor.wandb import reader as wandb_log


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
        self.on_progress: Callable[[int], None] | None = None
        """Called while catching up with how many bytes of the file have been read."""
        analysis.info.format = "wandb"

    def catch_up(self, path: Path, now: float, final: bool) -> Iterator[bool]:
        """Read what `path` holds now, judging it a piece at a time: a small file record by record,
        a big one with the bulk reader (in a worker process when finished); afterwards `chunk`
        goes on from `resume_offset`. The choice depends on the file alone, so `check`, `watch`
        and the TUI read the same rows in the same blocks."""
        from monitor.feeds import file_pieces
        from monitor.wandb.bulk import WandbBulkReader  # numpy-heavy: only when a file is read

        if path.stat().st_size < BULK_BYTES:
            # The bulk reader's buffers cost more than they save on a small file.
            for offset, data in file_pieces(path):
                yield self.chunk(Chunk(offset, data), now)
                self.resume_offset = offset + len(data)
                if self.on_progress is not None:
                    self.on_progress(self.resume_offset)
            return
        if final and worth_parallel(path):
            changed: list[bool] = []

            def on_blocks(blocks: list[Columns], others: list[object]) -> None:
                changed.append(self._piece(blocks, others, now))

            try:
                done = read_wandb_in_worker(path, on_blocks, self.on_progress)
            except OSError as e:
                raise FormatError(f"{path.name}: {e}") from None
            self.analysis.info.step_key, self.analysis.info.lines = done["step_key"], done["records"]
            yield any(changed)
            return
        if worth_parallel(path):
            # A live view of a big file: a worker reads it while this process judges.
            yield from self._bulk_in_worker(path, now)
            return
        bulk = WandbBulkReader()
        with path.open("rb") as f:
            for blocks, events in bulk.read(f):
                self.resume_offset = bulk.resume_offset  # how far it got, for a progress bar
                yield self._piece(blocks, events, now)
                if self.on_progress is not None:
                    self.on_progress(self.resume_offset)
        self.reader = bulk.live_reader()
        self.resume_offset = bulk.resume_offset
        self.analysis.info.step_key = self.reader.step_key
        self.analysis.info.lines = self.reader.records
        self.analysis.info.malformed = self.reader.bad_records + (self.reader.skipped_bytes > 0)

    def _bulk_in_worker(self, path: Path, now: float) -> Iterator[bool]:
        """`catch_up`'s bulk reading done in a forked worker (`backfill.read_wandb_pieces`): the same
        pieces, judged here in the same order; then the record-by-record reader goes on."""
        from monitor.backfill import read_wandb_pieces
        from monitor.wandb.resume import ResumeState

        try:
            for piece in read_wandb_pieces(path):
                if isinstance(piece, ResumeState):
                    self.reader = wandb_log.WandbLogReader.resume(piece)
                    break
                blocks, events, offset = piece
                self.resume_offset = offset  # how far it got, for a progress bar
                yield self._piece(blocks, events, now)
                if self.on_progress is not None:
                    self.on_progress(offset)
        except OSError as e:
            raise FormatError(f"{path.name}: {e}") from None
        self.resume_offset = self.reader.resume_offset
        self.analysis.info.step_key = self.reader.step_key
        self.analysis.info.lines = self.reader.records
        self.analysis.info.malformed = self.reader.bad_records + (self.reader.skipped_bytes > 0)

    def _piece(self, blocks: list[Columns], events: list[Any], now: float) -> bool:
        changed = self.events(events, now)
        if blocks:
            changed = self.analysis.add_columns(blocks, now) or changed
            top = (
                max(float(c.steps.max()) for c in blocks if len(c.steps)) if any(len(c.steps) for c in blocks) else None
            )
            if top is not None:
                self._last_step = top if self._last_step is None else max(self._last_step, top)
        return changed

    def chunk(self, chunk: Chunk, now: float) -> bool:
        if chunk.reset:
            self.reader = wandb_log.WandbLogReader()
            self._replay_until = self._last_step
        if not chunk.data:
            return False
        return self.events(self.reader.feed(chunk.data), now)

    def tick(self, now: float) -> bool:
        return False

    def end(self, now: float) -> bool:
        return False

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
                info.exit_code = ev.exit_code
                a.finish("finished" if ev.exit_code == 0 else "crashed", ev.exit_code)
                changed = True
        self._last_step = last
        info.step_key = self.reader.step_key
        info.lines = self.reader.records
        # Damaged records and blocks dropped for a bad checksum: what makes a file of junk unreadable.
        info.malformed = self.reader.bad_records + (self.reader.skipped_bytes > 0)
        if rows:
            changed = a.add_rows(rows, now) or changed
        return changed
