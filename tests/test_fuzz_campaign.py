"""bench/fuzz.py: the mutations it promises, and that it reports crashes, hangs and memory per parser."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest

from bench import fuzz
from monitor.model import Row
from monitor.parsers import PARSERS
from monitor.parsers.base import Parser

ROOT = Path(__file__).resolve().parents[1]


def test_every_mutation_is_deterministic_and_does_what_it_says() -> None:
    seed_line = '{"step": 12, "loss": 2.345}'
    for kind in fuzz.MUTATIONS:
        a = [fuzz.mutate(seed_line, kind, random.Random(7)) for _ in range(3)]
        b = [fuzz.mutate(seed_line, kind, random.Random(7)) for _ in range(3)]
        assert a == b, kind
    rnd = random.Random(1)
    assert any("\x00" in fuzz.mutate(seed_line, "nul", rnd) for _ in range(5))
    assert max(len(fuzz.mutate(seed_line, "mega_line", rnd)) for _ in range(20)) == 1_000_000
    assert any(x.endswith("\r\n") for x in (fuzz.mutate(seed_line, "crlf", rnd) for _ in range(40)))
    assert any("9" * 400 in fuzz.mutate(seed_line, "number", rnd) for _ in range(60))
    assert any(
        x.count("[") >= 1000 or x.count("{") >= 1000
        for x in (fuzz.mutate(seed_line, "deep_json", rnd) for _ in range(20))
    )
    bad = [fuzz.mutate(seed_line, "bad_utf8", rnd) for _ in range(40)]
    assert any("\ufffd" in x for x in bad) and any(any(0xDC80 <= ord(c) <= 0xDCFF for c in x) for x in bad)


class _Fragile(Parser):
    """A parser with the bugs the campaign must find: it raises on NUL and stalls on a long line."""

    name: ClassVar[str] = "fragile"

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        return 0.0

    def feed(self, line: str) -> list[Row]:
        self.stats.lines += 1
        if "\x00" in line:
            raise KeyError("nul")
        if len(line) > 50_000:
            time.sleep(0.3)
        return [Row(float(self.stats.lines), {"loss": 2.0})]


@pytest.mark.timeout(120)
def test_campaign_reports_crashes_with_a_reproducer_hangs_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PARSERS, "fragile", _Fragile)
    monkeypatch.setitem(fuzz.SEEDS, "fragile", ["step=1 loss=2.0"])
    monkeypatch.setattr(fuzz, "_WEIGHTS", (10, 1, 1, 0, 2, 10, 1, 1, 1, 1, 1, 1, 1))
    rep = fuzz.campaign("fragile", 600, seed=3, hang_s=0.2, kill_s=5.0, save=None)
    assert rep.lines == 600
    # feed_lines counts the line as malformed and goes on: caught, with the parser's own error named.
    assert rep.crashes == {}
    (key,) = rep.caught
    assert key.startswith("parser: KeyError at ") and rep.caught[key]["count"] > 10
    assert "\\x00" in rep.caught[key]["line"]  # the reproducer, shown with its NUL escaped
    assert rep.hangs and all(h["kind"] == "mega_line" for h in rep.hangs)
    assert len(rep.hangs) <= 3  # three hangs of a kind are reported, then the kind is skipped
    assert rep.peak_rss_mb >= rep.base_rss_mb > 0


def _unguarded(parser: Parser, lines: list[str]) -> list[Row]:
    return [row for line in lines for row in parser.feed(line)]


@pytest.mark.timeout(120)
def test_an_exception_that_escapes_feed_lines_is_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PARSERS, "fragile", _Fragile)
    monkeypatch.setitem(fuzz.SEEDS, "fragile", ["step=1 loss=2.0"])
    monkeypatch.setattr("monitor.parsers.feed_lines", _unguarded)
    rep = fuzz.campaign("fragile", 300, seed=3, hang_s=5.0, kill_s=5.0, save=None)
    (key,) = rep.crashes
    assert key.startswith("parser: KeyError at ") and rep.caught == {}


@pytest.mark.timeout(240)
def test_command_line_runs_every_named_parser_in_its_own_process(tmp_path: Path) -> None:
    cmd = [sys.executable, "bench/fuzz.py", "--lines", "300", "--parsers", "jsonl,hf-trainer-state"]
    out = subprocess.run([*cmd, "--save", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=200)
    assert out.returncode == 0, out.stderr
    assert "== jsonl: 300 lines" in out.stdout and "== hf-trainer-state: 300 lines" in out.stdout
    assert "peak RSS" in out.stdout and "2 parsers, 600 lines:" in out.stdout
    bad = subprocess.run(
        [sys.executable, "bench/fuzz.py", "--parsers", "nope"], cwd=ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown parsers: nope" in bad.stderr
