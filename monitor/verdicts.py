"""Verdict glyphs and words, defined once: what `check`, `watch` and the TUI show a person.

Always a glyph and a word, never colour alone. The shown verdict (`monitor.runstate.shown_verdict`)
is the judge's word, or `stale` / `unreadable` / `waiting` when the run is not being read now.
"""

from __future__ import annotations

from monitor.model import Verdict

GLYPHS: dict[str, str] = {
    "healthy": "✓",
    "unsure": "?",
    "bad": "✗",
    "stale": "~",
    "unreadable": "!",
    "waiting": "…",
    "error": "!",
}


def glyph(shown: str | Verdict) -> str:
    """The glyph of a shown verdict (`✓`, `?`, `✗`, `~`, `!`, `…`)."""
    return GLYPHS.get(str(shown), "?")


def badge(shown: str | Verdict) -> str:
    """Glyph and word: `✓ healthy`, `? unsure`, `✗ bad`, `~ stale`, `! unreadable`, `… waiting`."""
    return f"{glyph(shown)} {shown}"
