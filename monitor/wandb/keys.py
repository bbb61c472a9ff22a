"""Columns for the keys of W&B history items, told apart by their encoded bytes with numpy.

The bulk `.wandb` reader finds hundreds of thousands of items per piece; decoding each key to a
string would cost more than the rest of the reading. Instead a key field (tag, length, text) is
told by its first 8 bytes (masked) and its last 8, hashed: exact up to 16 bytes, and a longer key
also has its middle bytes compared with those of the key known by that hash. Each distinct key
field is decoded once, by `wandb_log`'s `_KEY_NAMES`, which also refuses malformed ones.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from monitor.wandb.reader import _BAD_KEY, _KEY_NAMES

_MASKS = np.array([(1 << (8 * r)) - 1 for r in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def byte_window(buf: np.ndarray, dtype: str) -> np.ndarray:
    """A view of `buf` whose element i is the little-endian `dtype` starting at byte i."""
    size = np.dtype(dtype).itemsize
    return np.ndarray((len(buf) - size + 1,), dtype, buffer=buf, strides=(1,))


class KeyColumns:
    """Key names and their column numbers, in the order first seen, and encoded key fields to columns."""

    def __init__(self, first: Iterable[str] = ()) -> None:
        self.names: list[str] = []
        """Column number -> key."""
        self.index: dict[str, int] = {}
        """Key -> column number."""
        for name in first:
            self.column(name)
        self._hashes = np.empty(0, np.uint64)  # sorted hashes of the encoded key fields seen
        self._hash_cols = np.empty(0, np.int64)  # their columns (-1: a malformed key field)
        self._heads = np.empty(0, np.uint64)  # their first 8 bytes, masked
        self._tails = np.empty(0, np.uint64)  # and last 8 (0 if 8 or fewer)
        self._fields: dict[int, bytes] = {}  # hash -> the encoded key field

    def column(self, name: str) -> int:
        """The column of a key, a new one if it was not seen before."""
        col = self.index.get(name)
        if col is None:
            col = self.index[name] = len(self.names)
            self.names.append(name)
        return col

    def of_fields(self, b: np.ndarray, ks: np.ndarray, kl: np.ndarray) -> np.ndarray:
        """The column of each item's encoded key field (`ks`, `kl`: offsets and lengths; tag, length and
        text); -1 where the array path does not take it.

        A key field is told by its first 8 bytes (masked) and its last 8: exact up to 16 bytes, and
        longer ones have their middle bytes compared with the known key's as well.
        """
        if not len(ks):
            return np.empty(0, np.int64)
        u64 = byte_window(b, "<u8")
        head = u64[ks]
        short = np.flatnonzero(kl < 8)
        head[short] &= _MASKS[kl[short]]
        tail = np.zeros(len(ks), np.uint64)
        longer = np.flatnonzero(kl > 8)
        tail[longer] = u64[ks[longer] + kl[longer] - 8]
        h = head * _MIX ^ tail
        col = self._lookup(h, head, tail)
        sample = 1024  # new keys are learnt from the first items that have them, then looked up again
        while (unknown := np.flatnonzero(col == -2)).size:
            hs, first = np.unique(h[unknown[:sample]], return_index=True)
            at = unknown[first]
            fields = [bytes(b[s : s + n]) for s, n in zip(ks[at].tolist(), kl[at].tolist(), strict=True)]
            self._learn(hs, head[at], tail[at], fields)
            if unknown.size == len(col):
                col = self._lookup(h, head, tail)
            else:
                col[unknown] = self._lookup(h[unknown], head[unknown], tail[unknown])
            col[at[col[at] == -2]] = -1  # a hash collision: left to the record decoder
            sample *= 4
        long = np.flatnonzero((kl > 16) & (col >= 0))
        for key in np.unique(h[long]).tolist() if long.size else ():
            items = long[h[long] == key]
            field = self._fields[key]
            for j in range(8, len(field) - 8, 8):
                want = np.frombuffer(field[j : j + 8], "<u8")[0]
                col[items[u64[ks[items] + j] != want]] = -1
        return np.where(col < 0, -1, col)

    def _lookup(self, h: np.ndarray, head: np.ndarray, tail: np.ndarray) -> np.ndarray:
        """Known columns by hash, checked on both words: -2 unknown (or a hash collision), -1 not taken."""
        if not len(self._hashes):
            return np.full(len(h), -2, np.int64)
        at = np.minimum(np.searchsorted(self._hashes, h), len(self._hashes) - 1)
        same = (self._hashes[at] == h) & (self._heads[at] == head) & (self._tails[at] == tail)
        return np.where(same, self._hash_cols[at], -2)

    def _learn(self, hashes: np.ndarray, heads: np.ndarray, tails: np.ndarray, fields: list[bytes]) -> None:
        """Remember new encoded key fields and their columns (a colliding hash keeps its first key)."""
        new = ~np.isin(hashes, self._hashes)
        cols = []
        for h, ks, fresh in zip(hashes.tolist(), fields, new.tolist(), strict=True):
            name = _KEY_NAMES[ks] if fresh else _BAD_KEY
            cols.append(self.column(name) if name != _BAD_KEY else -1)
            if fresh:
                self._fields[h] = ks
        order = np.argsort(np.concatenate([self._hashes, hashes[new]]), kind="stable")
        self._hashes = np.concatenate([self._hashes, hashes[new]])[order]
        self._hash_cols = np.concatenate([self._hash_cols, np.array(cols, np.int64)[new]])[order]
        self._heads = np.concatenate([self._heads, heads[new]])[order]
        self._tails = np.concatenate([self._tails, tails[new]])[order]
