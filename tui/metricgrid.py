"""Which plot panes a run's detail view shows: the metrics it actually logs, grouped and ordered.

Pure (names in, panes out): train and eval versions of one loss share a pane (`train/box_loss` with
`val/box_loss`), every learning rate shares one, every grad norm one; each other metric gets its
own. The headline loss comes first, then other losses, eval metrics, LR, grad norm and the rest
(reward, KL, entropy, throughput). Step-like keys (`epoch`, `_step`, `train/global_step`) are axes,
not panes. A picker pattern (glob or substring) narrows what is shown.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from detectors.layers import layer_of
from monitor.model import Role
from tui.tokenaxis import is_token_counter

#: Keys that count steps or time: an x axis, never a pane of their own.
AXIS_KEYS = frozenset(
    {
        "step",
        "steps",
        "global_step",
        "train/global_step",
        "trainer/global_step",
        "iteration",
        "iter",
        "epoch",
        "train/epoch",
        "trainer/epoch",
        "samples",
        "consumed_samples",
        "tokens",
    }
)
_HIDDEN_PREFIXES = ("_", "system/", "gpu.", "summary/")
_SPLIT_PREFIX = re.compile(r"^(?:train|training|trn|eval|evaluation|val|valid|validation|dev|test)(?:[/_ .\-]+)", re.I)
_SPLIT_SUFFIX = re.compile(r"(?:[/_ .\-]+)(?:train|training|eval|val|valid|validation|dev|test)$", re.I)
_ORDER = {
    Role.TRAIN_LOSS: 1,
    Role.EVAL_LOSS: 1,
    Role.EVAL_UP: 2,
    Role.EVAL_DOWN: 2,
    Role.LR: 3,
    Role.GRAD_NORM: 4,
    Role.LOSS_SCALE: 5,
    Role.OTHER: 6,
}


@dataclass(frozen=True, slots=True)
class Pane:
    """One plot pane: its title and the metric keys drawn in it (first key first)."""

    title: str
    keys: tuple[str, ...]
    role: Role
    headline: bool = False
    """The run's main loss pane (it carries every finding's marker)."""
    layers: bool = False
    """The per-layer gradients, drawn as one heat map (layers × time), not as lines."""

    def short(self, key: str) -> str:
        """A key as its legend names it inside this pane: `val/box_loss` → `val` under `box_loss`."""
        s = stem(key)
        if len(self.keys) > 1 and s == stem(self.keys[0]) and s in key.lower():
            i = key.lower().index(s)
            rest = (key[:i] + key[i + len(s) :]).strip("/_ .-")
            return rest or key
        return key


def stem(key: str) -> str:
    """A key without its train/eval part: `val/box_loss` → `box_loss`, `eval_loss` → `loss`."""
    k = key.strip()
    s = _SPLIT_SUFFIX.sub("", _SPLIT_PREFIX.sub("", k))
    return (s or k).lower()


_LR_GROUP = re.compile(r"(?:^|[/_])lr\d*$|learning[_ ]rate", re.I)
_EVAL_PREFIXES = ("metrics/", "eval", "val", "valid", "test", "dev")


def display_role(key: str, role: Role) -> Role:
    """The role for grouping and order: every param group's LR (`x/lr1`) is an LR, `metrics/…` an eval metric.

    The detectors watch one LR and leave the others be; the plots show them all in one pane.
    """
    if role is Role.OTHER and _LR_GROUP.search(key):
        return Role.LR
    if role is Role.OTHER and key.lower().startswith(_EVAL_PREFIXES):
        return Role.EVAL_UP
    return role


def is_axis(key: str, step_key: str = "") -> bool:
    """Whether a key is a step/time axis or bookkeeping rather than a metric to plot."""
    k = key.strip().lower()
    return (
        k == step_key.lower()
        or k in AXIS_KEYS
        or k.startswith(_HIDDEN_PREFIXES)
        or "runtime" in k
        or is_token_counter(k)
    )


def matches(key: str, pattern: str) -> bool:
    """The picker's test: a glob when the pattern has `*?[`, else a case-insensitive substring."""
    p = pattern.strip().lower()
    if not p:
        return True
    k = key.lower()
    if any(c in p for c in "*?["):
        return fnmatch.fnmatchcase(k, p)
    return all(word in k for word in p.split())


def panes(
    keys: Iterable[str],
    role_of: Callable[[str], Role],
    *,
    step_key: str = "",
    primary_loss: str | None = None,
    primary_eval: str | None = None,
    pattern: str = "",
) -> list[Pane]:
    """The panes for these metric keys, most important first."""
    shown = [k for k in keys if not is_axis(k, step_key) and matches(k, pattern)]
    groups: dict[tuple[str, str], list[str]] = {}
    roles: dict[tuple[str, str], Role] = {}
    head_stem = stem(primary_loss) if primary_loss else None
    losses = (Role.TRAIN_LOSS, Role.EVAL_LOSS)
    for k in shown:
        role = display_role(k, role_of(k))
        if layer_of(k, role_of(k)) is not None:
            gid, role = ("layers", ""), Role.GRAD_NORM
        elif role is Role.LR:
            gid = ("lr", "")
        elif role is Role.GRAD_NORM:
            gid = ("grad", "")
        elif role in losses and (k in (primary_loss, primary_eval) or stem(k) == head_stem):
            gid = ("loss", "")
        else:
            gid = ("metric", stem(k))
        groups.setdefault(gid, []).append(k)
        # A pane of train and eval loss orders as a loss; a loss beats an eval metric of the same stem.
        roles[gid] = min(roles.get(gid, role), role, key=lambda r: _ORDER[r])
    out = []
    for gid, members in groups.items():
        members.sort(key=lambda k: (k != primary_loss, role_of(k) is not Role.TRAIN_LOSS, len(k), k))
        if gid == ("lr", ""):
            members.sort()
        head = gid == ("loss", "")
        out.append(Pane(_title(gid, members), tuple(members), roles[gid], head, layers=gid == ("layers", "")))
    # The layer heat map comes right after the run's grad norm.
    out.sort(key=lambda p: (not p.headline, _ORDER[p.role], p.layers, p.title))
    return out


def _title(gid: tuple[str, str], members: Sequence[str]) -> str:
    kind, s = gid
    if kind == "lr":
        return "learning rate"
    if kind == "grad":
        return "grad norm"
    if kind == "layers":
        return "layer gradients"
    if kind == "loss":
        return stem(members[0])
    return members[0] if len(members) == 1 else s


@dataclass(frozen=True, slots=True)
class GridShape:
    """How panes are laid out: columns, rows, how many are shown and the first pane's column span."""

    columns: int
    rows: int
    shown: int
    first_span: int


#: A pane narrower or shorter than this is unreadable; fewer panes are shown instead.
MIN_PANE_WIDTH = 38
MIN_PANE_HEIGHT = 10


def grid_shape(n: int, width: int, height: int) -> GridShape:
    """Fit `n` panes into `width`×`height` cells: as many as stay readable, the first one largest."""
    if n <= 0:
        return GridShape(1, 1, 0, 1)
    max_cols = max(1, width // MIN_PANE_WIDTH)
    max_rows = max(1, height // MIN_PANE_HEIGHT)
    shown = min(n, max_cols * max_rows)
    cols = min(max_cols, shown)
    # Prefer fewer, wider columns while the rows still fit (a plot reads better wide than tall).
    while cols > 1 and math.ceil(shown / (cols - 1)) <= max_rows:
        cols -= 1
    rows = math.ceil(shown / cols)
    return GridShape(cols, rows, shown, 1 + (rows * cols - shown))
