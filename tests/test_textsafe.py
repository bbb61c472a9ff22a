"""The terminal sanitiser: escapes, controls and bidi overrides never reach a terminal raw."""

from __future__ import annotations

import asyncio
import io
import json
import math
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.actions.evidence import collect_evidence, write_bundle
from monitor.actions.runref import make_ref
from monitor.check import check_target
from monitor.config import Config, RunConfig
from monitor.textsafe import is_safe, safe_lines, safe_text
from monitor.watch import watch

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
        best = math.inf
        for _ in range(3):  # the best of three: a busy machine slows a run, it never speeds one up
            t0 = time.perf_counter()
            safe_text(text)
            best = min(best, time.perf_counter() - t0)
        return best

    small, big = cost(100_000), cost(1_000_000)
    assert big < 2.0
    assert big < 10 * small * 3 + 0.05  # 10x the input: about 10x the time, never 100x


# ---- through the outputs: check, watch, the evidence bundle --------------------------------------

HOSTILE = [OSC52, OSC0, CLEAR, "\u202e", "\u2066"]
RAW = ("\x1b", "\x07", "\x9b", "\x9d", "\u202e", "\u2066")


def _hostile_run(tmp_path: Path) -> tuple[Path, str]:
    """A run whose folder, file name, metric key and log lines carry escapes; it goes NaN."""
    folder = tmp_path / f"run{OSC52}{RLO}"
    folder.mkdir()
    log = folder / f"train{CLEAR}.jsonl"
    lines = [json.dumps({"step": s, "loss": 3.0 * math.exp(-s / 60) + 1.0, f"acc{OSC0}": 0.5}) for s in range(1, 120)]
    lines.insert(50, f"warning {OSC52} {OSC0} {CLEAR} {RLO}")
    lines += [json.dumps({"step": s, "loss": math.nan}) for s in range(120, 130)]
    log.write_text("\n".join(lines) + "\n")
    return log, f"name{OSC0}{RLO}"


def _raw(text: str) -> list[str]:
    return [c for c in RAW if c in text]


@pytest.mark.timeout(60)
def test_check_text_and_json_never_print_escapes_raw(tmp_path: Path) -> None:
    log, _ = _hostile_run(tmp_path)
    missing = tmp_path / f"gone{OSC52}.log"
    cli = [sys.executable, "-m", "tui.cli", "check"]
    text = subprocess.run([*cli, str(log), str(missing)], capture_output=True, text=True, timeout=60)
    assert text.returncode == 3
    assert "✗ bad" in text.stdout and "␛]52;c;cHduZWQ=␇" in text.stdout  # the name, shown visibly
    assert _raw(text.stdout) == [] and _raw(text.stderr) == []
    js = subprocess.run([*cli, str(log), "--json"], capture_output=True, text=True, timeout=60)
    assert _raw(js.stdout) == []
    (run,) = json.loads(js.stdout)["runs"]
    assert run["target"] == str(log)  # exact JSON: the target as given, escapes escaped by JSON


@pytest.mark.timeout(60)
def test_watch_text_and_jsonl_never_print_escapes_raw(tmp_path: Path) -> None:
    log, name = _hostile_run(tmp_path)
    config = Config(runs=(RunConfig(target=str(log), name=name),), evidence_dir=tmp_path / "ev")
    for jsonl in (False, True):
        out = io.StringIO()

        async def go(out: io.StringIO = out, jsonl: bool = jsonl) -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(watch([str(log)], config, out=out, stop=stop, jsonl=jsonl, on_bad="evidence"))
            deadline = time.monotonic() + 30
            while "evidence" not in out.getvalue() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            stop.set()
            await task

        asyncio.run(go())
        assert "evidence" in out.getvalue()
        assert _raw(out.getvalue()) == [], out.getvalue()
        if not jsonl:
            assert "name␛]0;pwned title␛\\<U+202E>" in out.getvalue()


@pytest.mark.timeout(60)
def test_evidence_summary_and_every_file_hold_no_raw_escape(tmp_path: Path) -> None:
    log, name = _hostile_run(tmp_path)
    config = Config(runs=(RunConfig(target=str(log), name=name),))
    analysis = check_target(str(log), config)
    ref = make_ref(str(log), analysis, config.run_for(str(log)))
    svg = f"<svg><text>{name}&#160;{OSC52}</text></svg>"
    bundle = write_bundle(collect_evidence(ref, now=time.time(), why=f"why {CLEAR}", screenshot_svg=svg), tmp_path)
    summary = (bundle.path / "summary.md").read_text()
    assert "name␛]0;pwned title␛\\<U+202E>" in summary and "✗ bad" in summary
    assert "warning ␛]52;c;cHduZWQ=␇" in (bundle.path / "log_tail.txt").read_text()
    for f in bundle.path.iterdir():
        assert _raw(f.read_text()) == [], f.name
    assert _raw(bundle.path.name) == []


@pytest.mark.timeout(60)
def test_hub_snapshots_and_the_tui_info_pane_show_paths_and_errors_safely(tmp_path: Path) -> None:
    from monitor.hub import Hub
    from tui.runinfo import info_sections

    log, _ = _hostile_run(tmp_path)
    missing = tmp_path / f"gone{OSC0}.log"

    async def go() -> list[object]:
        async with Hub([str(log), str(missing)], gpu=False, poll=0.05) as hub:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                runs = hub.snapshot().runs
                if len(runs) == 2 and all(r.last_step or r.source_error for r in runs):
                    break
                await asyncio.sleep(0.05)
            runs = hub.snapshot().runs
            return [*runs, info_sections(runs[0], hub.analysis(runs[0].id))]

    *runs, sections = asyncio.run(go())
    for r in runs:
        for text in (r.name, r.target, r.source, r.source_error or ""):
            assert _raw(text) == [], text
    assert any("␛]0;" in (r.source_error or "") for r in runs)
    shown = " ".join(f"{k} {v}" for _, rows in sections for k, v in rows)  # type: ignore[attr-defined]
    assert "path" in shown and _raw(shown) == []
