"""The suspected causes of a run's trouble (`monitor.diagnosis`), under its findings in the detail view.

Recomputed only when the run's data or findings changed; each hypothesis reads as one suspicion
with its confidence, the numbers behind it and what to try, all as literal text.
"""

from __future__ import annotations

from collections.abc import Hashable

from rich.text import Text
from textual.widgets import Static

from monitor.analysis import RunAnalysis
from monitor.outward import outward
from tui.style import var_style

SHOWN = 3
"""Hypotheses shown (the surest first); the evidence bundle and `check --json` hold them all."""
_CONFIDENCE_VARIABLE = {"high": "verdict-bad", "medium": "verdict-unsure", "low": "muted"}


class DiagnosisList(Static):
    """`why (suspected)`: the top hypotheses, or nothing at all when there is none."""

    DEFAULT_CSS = """
    DiagnosisList {
        height: auto;
        padding: 0 1;
        display: none;
    }
    DiagnosisList.-shown {
        display: block;
        border-top: dashed $panel-lighten-2;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self._key: Hashable = None

    def show(self, a: RunAnalysis | None, key: Hashable) -> None:
        """Diagnose the run when `key` (its data version and findings) changed since the last time."""
        key = (key, self.app.theme)
        if key == self._key:
            return
        self._key = key
        from monitor.diagnosis import diagnose_analysis  # first needed here, not for the first frame

        hypotheses = diagnose_analysis(a)[:SHOWN] if a is not None else ()
        self.set_class(bool(hypotheses), "-shown")
        if not hypotheses:
            return
        t = Text("why (suspected)", style="bold")
        for h in hypotheses:
            conf = str(h.confidence)
            t.append("\n")
            t.append(f"[{conf}] ", style=var_style(self.app, _CONFIDENCE_VARIABLE.get(conf, "muted"), bold=True))
            t.append(outward(h.cause), style="bold")
            t.append(f"\n  {outward(h.evidence)}", style=var_style(self.app, "muted"))
            t.append(f"\n  try: {outward(h.fix)}")
        self.update(t)
