"""The generic parser's batched path (`feed_text`) gives exactly the rows and parser state of feeding
the same lines one by one, and takes the common long logs."""

from __future__ import annotations

import random

import pytest

from monitor.backfill import parse_batch
from monitor.columns import Columns, to_columns
from monitor.parsers import MAX_LINE, feed_lines, make_parser
from monitor.parsers.generic import KeyValueParser


def _state(p: KeyValueParser) -> dict[str, object]:
    # (the stats compare as a dataclass; a NaN step as a string, since NaN != NaN)
    return {k: "nan" if isinstance(v, float) and v != v else v for k, v in vars(p).items()}


def _rows(blocks: list[Columns]) -> list[tuple[str, dict[str, str], bool]]:
    """Each row's step, values and whether it has a time; numbers as repr (NaN equal, -0.0 kept)."""
    return [
        (repr(r.step), {k: repr(v) for k, v in r.values.items()}, r.time is not None) for b in blocks for r in b.rows()
    ]


def batched_and_one_by_one(lines: list[str], batch: int) -> tuple[KeyValueParser, KeyValueParser, int]:
    """Parse `lines` in batches through the fast path and line by line; how many batches it took."""
    fast_p, slow_p = KeyValueParser(), KeyValueParser()
    fast: list[Columns] = []
    taken = 0
    for i in range(0, len(lines), batch):
        chunk = lines[i : i + batch]
        blocks = fast_p.feed_columns(chunk)
        if blocks is None:
            blocks = to_columns(feed_lines(fast_p, chunk))
        else:
            taken += 1
        fast += blocks
    slow = to_columns(feed_lines(slow_p, lines))
    # (blocks may be cut differently at batch edges: the rows are what must be the same)
    assert _rows(fast) == _rows(slow)
    assert _state(fast_p) == _state(slow_p)
    return fast_p, slow_p, taken


def test_a_plain_log_goes_through_the_batched_path() -> None:
    lines = [f"step={i} loss={2.0 + 8.0 * 0.999**i:.5f} lr=0.0003" for i in range(20_000)]
    p, _, taken = batched_and_one_by_one(lines, 4096)
    assert taken == 4  # all but the first batch, whose first line teaches the parser its keys
    assert p.stats.metric_lines == 20_000 and p.step_key == "step"


@pytest.mark.parametrize(
    "line",
    [
        "step={i}, loss: {x}, lr: 3e-4",
        "iter={i};loss = {x};acc={x}",
        "global_step={i}\ttrain/loss={x}\tgrad_norm=+{x}  ",
        "loss={x} step={i} lr=1e-5",  # the step field need not come first
    ],
)
def test_other_plain_layouts_go_through_it(line: str) -> None:
    lines = [line.format(i=i, x=1.0 / (i + 1)) for i in range(3000)]
    _, _, taken = batched_and_one_by_one(lines, 1000)
    assert taken == 2


@pytest.mark.parametrize(
    "odd",
    [
        "step={i} loss={x} lr=0.0003 time=12ms",  # a unit
        "step={i} loss={x} | lr 0.0003",  # a bar
        "step={i} LOSS={x} lr=0.0003",  # another key
        "step={i} loss={x}",  # fewer keys
        "step={i} loss={x} lr=0.0003 loss=1",  # a repeated key
        "  step={i} loss={x} lr=0.0003",  # indented
        "step={i} loss={x} lr=0.0003.1",  # a version string
        "step={i} loss={x} lr=0.0003\r",  # a carriage return
        "step={i} loss={x} lr=",  # no number
        "",  # blank
        "Namespace(lr=0.1, step=3)",
        "step={i} loss={x}: lr=0.0003",
        "Eval step={i} loss={x} lr=0.0003",
    ],
)
def test_an_odd_line_anywhere_gives_what_line_by_line_gives(odd: str) -> None:
    rnd = random.Random(7)
    lines = [f"step={i} loss={1.0 / (i + 1):.6g} lr=0.0003" for i in range(600)]
    for at in (100, 250, 599):
        lines[at] = odd.format(i=at, x=rnd.random())
    batched_and_one_by_one(lines, 128)


def test_special_numbers_read_as_one_by_one() -> None:
    specials = ["nan", "NaN", "-inf", "+Infinity", "inf", "-0", "-0.0", "1e-300", "1E+5", ".5", "5.", "+.25", "1e400"]
    lines = [f"step={i} loss={specials[i % len(specials)]} lr=1e-4" for i in range(1000)]
    _, _, taken = batched_and_one_by_one(lines, 100)
    assert taken == 9


def test_random_logs_match_line_by_line() -> None:
    rnd = random.Random(3)
    keys = ["step", "loss", "lr", "acc", "it", "epoch", "val/loss", "Loss", "grad_norm"]
    numbers = ["1", "2.5", "-3e-4", "nan", "inf", "0.001", "12ms", "7%", "1.2.3", "x", "+.5"]
    seps = ["=", ": ", " = ", ":"]
    betweens = [" ", ", ", "; ", "\t", " | ", " - ", " foo "]
    for _ in range(60):
        layouts = []
        for _ in range(rnd.randint(1, 3)):
            ks = rnd.sample(keys, rnd.randint(1, 4))
            layouts.append((ks, rnd.choice(seps), rnd.choice(betweens[:3]), rnd.choice(["", " "])))
        lines = []
        for i in range(rnd.randint(50, 400)):
            ks, sep, between, tail = rnd.choice(layouts) if rnd.random() < 0.97 else (["step"], "=", " ", "")
            fields = []
            for k in ks:
                v = str(i) if k in ("step", "it") else rnd.choice(numbers if rnd.random() < 0.05 else numbers[:2])
                fields.append(f"{k}{sep}{v}" if rnd.random() > 0.01 else f"{k}{sep}{rnd.choice(numbers)}")
            lines.append((rnd.choice(betweens) if rnd.random() < 0.02 else between).join(fields) + tail)
        batched_and_one_by_one(lines, rnd.choice([2, 17, 64, 256]))


def test_a_line_feed_lines_would_cut_goes_line_by_line() -> None:
    lines = [f"step={i} loss=0.5 lr=1" for i in range(10)]
    lines[5] = "step=5 loss=0." + "1" * MAX_LINE + " lr=1"
    batched_and_one_by_one(lines, 10)
    p = make_parser("generic")
    parse_batch(p, lines[:3])
    assert p.feed_columns(lines[3:]) is None
