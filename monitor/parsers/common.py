"""Helpers every parser shares: line cleaning, number reading, the step keys of structured formats."""

from __future__ import annotations

import re

#: Column or field names that give the step axis, best first (ARCHITECTURE.md "Step axis").
STEP_KEYS = (
    "step",
    "global_step",
    "train/global_step",
    "trainer/global_step",
    "iteration",
    "iter",
    "epoch",
    "_step",
)


class KeyedSteps:
    """The step axis of formats whose lines may name their step: the first step-like key seen becomes
    the axis (and leaves the values); later lines without it keep the latest step; before any, a
    running count of lines."""

    __slots__ = ("count", "key", "last")

    def __init__(self) -> None:
        self.key: str | None = None
        self.last = 0.0
        """The step of the latest row emitted."""
        self.count = 0

    def take(self, values: dict[str, float]) -> float:
        """The step of one line's values, removing the step key from them."""
        if self.key is None:
            self.key = next((k for k in STEP_KEYS if k in values), None)
        self.count += 1
        return float(self.count) if self.key is None else values.pop(self.key, self.last)


#: Keys that carry a wall-clock timestamp in structured formats.
TIME_KEYS = ("_timestamp", "timestamp", "time")

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78cDEHM]")


def clean_line(line: str) -> str:
    """A raw line as a parser wants it: no newline, no ANSI codes, only the last `\\r` segment.

    tqdm redraws its bar with `\\r`; what is left on screen is the last segment, so that is kept.
    A trailing `\\r` (CRLF files) is a line ending, not a redraw.
    """
    if line.endswith("\n"):
        line = line[:-1]
    if "\r" in line:
        line = line.rstrip("\r").rpartition("\r")[2]
    if "\x1b" in line:
        line = _ANSI.sub("", line)
    return line


def to_float(text: str) -> float | None:
    """`text` as a float (surrounding blanks, `nan`, `inf` allowed), or None when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return None


def is_timing_key(key: str) -> bool:
    """Whether `key` names a timing field, whose non-finite values mean "not measured" rather than NaN."""
    k = key.lower()
    return "time" in k or "avg" in k or "ms" in k


_UNITS2 = ("ms", "GB", "MB", "KB", "us")
_UNITS1 = ("%", "s")
_LEADING_NUMBER = re.compile(r"\s*([-+]?(?:nan|inf(?:inity)?|(?:\d++\.?\d*+|\.\d+)(?:[eE][-+]?\d++)?))", re.I)


def leading_float(text: str) -> float | None:
    """The number at the start of `text`, ignoring a unit after it (`12.3ms`, `45%`, `3.96GB`, `nanms`)."""
    # the usual units are cut before trying float(), since a failing float() costs an exception
    if text.endswith(_UNITS2):
        number = text[:-2]
    elif text.endswith(_UNITS1):
        number = text[:-1]
    else:
        number = text
    try:
        return float(number)
    except ValueError:
        pass
    m = _LEADING_NUMBER.match(text)
    return float(m.group(1)) if m else None
