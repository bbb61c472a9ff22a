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
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, TypeVar

from monitor.aiotime import wait_for
from monitor.sources.base import TEXT, WANDB, Discovery, Opened, RunRef, SourceContext, feed_kind

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
SNIFF_BYTES = 256 << 10
"""How much of a file its sniff reads."""

P = TypeVar("P", bound=PurePath)


def open_folder(target: Target, named: str | None) -> Opened:
    """A local folder's runs now, and a watcher for the ones that come later."""
    assert target.path is not None
    root = target.path

    def discover(poll: float, _ctx: SourceContext) -> Discovery:
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

    def discover(poll: float, _ctx: SourceContext) -> Discovery:
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
            key = without_checkpoints(path)
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


#: What `name_kind` says of a file name.
RUN, NOT_RUN, SNIFF = "run", "not_run", "sniff"


def name_kind(name: str) -> str:
    """Whether a file name alone makes it a run (RUN), rules it out (NOT_RUN), or its first lines
    must decide (SNIFF). Pure: local folders and remote (SSH) folders use the same rule."""
    if feed_kind(name) != TEXT:
        return RUN
    if _DOC_NAMES.match(name):
        return NOT_RUN
    lower = name.lower()
    if lower.endswith(_ALWAYS):
        return RUN
    if lower.endswith(_SNIFFED):
        return SNIFF
    return NOT_RUN


def enters_dir(parent: str, name: str) -> bool:
    """Whether a folder search goes into the sub-folder `name` of a folder named `parent`."""
    if name.startswith(".") or name in _SKIP_DIRS:
        return False
    return not _in_run_dir(parent) or _RUN_DIR.fullmatch(name) is not None


def keeps_file(parent: str, name: str) -> bool:
    """Whether a folder search considers the file `name` in a folder named `parent`: inside a W&B
    run directory only the `.wandb` log is the run (its files/output.log repeats it)."""
    return not name.startswith(".") and (not _in_run_dir(parent) or name.endswith(".wandb"))


def in_search(root_name: str, rel: tuple[str, ...], depth: int = MAX_DEPTH) -> bool:
    """Whether the file at relative path `rel` (its parts) under a folder named `root_name` is one
    the search considers: every folder on the way entered, at most `depth` levels down."""
    if not rel or len(rel) - 1 > depth:
        return False
    parent = root_name
    for part in rel[:-1]:
        if not enters_dir(parent, part):
            return False
        parent = part
    return keeps_file(parent, rel[-1])


def _in_run_dir(name: str) -> bool:
    # A W&B folder's own files (debug.log, the run's files/output.log) repeat its `.wandb` logs.
    return _RUN_DIR.fullmatch(name) is not None or name == "wandb"


def is_run_file(path: Path) -> bool:
    """Whether a file is a run's record: by kind, by name, else by what its first lines look like."""
    kind = name_kind(path.name)
    return kind == RUN or (kind == SNIFF and _looks_like_metrics(path))


def looks_like_metrics(head: bytes, name: str) -> bool:
    """Whether the first bytes of a file named `name` look like a known metrics format."""
    from monitor.parsers import CONFIDENT, guess_format

    lines = head[:SNIFF_BYTES].decode("utf-8", "replace").splitlines()[:200]
    return guess_format(lines, name)[1] >= CONFIDENT


def _looks_like_metrics(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return False
    return looks_like_metrics(head, path.name)


def _walk(root: Path, depth: int) -> Iterator[Path]:
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for e in entries:
        try:
            if e.is_dir(follow_symlinks=False):
                if depth > 0 and enters_dir(root.name, e.name):
                    yield from _walk(Path(e.path), depth - 1)
            elif e.is_file() and keeps_file(root.name, e.name):
                yield Path(e.path)
        except OSError:
            continue


def without_checkpoints(path: P) -> P:
    """The run folder a `trainer_state.json` belongs to: its path without `checkpoint-N` parts
    (an HF output folder and its checkpoint copies are one run)."""
    parts = [p for p in path.parent.parts if not _CHECKPOINT.fullmatch(p)]
    return type(path)(*parts) if parts else type(path)(".")


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
                await wait_for(self._wake.wait(), self.poll * self._every)
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
            if f.name == "trainer_state.json" and without_checkpoints(f) in self._states:
                continue  # a newer checkpoint of a run already watched: that run re-reads its file
            self._seen.add(f)
            if f.name == "trainer_state.json":
                self._states[without_checkpoints(f)] = f
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
