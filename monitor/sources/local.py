"""Local file sources: `LocalTail` follows a file like `tail -F`; `WandbDirWatcher` finds `.wandb` runs.

Both poll (`os.stat` every `poll` seconds) rather than use inotify: it works the same on every
filesystem (NFS and Lustre included, where inotify misses remote writes) and needs no dependency.
`LocalTail` delivers bytes as `Chunk`s, the type the SSH tails deliver, so one consumer serves both;
text consumers cut them into lines with `LineSplitter`, `.wandb` consumers feed them to
`monitor.wandb.reader.WandbLogReader`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from monitor.errors import TargetError
from monitor.parsers.sniff import log_text
from monitor.sources.base import Chunk

Sleep = Callable[[float], Awaitable[object]]
Clock = Callable[[], float]

READ_SIZE = 1 << 20
"""Most bytes one read delivers, so a big backlog streams in pieces and the loop stays responsive."""
IDLE_AFTER = 5.0
"""A file that has not grown for this long is idle (a live run writing every few seconds is not)..."""
BACKOFF = 0.1
"""...and is polled every `BACKOFF` × the time since it last grew (never less than `poll`)..."""
MAX_NAP = 1.0
"""...and at least every `MAX_NAP` seconds (or `poll`, if that is longer): growth snaps it back."""
PATH_CHECK = 1.0
"""How often (seconds) the path itself is stat'ed for a rotation or removal while the open file is
read: with hundreds of files polled every 0.1 s, that second stat per poll was half the polling cost."""


class LocalTail:
    """The bytes of one local file from a byte offset onward, forever, like `tail -F`.

    Iterate it (`async for chunk in tail`); `close()` ends it. It follows appends; after a
    truncation (the file got shorter than what was delivered) it restarts at 0 with a
    `reset="truncated"` chunk; after a rotation (another file now at the path) it first delivers
    the rest of the old file, then the new one from 0 after a `reset="rotated"` chunk. A missing or
    unreadable file is one `problem` chunk (again only when the reason changes) and keeps being
    retried. A file truncated and refilled past the old offset between two polls looks like an
    append, as it does to `tail -F`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        offset: int = 0,
        *,
        poll: float = 0.1,
        read_size: int = READ_SIZE,
        vanish_grace: float = 1.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """`vanish_grace`: how long the path may be missing while the file is open before that is a
        problem (a rotation by rename leaves it missing until the writer creates the new file)."""
        self.path = Path(path)
        self.poll = poll
        self._read_size = read_size
        self._grace = vanish_grace
        self._clock = clock
        self._pos = offset
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the file open or last open
        self._rotating = False  # another file is at the path: finish the open one, then switch
        self._path_seen_at = -float("inf")  # when the path was last stat'ed (a second stat per poll)
        self._missing_since: float | None = None
        self._problem: str | None = None
        self._behind = False  # the last read was a full `read_size`: more is likely waiting
        self._closed = False
        self._nap = _Nap(sleep)
        self._grew_at = clock()

    @property
    def offset(self) -> int:
        """Absolute offset of the next byte not yet delivered."""
        return self._pos

    @property
    def problem(self) -> str | None:
        """The last problem reported, until data or a reset is delivered; else None."""
        return self._problem

    @property
    def closed(self) -> bool:
        return self._closed

    def __aiter__(self) -> LocalTail:
        return self

    async def __anext__(self) -> Chunk:
        if self._behind:
            self._behind = False
            await asyncio.sleep(0)  # a backlog: let other tasks run between its pieces
        while not self._closed:
            chunk = self._step()
            if chunk is not None:
                if chunk.data or chunk.reset:
                    self._problem = None  # readable again
                    self._behind = len(chunk.data) == self._read_size
                    self._grew_at = self._clock()
                return chunk
            await self._nap(self._interval())
        raise StopAsyncIteration

    def _interval(self) -> float:
        """How long to wait before looking again: `poll` while the file is busy, longer while it is idle."""
        idle = self._clock() - self._grew_at
        if idle < IDLE_AFTER:
            return self.poll
        return min(max(self.poll, idle * BACKOFF), max(self.poll, MAX_NAP))

    def close(self) -> None:
        """Stop following and release the file; iteration ends."""
        if self._closed:
            return
        self._closed = True
        self._close_fd()
        self._nap.cut()

    def _step(self) -> Chunk | None:
        """The next chunk if there is one now, else None (the caller waits a poll)."""
        while True:
            if self._fd is None:
                opened = self._open()
                if self._fd is None or opened is not None:
                    return opened
            try:
                chunk = self._read()
            except OSError as e:
                self._close_fd()
                return self._report(f"read failed ({e.strerror or e}); retrying")
            if chunk is not None:
                return chunk
            if self._rotating:  # the old file is read to its end: on to the new one
                self._rotating = False
                self._close_fd()
                continue
            now = self._clock()
            if now - self._path_seen_at < PATH_CHECK and self._missing_since is None:
                return None  # the path was looked at a moment ago: a rotation shows within PATH_CHECK
            self._path_seen_at = now
            problem = self._look_at_path()
            if not self._rotating:
                return problem

    def _open(self) -> Chunk | None:
        """Open the file at the path; a reset or problem chunk if there is one to tell."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return self._report("no such file; waiting for it to appear")
        except OSError as e:
            return self._report(f"cannot open ({e.strerror or e}); retrying")
        try:
            st = os.fstat(fd)
        except OSError as e:
            os.close(fd)
            return self._report(f"cannot stat ({e.strerror or e}); retrying")
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            return self._report("not a regular file; waiting for one")
        ident = (st.st_dev, st.st_ino)
        previous, self._ident = self._ident, ident
        self._fd = fd
        self._missing_since = None
        if previous is not None and previous != ident:
            self._pos = 0
            return Chunk(0, b"", reset="rotated")
        if st.st_size < self._pos:
            self._pos = 0
            return Chunk(0, b"", reset="truncated")
        return None

    def _read(self) -> Chunk | None:
        """What the open file has past the offset (at most `read_size` bytes), or a truncation reset."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size < self._pos:
            self._pos = 0
            return Chunk(0, b"", reset="truncated")
        if size == self._pos:
            return None
        data = os.pread(self._fd, min(self._read_size, size - self._pos), self._pos)
        if not data:
            return None
        chunk = Chunk(self._pos, data)
        self._pos += len(data)
        return chunk

    def _look_at_path(self) -> Chunk | None:
        """With the open file read to its end, see what is at the path now.

        Another file there sets `_rotating`: the open one is then read once more, for bytes
        written to it just before the switch, and left. A missing path is a problem only after
        `vanish_grace`, and the open file is still read meanwhile.
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            now = self._clock()
            if self._missing_since is None:
                self._missing_since = now
            elif now - self._missing_since >= self._grace:
                return self._report("file removed or renamed; waiting for it to reappear")
            return None
        except OSError:
            return None  # a passing stat error: the open file is still readable
        self._missing_since = None
        self._rotating = (st.st_dev, st.st_ino) != self._ident
        return None

    def _report(self, message: str) -> Chunk | None:
        """A problem chunk, unless the consumer was told this one and has had no data since."""
        if message == self._problem:
            return None
        self._problem = message
        return Chunk(self._pos, b"", problem=f"{self.path}: {message}")

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)


class LineSplitter:
    """Cuts a byte stream into complete text lines; the unfinished last line waits for its newline.

    Lines are decoded as UTF-8 (bad bytes become U+FFFD) without their `\\n` or `\\r\\n`. A line
    longer than `max_line` bytes is cut there, so a file without newlines cannot grow it unbounded.
    """

    def __init__(self, max_line: int = READ_SIZE) -> None:
        self._partial = b""
        self._max = max_line

    @property
    def pending(self) -> int:
        """Bytes held for a line whose newline has not arrived."""
        return len(self._partial)

    def feed(self, data: bytes) -> list[str]:
        """The lines completed by `data`."""
        buf = self._partial + data if self._partial else data
        cut = buf.rfind(b"\n")
        if cut < 0:
            parts: list[str] = []
            rest = buf
        else:
            # One decode for the whole piece: a UTF-8 character never spans a newline. A hole of
            # NULs lies within one line (the unfinished line waits whole), so it is cut out whole.
            text = log_text(buf[:cut])
            if "\r" in text:
                text = text.replace("\r\n", "\n")
                parts = text.split("\n")
                if parts[-1].endswith("\r"):
                    parts[-1] = parts[-1][:-1]
            else:
                parts = text.split("\n")
            rest = buf[cut + 1 :]
        while len(rest) > self._max:
            if piece := log_text(rest[: self._max]):
                parts.append(piece)
            rest = rest[self._max :]
        self._partial = bytes(rest)
        return parts

    def peek_partial(self) -> str:
        """The unfinished last line as it stands (a document's closing brace often has no newline)."""
        return log_text(self._partial)

    def take_partial(self) -> str:
        """The unfinished last line, taken as complete (the input has ended)."""
        text = self.peek_partial()
        self._partial = b""
        return text[:-1] if text.endswith("\r") else text

    def reset(self) -> None:
        """Drop the unfinished line (the file restarted: its end will not come)."""
        self._partial = b""


_RUN_DIR = re.compile(r"(?:offline-)?run-\d{8}_\d{6}-\w+")


class WandbDirWatcher:
    """The `.wandb` files of W&B runs as they appear, each once.

    `path` is a `wandb/` folder or a folder containing one (every run started there, now or
    later), a run directory or a `.wandb` file (just that file, then iteration ends), or a symlink
    to a run directory such as `wandb/latest-run` (the run it points to, and each run it is
    pointed to later). A missing path is a `TargetError`.
    """

    def __init__(self, path: str | os.PathLike[str], *, poll: float = 1.0, sleep: Sleep = asyncio.sleep) -> None:
        self.path = Path(path).expanduser()
        self.poll = poll
        if not self.path.exists():
            raise TargetError(f"{self.path}: no such file or directory")
        self._follow_link = self.path.is_symlink() and _is_run_dir(self.path.resolve())
        self._single = self.path.is_file() or (not self._follow_link and _is_run_dir(self.path))
        self._roots = (self.path, self.path / "wandb")
        self._done: set[Path] = set()  # run directories (or the file) already yielded
        self._ready: list[Path] = []
        self._closed = False
        self._finished = False
        self._nap = _Nap(sleep)

    def __aiter__(self) -> WandbDirWatcher:
        return self

    async def __anext__(self) -> Path:
        while not self._closed:
            if not self._ready and not self._finished:
                self._ready = self._scan()
            if self._ready:
                return self._ready.pop(0)
            if self._finished:
                break
            await self._nap(self.poll)
        raise StopAsyncIteration

    def close(self) -> None:
        """Stop watching; iteration ends."""
        self._closed = True
        self._nap.cut()

    def _scan(self) -> list[Path]:
        """The `.wandb` files not yielded yet, oldest run first."""
        if self._single:
            files = [self.path] if self.path.is_file() else _run_files(self.path)
            self._finished = bool(files)
            return files
        if self._follow_link:
            target = self.path.resolve()
            return self._from_run_dirs([target] if target.is_dir() else [])
        dirs: list[Path] = []
        for root in self._roots:
            try:
                with os.scandir(root) as entries:
                    dirs += (
                        root / e.name for e in entries if _RUN_DIR.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
                    )
            except OSError:
                continue  # not there (yet): `wandb/` appears when the first run starts
        dirs.sort(key=lambda d: d.name.removeprefix("offline-"))  # names start with the start time
        return self._from_run_dirs(dirs)

    def _from_run_dirs(self, dirs: list[Path]) -> list[Path]:
        found: list[Path] = []
        for d in dirs:
            if d in self._done:
                continue
            files = _run_files(d)
            if files:  # a run directory exists a moment before its `.wandb` file
                self._done.add(d)
                found += files
        return found


def wandb_run_files(path: str | os.PathLike[str]) -> list[Path]:
    """The `.wandb` files a W&B folder, run directory, `latest-run` link or file holds now."""
    return WandbDirWatcher(path)._scan()


class StdinSource:
    """Standard input's bytes as chunks until it closes (then iteration ends)."""

    def __init__(self) -> None:
        self._reader: asyncio.StreamReader | None = None
        self._offset = 0
        self._closed = False

    def __aiter__(self) -> StdinSource:
        return self

    async def __anext__(self) -> Chunk:
        import sys

        if self._reader is None:
            loop = asyncio.get_running_loop()
            self._reader = asyncio.StreamReader()
            reader = self._reader
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
        data = b"" if self._closed else await self._reader.read(1 << 16)
        if not data:
            raise StopAsyncIteration
        chunk = Chunk(self._offset, data)
        self._offset += len(data)
        return chunk

    def close(self) -> None:
        self._closed = True


def _is_run_dir(p: Path) -> bool:
    return p.is_dir() and (_RUN_DIR.fullmatch(p.name) is not None or bool(_run_files(p)))


def _run_files(d: Path) -> list[Path]:
    try:
        return sorted(f for f in d.glob("*.wandb") if f.is_file())
    except OSError:
        return []


class _Nap:
    """A sleep (injectable, for tests) that `cut()` ends early, so `close()` stops a waiting iterator."""

    def __init__(self, sleep: Sleep) -> None:
        self._sleep = sleep
        self._future: asyncio.Future[object] | None = None
        self._cut = False

    async def __call__(self, delay: float) -> None:
        if self._sleep is asyncio.sleep:
            # A bare future woken by a timer: no task per nap (hundreds of files poll ten times a second).
            loop = asyncio.get_running_loop()
            self._future = loop.create_future()
            wake = loop.call_later(delay, _wake, self._future)
        else:
            self._future = asyncio.ensure_future(self._sleep(delay))
            wake = None
        try:
            await self._future
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._cut or (task is not None and task.cancelling()):
                raise
        finally:
            self._future = None
            if wake is not None:
                wake.cancel()

    def cut(self) -> None:
        self._cut = True
        if self._future is not None:
            self._future.cancel()


def _wake(future: asyncio.Future[object]) -> None:
    if not future.done():
        future.set_result(None)
