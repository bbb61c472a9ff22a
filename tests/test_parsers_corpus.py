"""Every text file of the real-log corpus: detected as its labelled format, read almost whole, on the
step axis its labels use."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from monitor.model import Row
from monitor.parsers import ALIASES, clean_line, detect_format, parse_lines

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "real"

# A loose pattern per format for "a line that carries metrics", written independently of the parsers.
METRIC_LINE = {
    "megatron": re.compile(r"iteration\s+\d+\s*/\s*\d+\s*\||validation loss at iteration"),
    "hf-trainer": re.compile(r"\{'(?:loss|eval_loss|train_runtime)': "),
    "llmc": re.compile(r"^s:\d+ \w+:"),
    "modded-nanogpt": re.compile(r"^step:\d+/\d+ \w+:"),
    "nanogpt": re.compile(r"^(?:iter|step) \d+: "),
    "wordlm": re.compile(r"^\| (?:epoch +\d+ \||end of epoch|End of training)"),
    "deepspeed": re.compile(
        r"step=\d+, skipped=|SamplesPerSec=|^'step':\d+|^ppl: |OVERFLOW! Rank|Before cleaning, Epoch"
    ),
}


def _files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(
        f
        for f in CORPUS.glob("*/*")
        if f.is_file() and f.suffix not in (".toml", ".yaml") and not f.name.startswith("events.out.tfevents.")
    )


def _meta(case: Path) -> dict[str, Any]:
    for name in ("label.toml", "source.toml"):
        if (case / name).is_file():
            return tomllib.loads((case / name).read_text())
    raise AssertionError(f"{case} has neither label.toml nor source.toml")


def _expected_metric_lines(fmt: str, text: str, lines: list[str]) -> int:
    if fmt == "csv":
        return sum(1 for line in lines if line.strip()) - 1
    if fmt == "hf-trainer-state":
        return len(json.loads(text)["log_history"])
    if fmt == "megatron-golden":
        steps = {
            step
            for spec in json.loads(text).values()
            for step, value in spec["values"].items()
            if not isinstance(value, str)
        }
        return len(steps)
    pattern = METRIC_LINE[fmt]
    return sum(1 for line in lines if pattern.search(clean_line(line)))


def _read(path: Path) -> tuple[str, list[str], list[Row], Any]:
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    parser, rows = parse_lines(lines, filename=path.name)
    return text, lines, rows, parser


FILES = _files()


@pytest.mark.skipif(not FILES, reason=f"real-log corpus not found at {CORPUS}")
@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_corpus_file_is_detected_and_read(path: Path) -> None:
    meta = _meta(path.parent)
    expected_format = ALIASES[meta["format"].split()[0]]
    text, lines, rows, parser = _read(path)
    assert parser.name == expected_format
    expected = _expected_metric_lines(expected_format, text, lines)
    assert expected > 0
    st = parser.stats
    assert st.metric_lines / expected > 0.95, (st, expected)
    assert len(rows) / expected > 0.95, (len(rows), expected)
    assert st.malformed <= 0.01 * max(st.lines, 1), st.examples
    assert all(isinstance(v, float) for row in rows for v in row.values.values())


@pytest.mark.skipif(not FILES, reason=f"real-log corpus not found at {CORPUS}")
@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_corpus_format_from_the_first_200_lines(path: Path) -> None:
    """What a live tail sees first is enough (an HF banner stands in for dicts that come later)."""
    head = path.read_text(encoding="utf-8", errors="replace").splitlines()[:200]
    assert detect_format(head, path.name) == ALIASES[_meta(path.parent)["format"].split()[0]]
    assert detect_format(head) == detect_format(head, path.name)  # the content alone suffices


def _onsets(case: Path, file: str) -> list[float]:
    """Labelled onset steps that belong to `file` (events name their file when a case has several)."""
    meta = _meta(case)
    out = []
    if isinstance(meta.get("onset_step"), int | float) and len(meta.get("files", [])) == 1:
        out.append(float(meta["onset_step"]))
    for event in meta.get("events", []):
        if event.get("file", file) == file and isinstance(event.get("onset_step"), int | float):
            out.append(float(event["onset_step"]))
    return out


LABELLED = [p for p in FILES if (p.parent / "label.toml").is_file() and _onsets(p.parent, p.name)]


@pytest.mark.parametrize("path", LABELLED, ids=[f"{p.parent.name}/{p.name}" for p in LABELLED])
def test_labelled_onsets_are_steps_of_the_parsed_axis(path: Path) -> None:
    """The labels' onset steps are steps the parser emits: same axis (epoch, global batch, ...)."""
    _, _, rows, _ = _read(path)
    steps = {round(r.step, 6) for r in rows}
    for onset in _onsets(path.parent, path.name):
        assert round(onset, 6) in steps, (onset, sorted(steps)[:20])
