"""Parse many JSON number texts at once with numpy, bit-identical to `float()`, for bulk history reads.

Calling `float()` on every value of a long W&B history costs ~220 ns a value; this does the common
shapes (`3.709569426910243`, `1.795257639096357e+09`, `30864`, `1e-05`) in about a quarter of that
and says, per value, whether it could: the caller parses the rest with `float()`.

How: each text's bytes are gathered right-aligned into a byte matrix with one row per position
from the end (so numpy works on whole rows of uint8), the grammar is checked by where the few
non-digits sit and by counting digits, the mantissa digits are folded into a uint64 by a pairwise
tree, and the value is formed with one correctly rounded operation (`_convert` says why it is exact).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["MAX_WIDTH", "parse_numbers"]

MAX_WIDTH = 32
"""Texts longer than this many bytes are not parsed here (ok=False)."""

_CHUNK = 32768  # values per pass: enough to amortise numpy's per-call cost, few enough to stay in cache
_SHORT = 8  # texts up to this long are parsed apart from longer ones when both are common
_TREE_TYPES = (np.uint8, np.uint16, np.uint32, np.uint64)  # values < 10**2, 10**4, 10**8, 10**16


def _extended_precision() -> bool:
    """Whether `np.longdouble` is x87 80-bit extended (64-bit mantissa) and arithmetic keeps all 64 bits."""
    if np.finfo(np.longdouble).nmant != 63 or np.dtype(np.longdouble).itemsize != 16 or not np.little_endian:
        return False
    one = np.longdouble(1)
    return bool(one + np.longdouble(2) ** -63 != one)


_EXTENDED = _extended_precision()
_OFF = 32  # divisor tables are indexed by _OFF - k and read with take(mode="clip"), so any k is safe
_P10 = np.array([10.0**i for i in range(23)])  # exact in float64: 5**22 < 2**53
_DIV = np.ones(2 * _OFF)  # 10**-k for -22 <= k <= 0; 1 elsewhere (k > 0 multiplies after; the rest is not ok)
_DIV[_OFF : _OFF + 23] = _P10
_P10X = np.ones(28, dtype=np.longdouble)  # exact in 64 bits: 10**27 = 2**27 * 5**27 and 5**27 < 2**64
for _i in range(1, 28):
    _P10X[_i] = _P10X[_i - 1] * 10
_DIVX = np.ones(2 * _OFF, dtype=np.longdouble)
_DIVX[_OFF : _OFF + 28] = _P10X
_MAX_K = 27 if _EXTENDED else 22
_TWO53 = 2**53


def parse_numbers(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse many JSON number texts lying in one byte buffer, vectorized: `(values, ok)`, float64 and bool.

    Text i is `bytes(buf[starts[i] : starts[i] + lengths[i]])` (a range not inside `buf` is not ok).
    Where `ok[i]`, `values[i]` is bit-identical to `float(text_i)`; elsewhere it is NaN and the caller
    parses the text itself. Only `-?digits(.digits)?([eE][+-]?digits)?` texts of at most `MAX_WIDTH`
    bytes can be ok, and of those not: digits worth 1.8e19 or more (leading zeros aside, trailing
    ones not), exponents of three or more digits, values beyond one exact operation (|exponent less
    fraction digits| above 27, or 22 without x87 long double), and texts within 2**-11 of an ulp
    of a halfway point between two doubles (none printed from a double in up to 17 digits; about
    one random 19-digit decimal in 1,500). Meant for bulk: a call costs ~0.15 ms besides, the time
    `float()` takes for about 700 values.
    """
    data = np.ascontiguousarray(buf, dtype=np.uint8).reshape(-1)
    starts = np.ascontiguousarray(starts, dtype=np.int64).reshape(-1)
    lengths = np.ascontiguousarray(lengths, dtype=np.int64).reshape(-1)
    if starts.shape != lengths.shape:
        raise ValueError("starts and lengths differ in length")
    n = len(starts)
    values = np.empty(n, dtype=np.float64)
    ok = np.zeros(n, dtype=bool)
    if n == 0:
        return values, ok
    size = len(data)
    inside = (lengths - 1).view(np.uint64) < MAX_WIDTH  # 1 <= length <= MAX_WIDTH
    if starts.min() < 0 or int((starts + lengths).max()) > size:
        inside &= (starts >= 0) & (starts <= size - lengths)
    length = lengths.astype(np.uint8)
    length *= inside  # 0 marks a text not to parse
    ends = starts + lengths
    if not inside.all():
        ends *= inside
    scratch = _Scratch(min(n, _CHUNK), int(length.max()))
    for i in range(0, n, _CHUNK):
        j = min(i + _CHUNK, n)
        _parse_split(data, ends[i:j], length[i:j], values[i:j], ok[i:j], scratch)
    return values, ok


def _parse_split(
    data: np.ndarray, ends: np.ndarray, length: np.ndarray, values: np.ndarray, ok: np.ndarray, s: _Scratch
) -> None:
    """`_parse_rows` on short and long texts apart when both are common: the work grows with the widest."""
    short = length <= _SHORT
    n_short = int(np.count_nonzero(short))
    if len(length) < 256 or n_short < len(length) // 8 or n_short == len(length):
        _parse_rows(data, ends, length, values, ok, s)
        return
    for rows in (np.flatnonzero(short), np.flatnonzero(~short)):
        part_values = np.empty(len(rows), dtype=np.float64)
        part_ok = np.empty(len(rows), dtype=bool)
        _parse_rows(data, ends[rows], length[rows], part_values, part_ok, s)
        values[rows] = part_values
        ok[rows] = part_ok


class _Scratch:
    """Buffers reused from chunk to chunk, sized for the widest text."""

    def __init__(self, n: int, width: int) -> None:
        size = (width + 5) * n
        self.x = np.empty(size, dtype=np.uint8)
        self.d = np.empty(size, dtype=np.uint8)
        self.b1 = np.empty(size, dtype=bool)
        self.b2 = np.empty(size, dtype=bool)
        self.u1 = np.empty(size, dtype=np.uint8)
        self.u2 = np.empty(size, dtype=np.uint8)
        self.t16 = np.empty(size // 2 + n, dtype=np.uint16)
        self.trees = [(np.empty(size // 2, dtype=t), np.empty(size // 2, dtype=t)) for t in _TREE_TYPES]
        self.pos = np.arange(max(width, 1), dtype=np.uint8)[:, None]
        self.pos1 = self.pos + np.uint8(1)
        self.cols = np.arange(n, dtype=np.int64)

    def mat(self, name: str, rows: int, n: int) -> np.ndarray:
        """The first `rows * n` items of buffer `name` as a (rows, n) matrix."""
        flat: np.ndarray = getattr(self, name)
        return flat[: rows * n].reshape(rows, n)


def _gather(data: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """The `width` bytes before each end as an (n, width) matrix; bytes before the start of `data` read as 0.

    `width` is at most `len(data)`: it is the length of some text inside `data`.
    """
    n = len(ends)
    vtype = np.dtype((np.void, width))
    # One strided view whose item j is data[j : j + width]: a single gather copies a whole text.
    window = np.ndarray((len(data) - width + 1,), dtype=vtype, buffer=data, strides=(1,))
    if int(ends.min()) >= width:
        return window[ends - width].view(np.uint8).reshape(n, width)
    rows = window[np.clip(ends - width, 0, None)]
    near = np.flatnonzero(ends < width)  # texts in the first `width` bytes: read from a zero-padded copy
    head = np.zeros(2 * width, dtype=np.uint8)
    head[width:] = data[:width]
    head_window = np.ndarray((width + 1,), dtype=vtype, buffer=head, strides=(1,))
    rows[near] = head_window[ends[near]]
    return rows.view(np.uint8).reshape(n, width)


def _transpose(rows: np.ndarray, into: np.ndarray, s: _Scratch) -> None:
    """Copy an (n, w) byte matrix transposed into the last w rows of `into`.

    With w even, as (n, w / 2) uint16 and then low and high bytes apart: numpy moves 2-byte items
    much faster than bytes.
    """
    n, w = rows.shape
    if w % 2:
        np.copyto(into[len(into) - w :], rows.T)
        return
    pairs = s.mat("t16", w // 2, n)
    np.copyto(pairs, rows.view(np.uint16).T)
    np.copyto(into[len(into) - w :: 2], pairs, casting="unsafe")
    np.right_shift(pairs, 8, out=pairs)
    np.copyto(into[len(into) - w + 1 :: 2], pairs, casting="unsafe")


def _last(mask: np.ndarray, pos1: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """Per column, 1 + the last row where `mask` is set, or 0 where none is."""
    np.multiply(mask.view(np.uint8), pos1, out=tmp)
    return np.maximum.reduce(tmp, axis=0)


def _is_e(row: np.ndarray) -> np.ndarray:
    """Where a row of bytes holds 'e' or 'E'."""
    return (row | 32) == 101


def _is_sign(row: np.ndarray) -> np.ndarray:
    """Where a row of bytes holds '+' or '-'."""
    return ((row - np.uint8(43)) & np.uint8(0xFD)) == 0  # '+' is 43, '-' is 45


def _parse_rows(
    data: np.ndarray, ends: np.ndarray, length: np.ndarray, values: np.ndarray, ok: np.ndarray, s: _Scratch
) -> None:
    """Parse the texts ending at `ends` into `values` and `ok` (both written in full)."""
    n = len(ends)
    width = int(length.max(initial=0))
    if width == 0:
        values.fill(np.nan)
        ok.fill(False)
        return
    # The texts right-aligned: byte p from the end of every text in row width - 1 - p of `body`,
    # zeros above each text, four zero rows above all and one below (rows read past the ends).
    x = s.mat("x", width + 5, n)
    x[:4] = 0
    x[width + 4] = 0
    body = x[4 : width + 4]
    _transpose(_gather(data, ends, width + (width & 1 if width < len(data) else 0)), x[: width + 4], s)
    x[3] = 0  # where an odd width's extra gathered row went
    pos = s.pos[:width]
    top = np.uint8(width) - length  # the row of each text's first byte
    live = s.mat("b1", width, n)
    np.greater_equal(pos, top, out=live)
    np.multiply(body, live.view(np.uint8), out=body)

    d = s.mat("d", width, n)
    np.subtract(body, 48, out=d)
    digit = s.mat("b2", width, n)
    np.less(d, 10, out=digit)
    n_digits = np.add.reduce(digit, axis=0, dtype=np.uint8).astype(np.int16)
    tmp = s.mat("u1", width, n)
    mark = s.mat("b1", width, n)
    np.equal(body, 46, out=mark)
    dot1 = _last(mark, s.pos1[:width], tmp).astype(np.int16)  # 1 + the row of the '.', 0 if none

    # The exponent, refused past two digits (beyond 99 the value is out of exact reach anyway),
    # sits in the last rows: 'e' then d, dd, sd or sdd, s a sign.
    end = width + 4  # the row in `x` after the last byte
    e1 = _is_e(x[end - 2])
    e2 = _is_e(x[end - 3])
    e3 = _is_e(x[end - 4])
    sign2 = _is_sign(x[end - 2])
    e3 &= _is_sign(x[end - 3])
    has_e = e1 | e2 | e3
    signed = e2 & sign2
    signed |= e3
    two = e2 & ~sign2
    two |= e3
    exp_neg = (e2 & (x[end - 2] == 45)) | (e3 & (x[end - 3] == 45))
    exponent = d[width - 2] * two.view(np.uint8)
    exponent *= 10
    exponent += d[width - 1]
    exponent = exponent.astype(np.int16)
    exponent *= has_e
    flip = -exp_neg.astype(np.int16)  # -1 where negative: x ^ -1 is -x - 1
    exponent ^= flip
    exponent -= flip

    # The grammar -?D+(.D+)?([eE][+-]?D+)? holds iff the non-digits found sit where they may and
    # every other byte is a digit: count digits against the length less those non-digits. (Where
    # a '.' or 'e' appears twice, one fails the count.)
    at = top.astype(np.int64)
    at += 4
    at *= n
    at += s.cols[:n]
    neg = x.reshape(-1)[at] == 45
    first = top.astype(np.int16) + neg  # the mantissa is rows [first, mant_end)
    mant_end = np.int16(width) - e1 * np.int16(2) - e2 * np.int16(3) - e3 * np.int16(4)
    count = n_digits + neg
    has_dot = dot1 > 0
    count += has_dot
    count += has_e
    count += signed
    good = count == length
    good &= mant_end > first
    good &= ~has_dot | ((dot1 > first + 1) & (dot1 < mant_end))
    k = np.where(has_dot, dot1 - mant_end, exponent)  # the exponent less the fraction digits
    k += exponent * has_dot
    n_mant = n_digits - has_e - two  # digits before the exponent, leading zeros too

    m = _mantissa(d, digit, mant_end, pos, s)
    # Up to 19 digits (leading zeros too) the mantissa is below 10**19 < 2**64. With more, the tree's
    # top product may have wrapped: refuse it unless its float64 estimate (within 1e-15) is clearly
    # below 2**64 less the low part (< 10**16).
    wide = np.flatnonzero(good & (n_mant > 19))
    if len(wide):
        good[wide] &= m.hi[wide].astype(np.float64) * m.scale[wide].astype(np.float64) < 1.8e19 - 1e16
    _convert(m.value, k, good, neg, values, ok)


class _Mantissa(NamedTuple):
    """The mantissa as `hi * scale + lo` (wrapping past 2**64), its parts kept for the overflow check."""

    value: np.ndarray
    hi: np.ndarray
    scale: np.ndarray


def _mantissa(dig: np.ndarray, digit: np.ndarray, mant_end: np.ndarray, pos: np.ndarray, s: _Scratch) -> _Mantissa:
    """The integer of each column's digits before row `mant_end` (the '.' skipped), by a pairwise tree.

    Each position is a pair (value, 10**digits): a digit is (d, 10), anything else (0, 1), and
    (a, p) then (b, q) combine to (a * q + b, p * q). Each level halves the rows in the narrowest
    type that holds it: values below 10**2, 10**4, 10**8, 10**16.
    """
    n = dig.shape[1]
    mant = digit  # overwritten: the caller is done with it
    live = s.mat("b1", len(dig), n)
    np.less(pos, mant_end.astype(np.uint8), out=live)
    np.logical_and(digit, live, out=mant)
    vals = s.mat("u1", len(dig), n)
    np.multiply(dig, mant.view(np.uint8), out=vals)
    mult = s.mat("u2", len(dig), n)
    np.multiply(mant.view(np.uint8), 9, out=mult)
    mult += 1
    for out_v, out_m in s.trees:
        rows = len(vals)
        if rows <= 2:
            break
        half, up = rows // 2, (rows + 1) // 2
        nv, nm = out_v[: up * n].reshape(up, n), out_m[: up * n].reshape(up, n)
        np.multiply(vals[0 : 2 * half : 2], mult[1 : 2 * half : 2], out=nv[:half], dtype=nv.dtype)
        np.add(nv[:half], vals[1 : 2 * half : 2], out=nv[:half])
        np.multiply(mult[0 : 2 * half : 2], mult[1 : 2 * half : 2], out=nm[:half], dtype=nm.dtype)
        if rows % 2:
            nv[half] = vals[rows - 1]
            nm[half] = mult[rows - 1]
        vals, mult = nv, nm
    lo = vals[-1].astype(np.uint64)
    if len(vals) == 1:
        return _Mantissa(lo, np.zeros_like(lo), np.ones_like(lo))
    hi = vals[0].astype(np.uint64)
    scale = mult[1].astype(np.uint64)
    value = np.multiply(hi, scale)
    np.add(value, lo, out=value)
    return _Mantissa(value, hi, scale)


def _convert(
    m: np.ndarray, k: np.ndarray, good: np.ndarray, neg: np.ndarray, values: np.ndarray, ok: np.ndarray
) -> None:
    """`(-1)**neg * m * 10**k` correctly rounded into `values` where `good` and exactness is certain.

    Clinger's fast path: m <= 2**53 and 10**|k| (|k| <= 22) are exact doubles, so one IEEE multiply
    or divide rounds the exact value once, correctly. With x87 extended precision, m < 2**64 and
    10**|k| for |k| <= 27 are exact long doubles, so one operation rounds the exact value x once, to
    r with a 64-bit mantissa; converting r to double then rounds again. Every double and every
    midpoint between adjacent doubles (54 bits) is a long double, and rounding is monotone, so x
    below a midpoint gives r at or below it and above gives at or above: unless r lands exactly on
    a midpoint, x and r lie between the same two midpoints and round to the same double. Results
    stay far from the subnormal and overflow ranges (1e-27 <= x < 1e47), so a midpoint is a long
    double whose 64-bit mantissa ends in the 11 bits 100_0000_0000; those few go to `float()`.
    (Without x87, only the fast path.)
    """
    zero = m == 0
    fast = (m <= _TWO53) & (k >= -22) & (k <= 22)
    fast |= zero
    fast &= good
    v = values
    np.copyto(v, m, casting="unsafe")
    at = np.subtract(np.int16(_OFF), k, dtype=np.int16)
    v /= _DIV.take(at, mode="clip")  # k > 0 divides by 1
    up = np.flatnonzero(fast & (k > 0))
    if len(up):
        v[up] *= _P10.take(k[up], mode="clip")  # a zero may have any k
    np.copyto(ok, fast)
    if _EXTENDED:
        slow = np.flatnonzero(good & ~fast & (k >= -_MAX_K) & (k <= _MAX_K))
        if len(slow):
            r = m[slow].astype(np.longdouble)
            r /= _DIVX.take(at[slow], mode="clip")  # k >= 0 divides by 1: exact
            grow = np.flatnonzero(k[slow] > 0)
            if len(grow):
                r[grow] *= _P10X.take(k[slow[grow]])
            low = r.view(np.uint64)[::2] & 0x7FF
            v[slow] = r.astype(np.float64)
            ok[slow] = low != 0x400
    v *= np.where(neg, -1.0, 1.0)  # 0.0 becomes -0.0
    v[np.flatnonzero(~ok)] = np.nan
