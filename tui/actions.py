"""The one registry of actions: keys, footer labels and the help screen all come from here.

Each action has an id; `[keys]` in the config maps ids to other keys (`stop = "ctrl+s"`), applied
through Textual's keymap so bindings, footer and help never drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from textual.binding import Binding, BindingType

from monitor.errors import ConfigError

APP = "app"
MAIN = "main"
DETAIL = "detail"
COMPARE = "compare"
MODAL = "modal"
DIALOG = "dialog"

SCOPE_TITLES = {
    APP: "Everywhere",
    MAIN: "Run table",
    DETAIL: "Run detail",
    COMPARE: "Compare",
    DIALOG: "Stop dialog",
    MODAL: "Help",
}


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One thing a person can do: its id, default key, footer label, help line and where it applies."""

    id: str
    key: str
    label: str
    help: str
    scopes: tuple[str, ...]
    footer: tuple[str, ...] | None = None
    """Scopes whose footer shows it (None: all its scopes); every action is always in the help."""
    display: str | None = None
    priority: bool = False

    def key_for(self, keymap: Mapping[str, str]) -> str:
        """The key bound after the config's `[keys]`."""
        return keymap.get(self.id, self.key)

    def display_for(self, keymap: Mapping[str, str]) -> str:
        """The key as a person reads it."""
        if self.id in keymap:
            return keymap[self.id]
        return self.display or self.key


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("back", "escape", "Back", "close this view", (DETAIL, COMPARE, MODAL), display="esc"),
    ActionSpec("open_detail", "enter", "Detail", "open the selected run's detail", (MAIN,), display="⏎"),
    ActionSpec(
        "compare", "c", "Compare", "compare the marked runs (or all shown): all ranked, the best six plotted", (MAIN,)
    ),
    ActionSpec("mark", "space", "Mark", "mark or unmark a run for comparison", (MAIN,), footer=()),
    ActionSpec("sort", "o", "Sort", "sort by the next column (verdict, run, state, step, speed, loss, age)", (MAIN,)),
    ActionSpec("sort_reverse", "O", "Reverse", "reverse the sort order", (MAIN,), footer=(), display="O"),
    ActionSpec("clear_filter", "escape", "Clear filter", "clear the run filter", (MAIN,), footer=(), display="esc"),
    ActionSpec("notifications", "n", "Notices", "show the notification log", (MAIN, COMPARE), footer=()),
    ActionSpec("metric", "k", "Metric", "cycle the compared metric: loss / eval / LR / grad norm", (COMPARE,)),
    ActionSpec("log_scale", "l", "Log y", "toggle a logarithmic y axis", (DETAIL, COMPARE)),
    ActionSpec(
        "smoothing", "m", "Smooth", "EMA smoothing on/off (the weight is shown; + and - change it)", (DETAIL, COMPARE)
    ),
    ActionSpec(
        "ema_up", "plus", "EMA+", "heavier smoothing (EMA weight up)", (DETAIL, COMPARE), footer=(), display="+"
    ),
    ActionSpec(
        "ema_down", "minus", "EMA-", "lighter smoothing (EMA weight down)", (DETAIL, COMPARE), footer=(), display="-"
    ),
    ActionSpec(
        "x_axis",
        "x",
        "X axis",
        "cycle the x axis: step / epoch / tokens (where the run logs them) / wall time / relative time"
        " (compare: also % of each run)",
        (DETAIL, COMPARE),
    ),
    ActionSpec("window", "w", "Window", "cycle the window: all / last 1000 / last 200 steps", (DETAIL, COMPARE)),
    ActionSpec(
        "unzoom",
        "z",
        "Unzoom",
        "show the whole run again after the mouse wheel zoomed the x range (wheel over a plot: zoom in/out)",
        (DETAIL, COMPARE),
    ),
    ActionSpec(
        "filter", "slash", "Filter", "filter runs: words in name, source, state or verdict", (MAIN,), display="/"
    ),
    ActionSpec(
        "pick_metrics",
        "slash",
        "Metrics",
        "choose the metrics plotted: substring or glob (esc: all)",
        (DETAIL,),
        display="/",
    ),
    ActionSpec("log_filter", "L", "Log filter", "filter the log lines", (DETAIL,), footer=(), display="L"),
    ActionSpec("full_pane", "f", "Full", "show the selected plot pane full-screen (again: the grid)", (DETAIL,)),
    ActionSpec("next_plot", "g", "Pane", "select the next plot pane (pages through panes that do not fit)", (DETAIL,)),
    ActionSpec("info", "i", "Config", "show the run's config and summary instead of the log", (DETAIL,)),
    ActionSpec("next_run", "n", "Next", "next run", (DETAIL,), footer=()),
    ActionSpec("prev_run", "p", "Prev", "previous run", (DETAIL,), footer=()),
    ActionSpec("stop", "s", "Stop", "stop the selected run (saves evidence first)", (MAIN, DETAIL), footer=(MAIN,)),
    ActionSpec("escalate", "e", "Escalate", "ask the reviewer about the selected run", (MAIN, DETAIL), footer=(MAIN,)),
    ActionSpec(
        "evidence", "b", "Evidence", "save an evidence bundle of the selected run", (MAIN, DETAIL), footer=(MAIN,)
    ),
    ActionSpec("confirm", "y", "Stop", "confirm: save evidence, then stop the run as shown", (DIALOG,)),
    ActionSpec("cancel", "n,escape", "Cancel", "cancel (the default): nothing is stopped", (DIALOG,), display="n/esc"),
    ActionSpec("refresh", "r", "Refresh", "re-judge every run and redraw now", (APP,), footer=()),
    ActionSpec("theme", "t", "Theme", "cycle themes: dark / light / high contrast", (APP,), footer=()),
    ActionSpec("help", "question_mark", "Help", "show this help (every key)", (APP,), display="?"),
    ActionSpec("quit", "q", "Quit", "quit (stops the demo's simulators)", (APP,)),
)

BY_ID: dict[str, ActionSpec] = {a.id: a for a in ACTIONS}


def bindings(scope: str) -> list[BindingType]:
    """Textual bindings for one scope, each with the action's id so the keymap can remap it."""
    out: list[BindingType] = []
    for a in ACTIONS:
        if scope in a.scopes:
            out.append(
                Binding(
                    a.key,
                    a.id,
                    a.label,
                    show=a.footer is None or scope in a.footer,
                    key_display=a.display,
                    priority=a.priority,
                    id=a.id,
                    tooltip=a.help,
                )
            )
    return out


def check_keymap(keys: Mapping[str, str]) -> None:
    """Reject `[keys]` entries that name no action (a typo would silently do nothing)."""
    for action_id, key in keys.items():
        if action_id not in BY_ID:
            raise ConfigError(f"keys.{action_id}: unknown action (expected one of: {', '.join(sorted(BY_ID))})")
        if not key.strip():
            raise ConfigError(f"keys.{action_id}: empty key")


def help_rows(keymap: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(scope title, key, help) for the help screen, grouped by scope."""
    rows = []
    for scope, title in SCOPE_TITLES.items():
        for a in ACTIONS:
            if scope in a.scopes and (scope != MODAL or len(a.scopes) == 1):
                rows.append((title, a.display_for(keymap), a.help))
    return rows
