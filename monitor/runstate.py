"""A run's state, decided in one place from the same facts for `check`, `watch` and the TUI.

- `live`: reading, no end marker, updated recently.
- `finished` / `crashed`: an end marker (a W&B exit record, HF's final summary, trainer_state at
  `max_steps`, "End of training", the last step equal to the declared total, golden values), the
  input closed (stdin) or, for a local file, its writer process seen to go; `crashed` when the exit
  code was not 0, the backend says so, or the log's last lines show the process dying.
- `idle`: no end marker and no update for a long time (`[thresholds] idle_after_seconds`, 2 h):
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

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.analysis import RunAnalysis
from monitor.model import Decision, Judgement, Verdict

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


#: Lines frameworks print when training ends normally, whatever the log's format.
END_MARKER = re.compile(
    r"Training completed\. Do not forget to share your model"  # HF Trainer
    r"|`Trainer\.fit` stopped: `max_(?:epochs|steps)=\d+` reached"  # PyTorch Lightning
)


def marks_end(text: str) -> bool:
    """Whether `text` (lines of a log) holds a framework's end-of-training line."""
    return ("reached" in text or "Training completed" in text) and END_MARKER.search(text) is not None


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
        # One outage is one state, however often the source is retried (connecting, retrying ...).
        word = UNREADABLE if source.unreadable else WAITING if source.connection == WAITING else STALE
        return RunState(word, None, source.error)
    ended = _ENDED.get(info.state)
    analysis.judgement()  # brings the crash finding up to date with the log's last lines
    crash = analysis.detectors.crash.current
    if info.exit_code not in (None, 0) or (crash is not None and crash.active):
        ended = CRASHED  # an exit code, or the log's last lines show the process dying
    if analysis.store.rows == 0 and ended != CRASHED:  # a job that died before its first metric crashed
        if source.caught_up and (info.lines or info.malformed or ended or source.ended):
            what = f"{info.lines} lines" if info.format != "wandb" else f"{info.lines} records"
            what += f", {info.malformed} damaged" if info.malformed and info.format == "wandb" else ""
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


def shown_decision(state: RunState, judgement: Judgement) -> tuple[str, str]:
    """The advice and its reason a person is shown: a run that is not read now (unreadable, stale,
    waiting) and not already bad is `wait`, for the reason its source gives, never `continue`."""
    if judgement.verdict is not Verdict.BAD and state.word in UNREAD:
        return str(Decision.WAIT), state.detail or state.label
    return str(judgement.decision), judgement.reason


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
