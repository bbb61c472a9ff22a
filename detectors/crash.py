"""A run whose process died: a traceback, a kill, a segfault, a scheduler's cancel, a non-zero exit.

`find_crash` is pure: given the text lines a log holds *after its last metric line* (the caller
knows which lines are metrics), it says whether they show the process dying, with the error's
first and last lines. A traceback followed by more training is a caught error, so the caller only
passes the trailing text. `CrashDetector` turns that (and a W&B exit code) into a `crashed` finding.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from detectors.base import Detector, fmt
from monitor.model import Severity

# Launchers prefix each rank's lines ("[rank0]: ", "0: ", "[default0]:").
_PREFIX = r"^(?:\s*\[?(?:rank|default)?\d+\]?:\s*)?"
_TRACEBACK = re.compile(_PREFIX + r"\s*Traceback \(most recent call last\):")
_EXCEPTION = re.compile(
    _PREFIX + r"\s*((?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Interrupt|Failure|Exit|Exited))(?::\s?(.*))?$"
)
#: Lines that mean the process died whether or not a traceback shows: (pattern, what it was).
_MARKERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"CANCELLED AT \S+ DUE TO PREEMPTION|DUE TO PREEMPTION|[Pp]reempted"), "preempted"),
    (re.compile(r"\bDUE TO TIME LIMIT\b"), "SLURM time limit"),
    (re.compile(r"\bOUT_OF_MEMORY\b|oom[-_]kill event|Out Of Memory|Exceeded job memory limit"), "out of host memory"),
    (re.compile(r"\*\*\* (?:JOB|STEP) \S+ ON \S+ CANCELLED AT"), "SLURM cancelled the job"),
    (re.compile(r"Watchdog caught collective operation timeout"), "NCCL collective timeout"),
    (re.compile(r"CUDA out of memory|OutOfMemoryError"), "CUDA out of memory"),
    (re.compile(r"ChildFailedError"), "a worker process failed (torchrun)"),
    (re.compile(r"Segmentation fault|SIGSEGV|Fatal Python error"), "segmentation fault"),
    (re.compile(r"^\s*Killed\s*$|\d+ Killed\s|\bkilled by signal: Killed|Signal 9 \(SIGKILL\)"), "killed"),
    (re.compile(r"terminate called after throwing|Aborted \(core dumped\)|Bus error"), "aborted"),
)
_REQUEUE = re.compile(r"[Rr]equeu")
_QUICK = re.compile(
    r"Traceback|Error|Exception|Interrupt|CANCELLED|PREEMPT|[Pp]reempt|OUT_OF_MEMORY|oom|Out Of Memory|"
    r"Watchdog|Killed|SIGKILL|SIGSEGV|Segmentation|Fatal Python|terminate called|Aborted|Bus error|memory limit"
)
#: Lines after an error that say training nevertheless ended normally (the error was caught).
_FINISHED = re.compile(
    r"Training completed|[Tt]raining (?:is )?(?:finished|done|complete)\b|End of training|max_epochs=\S+ reached"
)


@dataclass(frozen=True, slots=True)
class Crash:
    """How a process died, as its last lines tell it."""

    what: str
    """Short cause: the exception's name and message, or a marker's meaning ("killed")."""
    first: str
    """The error's first line (a traceback's header, a marker line)."""
    last: str
    """The error's last line (the exception line, or the last marker line)."""
    preempted: bool = False
    requeued: bool = False
    interrupted: bool = False


def might_crash(lines: Sequence[str]) -> bool:
    """A cheap test that `lines` could hold a crash at all (most tails hold nothing of the kind)."""
    search = _QUICK.search
    return any(search(line) for line in lines)


def find_crash(lines: Sequence[str]) -> Crash | None:
    """The crash that `lines` (a log's text after its last metric line, oldest first) show, if any."""
    first: str | None = None
    last = ""
    exc: str | None = None
    marker: str | None = None
    in_traceback = False
    preempted = requeued = interrupted = False
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if _TRACEBACK.search(line):
            in_traceback = True
            first = first or line
            last = line
            continue
        m = _EXCEPTION.match(line)
        if m and (in_traceback or exc is None):
            name = m.group(1)
            if in_traceback or _is_fatal_name(name):
                exc = exc or (f"{name}: {m.group(2)}" if m.group(2) else name)
                interrupted = interrupted or name.endswith("KeyboardInterrupt")
                first = first or line
                last = line
                in_traceback = False
                continue
        if _REQUEUE.search(line):
            requeued = True
        for pattern, what in _MARKERS:
            if pattern.search(line):
                if what == "preempted":
                    preempted = True
                marker = marker or what
                first = first or line
                last = line
                break
        if first is not None and _FINISHED.search(line):
            # Training ended normally after the error: it was caught.
            first, exc, marker, last = None, None, None, ""
            preempted = requeued = interrupted = False
    if first is None or (exc is None and marker is None):
        return None
    what = exc or marker or "crashed"
    if marker is not None and exc is not None and marker not in exc:
        what = f"{exc} ({marker})" if marker in ("killed", "NCCL collective timeout", "out of host memory") else exc
    return Crash(_cut(what), _cut(first), _cut(last), preempted, requeued, interrupted and not preempted)


def _is_fatal_name(name: str) -> bool:
    # Without a traceback header only errors that are process deaths by themselves count (a logged
    # "ValueError: ..." line may well have been caught).
    return name.endswith(("ChildFailedError", "OutOfMemoryError", "KeyboardInterrupt"))


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class CrashDetector(Detector):
    """The run's process died (`crashed`, bad); preemption and interrupts are named as such."""

    __slots__ = ("_seen",)
    kind = "crashed"

    def __init__(self, axis: str = "step") -> None:
        super().__init__("process", axis)
        self._seen: Crash | None = None

    def update(self, crash: Crash | None, step: float | None) -> bool:
        """The crash the log's trailing text shows now (None: none, or training went on after it)."""
        if crash == self._seen:
            return False
        self._seen = crash
        at = step if step is not None else 0.0
        where = f" at {self.axis} {fmt(at)}" if step is not None else ""
        if crash is None:
            return self._resolve(at, f"training went on after the error{where}: it was caught")
        evidence = {"first_line": crash.first, "last_line": crash.last}
        if crash.preempted:
            severity = Severity.INFO if crash.requeued else Severity.WARN
            how = "preempted by the scheduler and requeued" if crash.requeued else "preempted by the scheduler"
            return self._fire(severity, at, at, f"run {how}{where}: not a model failure", evidence)
        if crash.interrupted:
            return self._fire(Severity.WARN, at, at, f"run interrupted{where} (KeyboardInterrupt)", evidence)
        return self._fire(Severity.BAD, at, at, f"run crashed{where}: {crash.what}", evidence)

    def exited(self, code: int | None, step: float | None) -> bool:
        """The process's exit code as recorded (a W&B exit record); non-zero is a crash, None a
        failure whose code is unknown (a source that only says `failed`)."""
        if code == 0:
            return False
        at = step if step is not None else 0.0
        where = f" at {self.axis} {fmt(at)}" if step is not None else ""
        if self.active:
            # The log already said why; the exit code is one more piece of evidence.
            cur = self.current
            assert cur is not None
            return self._fire(cur.severity, cur.step, cur.onset_step, cur.message, {"exit_code": code}, refresh=True)
        how = f"exited with code {code}" if code is not None else "failed"
        return self._fire(Severity.BAD, at, at, f"run {how}{where}", {"exit_code": code})
