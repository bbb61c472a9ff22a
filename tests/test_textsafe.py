"""The terminal sanitiser: escapes, controls and bidi overrides never reach a terminal raw."""

from __future__ import annotations

import time
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.textsafe import is_safe, safe_lines, safe_text

OSC52 = "\x1b]52;c;cHduZWQ=\x07"
OSC0 = "\x1b]0;pwned title\x1b\\"
CLEAR = "\x1b[2J\x1b[H"
RLO = "\u202egpj.exe"
DCS = "\x1bP1$r0m\x1b\\"
APC = "\x1b_hidden\x1b\\"

CASES = [
    ("plain text, tabs\tkept", "plain text, tabs\tkept"),
    (f"run{OSC52}name", "run␛]52;c;cHduZWQ=␇name"),
    (f"x{OSC0}", "x␛]0;pwned title␛\\"),
    (f"{CLEAR}loss 2.3", "␛[2J␛[Hloss 2.3"),
    (f"file{RLO}", "file<U+202E>gpj.exe"),
    (DCS, "␛P1$r0m␛\\"),
    (APC, "␛_hidden␛\\"),
    ("\x1b[1;31mERROR\x1b[0m colour only", "ERROR colour only"),
    ("csi \x9b2J and osc \x9d0;t\x9c", "csi ␛[2J and osc ␛]0;t␛\\"),
    ("nul\x00 bell\x07 del\x7f", "nul␀ bell␇ del␡"),
    ("two\nlines\r", "two␊lines␍"),
    ("bad \udcff byte", "bad \ufffd byte"),
    ("isolates \u2066x\u2069 marks \u200f", "isolates <U+2066>x<U+2069> marks <U+200F>"),
    ("ünïcödé 日本 ✓ ✗ — fine", "ünïcödé 日本 ✓ ✗ — fine"),
]


@pytest.mark.parametrize(("raw", "want"), CASES)
def test_safe_text_shows_escapes_visibly(raw: str, want: str) -> None:
    assert safe_text(raw) == want
    assert is_safe(want)


def test_newlines_kept_only_when_asked_and_crlf_becomes_lf() -> None:
    assert safe_text("a\r\nb\nc\x1b[2J", keep_newlines=True) == "a\nb\nc␛[2J"
    assert safe_lines(["a\x1b]0;t\x07", "b"]) == ["a␛]0;t␇", "b"]


def _has_control(text: str, keep_newlines: bool = False) -> bool:
    for ch in text:
        if ch == "\t" or (keep_newlines and ch == "\n"):
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cs") or ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029":
            return True
    return False


# Text that looks like what attackers and unlucky logs send: escapes, controls, bidi, surrogates.
_ATOMS = st.sampled_from(
    ["\x1b", "[", "]", "0", ";", "m", "2J", "\x07", "\x9b", "\x9d", "\u202e", "\u2066", "\r", "\n"]
)
hostile = st.lists(st.one_of(st.text(max_size=8), _ATOMS), max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), hostile), st.booleans())
def test_sanitiser_never_emits_a_control_and_is_idempotent(text: str, keep: bool) -> None:
    once = safe_text(text, keep_newlines=keep)
    assert not _has_control(once, keep)
    assert "\x1b" not in once
    assert safe_text(once, keep_newlines=keep) == once
    once.encode("utf-8")  # printable anywhere: no lone surrogate survives


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Cf", "Zl", "Zp", "Zs")), max_size=50))
def test_printable_text_is_unchanged(text: str) -> None:
    assert safe_text(text) == text


@pytest.mark.parametrize("piece", ["\x1b[", "\x1b[1;", "\x1b]52;c;", "\u202e", "a", "\x00"])
def test_sanitiser_is_linear_on_long_lines(piece: str) -> None:
    def cost(n: int) -> float:
        text = piece * (n // len(piece))
        t0 = time.perf_counter()
        safe_text(text)
        return time.perf_counter() - t0

    small, big = cost(100_000), cost(1_000_000)
    assert big < 0.5
    assert big < 10 * small * 3 + 0.05  # 10x the input: about 10x the time, never 100x
