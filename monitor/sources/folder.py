"""A folder means every run inside it: logs, CSV/JSONL, trainer_state.json, golden values, W&B
run directories and TensorBoard event files, found recursively to a sane depth, one run each.

`scan_folder` lists them now; `FolderWatcher` yields each once as it appears, so a folder that is
empty today is watched and its runs show up when training starts writing them.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.sources.base import TEXT, WANDB, Discovery, Opened, RunRef, feed_kind

if TYPE_CHECKING:
    from monitor.sources.local import WandbDirWatcher
    from monitor.targets import Target

#: Folder levels searched below the target (out/wandb/run-x/run-x.wandb is 3).
MAX_DEPTH = 5
#: Most runs one folder expands to; more is a folder of something else.
MAX_RUNS = 1000
#: A folder in which nothing new appears is scanned less and less often, down to once per this many polls.
_SLOWEST = 5
#: Files with these endings are runs whatever they hold now (an empty `train.log` is one).
_ALWAYS = (".log", ".out", ".csv", ".tsv", ".jsonl", ".ndjson")
#: Files with these endings are runs only when their first lines look like a known format.
_SNIFFED = (".txt", ".json", ".md", ".err")
_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", "venv", "checkpoints-old"}
_DOC_NAMES = re.compile(r"(?i)^(readme|index|formats|changelog|license|contributing|notes|requirements)\b")
_RUN_DIR = re.compile(r"(?:offline-)?run-\d{8}_\d{6}-\w+")
_CHECKPOINT = re.compile(r"checkpoint-\d+")
_SNIFF_BYTES = 256 << 10


def open_folder(target: Target, named: str | None) -> Opened:
    """A local folder's runs now, and a watcher for the ones that come later."""
    assert target.path is not None
    root = target.path

    def discover(poll: float) -> Discovery:
        return FolderWatcher(target, named, poll=poll)

    runs = [_ref(target, f, named) for f in scan_folder(root)]
    return Opened(target, runs, discover)


def open_wandb_dir(target: Target, named: str | None) -> Opened:
    """A W&B folder, run directory or `.wandb` file: its runs now and as they start."""
    from monitor.sources.local import WandbDirWatcher, wandb_run_files

    assert target.path is not None
    single = target.path.suffix == ".wandb"
    files = [target.path] if single else wandb_run_files(target.path)

    def ref(file: Path) -> RunRef:
        run_id = target.raw if single else f"{target.raw}#{file.parent.name}"
        return RunRef(run_id, _file_target(file), named or file.parent.name, WANDB, target.raw)

    def discover(poll: float) -> Discovery:
        return _Mapped(WandbDirWatcher(target.path or Path(target.raw), poll=poll), ref)

    return Opened(target, [ref(f) for f in files], discover)


def scan_folder(root: Path, depth: int = MAX_DEPTH, judged: dict[Path, tuple[float, int]] | None = None) -> list[Path]:
    """Every run file under `root`, in path order; see the module docstring. `judged` remembers
    files found not to be runs (by modification time and size), so a rescan does not read them again."""
    found: list[Path] = []
    states: dict[Path, Path] = {}
    for path in _walk(root, depth):
        if path.name == "trainer_state.json":
            # An HF output folder and its checkpoint-N copies are one run: keep the newest state.
            key = _without_checkpoints(path)
            best = states.get(key)
            if best is None or _mtime(path) > _mtime(best):
                states[key] = path
            continue
        if judged is not None and judged.get(path) == _stamp(path):
            continue
        if is_run_file(path):
            found.append(path)
        elif judged is not None:
            judged[path] = _stamp(path)
        if len(found) >= MAX_RUNS:
            break
    found += states.values()
    return sorted(found)


def is_run_file(path: Path) -> bool:
    """Whether a file is a run's record: by kind, by name, else by what its first lines look like."""
    name = path.name
    if feed_kind(name) != TEXT:
        return True
    if _DOC_NAMES.match(name):
        return False
    lower = name.lower()
    if lower.endswith(_ALWAYS):
        return True
    if lower.endswith(_SNIFFED):
        return _looks_like_metrics(path)
    return False


def _looks_like_metrics(path: Path) -> bool:
    from monitor.parsers import CONFIDENT, guess_format

    try:
        with path.open("rb") as f:
            head = f.read(_SNIFF_BYTES).decode("utf-8", "replace").splitlines()[:200]
    except OSError:
        return False
    return guess_format(head, path.name)[1] >= CONFIDENT


def _walk(root: Path, depth: int) -> Iterator[Path]:
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    # A W&B folder's own files (debug.log, the run's files/output.log) repeat its `.wandb` logs.
    in_run_dir = _RUN_DIR.fullmatch(root.name) is not None or root.name == "wandb"
    for e in entries:
        if e.name.startswith("."):
            continue
        try:
            if e.is_dir(follow_symlinks=False):
                if depth > 0 and e.name not in _SKIP_DIRS and (not in_run_dir or _RUN_DIR.fullmatch(e.name)):
                    yield from _walk(Path(e.path), depth - 1)
            elif e.is_file() and (not in_run_dir or e.name.endswith(".wandb")):
                # Inside a W&B run directory only the `.wandb` log is the run (files/output.log repeats it).
                yield Path(e.path)
        except OSError:
            continue


def _without_checkpoints(path: Path) -> Path:
    parts = [p for p in path.parent.parts if not _CHECKPOINT.fullmatch(p)]
    return Path(*parts) if parts else Path(".")


def _stamp(path: Path) -> tuple[float, int]:
    try:
        st = path.stat()
    except OSError:
        return (0.0, -1)
    return (st.st_mtime, st.st_size)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _file_target(file: Path) -> Target:
    from monitor.targets import FILE, WANDB_LOCAL, Target

    return Target(str(file), WANDB_LOCAL if feed_kind(file.name) == WANDB else FILE, path=file)


def _ref(folder: Target, file: Path, named: str | None) -> RunRef:
    assert folder.path is not None
    rel = file.relative_to(folder.path)
    name = f"{named}/{rel}" if named else str(Path(folder.path.resolve().name) / rel)
    return RunRef(str(file), _file_target(file), name, feed_kind(file.name), folder.raw)


class FolderWatcher:
    """The runs of a folder as they appear, each once (those there at the start come first)."""

    def __init__(self, target: Target, named: str | None = None, *, poll: float = 1.0) -> None:
        assert target.path is not None
        self.target = target
        self.named = named
        self.poll = poll
        self._seen: set[Path] = set()
        self._states: dict[Path, Path] = {}
        self._ready: list[RunRef] = []
        self._judged: dict[Path, tuple[float, int]] = {}
        self._every = 1  # polls between scans: grows while nothing appears, back to 1 when something does
        self._closed = False
        self._wake = asyncio.Event()

    def __aiter__(self) -> FolderWatcher:
        return self

    async def __anext__(self) -> RunRef:
        while not self._closed:
            if not self._ready:
                self._ready = self._scan()
                self._every = 1 if self._ready else min(_SLOWEST, self._every * 2)
            if self._ready:
                return self._ready.pop(0)
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll * self._every)
            except TimeoutError:
                pass
        raise StopAsyncIteration

    def close(self) -> None:
        """Stop watching; iteration ends."""
        self._closed = True
        self._wake.set()

    def _scan(self) -> list[RunRef]:
        assert self.target.path is not None
        out: list[RunRef] = []
        for f in scan_folder(self.target.path, judged=self._judged):
            if f in self._seen:
                continue
            if f.name == "trainer_state.json" and _without_checkpoints(f) in self._states:
                continue  # a newer checkpoint of a run already watched: that run re-reads its file
            self._seen.add(f)
            if f.name == "trainer_state.json":
                self._states[_without_checkpoints(f)] = f
            out.append(_ref(self.target, f, self.named))
        return out


class _Mapped:
    """A W&B folder's `.wandb` files as they appear, as run refs."""

    def __init__(self, files: WandbDirWatcher, ref: Callable[[Path], RunRef]) -> None:
        self._files = files
        self._ref = ref

    def __aiter__(self) -> _Mapped:
        return self

    async def __anext__(self) -> RunRef:
        return self._ref(await self._files.__anext__())

    def close(self) -> None:
        self._files.close()
