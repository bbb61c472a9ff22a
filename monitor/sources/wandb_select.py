"""Which runs of a W&B project a target names: the newest N, of some states, carrying some tags.

A selection travels inside the target string, so a target means the same thing in `check`, `report`,
`watch`, the TUI and a targets file:

    wandb://ENTITY/PROJECT?last=20&state=finished,crashed&tag=sweep1

`--last N`, `--state S` and `--tag T` on the command line (`add_selection_args`) add the same query
to every project target that has none (`apply_selection`). A selected project is listed once, with
W&B's `Runs` query (`filters` as MongoDB-style JSON, newest first, at most `last` runs, never more
than `MAX_SELECT`); the runs it lists are then read like run targets. A project without a selection
keeps its old meaning: its running runs, watched as they come and go.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from monitor.errors import RunwatchError, TargetError

#: The most runs one selection lists (one page of W&B's `Runs` query).
MAX_SELECT = 100
#: Runs a selection lists when it does not say `last`.
DEFAULT_LAST = 20
#: W&B's run states (the same list as `wandb_api.RUN_STATES`, kept here to avoid an import cycle).
STATES = ("running", "pending", "finished", "failed", "crashed", "killed", "preempting", "preempted")
#: The order W&B sorts a selection in: newest first, so `last` keeps the newest runs.
ORDER = "-created_at"


@dataclass(frozen=True, slots=True)
class Selection:
    """The newest `last` runs of a project whose state is one of `states` (any when empty) and that
    carry every tag in `tags`."""

    last: int = DEFAULT_LAST
    states: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def filters(self) -> dict[str, Any]:
        """W&B's run filter for this selection (the `filters` JSONString of the `Runs` query)."""
        parts: list[dict[str, Any]] = []
        if len(self.states) == 1:
            parts.append({"state": self.states[0]})
        elif self.states:
            parts.append({"state": {"$in": list(self.states)}})
        parts += [{"tags": {"$in": [t]}} for t in self.tags]
        if not parts:
            return {}
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def filters_json(self) -> str:
        return json.dumps(self.filters(), sort_keys=True)

    def query(self) -> str:
        """The query string that spells this selection in a target (`last=5&state=finished&tag=a`)."""
        pairs: list[tuple[str, str]] = [("last", str(self.last))]
        if self.states:
            pairs.append(("state", ",".join(self.states)))
        pairs += [("tag", t) for t in self.tags]
        return urlencode(pairs, safe=",/:")

    def describe(self) -> str:
        """`the newest 20 finished runs tagged sweep1`, for messages."""
        states = "/".join(self.states) + " " if self.states else ""
        tags = f" tagged {', '.join(self.tags)}" if self.tags else ""
        return f"the newest {self.last} {states}runs{tags}"


def _states(values: Iterable[str], where: str) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        for s in value.split(","):
            s = s.strip().lower()
            if not s:
                continue
            if s not in STATES:
                raise TargetError(f"{where}: unknown run state {s!r} (one of: {', '.join(STATES)})")
            if s not in out:
                out.append(s)
    return tuple(out)


def _tags(values: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        for t in value.split(","):
            if t.strip() and t.strip() not in out:
                out.append(t.strip())
    return tuple(out)


def _last(value: str | int, where: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise TargetError(f"{where}: last={value!r} is not a whole number") from None
    if not 1 <= n <= MAX_SELECT:
        raise TargetError(f"{where}: last={n}: select between 1 and {MAX_SELECT} runs")
    return n


def parse_selection(query: str, where: str) -> Selection:
    """A `Selection` from a target's query string; raises `TargetError` naming `where`."""
    last: str = str(DEFAULT_LAST)
    states: list[str] = []
    tags: list[str] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "last":
            last = value
        elif key == "state":
            states.append(value)
        elif key == "tag":
            tags.append(value)
        else:
            raise TargetError(f"{where}: unknown selection {key!r} (use last=N, state=S, tag=T)")
    return Selection(_last(last, where), _states(states, where), _tags(tags))


def add_selection_args(parser: argparse.ArgumentParser, default_note: str) -> None:
    """`--last`, `--state` and `--tag`, which select runs of the W&B project targets."""
    g = parser.add_argument_group("W&B project selection (applies to wandb://ENTITY/PROJECT targets)")
    g.add_argument("--last", type=int, metavar="N", help=f"the newest N runs (at most {MAX_SELECT}); {default_note}")
    g.add_argument(
        "--state",
        action="append",
        metavar="STATE",
        help="only runs in this state (repeat or comma-separate: finished,crashed)",
    )
    g.add_argument("--tag", action="append", metavar="TAG", help="only runs carrying this tag (repeat: all of them)")


def apply_selection(
    targets: Sequence[str],
    last: int | None = None,
    states: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    *,
    default: bool = False,
) -> list[str]:
    """`targets` with the selection added to each W&B project target that has none.

    With no flag given, targets are unchanged unless `default` (then the projects get the default
    selection: the newest `DEFAULT_LAST` runs of any state). Bad flag values, or flags without a
    project target to apply to, raise `RunwatchError` ("Bad selection").
    """
    from monitor.sources.wandb_api import parse_wandb_target

    given = last is not None or bool(states) or bool(tags)
    if not given and not default:
        return list(targets)
    try:
        sel = Selection(
            _last(last if last is not None else DEFAULT_LAST, "--last"),
            _states(states or (), "--state"),
            _tags(tags or ()),
        )
    except TargetError as e:
        raise RunwatchError(e.message, title="Bad selection") from None
    out, applied = [], False
    for raw in targets:
        try:
            wt = parse_wandb_target(raw)
        except TargetError:
            wt = None  # malformed: reported where the target is opened
        if wt is not None and wt.run_id is None:
            applied = True
            if wt.select is None:
                raw = f"{raw.rstrip('/')}?{sel.query()}"
        out.append(raw)
    if given and not applied:
        raise RunwatchError(
            "--last, --state and --tag select runs of a W&B project: name one as wandb://ENTITY/PROJECT",
            title="Bad selection",
        )
    return out
