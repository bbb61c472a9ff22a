"""Every parser fuzzed: random and mutated lines never raise, every line is counted exactly once, a
huge line costs time and memory linear in its length; plus the odd lines of issue 13 as regressions."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.model import Row
from monitor.parsers import MAX_LINE, PARSERS, detect, feed_lines, make_parser, parse_lines, sniff_binary
from monitor.parsers.generic import KeyValueParser

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Pieces that break naive number and line handling.
ODD = [
    "1e999",
    "-1e999",
    "-nan",
    "nan",
    "inf",
    "-inf",
    "NaN",
    "Infinity",
    "٣٫١٤",  # Arabic-Indic digits: float() reads them
    "１２３",  # full-width digits
    "9" * 400,
    "\x00",
    "\ufffd",
    "\r",
    "\r\n",
    "\x1b[31m",
    '"',
    "{",
    "}",
    "[",
    "|",
    ":",
    "=",
    ",",
    "/",
    "(",
    "\t",
    "  ",
    "\u202e",
]


def _samples() -> list[str]:
    return [line for cls in PARSERS.values() for line in cls.sample.splitlines()]


def _mutate(line: str, cuts: list[int], inserts: list[str]) -> str:
    """`line` with `inserts` placed at the `cuts` positions (modulo its length)."""
    out = line
    for at, piece in zip(cuts, inserts, strict=False):
        i = at % (len(out) + 1)
        out = out[:i] + piece + out[i:]
    return out


_raw = st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace"))
_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=200)
_mutated = st.builds(
    _mutate,
    st.sampled_from(_samples()),
    st.lists(st.integers(0, 10_000), max_size=4),
    st.lists(st.sampled_from(ODD) | _text, max_size=4),
)
_line = st.one_of(_raw, _text, _mutated, st.sampled_from(_samples()), st.sampled_from(ODD))
_lines = st.lists(_line, max_size=25)


def _feed_all(name: str, lines: list[str], newline: bool) -> None:
    raw = [line + "\n" for line in lines] if newline else lines
    parser, _rows = parse_lines(raw, name)
    st_ = parser.stats
    if getattr(parser, "document", False):
        assert st_.lines == len(raw)
        return
    assert st_.lines == len(raw)  # every line counted once, the partial last one included
    assert st_.metric_lines + st_.noise + st_.malformed == st_.lines


@pytest.mark.parametrize("name", list(PARSERS))
@FAST
@given(lines=_lines, newline=st.booleans())
def test_no_line_makes_a_parser_raise_or_count_twice(name: str, lines: list[str], newline: bool) -> None:
    _feed_all(name, lines, newline)


@FAST
@given(lines=_lines)
def test_detection_never_raises(lines: list[str]) -> None:
    found = detect(lines, "x.log")
    assert found.format in PARSERS
    parser, _ = parse_lines(lines)
    assert parser.stats.lines == len(lines)


@FAST
@given(data=st.binary(max_size=5000))
def test_binary_sniff_never_raises(data: bytes) -> None:
    sniff_binary(data)
    detect(data.decode("utf-8", "replace").splitlines(), "x", data)


@pytest.mark.parametrize("name", list(PARSERS))
def test_a_huge_line_is_cut_and_parsed_in_linear_time_and_bounded_memory(name: str) -> None:
    samples = PARSERS[name].sample.splitlines() or ["x"]
    huge = [
        samples[-1] + " " + "a" * 1_000_000,
        '"' + "x" * 200_000 + '",' + samples[-1],
        "{" * 60_000 + "}" * 60_000,
        "|".join(["loss 1"] * 100_000),
        "=".join(["a"] * 200_000),
    ]
    tracemalloc.start()
    t0 = time.perf_counter()
    parser = make_parser(name)
    feed_lines(parser, [*samples, *huge])
    parser.finish()
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 5.0
    assert peak < 64 << 20
    if not getattr(parser, "document", False):
        assert parser.stats.cut == 5 - (len(huge[1]) <= MAX_LINE) - (len(huge[2]) <= MAX_LINE)


def test_letters_line_of_40kb_is_fast_in_the_fallback() -> None:
    # issue 13: one 40 KB line of letters took 27.6 s in the key=value regex
    t0 = time.perf_counter()
    parse_lines(["a" * 40_000, "-".join(["ab"] * 20_000), "a " * 20_000 + "= 1"], "generic")
    assert time.perf_counter() - t0 < 1.0


# ---- the odd lines issue 13 found, each one malformed line (or noise), never the end of a source ----
def test_a_400_digit_integer_in_jsonl_is_one_malformed_line_and_later_nans_still_come() -> None:
    lines = ['{"step": 1, "loss": 2.0}', '{"step": 2, "loss": ' + "9" * 400 + "}", '{"step": 3, "loss": NaN}']
    parser, rows = parse_lines(lines, "jsonl")
    assert parser.stats.malformed == 1 and [r.step for r in rows] == [1, 3]


def test_deeply_nested_json_is_one_malformed_line() -> None:
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    parser, rows = parse_lines(['{"step": 1, "loss": 2.0}', deep, '{"step": 2, "loss": 1.5}'], "jsonl")
    assert parser.stats.malformed == 1 and len(rows) == 2


def test_a_long_quoted_csv_line_does_not_break_detection_or_parsing() -> None:
    lines = ["step,loss", "1,2.0", '"' + "x" * 140_000 + '",3', "3,nan"]
    assert detect(lines, "metrics.csv").format == "csv"
    parser, rows = parse_lines(lines, filename="metrics.csv")
    assert [r.step for r in rows] == [1, 3]
    assert parser.stats.cut == 1


def test_a_truncated_word_lm_line_is_malformed() -> None:
    first = PARSERS["wordlm"].sample
    parser, rows = parse_lines([first, "| epoch   5"], "wordlm")
    assert len(rows) == 1 and parser.stats.malformed == 1


def test_deepspeed_overflow_with_a_nan_loss_scale() -> None:
    line = (
        "[2023-04-18 01:46:52,554] [INFO] [loss_scaler.py:188:update_scale] [deepspeed] "
        "OVERFLOW! Rank 0 Skipping step. Attempted loss scale: -nan, but hysteresis is 2. "
    )
    _, rows = parse_lines([line], "deepspeed")
    assert rows[0].values["overflow_skip"] == 1.0 and rows[0].values["loss scale"] != rows[0].values["loss scale"]


def test_a_huge_integer_in_trainer_state_skips_that_entry() -> None:
    big = "9" * 400
    doc = '{"log_history": [{"step": ' + big + ', "loss": 1.0}, {"step": 2, "loss": ' + big + "}, "
    doc += '{"step": 3, "loss": 0.5}]}'
    parser, rows = parse_lines([doc], "hf-trainer-state")
    assert [r.step for r in rows] == [3.0] and parser.stats.noise == 2


def test_a_line_that_makes_a_parser_raise_is_counted_malformed() -> None:
    class Exploding(KeyValueParser):
        def feed(self, line: str) -> list[Row]:
            if "boom" in line:
                self.stats.lines += 1  # counted before it raised, as real parsers count first
                raise OverflowError(line)
            return super().feed(line)

    parser = Exploding()
    rows = feed_lines(parser, ["loss=1 step=1", "boom", "loss=2 step=2"])
    assert len(rows) == 2 and parser.stats.malformed == 1 and parser.stats.lines == 3


@pytest.mark.parametrize("name", list(PARSERS))
def test_a_number_of_thousands_of_digits_is_read_in_linear_time(name: str) -> None:
    # bench/fuzz.py found number patterns whose digit runs backtracked quadratically (2-4 s a line)
    lines = PARSERS[name].sample.splitlines() or ["x"]
    junk = []
    for line in lines:
        i = next((k for k, c in enumerate(line) if c.isdigit()), len(line))
        for tail in ("..5", "e-400.25", ".inf5", "0.97nan4.2e+"):
            junk.append(line[:i] + "1" * 20_000 + tail + line[i + 1 :])
    t0 = time.perf_counter()
    parse_lines([*lines, *junk], name)
    assert time.perf_counter() - t0 < 2.0


def test_a_huge_planned_length_in_a_document_is_not_a_crash() -> None:
    doc = '{"max_steps": ' + "9" * 400 + ', "log_history": [{"step": 1, "loss": 2.0}]}'
    parser, rows = parse_lines([doc], "hf-trainer-state")
    assert len(rows) == 1 and parser.total_steps is None
    golden = '{"lm loss": {"start_step": 1, "end_step": ' + "9" * 400 + ', "step_interval": 5, "values": {"1": 2.5}}}'
    parser, rows = parse_lines([golden], "megatron-golden")
    assert len(rows) == 1 and parser.total_steps is None
