"""The public hand-over from the bulk reader (catching up) to the record-by-record reader (tailing)."""

from __future__ import annotations

from dataclasses import dataclass

from monitor.stepaxis import StepAxis


@dataclass(frozen=True, slots=True)
class ResumeState:
    """Where a reader stopped and what carries on to the next record: the byte offset of the next
    whole record, the step axis, the step counter, console lines waiting for their newline and the
    counts so far. `WandbBulkReader.resume_state()` gives one; `WandbLogReader.resume(state)` goes on."""

    offset: int
    axis: StepAxis
    last_step: float
    console: tuple[tuple[str, str], ...]
    records: int
    bad_records: int
    skipped_bytes: int
