"""Log-format parsers: the registry, format detection and a whole-input convenience.

This is the one place that decides what an input is: `detect` (or `detect_format`/`guess_format`)
names the format from the first lines, `sniff_binary` refuses what is not text at all, and
`no_metrics` says when a parser read an input without finding a metric in it ("no metrics found":
`check` exits 3, the TUI shows the run unreadable).

Sources that tail a file pass each batch of complete lines to `feed_lines(parser, batch)` (it cleans
ANSI codes and tqdm redraws, counts blank lines, cuts lines over `MAX_LINE` and counts a line that
makes a parser raise, whatever it raises, as malformed); `parse_lines` reads a whole input at once
(detection, cleaning, noise counting, `finish()`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from monitor.errors import FormatError
from monitor.model import Row
from monitor.parsers.base import Parser, ParseStats
from monitor.parsers.blocks import ComposerParser, OLMoParser
from monitor.parsers.common import clean_line
from monitor.parsers.csvfmt import CSVParser
from monitor.parsers.deepspeed import DeepSpeedParser
from monitor.parsers.detectron2 import Detectron2LogParser, Detectron2Parser
from monitor.parsers.fairseq import FairseqParser
from monitor.parsers.generic import KeyValueParser
from monitor.parsers.golden import MegatronGoldenParser
from monitor.parsers.hf import HFTrainerParser
from monitor.parsers.hfstate import HFTrainerStateParser
from monitor.parsers.jsonfmt import JSONLParser
from monitor.parsers.jsonvariants import LlamaFactoryParser
from monitor.parsers.keras import KerasParser
from monitor.parsers.megatron import MegatronParser
from monitor.parsers.meters import MeterLogParser
from monitor.parsers.mmlab import MMEngineLogParser, MMEngineScalarsParser
from monitor.parsers.modelcard import ModelCardParser
from monitor.parsers.nanogpt import (
    BuildNanoGPTParser,
    LlmcParser,
    LlmcStdoutParser,
    ModdedNanoGPTParser,
    NanoGPTParser,
)
from monitor.parsers.progress import NeMoParser, TorchtuneParser
from monitor.parsers.sniff import sniff_binary, sniff_binary_text
from monitor.parsers.wordlm import WordLMParser

__all__ = [
    "ALIASES",
    "CONFIDENT",
    "MAX_LINE",
    "NO_METRICS",
    "PARSERS",
    "Detection",
    "ParseStats",
    "Parser",
    "clean_line",
    "detect",
    "detect_format",
    "feed_lines",
    "format_samples",
    "guess_format",
    "make_parser",
    "no_metrics",
    "parse_lines",
    "resolve_name",
    "sniff_binary",
    "sniff_binary_text",
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
        LlmcStdoutParser,
        BuildNanoGPTParser,
        WordLMParser,
        FairseqParser,
        MMEngineLogParser,
        Detectron2LogParser,
        MeterLogParser,
        OLMoParser,
        ComposerParser,
        KerasParser,
        NeMoParser,
        TorchtuneParser,
        ModelCardParser,
        DeepSpeedParser,
        LlamaFactoryParser,
        Detectron2Parser,
        MMEngineScalarsParser,
        CSVParser,
        JSONLParser,
        KeyValueParser,
    )
}

#: Longer names people (and the real-log corpus) use for the same formats.
ALIASES: dict[str, str] = {
    "megatron-deepspeed-log": "megatron",
    "megatron-lm": "megatron",
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
    "llama-factory": "llamafactory",
    "trainer-log-jsonl": "llamafactory",
    "mmdetection": "mmengine",
    "mmpose": "mmengine",
    "mmcv": "mmengine",
    "scalars-json": "mmengine-json",
    "metrics-json": "detectron2",
    "moco": "meters",
    "swav": "meters",
    "dino": "meters",
    "timm-log": "meters",
    "timm": "csv",
    "ultralytics": "csv",
    "keras-csvlogger": "csv",
    "model-card": "hf-model-card",
    "trl": "hf-trainer",
    "axolotl": "hf-trainer",
    "mosaicml": "composer",
    # the format names of the real-run corpus (bench/corpus/real/*/label.toml)
    "build-nanogpt-log-txt": "build-nanogpt",
    "detectron2-metrics-json": "detectron2",
    "llamafactory-trainer-log-jsonl": "llamafactory",
    "llmc-train-gpt2cu-log": "llmc-stdout",
    "mae-log-txt-jsonl": "jsonl",
    "ssd-pytorch-log": "generic",
    "timm-train-log": "meters",
    "yolov8-results-csv": "csv",
    "yolov8-results-csv-padded": "csv",
    "kv": "generic",
    "key-value": "generic",
}

#: A sniff score at or above this comes from metric lines of the format itself, not hints.
CONFIDENT = 0.8
#: Lines longer than this are cut to it before parsing (and counted in `ParseStats.cut`), so that
#: parsing time stays linear and bounded whatever a line holds.
MAX_LINE = 65536
#: What a target whose lines hold no metric is called everywhere ("no metrics found": exit 3).
NO_METRICS = "no metrics found"
_FALLBACK = "generic"
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


@dataclass(frozen=True, slots=True)
class Detection:
    """What an input is: a format to parse it with, or why it cannot be read at all."""

    format: str
    """Registry name of the format (`generic` when no specific format matched)."""
    score: float
    """Confidence 0..1; below `CONFIDENT` only hints matched (a live source may wait for more lines)."""
    refused: str | None = None
    """Why the input is not a text log ("binary data: an ELF executable ..."); None when it may be read."""


def sniff_scores(head: list[str], filename: str = "") -> dict[str, float]:
    """Every format's confidence (0..1) that `head`, the first lines of `filename`, is in it.

    A sniffer that trips on an odd line (a huge quoted CSV field, absurd JSON nesting) scores 0;
    lines are cut to `MAX_LINE` first so sniffing stays linear.
    """
    head = [line if len(line) <= MAX_LINE else line[:MAX_LINE] for line in head]
    scores: dict[str, float] = {}
    for name, cls in PARSERS.items():
        try:
            scores[name] = cls.sniff(head, filename)
        except Exception:
            scores[name] = 0.0
    return scores


def detect(head: list[str], filename: str = "", head_bytes: bytes | None = None) -> Detection:
    """The single detection entry point: refuse binary input (from its first bytes when given, else
    from the decoded head), otherwise the most likely format of `head` and its score."""
    refused = sniff_binary(head_bytes) if head_bytes is not None else sniff_binary_text(head[:200])
    if refused is not None:
        return Detection(_FALLBACK, 0.0, refused)
    return Detection(*_growing(head, filename))


def no_metrics(parser: Parser) -> str | None:
    """`NO_METRICS` with what was seen, when `parser` has read its input (after `finish()`) and found
    no metric line at all; None when it found some. Callers turn this into exit 3 / `unreadable`."""
    st = parser.stats
    if st.metric_lines:
        return None
    if not st.lines:
        return f"{NO_METRICS} (empty input)"
    bad = f", {st.malformed} malformed" if st.malformed else ""
    return f"{NO_METRICS} in {st.lines} lines (read as {parser.name}{bad})"


def format_samples() -> list[tuple[str, str, str]]:
    """Every format as (name, description, sample) for `runwatch formats`; a sample of several lines
    (a header, then a metric line) is joined with ` ⏎ `."""
    return [(name, cls.description, " ⏎ ".join(cls.sample.splitlines())) for name, cls in PARSERS.items()]


def guess_format(head: list[str], filename: str = "") -> tuple[str, float]:
    """The most likely format for `head` (raw lines) and its score; (`generic`, 0.0) when nothing matches.

    A score below `CONFIDENT` means only hints matched (a DeepSpeed config dump, a `.csv` name):
    a live source may wait for more lines before committing.
    """
    best, best_score = _FALLBACK, 0.0
    for name, score in sniff_scores([clean_line(line) for line in head], filename).items():
        if score > best_score:
            best, best_score = name, score
    return best, best_score


def detect_format(head: list[str], filename: str = "") -> str:
    """The format of a file from its first lines and name; `generic` when nothing matches.

    The first 200 lines decide when they hold the format's own metric lines; when only hints match
    (launcher banners, a DeepSpeed config dump) the rest of `head` is searched too, since HF
    Trainer dicts or Megatron iterations can start a thousand lines in. Pass a few thousand lines
    when you have them.
    """
    return _detect_growing(head, filename)


def feed_lines(parser: Parser, lines: Iterable[str]) -> list[Row]:
    """Clean each complete line (newline, ANSI codes, tqdm `\\r` redraws) and feed it; blank lines are
    counted as noise without reaching the parser.

    A line longer than `MAX_LINE` is cut to it (counted in `stats.cut`) for line formats; a line the
    parser cannot read is counted once as malformed and skipped, whatever it raised.
    """
    rows: list[Row] = []
    extend = rows.extend
    feed = parser.feed
    stats = parser.stats
    cut = not getattr(parser, "document", False)  # a JSON document's one long line is still whole
    for line in lines:
        # clean_line inlined for the common case: a plain line, with or without its newline
        if line[-1:] == "\n":
            line = line[:-1]
        if cut and len(line) > MAX_LINE:
            line = line[:MAX_LINE]
            stats.cut += 1
        if "\r" in line or "\x1b" in line:
            line = clean_line(line)
        if not line or line.isspace():
            stats.lines += 1
            stats.noise += 1
            continue
        seen = stats.lines
        try:
            out = feed(line)
        except Exception:
            stats.lines = seen + 1
            stats.count_malformed(line)
            continue
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
    try:
        rows += parser.finish()
    except Exception:
        parser.stats.count_malformed("(end of input)")
    return parser, rows


def _detect_growing(lines: list[str], filename: str) -> str:
    """The format name `_growing` settles on."""
    return _growing(lines, filename)[0]


def _growing(lines: list[str], filename: str) -> tuple[str, float]:
    """Detect on the first 200 lines; when only hints match, look at 2,000 then 20,000 (metrics can
    start late, after a launcher banner and a model printout) before settling for the best hint."""
    n = _HEAD
    best, score = guess_format(lines[:n], filename)
    while score < CONFIDENT and n < min(len(lines), _HEAD_MAX):
        n *= 10
        best, score = guess_format(lines[:n], filename)
    return best, score
