"""The findings of one run: one line each, with the step it began, worst first; cleared ones dimmed."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from monitor.model import Finding
from tui import format as fmt
from tui.style import SEVERITY_VARIABLE, var_style


def ordered(findings: Sequence[Finding]) -> list[Finding]:
    """Active before cleared, then worst severity, then latest."""
    return sorted(findings, key=lambda f: (not f.active, -int(f.severity), -f.onset_step))


class FindingsList(Static):
    """Findings as lines; shows "no findings" when the detectors have nothing to say."""

    DEFAULT_CSS = """
    FindingsList {
        height: auto;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self._shown: object = None
        self._theme = ""

    def show(
        self,
        findings: Sequence[Finding],
        *,
        force: bool = False,
        last_update: float | None = None,
        now: float | None = None,
    ) -> None:
        """Show these findings; a stall's age counts up from `last_update` to `now`."""
        lines = [fmt.finding_line(f, last_update, now) for f in ordered(findings)]
        key = (tuple(findings), tuple(lines))
        if not force and key == self._shown and self._theme == self.app.theme:
            return
        self._shown = key
        self._theme = self.app.theme
        if not findings:
            self.update(Text("✓ no findings: nothing unusual so far", style=var_style(self.app, "verdict-healthy")))
            return
        t = Text()
        for i, (f, line) in enumerate(zip(ordered(findings), lines, strict=True)):
            if i:
                t.append("\n")
            variable = SEVERITY_VARIABLE.get(str(f.severity), "muted") if f.active else "muted"
            bold = f.active and str(f.severity) == "bad"
            t.append(line, style=var_style(self.app, variable, bold=bold))
        self.update(t)
