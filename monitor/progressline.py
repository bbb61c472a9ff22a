"""One progress line on a terminal's stderr while `check` reads a big input.

`runwatch check` on a 1 GB log or a 1M-step `.wandb` file works for seconds; a person at a terminal
should see that it works, how far it is and how fast it goes. The line appears only once reading a
target has taken `DELAY` seconds, is rewritten in place (at most `EVERY` seconds apart), and is
erased when the target is done, so what `check` prints afterwards is unchanged. It is only for a
terminal: never with `--json`, never when stderr is a file or a pipe (the caller decides).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

#: Seconds of reading one target before its progress line appears.
DELAY = 1.0
#: Seconds at least between two redraws.
EVERY = 0.1


def size_text(n: float) -> str:
    """Bytes, short: `512 B`, `3.4 MB`, `1.2 GB`."""
    for scale, unit in ((1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "kB")):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def line_text(name: str, done: int, total: int, seconds: float) -> str:
    """`reading run.log  43%  120.0/280.0 MB  45.1 MB/s` (no total: bytes read so far)."""
    rate = f"{size_text(done / seconds)}/s" if seconds > 0 else ""
    if total > 0:
        pct = 100.0 * min(done, total) / total
        return f"reading {name}  {pct:3.0f}%  {size_text(done)} of {size_text(total)}  {rate}".rstrip()
    return f"reading {name}  {size_text(done)}  {rate}".rstrip()


class ProgressLine:
    """The progress of reading one target at a time, drawn on `stream` (a terminal)."""

    def __init__(self, stream: TextIO, width: int = 80, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.width = max(20, width)
        self.clock = clock
        self._target: str | None = None
        self._start = 0.0
        self._drawn = 0.0
        self._shown = False

    def update(self, target: str, done: int, total: int) -> None:
        """`done` of `total` bytes of `target` read (`total` 0: unknown)."""
        now = self.clock()
        if target != self._target:
            self.clear()
            self._target, self._start, self._drawn = target, now, 0.0
            return
        took = now - self._start
        if took < DELAY or now - self._drawn < EVERY:
            return
        self._drawn = now
        room = self.width - 1 - len(line_text("", done, total, took))  # what the name may take
        name = target if len(target) <= room else "…" + target[len(target) - max(1, room - 1) :]
        text = line_text(name, done, total, took)[: self.width - 1]
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        """Erase the line (a target is done)."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False
        self._target = None
