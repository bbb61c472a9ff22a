"""A run's state, decided in one place from the same facts for `check`, `watch` and the TUI.

- `live`: reading, no end marker, updated recently.
- `finished` / `crashed`: an end marker (a W&B exit record, HF's final summary, trainer_state at
  `max_steps`, "End of training", the last step equal to the declared total, golden values) or the
  input closed (stdin); `crashed` when the exit code was not 0 or the backend says so.
- `idle`: no end marker and no update for a long time (`detectors.stall.IDLE_AFTER_SECONDS`):
  an info "not updated since DATE", so a finished healthy run is not a problem.
- `stale`: the source cannot be read now (unreachable host, API down, unreadable file); the last
  verdict is kept, a `source_error` finding says why, the source is retried.
- `waiting` / `connecting`: nothing read yet (a file not created yet, a host being reached).
- `unreadable`: the source was read but held no metrics. Never shown healthy.

The last update is the last recorded time when rows carry one (timestamp columns, W&B
`_timestamp`, timestamped lines), else when the bytes were written (a file's modification time)
or arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.analysis import RunAnalysis
from monitor.model import Verdict

LIVE = "live"
FINISHED = "finished"
CRASHED = "crashed"
IDLE = "idle"
STALE = "stale"
WAITING = "waiting"
CONNECTING = "connecting"
UNREADABLE = "unreadable"

#: States in which the run's verdict is not a current reading of it.
NOT_CURRENT = frozenset({STALE, WAITING, CONNECTING, UNREADABLE})
#: States `check` reports as "could not be read" (exit 3).
UNREAD = frozenset({STALE, UNREADABLE, WAITING, CONNECTING})
_ENDED = {"finished": FINISHED, "crashed": CRASHED, "failed": CRASHED, "killed": CRASHED, "preempted": CRASHED}


@dataclass(frozen=True, slots=True)
class RunState:
    """One run's state word, the time it refers to (idle: the last update) and a one-line detail."""

    word: str
    since: float | None = None
    detail: str = ""

    @property
    def stale(self) -> bool:
        """Whether the source is down or unread: the verdict shown is not a current reading."""
        return self.word in (STALE, UNREADABLE) or (self.word in NOT_CURRENT and bool(self.detail))

    @property
    def label(self) -> str:
        """`live`, `idle since 2026-12-03 14:02 UTC`, `stale: host unreachable`, ..."""
        if self.word == IDLE and self.since is not None:
            return f"idle since {stamp(self.since)}"
        return f"{self.word}: {self.detail}" if self.detail and self.word in (STALE, UNREADABLE) else self.word


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """What the source side knows: an error now (and whether it means the bytes are not a run's
    record at all), its connection word while not reading, whether the input ended."""

    error: str | None = None
    unreadable: bool = False
    connection: str | None = None
    """`connecting`, `waiting`, `retrying in 5 s`, ... while nothing is being read."""
    ended: bool = False
    caught_up: bool = True
    """Whether what existed when the source opened has been read (so 'no metrics' is a fact)."""


def stamp(t: float) -> str:
    """A time as people read it in any time zone: `2026-12-03 14:02 UTC`."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def note_end_markers(analysis: RunAnalysis) -> bool:
    """Mark the run finished when its last step reached the declared total; True when that changed."""
    info = analysis.info
    last, total = analysis.detectors.last_step, info.total_steps
    if info.state == "running" and total and last is not None and last >= total:
        analysis.finish()
        return True
    return False


def decide(analysis: RunAnalysis, source: SourceFacts) -> RunState:
    """The run's state from its analysis and what its source knows; see the module docstring."""
    info = analysis.info
    if source.error:
        word = UNREADABLE if source.unreadable else (source.connection or STALE)
        if word not in (UNREADABLE, WAITING, CONNECTING):
            word = STALE
        return RunState(word, None, source.error)
    ended = _ENDED.get(info.state)
    if info.exit_code not in (None, 0):
        ended = CRASHED
    if analysis.store.rows == 0:
        if source.caught_up and (info.lines or ended or source.ended):
            what = f"{info.lines} lines" if info.format != "wandb" else f"{info.lines} records"
            return RunState(UNREADABLE, None, f"no metrics found in {what} (format: {info.format})")
        return RunState(source.connection or CONNECTING)
    if ended is not None:
        return RunState(ended, analysis.detectors.stall.last_time)
    if source.ended:
        return RunState(FINISHED, analysis.detectors.stall.last_time)
    stall = analysis.detectors.stall
    cur = stall.current
    if cur is not None and cur.active and cur.kind == IDLE:
        return RunState(IDLE, stall.last_time)
    return RunState(LIVE)


def shown_verdict(state: RunState, verdict: Verdict) -> str:
    """The verdict word a person is shown: a bad run stays bad whatever its source does; a run not
    read now is `stale` (or `unreadable`), one not read yet `waiting`, never healthy; else the
    judge's word."""
    if verdict is Verdict.BAD:
        return str(verdict)
    if state.word == UNREADABLE:
        return UNREADABLE
    if state.stale:
        return STALE
    if state.word in NOT_CURRENT:
        return WAITING  # nothing read yet: not healthy either
    return str(verdict)
