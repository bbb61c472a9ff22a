"""A run's likely causes in the detail view: the top root-cause hypotheses with confidence and evidence."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from monitor.analysis import RunAnalysis
from monitor.diagnosis import Confidence, Hypothesis, diagnose_analysis
from tui.style import var_style

#: Hypotheses shown (the rest are in `check --json`, reports and evidence bundles).
SHOWN = 3
_VARIABLE = {Confidence.HIGH: "verdict-bad", Confidence.MEDIUM: "verdict-unsure", Confidence.LOW: "muted"}


class DiagnosisList(Static):
    """Likely causes, surest first; recomputed only when the run's data or findings changed."""

    DEFAULT_CSS = """
    DiagnosisList {
        height: auto;
        padding: 0 1;
        border-bottom: dashed $panel-lighten-2;
    }
    DiagnosisList.-empty {
        display: none;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self._key: object = None
        self.hypotheses: tuple[Hypothesis, ...] = ()
        """What is shown now (for tests and the other views)."""

    def show(self, analysis: RunAnalysis | None, key: object) -> None:
        """Diagnose `analysis` when `key` (run, data version, findings) changed, and draw the result."""
        if key == self._key and self.app.theme == getattr(self, "_theme", None):
            return
        self._key = key
        self._theme = self.app.theme
        self.hypotheses = diagnose_analysis(analysis) if analysis is not None else ()
        self.set_class(not self.hypotheses, "-empty")
        t = Text()
        t.append("likely causes (suspicions, not certainties)", style=var_style(self.app, "muted"))
        for h in self.hypotheses[:SHOWN]:
            t.append("\n")
            t.append(f"[{h.confidence}] ", style=var_style(self.app, _VARIABLE[h.confidence], bold=True))
            t.append(h.cause, style="bold")
            t.append(f": {h.evidence}\n  fix: {h.fix}", style=var_style(self.app, "muted"))
        self.update(t)
