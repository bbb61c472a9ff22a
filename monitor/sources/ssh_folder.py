"""A remote folder (`HOST:/path/dir/`, `ssh://host/path/dir/`) means every run inside it, by the
rules local folders follow (`monitor.sources.folder`: which names are runs, which folders are
searched, five levels down, one run per HF output folder).

The folder is listed with one bounded `find` over the host's shared SSH connection (sizes and
modification times included where `find` has `-printf`, names alone elsewhere); files whose
names alone do not decide are sniffed with `head`.
`RemoteFolderWatcher` lists it again and again (less often while nothing new appears) and yields
each run once; every run is then an ordinary SSH path followed by the pool's one shared follower
per host. A folder that cannot be listed (no such folder, permission denied, host down) yields a
`FolderState` with the reason and is listed again with backoff; the hub shows it as a stale row.

A path ending in `/`, or whose last part has no `.` (`gpu1:/runs/exp1`), is taken as a folder; if
it turns out to be a file, that file is the one run (named exactly as given, so config matches).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from monitor.aiotime import wait_for
from monitor.errors import RunwatchError
from monitor.sources import folder
from monitor.sources.base import Discovery, FolderState, Opened, RunRef, SourceContext, feed_kind, short_name

if TYPE_CHECKING:
    from monitor.sources.ssh_targets import SSHTarget
    from monitor.targets import Target

#: A listing of a folder slower than this is given up (and retried).
LIST_TIMEOUT = 20.0
#: How long a listing waits for the host's connection before saying why there is none.
CONNECT_WAIT = 10.0
#: Between listings in which nothing new appeared, the interval doubles up to this many polls.
_SLOWEST = 10
#: The longest wait before listing an unlistable folder again, in seconds.
_RETRY_CAP = 60.0
_PRUNE = " -o ".join(["-name '.*'"] + [f"-name {d}" for d in sorted(folder._SKIP_DIRS)])


def is_remote_folder(path: str) -> bool:
    """Whether a remote path is taken as a folder: it ends in `/`, or its last part has no `.`."""
    return path.endswith("/") or "." not in path.rsplit("/", 1)[-1]


def open_remote_folder(target: Target, named: str | None) -> Opened:
    """A remote folder: no runs known before it is listed; its watcher lists it and yields them."""

    def discover(poll: float, ctx: SourceContext) -> Discovery:
        return RemoteFolderWatcher(target, named, ctx, poll=poll)

    return Opened(target, [], discover)


def list_command(path: str, depth: int = folder.MAX_DEPTH) -> str:
    """The remote command listing a folder's files: `SIZE MTIME RELPATH` records, NUL-ended
    (RELPATH empty when `path` is a file). Hidden and skipped folders are pruned remotely. Where
    `find` has no `-printf` (BSD, busybox), `portable_list_command` lists names without stats."""
    from monitor.sources.ssh_remote import shell_path

    root = shell_path(path.rstrip("/") or "/")
    return (
        "if find / -maxdepth 0 -printf '' 2>/dev/null; then"
        f" if [ -f {root} ]; then find {root} -maxdepth 0 -printf '%s %T@ \\0';"
        f" else find {root} -mindepth 1 -maxdepth {depth + 1} \\( {_PRUNE} \\) -prune"
        f" -o -type f -printf '%s %T@ %P\\0'; fi;"
        f" else {portable_list_command(path, depth)}; fi"
    )


def portable_list_command(path: str, depth: int = folder.MAX_DEPTH) -> str:
    """`list_command` for a `find` without `-printf`: `? ? RELPATH` records (no size or time)."""
    from monitor.sources.ssh_remote import shell_path

    root = shell_path(path.rstrip("/") or "/")
    return (
        f"if [ -f {root} ]; then printf '? ? \\0'; else cd {root} &&"
        f" find . -mindepth 1 -maxdepth {depth + 1} \\( {_PRUNE} \\) -prune"
        f" -o -type f -exec printf '? ? %s\\0' {{}} +; fi"
    )


@dataclass(frozen=True, slots=True)
class Entry:
    """One file of a listing: its path relative to the folder ('' for the folder itself being a
    file), size in bytes and modification time."""

    rel: str
    size: int
    mtime: float


def parse_listing(out: str) -> list[Entry]:
    """The entries of `list_command`'s output (malformed records are skipped)."""
    entries = []
    for rec in out.split("\0"):
        size, _, rest = rec.partition(" ")
        mtime, _, rel = rest.partition(" ")
        if size == "?":  # a portable listing: no stats, paths from `find .`
            size, mtime, rel = "-1", "0", rel.removeprefix("./")
        try:
            entries.append(Entry(rel, int(size), float(mtime)))
        except ValueError:
            continue
    return entries


def listing_error(status: int, out: str, err: str) -> str | None:
    """Why a listing failed, or None when it gave something to go on. `find` exits 1 when some
    sub-folder was unreadable; that is only an error when nothing was listed at all."""
    if status == 0 or out.strip("\0\n "):
        return None
    lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
    if status == 127:
        return "cannot list the folder: no find on this host"
    return lines[0] if lines else f"cannot list the folder (find exited {status})"


class RemoteFolderWatcher:
    """The runs of a remote folder as they appear, each once; see the module docstring."""

    def __init__(self, target: Target, named: str | None, ctx: SourceContext, *, poll: float = 1.0) -> None:
        assert target.ssh is not None
        self.target = target
        self.ssh: SSHTarget = target.ssh
        self.named = named
        self.poll = poll
        self._ctx = ctx
        self._seen: set[str] = set()
        self._states: dict[PurePosixPath, str] = {}
        self._judged: dict[str, tuple[float, int]] = {}
        self._ready: list[RunRef | FolderState] = []
        self._error: str | None = "not listed yet"
        self._every = 1.0
        self._closed = False
        self._wake = asyncio.Event()

    def __aiter__(self) -> RemoteFolderWatcher:
        return self

    async def __anext__(self) -> RunRef | FolderState:
        while not self._closed:
            if not self._ready:
                await self._list()
            if self._ready:
                return self._ready.pop(0)
            try:
                await wait_for(self._wake.wait(), self._delay())
            except TimeoutError:
                pass
        raise StopAsyncIteration

    def close(self) -> None:
        """Stop listing; iteration ends."""
        self._closed = True
        self._wake.set()

    def _delay(self) -> float:
        return min(_RETRY_CAP, self.poll * self._every) if self._error else self.poll * self._every

    async def _list(self) -> None:
        try:
            entries, error = await self._fetch()
        except RunwatchError as e:
            entries, error = [], e.one_line()
        except Exception as e:  # anything else is one more reason it cannot be listed now
            entries, error = [], f"cannot list the folder: {type(e).__name__}: {e}"
        if error is not None:
            if error != self._error:
                self._ready.append(FolderState(self.target.raw, error))
            self._error = error
            self._every = min(_RETRY_CAP / max(self.poll, 1e-3), self._every * 2)
            return
        if self._error is not None:
            self._ready.append(FolderState(self.target.raw, None))
            self._error = None
            self._every = 1.0
        found = await self._runs(entries)
        self._ready += found
        self._every = 1.0 if found else min(_SLOWEST, self._every * 2)

    async def _fetch(self) -> tuple[list[Entry], str | None]:
        pool = self._ctx.ssh_pool()
        await _connected(pool.host(self.ssh))
        res = await pool.run(self.ssh, list_command(self.ssh.path), timeout=LIST_TIMEOUT)
        return parse_listing(res.stdout), listing_error(res.exit_status, res.stdout, res.stderr)

    async def _runs(self, entries: list[Entry]) -> list[RunRef]:
        if len(entries) == 1 and entries[0].rel == "":  # the path is a file: that file is the run
            if "" in self._seen:
                return []
            self._seen.add("")
            name = self.named or short_name(self.target)
            return [RunRef(self.target.raw, self.target, name, feed_kind(self.ssh.path), self.target.raw)]
        root_name = PurePosixPath(self.ssh.path.rstrip("/")).name or self.ssh.host
        out: list[RunRef] = []
        for e in sorted(entries, key=lambda x: x.rel):
            rel = PurePosixPath(e.rel)
            if not e.rel or e.rel in self._seen or not folder.in_search(root_name, rel.parts):
                continue
            if rel.name == "trainer_state.json":
                # An HF output folder and its checkpoint-N copies are one run: the first found stays it.
                key = folder.without_checkpoints(rel)
                if key in self._states:
                    continue
                copies = [x for x in entries if _state_of(x.rel) == key]
                newest = max(copies, key=lambda x: x.mtime)
                self._states[key] = newest.rel
                self._seen.add(newest.rel)
                out.append(self._ref(newest.rel))
                continue
            if not await self._is_run(e):
                continue
            self._seen.add(e.rel)
            out.append(self._ref(e.rel))
            if len(self._seen) >= folder.MAX_RUNS:
                break
        return out

    async def _is_run(self, e: Entry) -> bool:
        kind = folder.name_kind(PurePosixPath(e.rel).name)
        if kind != folder.SNIFF:
            return kind == folder.RUN
        if self._judged.get(e.rel) == (e.mtime, e.size):
            return False
        head = await self._head(e.rel)
        if folder.looks_like_metrics(head, PurePosixPath(e.rel).name):
            return True
        self._judged[e.rel] = (e.mtime, e.size)
        return False

    async def _head(self, rel: str) -> bytes:
        from monitor.sources.ssh_remote import shell_path

        pool: Any = self._ctx.ssh_pool()
        cmd = f"head -c {folder.SNIFF_BYTES} -- {shell_path(self._path(rel))}"
        try:
            res = await pool.run(self.ssh, cmd, timeout=LIST_TIMEOUT)
        except RunwatchError:
            return b""
        return str(res.stdout).encode("utf-8", "replace")

    def _path(self, rel: str) -> str:
        return self.ssh.path.rstrip("/") + "/" + rel

    def _ref(self, rel: str) -> RunRef:
        from monitor.targets import SSH, Target

        ssh = replace(self.ssh, path=self._path(rel))
        run_id = str(ssh)
        root = PurePosixPath(self.ssh.path.rstrip("/")).name or self.ssh.path
        name = f"{self.named}/{rel}" if self.named else f"{self.ssh.host}:{root}/{rel}"
        return RunRef(run_id, Target(run_id, SSH, ssh=ssh), name, feed_kind(rel), self.target.raw)


async def _connected(host: Any) -> None:
    """Wait for the host's connection; `TargetError` with the host's state as soon as a try has
    failed (host down, unknown name, refused key), or after `CONNECT_WAIT` s. The pool keeps
    reconnecting meanwhile; the next listing tries again."""
    from monitor.errors import TargetError

    deadline = time.monotonic() + CONNECT_WAIT
    while host.connection is None:
        st = host.state
        if st.error or time.monotonic() > deadline:
            raise TargetError(st.describe())
        await asyncio.sleep(0.05)


def _state_of(rel: str) -> PurePosixPath | None:
    """The run folder of a `trainer_state.json` (see `folder.without_checkpoints`), else None."""
    p = PurePosixPath(rel)
    return folder.without_checkpoints(p) if p.name == "trainer_state.json" else None
