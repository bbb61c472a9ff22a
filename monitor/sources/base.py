"""What every source shares: the `Chunk` of bytes, the `RunRef` of one run, the `Source` protocol,
and `open_sources`, the one place that looks at a target's kind.

A target string (`train.log`, a folder, `host:/path`, `wandb://e/p`, `-`) becomes an `Opened`: the
runs it names now (`runs`), a way to find runs that appear later (`discover`, for folders and W&B
run directories) and, for W&B API targets, the address the poller watches (`api`). Each run's
bytes come from one `Source` made by `open_source(ref, context, offset)` through `SOURCES`, a
registry keyed by where the bytes live: a new kind of source is a module here plus one line there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from monitor.errors import TargetError

if TYPE_CHECKING:
    from monitor.config import Config
    from monitor.sources.wandb_api import WandbTarget
    from monitor.targets import Target

#: What a run's bytes are, which decides its feed (see `monitor.feeds.make_feed`).
TEXT = "text"
WANDB = "wandb"
TFEVENTS = "tfevents"
API = "api"
"""Rows polled from the W&B API: no bytes, no feed."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes of a file starting at absolute byte `offset`, or a notice with no bytes.

    `reset` is "truncated" or "rotated" when the file restarted: then `offset` is 0 and a
    consumer drops any partial line it held. `problem` is a one-line reason the file cannot be
    read right now (it is still retried); data arriving later means it is readable again.
    """

    offset: int
    data: bytes
    reset: str = ""
    problem: str = ""

    @property
    def end(self) -> int:
        """The offset just past this chunk."""
        return self.offset + len(self.data)


def feed_kind(name: str) -> str:
    """What a file's bytes are, from its name: a `.wandb` log, a TensorBoard event file, or text."""
    base = name.rsplit("/", 1)[-1]
    if base.endswith(".wandb"):
        return WANDB
    if base.startswith("events.out.tfevents."):
        return TFEVENTS
    return TEXT


@dataclass(frozen=True, slots=True)
class RunRef:
    """One run a target names: an id unique in a session, where its bytes live and what they are."""

    id: str
    target: Target
    """Where the bytes live (a file, an SSH path, stdin, a W&B run)."""
    name: str
    feed: str
    """TEXT, WANDB, TFEVENTS or API."""
    origin: str
    """The target string the user gave (a folder for runs found in it): config tables match it."""

    @property
    def path(self) -> Path | None:
        return self.target.path


class Source(Protocol):
    """A run's bytes from an offset on, until closed: `async for chunk in source`."""

    def __aiter__(self) -> AsyncIterator[Chunk]: ...

    def close(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class FolderState:
    """Whether a folder could be listed: `error` says why not (it is listed again later), None
    once it could be (then its runs follow). Yielded by discoveries of remote folders on change."""

    origin: str
    error: str | None


class Discovery(Protocol):
    """Runs appearing under a target over time, each once: `async for ref in discovery`
    (a remote folder's discovery also yields a `FolderState` when listing it fails or works again)."""

    def __aiter__(self) -> AsyncIterator[RunRef | FolderState]: ...

    def close(self) -> Any: ...


@dataclass(slots=True)
class Opened:
    """What one target string opens to; see the module docstring."""

    target: Target
    runs: list[RunRef] = field(default_factory=list)
    discover: Callable[[float, SourceContext], Discovery] | None = None
    """Given a poll interval and the session's sources, something that yields runs found later
    (runs already listed included) and, for remote folders, `FolderState`s."""
    api: WandbTarget | None = None


@dataclass(slots=True)
class SourceContext:
    """What sources share in a session: the SSH pool (made on first use) and the poll interval."""

    ssh_pool: Callable[[], Any]
    poll: float = 0.1


def open_sources(raw: str, config: Config | None = None) -> Opened:
    """Classify `raw` and list its runs (a folder: every run inside it); raises TargetError."""
    from monitor.sources import folder
    from monitor.targets import FOLDER, SSH, STDIN, WANDB_API, WANDB_LOCAL, parse_target

    target = parse_target(raw)
    cfg = config.run_for(raw) if config is not None else None
    named = cfg.name if cfg is not None and cfg.name else None
    if target.kind == WANDB_API:
        assert target.wandb is not None
        opened = Opened(target, api=target.wandb)
        wt = target.wandb
        if wt.run_id:
            run_id = f"wandb://{wt.entity}/{wt.project}/{wt.run_id}"
            opened.runs.append(RunRef(run_id, target, named or wt.run_id, API, raw))
        return opened
    if target.kind == STDIN:
        return Opened(target, [RunRef(raw, target, named or "stdin", TEXT, raw)])
    if target.kind == SSH:
        assert target.ssh is not None
        from monitor.sources import ssh_folder

        if ssh_folder.is_remote_folder(target.ssh.path):
            return ssh_folder.open_remote_folder(target, named)
        return Opened(target, [RunRef(raw, target, named or short_name(target), feed_kind(target.ssh.path), raw)])
    if target.kind == WANDB_LOCAL:
        return folder.open_wandb_dir(target, named)
    if target.kind == FOLDER:
        return folder.open_folder(target, named)
    return Opened(target, [RunRef(raw, target, named or short_name(target), feed_kind(raw), raw)])


def short_name(t: Target) -> str:
    """A short run name from a target: the file's parent folder and name (host first over SSH)."""
    if t.ssh is not None:
        p = Path(t.ssh.path)
        return f"{t.ssh.host}:{p.parent.name}/{p.name}" if p.parent.name else f"{t.ssh.host}:{p.name}"
    if t.path is not None:
        p = t.path.resolve()
        return f"{p.parent.name}/{p.name}" if p.parent.name else p.name
    return t.raw


def _local(ref: RunRef, ctx: SourceContext, offset: int) -> Source:
    from monitor.sources.local import LocalTail

    assert ref.path is not None
    return LocalTail(ref.path, offset=offset, poll=ctx.poll)


def _ssh(ref: RunRef, ctx: SourceContext, offset: int) -> Source:
    assert ref.target.ssh is not None
    tail: Source = ctx.ssh_pool().follow(ref.target.ssh, offset=offset)
    return tail


def _stdin(_ref: RunRef, _ctx: SourceContext, _offset: int) -> Source:
    from monitor.sources.local import StdinSource

    return StdinSource()


#: Where a run's bytes live (`Target.kind`) -> the source that reads them from an offset.
SOURCES: dict[str, Callable[[RunRef, SourceContext, int], Source]] = {
    "file": _local,
    "wandb_local": _local,
    "ssh": _ssh,
    "stdin": _stdin,
}


def open_source(ref: RunRef, ctx: SourceContext, offset: int = 0) -> Source:
    """The source of one run's bytes, from `offset` on."""
    make = SOURCES.get(ref.target.kind)
    if make is None:
        raise TargetError(f"{ref.origin}: no byte source for a {ref.target.kind} target")
    return make(ref, ctx, offset)
