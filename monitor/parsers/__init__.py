"""Log-format parsers: the registry, format detection and a whole-input convenience.

Sources that tail a file pass each batch of complete lines to `feed_lines(parser, batch)` (it cleans
ANSI codes and tqdm redraws and counts blank lines); `parse_lines` reads a whole input at once
(detection, cleaning, noise counting, `finish()`).
"""

from __future__ import annotations

from collections.abc import Iterable

from monitor.errors import FormatError
from monitor.model import Row
from monitor.parsers.base import Parser, ParseStats
from monitor.parsers.common import clean_line
from monitor.parsers.csvfmt import CSVParser
from monitor.parsers.deepspeed import DeepSpeedParser
from monitor.parsers.generic import KeyValueParser
from monitor.parsers.golden import MegatronGoldenParser
from monitor.parsers.hf import HFTrainerParser
from monitor.parsers.hfstate import HFTrainerStateParser
from monitor.parsers.jsonfmt import JSONLParser
from monitor.parsers.megatron import MegatronParser
from monitor.parsers.nanogpt import LlmcParser, ModdedNanoGPTParser, NanoGPTParser
from monitor.parsers.wordlm import WordLMParser

__all__ = [
    "ALIASES",
    "CONFIDENT",
    "PARSERS",
    "ParseStats",
    "Parser",
    "clean_line",
    "detect_format",
    "feed_lines",
    "guess_format",
    "make_parser",
    "parse_lines",
    "resolve_name",
    "sniff_scores",
]

#: Every format by its `--format` name. Order breaks ties in detection: specific formats first.
PARSERS: dict[str, type[Parser]] = {
    cls.name: cls
    for cls in (
        HFTrainerStateParser,
        MegatronGoldenParser,
        MegatronParser,
        HFTrainerParser,
        ModdedNanoGPTParser,
        NanoGPTParser,
        LlmcParser,
        WordLMParser,
        DeepSpeedParser,
        CSVParser,
        JSONLParser,
        KeyValueParser,
    )
}

#: Longer names people (and the real-log corpus) use for the same formats.
ALIASES: dict[str, str] = {
    "megatron-deepspeed-log": "megatron",
    "megatron-lm": "megatron",
    "nemo": "megatron",
    "megatron-golden-values-json": "megatron-golden",
    "nanogpt-log": "nanogpt",
    "llmc-main-log": "llmc",
    "modded-nanogpt-log": "modded-nanogpt",
    "pytorch-examples-word-lm-log": "wordlm",
    "hf-trainer-log": "hf-trainer",
    "hf-trainer-state-json": "hf-trainer-state",
    "deepspeed-log": "deepspeed",
    "deepspeed-chat-log": "deepspeed",
    "lightning-csvlogger": "csv",
    "yolov5-results-csv": "csv",
    "json": "jsonl",
}

#: A sniff score at or above this comes from metric lines of the format itself, not hints.
CONFIDENT = 0.8
_FALLBACK = "kv"
_HEAD = 200
_HEAD_MAX = 20_000  # bounds the cost of sniffing a long log in no known format


def resolve_name(name: str) -> str:
    """The registry name for `name` or one of its aliases; FormatError naming the valid ones."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in PARSERS:
        valid = ", ".join(PARSERS)
        raise FormatError(f"unknown format {name!r}; valid formats: {valid}")
    return key


def make_parser(name: str) -> Parser:
    """A fresh parser for format `name` (or an alias); FormatError for an unknown name."""
    return PARSERS[resolve_name(name)]()


def sniff_scores(head: list[str], filename: str = "") -> dict[str, float]:
    """Every format's confidence (0..1) that `head`, the first lines of `filename`, is in it."""
    return {name: cls.sniff(head, filename) for name, cls in PARSERS.items()}


def guess_format(head: list[str], filename: str = "") -> tuple[str, float]:
    """The most likely format for `head` (raw lines) and its score; (`kv`, 0.0) when nothing matches.

    A score below `CONFIDENT` means only hints matched (a DeepSpeed config dump, a `.csv` name):
    a live source may wait for more lines before committing.
    """
    best, best_score = _FALLBACK, 0.0
    for name, score in sniff_scores([clean_line(line) for line in head], filename).items():
        if score > best_score:
            best, best_score = name, score
    return best, best_score


def detect_format(head: list[str], filename: str = "") -> str:
    """The format of a file from its first lines and name; `kv` when nothing matches.

    The first 200 lines decide when they hold the format's own metric lines; when only hints match
    (launcher banners, a DeepSpeed config dump) the rest of `head` is searched too, since HF
    Trainer dicts or Megatron iterations can start a thousand lines in. Pass a few thousand lines
    when you have them.
    """
    return _detect_growing(head, filename)


def feed_lines(parser: Parser, lines: Iterable[str]) -> list[Row]:
    """Clean each complete line (newline, ANSI codes, tqdm `\\r` redraws) and feed it; blank lines are
    counted as noise without reaching the parser."""
    rows: list[Row] = []
    extend = rows.extend
    feed = parser.feed
    stats = parser.stats
    for line in lines:
        # clean_line inlined for the common case: a plain line, with or without its newline
        if line[-1:] == "\n":
            line = line[:-1]
        if "\r" in line or "\x1b" in line:
            line = clean_line(line)
        if not line or line.isspace():
            stats.lines += 1
            stats.noise += 1
            continue
        out = feed(line)
        if out:
            extend(out)
    return rows


def parse_lines(lines: Iterable[str], fmt: str | None = None, filename: str = "") -> tuple[Parser, list[Row]]:
    """Parse a whole input: detect the format unless `fmt` is given, feed every line, `finish()`.

    When the lines carry their newlines (as from a file) and the last one does not, it is a line
    still being written: line formats count it as noise; whole-document formats (JSON) still get it.
    """
    raw = lines if isinstance(lines, list) else list(lines)
    partial = bool(raw) and not raw[-1].endswith("\n") and any(line.endswith("\n") for line in raw[-2:])
    parser = make_parser(fmt) if fmt is not None else PARSERS[_detect_growing(raw, filename)]()
    if partial and not getattr(parser, "document", False):
        raw = raw[:-1]
        parser.stats.lines += 1
        parser.stats.noise += 1
    rows = feed_lines(parser, raw)
    rows += parser.finish()
    return parser, rows


def _detect_growing(lines: list[str], filename: str) -> str:
    """Detect on the first 200 lines; when only hints match, look at 2,000 then 20,000 (metrics can
    start late, after a launcher banner and a model printout) before settling for the best hint."""
    n = _HEAD
    best, score = guess_format(lines[:n], filename)
    while score < CONFIDENT and n < min(len(lines), _HEAD_MAX):
        n *= 10
        best, score = guess_format(lines[:n], filename)
    return best
