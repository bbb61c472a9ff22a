"""The one-line summary above the run table: counts per verdict and the worst finding."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from monitor.hub import HubSnapshot
from tui import format as fmt
from tui.style import var_style


class SummaryBar(Static):
    """`runwatch · 7 runs · ✓ 3 healthy · ? 2 unsure · ✗ 1 bad │ worst: …`."""

    DEFAULT_CSS = """
    SummaryBar {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $foreground;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def show(self, snap: HubSnapshot | None, filter_text: str = "", sort_text: str = "") -> None:
        """Redraw from a snapshot (None: nothing has arrived yet); only when the text changed."""
        text = self.compose_text(snap, filter_text, sort_text)
        key = (text.plain, self.app.theme)
        if key != getattr(self, "_shown", None):
            self._shown = key
            self.update(text, layout=False)

    def compose_text(self, snap: HubSnapshot | None, filter_text: str, sort_text: str = "") -> Text:
        app = self.app
        t = Text("runwatch", style="bold")
        if snap is None:
            t.append(" · waiting for the first snapshot…")
            return t
        kinds = [fmt.badge_kind(r) for r in snap.runs]
        t.append(f" · {len(snap.runs)} run{'s' if len(snap.runs) != 1 else ''} · ")
        for glyph, kind, word in (("✓", "healthy", "healthy"), ("?", "unsure", "unsure"), ("✗", "bad", "bad")):
            t.append(f"{glyph} {kinds.count(kind)} {word}", style=var_style(app, f"verdict-{kind}", bold=kind == "bad"))
            t.append(" · ")
        stale = kinds.count("stale") + kinds.count("error")
        t.append(f"~ {stale} stale", style=var_style(app, "verdict-stale"))
        if kinds.count("waiting"):
            t.append(f" · … {kinds.count('waiting')} waiting", style=var_style(app, "verdict-stale"))
        if filter_text:
            t.append(f" · filter: {filter_text!r}", style="italic")
        if sort_text:
            t.append(f" · {sort_text}", style="italic")
        worst = fmt.worst_finding(snap)
        if worst is not None:
            run, f = worst
            t.append("  │  worst: ", style=var_style(app, "muted"))
            t.append(f"{run.name}: ", style="bold")
            sev = {"bad": "verdict-bad", "warn": "verdict-unsure"}.get(str(f.severity), "muted")
            t.append(
                f"{f.kind} at step {fmt.step_text(f.onset_step)} — {fmt.live_message(f, run.last_update, snap.time)}",
                style=var_style(app, sev),
            )
        return t
