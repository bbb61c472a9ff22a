"""`parse_numbers` against `float()`, bit for bit: random doubles in every common spelling, texts near
rounding midpoints, malformed texts, and buffer edges. Run as a script for a speed figure."""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np
import pytest

from monitor.wandb import numparse
from monitor.wandb.numparse import MAX_WIDTH, parse_numbers

SEED = 20240611


def _layout(texts: Sequence[bytes], sep: bytes = b'", "') -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The texts joined JSON-like into one buffer, with their starts and lengths; the last text ends the buffer."""
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    starts = np.zeros(len(texts), dtype=np.int64)
    if len(texts):
        starts[1:] = np.cumsum(lengths[:-1] + len(sep))
        starts += 2
    buf = np.frombuffer(b'{"' + sep.join(texts), dtype=np.uint8)
    return buf, starts, lengths


def _reference(text: bytes) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _bits(x: float) -> int:
    return int(np.float64(x).view(np.uint64))


def _check(texts: Sequence[bytes]) -> np.ndarray:
    """Parse `texts` and assert the contract against `float()`; return `ok`."""
    buf, starts, lengths = _layout(texts)
    values, ok = parse_numbers(buf, starts, lengths)
    assert values.dtype == np.float64 and ok.dtype == np.bool_
    assert values.shape == ok.shape == (len(texts),)
    got = values.view(np.uint64)
    for i in np.flatnonzero(ok):
        want = _reference(texts[i])
        assert want is not None, f"ok for {texts[i]!r}, which float() rejects"
        assert int(got[i]) == _bits(want), f"{texts[i]!r}: {values[i]!r} != {want!r}"
    assert np.isnan(values[~ok]).all()
    return ok


def _go(x: float) -> str:
    """Like Go's encoding/json: shortest digits, positional for 1e-6 <= |x| < 1e21, else e-notation."""
    if x == 0 or 1e-6 <= abs(x) < 1e21:
        text = np.format_float_positional(x, trim="-")
        return text
    mantissa, _, exp = repr(x).partition("e")
    if not exp:  # repr chose positional where Go does not
        mantissa, _, exp = f"{x:e}".partition("e")
        mantissa = repr(float(mantissa))
    e = int(exp)
    mantissa = mantissa.removesuffix(".0")
    return f"{mantissa}e{'-' if e < 0 else '+'}{abs(e):02d}"


FORMATS: dict[str, Callable[[float], str]] = {
    "repr": repr,
    "g17": lambda x: f"{x:.17g}",
    "g15": lambda x: f"{x:.15g}",
    "positional": lambda x: np.format_float_positional(x),
    "go": _go,
    "json": json.dumps,
}


def _random_doubles(rng: np.random.Generator, n: int) -> np.ndarray:
    """Doubles of many kinds and magnitudes, about a sixth of them negative."""
    scale = 10.0 ** rng.integers(1, 8, n)
    parts = [
        rng.random(n),
        rng.uniform(-1e6, 1e6, n),
        10.0 ** rng.uniform(-30, 30, n),
        (10.0 ** rng.uniform(-10, 10, n)).astype(np.float32).astype(np.float64),
        rng.integers(-(2**62), 2**62, n).astype(np.float64),
        rng.integers(0, 100_000, n).astype(np.float64),
        np.round(rng.random(n) * scale) / scale,
        np.array([0.0, -0.0] * (n // 2)),
    ]
    x = np.concatenate(parts)
    x[rng.random(len(x)) < 1 / 6] *= -1
    return x


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_random_doubles_parse_exactly(fmt: str) -> None:
    rng = np.random.default_rng(SEED + len(fmt))
    xs = _random_doubles(rng, 5_000)
    texts = [FORMATS[fmt](float(x)).encode() for x in xs]
    ok = _check(texts)
    # Short spellings of ordinary values are the point: nearly all must be handled here.
    if fmt in ("repr", "go", "json", "g15"):
        ordinary = np.array(
            [len(t) <= MAX_WIDTH and (x == 0 or 1e-8 < abs(x) < 1e15) for t, x in zip(texts, xs, strict=True)]
        )
        assert ok[ordinary].mean() > 0.99


def test_many_values_across_chunks() -> None:
    """More than one chunk, short and long texts mixed (parsed apart), every format at once."""
    rng = np.random.default_rng(SEED)
    xs = _random_doubles(rng, 4_000)
    texts = [f(float(x)).encode() for x in xs for f in FORMATS.values()]
    random.Random(SEED).shuffle(texts)
    assert len(texts) > 2 * numparse._CHUNK
    _check(texts)


def test_shortest_17_digit_values_are_almost_always_ok() -> None:
    rng = np.random.default_rng(SEED)
    texts = [repr(float(x)).encode() for x in rng.uniform(0.1, 4.0, 40_000)]
    long_ones = [t for t in texts if len(t.replace(b".", b"").lstrip(b"0")) == 17]
    ok = _check(long_ones)
    assert len(long_ones) > 10_000
    assert ok.mean() > (0.99 if numparse._EXTENDED else 0.0)


HAND = [
    b"0",
    b"-0",
    b"0.0",
    b"-0.0",
    b"00",
    b"007",
    b"1",
    b"1E5",
    b"1e5",
    b"1e+09",
    b"1e-05",
    b"1e-07",
    b"1E-5",
    b"1.0",
    b"0.0003",
    b"-0.5",
    b"30864",
    b"3.709569426910243",
    b"1.795257639096357e+09",
    b"123456789012345680000",
    b"1.2e+21",
    b"9007199254740992",
    b"9007199254740993",
    b"9007199254740993e0",
    b"9007199254740995",
    b"18446744073709551615",
    b"18446744073709551616",
    b"9999999999999999999",
    b"12345678901234567890",
    b"0.000012345678901234567",
    b"-0.0000012345678901234567",
    b"2.2250738585072014e-308",
    b"2.2250738585072011e-308",
    b"4.9406564584124654e-324",
    b"1.7976931348623157e+308",
    b"1.7976931348623159e+308",
    b"1e22",
    b"1e23",
    b"1e27",
    b"1e28",
    b"9.999999999999999e22",
    b"0.1",
    b"0.3",
    b"5e-324",
    b"1e-400",
    b"1e400",
    b"0e0",
    b"0e99",
    b"-0e-99",
    b"1e99",
    b"1e-99",
    b"8.98846567431158e307",
]


def test_hand_cases() -> None:
    ok = dict(zip(HAND, _check(HAND), strict=True))
    for text in (b"0", b"-0", b"1E5", b"1e+09", b"0.0003", b"1e-07", b"3.709569426910243", b"1.795257639096357e+09"):
        assert ok[text], text
    buf, starts, lengths = _layout([b"-0", b"-0.0"])
    values, _ = parse_numbers(buf, starts, lengths)
    assert math.copysign(1.0, values[0]) == math.copysign(1.0, values[1]) == -1.0


# The caller falls back to float()/json for these; float() rejects the first group outright.
REJECTED = [
    b"",
    b"-",
    b"+",
    b".",
    b"e",
    b"e5",
    b"-e5",
    b"1e",
    b"1E",
    b"1e+",
    b"1e-",
    b"--1",
    b"-+1",
    b"1-2",
    b"1+2",
    b"1.2.3",
    b"1..2",
    b"1e5e5",
    b"1ee5",
    b"1e5.5",
    b"1e+-5",
    b"1e--5",
    b"0x10",
    b"1_000_",
    b"1,5",
    b"1 2",
    b"\x001",
    b"1\x00",
    b"1\x002",
    b"true",
    b"false",
    b"null",
    b'"1"',
    b"{}",
    b"[1]",
    b"\xd9\xa1",
    b"1\xff",
    b"1e)5",
    b"1e/5",
    b"1e,5",
    b"NaN1",
]
ACCEPTED_BY_FLOAT = [
    b"NaN",
    b"nan",
    b"Infinity",
    b"-Infinity",
    b"inf",
    b"+1",
    b".5",
    b"-.5",
    b"1.",
    b"1.e5",
    b" 1",
    b"1 ",
    b"\t1\n",
    b"1_000",
    b"1e005",
    b"1e+123",
    b"1e-0005",
    b"12345678901234567890123",
    b"0." + b"0" * 40 + b"1",
]


def test_malformed_texts_are_never_ok() -> None:
    assert all(_reference(t) is None for t in REJECTED)
    assert not _check(REJECTED).any()
    assert all(_reference(t) is not None for t in ACCEPTED_BY_FLOAT)
    _check(ACCEPTED_BY_FLOAT)


def test_random_junk_from_the_number_alphabet() -> None:
    rnd = random.Random(SEED)
    alphabet = b"0123456789" * 3 + b"..eE+-"
    texts = [bytes(rnd.choices(alphabet, k=rnd.randint(1, 14))) for _ in range(60_000)]
    ok = _check(texts)
    assert ok.any()


def _midpoint_texts(rng: random.Random, count: int) -> list[bytes]:
    """19-, 18- and 17-digit decimals within a hair of the midpoint between two adjacent doubles."""
    texts = []
    for _ in range(count):
        x = rng.uniform(1, 10) * 10.0 ** rng.randint(-20, 30)
        mid = (Fraction(x) + Fraction(math.nextafter(x, math.inf))) / 2
        digits = rng.choice((17, 18, 19))
        e = math.floor(math.log10(mid)) - digits + 1
        m = round(mid / Fraction(10) ** e)
        for d in (-1, 0, 1):
            texts.append(f"{m + d}e{e}".encode())
            texts.append(f"{m + d}".encode() + b"0" * e if 0 <= e <= 4 else f"{(m + d) * 10}e{e - 1}".encode())
    return texts


def test_near_midpoints_are_right_or_refused() -> None:
    _check(_midpoint_texts(random.Random(SEED), 8_000))


def test_exact_midpoint_integers() -> None:
    """Integers from 2**53 to 2**64: every odd one below 2**54 is a midpoint, and so on up."""
    rnd = random.Random(SEED)
    texts = []
    for _ in range(20_000):
        shift = rnd.randint(0, 10)
        base = rnd.randrange(2**52, 2**53) << (shift + 1)
        mid = base + (1 << shift)
        texts += [str(v).encode() for v in (mid - 1, mid, mid + 1) if v < 2**64]
    ok = _check(texts)
    middle = np.array([int(t) % (1 << (int(t).bit_length() - 53)) != 0 for t in texts])
    assert ok[middle].mean() > 0.5


def test_without_extended_precision_only_the_exact_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numparse, "_EXTENDED", False)
    rng = np.random.default_rng(SEED)
    texts = [repr(float(x)).encode() for x in _random_doubles(rng, 2_000)]
    texts += _midpoint_texts(random.Random(SEED), 500)
    ok = _check(texts)
    assert ok[[t == b"0.5" or len(t) <= 8 for t in texts]].all()


def test_text_at_the_end_of_the_buffer_and_buffer_edges() -> None:
    for texts in ([b"1"], [b"-1.5e-05"], [b"0.0003", b"12"], [b"3.709569426910243"], [b"1", b"22", b"333"]):
        data = b"".join(texts)
        starts = np.cumsum([0] + [len(t) for t in texts[:-1]]).astype(np.int64)
        lengths = np.array([len(t) for t in texts], dtype=np.int64)
        values, ok = parse_numbers(np.frombuffer(data, np.uint8), starts, lengths)
        assert ok.all()
        assert values.tolist() == [float(t) for t in texts]
    # Texts in the first bytes of the buffer are read from a padded copy.
    for texts in ([b"7", b"3.7095694269102431", b"1"], [b"-5", b"12", b"1.5e-05"] * 200):
        buf, starts, lengths = _layout(texts, sep=b"")
        buf, starts = buf[2:], starts - 2
        values, ok = parse_numbers(buf, starts, lengths)
        assert ok.all() and values.tolist() == [float(t) for t in texts]


def test_empty_zero_length_out_of_range_and_long() -> None:
    values, ok = parse_numbers(np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert values.shape == ok.shape == (0,)
    buf = np.frombuffer(b"12345", np.uint8)
    starts = np.array([0, 2, 4, 5, -1, 3, 0], dtype=np.int64)
    lengths = np.array([0, 0, 1, 0, 2, 5, 5], dtype=np.int64)
    values, ok = parse_numbers(buf, starts, lengths)
    assert ok.tolist() == [False, False, True, False, False, False, True]
    assert values[2] == 5.0 and values[6] == 12345.0
    long_text = b"1." + b"0" * (MAX_WIDTH - 1)
    _check([long_text, b"2", long_text * 3, b"0." + b"1" * 100])
    buf, starts, lengths = _layout([long_text])
    assert not parse_numbers(buf, starts, lengths)[1].any()


def test_accepts_other_integer_and_buffer_types() -> None:
    data = b"[1.5,2,-3e-3]"
    values, ok = parse_numbers(
        np.frombuffer(data, np.uint8)[1:-1], np.array([0, 4, 6], np.int32), np.array([3, 1, 5], np.int32)
    )
    assert ok.all() and values.tolist() == [1.5, 2.0, -0.003]
    with pytest.raises(ValueError):
        parse_numbers(np.frombuffer(data, np.uint8), np.array([0, 1]), np.array([1]))


def _realistic(n: int) -> list[bytes]:
    """A W&B history's values: 16-17 digit losses, timestamps, step counters, a learning rate, an epoch."""
    rng = np.random.default_rng(SEED)
    texts: list[bytes] = []
    for i in range(n // 5):
        texts.append(repr(float(rng.random() * 4 + 0.1)).encode())
        texts.append(_go(1.795257639e9 + i * 0.37 + float(rng.random()) * 1e-3).encode())
        texts.append(str(30864 + i).encode())
        texts.append(b"0.0003")
        texts.append(b"1")
    return texts


def test_realistic_mix_is_nearly_all_ok() -> None:
    ok = _check(_realistic(50_000))
    assert ok.mean() > 0.995


def _benchmark(n: int = 700_000) -> None:
    texts = _realistic(n)
    buf, starts, lengths = _layout(texts)
    _, ok = parse_numbers(buf, starts, lengths)

    def best(run: Callable[[], object], repeat: int) -> float:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        return min(times) / len(texts) * 1e9

    vectorized = best(lambda: parse_numbers(buf, starts, lengths), 9)
    baseline = best(lambda: list(map(float, texts)), 3)
    print(f"{len(texts)} values: parse_numbers {vectorized:.1f} ns/value, map(float) {baseline:.1f} ns/value")
    print(f"ok=False: {100 * (1 - ok.mean()):.3f}%  (long double path: {numparse._EXTENDED})")


if __name__ == "__main__":
    _benchmark(int(sys.argv[1]) if len(sys.argv) > 1 else 700_000)
