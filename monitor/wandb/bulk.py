"""Bulk reading of a finished `.wandb` file: history rows straight into `Columns` blocks.

`WandbLogReader` decodes record by record: right for a live tail, but ~10 µs a row in Python, most
of it per-value object work. A finished run (100k-1M rows) is instead read here a whole piece at a
time with numpy, with no Python object per value:

1. framing: each 32 KiB block is a chain of chunk headers and blocks are independent, so all the
   chains of a piece are walked side by side, one numpy step per chunk position;
2. checksums: every chunk whose content is used is checked with `zlib.crc32`, and a bad one drops
   the rest of its block, as wandb-core's reader does. Summary records are not read here (they
   repeat the rows), so theirs are the only ones not checked;
3. history records are split into items side by side (one numpy step per item position), keys are
   told apart exactly by their encoded bytes, and values parsed by `numparse.parse_numbers`;
4. rows sharing their key set become one `Columns` block.

Whatever is off the common shape (nested keys, long items, extra fields, records split over chunks,
values that are not plain numbers) goes through `wandb_log`'s record decoder, record by record or
value by value, so the rows are those `WandbLogReader` gives.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from monitor.columns import Columns
from monitor.protowire import varint
from monitor.stepaxis import STEP_KEYS, StepAxis
from monitor.wandb.keys import KeyColumns, byte_window
from monitor.wandb.numparse import parse_numbers
from monitor.wandb.reader import (
    _CRC_SEEDS,
    BLOCK_SIZE,
    CHUNK_HEADER,
    FIRST,
    FULL,
    HEADER_SIZE,
    LAST,
    MIDDLE,
    WandbEvent,
    WandbLogReader,
    _check_header,
    _field_body,
    _number,
    history_values,
)
from monitor.wandb.resume import ResumeState

_PIECE = 8 << 20  # bytes read and decoded at a time (32 MB pieces cost ~110 MB more RSS and read no faster)
_PAD = 512  # room after a piece: fixed-offset reads past a record's end stay inside the buffer
_MAX_CELLS = 1 << 22  # rows x keys of one dense value table; more rows are taken in groups
_MIN_GROUP = 1024  # rows of a table at the least
_NUM_TAG, _HISTORY_TAG, _SUMMARY_TAG, _ITEM_TAG, _VALUE_TAG = 0x08, 0x12, 0x1A, 0x0A, 0x82
_SPECIAL_KEYS = ("_step", "_timestamp", "_runtime")
_STEP, _TIME, _RUNTIME = 0, 1, 2  # their columns (also in each table: the first two)
_SPECIAL = frozenset(_SPECIAL_KEYS)


@dataclass
class _Piece:
    """One piece's bytes and what was found in it."""

    data: memoryview
    b: np.ndarray  # the same bytes as uint8, with room for fixed-offset reads past the piece's end
    joined: list[tuple[int, bytes]] = field(default_factory=list)  # (last chunk index, history record) put together
    events: list[WandbEvent] = field(default_factory=list)


class WandbBulkReader:
    """Reads a whole `.wandb` file in big pieces, for backfill: rows as `Columns` blocks, and the
    other events (run, config, console, stats, exit) in file order. Summaries are not read."""

    def __init__(self) -> None:
        self._pos = 0  # file offset of the piece being read
        self._parts: list[bytes] | None = None  # a record split over chunks, being put together
        self._parts_at = 0  # file offset of its first chunk
        self._parts_last = -1  # chunk index of its last part in the piece being read (-1: an earlier piece)
        self._resume = HEADER_SIZE  # file offset just past the last whole record read
        self._last_step = -1.0
        self._axis = StepAxis("_step")
        self._records = WandbLogReader(start_offset=1)  # decodes the records the array path leaves
        self._keys = KeyColumns(_SPECIAL_KEYS)
        self.records = 0
        """Logical records read."""
        self.skipped_bytes = 0
        """Bytes dropped for a bad checksum or chunk header."""
        self.slow_rows = 0
        """History rows that went through the record-by-record decoder."""

    @property
    def step_key(self) -> str:
        """The key the rows' step comes from (`train/global_step`, ..., or `_step`)."""
        return self._axis.key

    @property
    def bad_records(self) -> int:
        """Records with a good checksum that still did not decode (skipped)."""
        return self._records.bad_records

    def read(self, f: io.BufferedIOBase) -> Iterator[tuple[list[Columns], list[WandbEvent]]]:
        """Read the file `f` from its start: the rows and other events of each piece, in file order.

        A torn last record is left unread (`resume_offset` is where it starts); a file that is not a
        `.wandb` log is a FormatError.
        """
        _check_header(f.read(HEADER_SIZE).ljust(HEADER_SIZE, b"\0"))
        self._pos = HEADER_SIZE
        buf = bytearray(_PIECE + BLOCK_SIZE + _PAD)
        view = memoryview(buf)
        held = 0
        piece = min(_PIECE, 1 << 20)  # small first pieces, so that a consumer can start at once
        while True:
            got = f.readinto(view[held : held + piece])
            piece = min(2 * piece, _PIECE)
            held += got
            final = got == 0
            n = held if final else (self._pos + held) // BLOCK_SIZE * BLOCK_SIZE - self._pos
            if n > 0:
                yield self._read(view, np.frombuffer(buf, np.uint8), n)
                view[: held - n] = view[n:held]
                held -= n
            if final:
                break

    @property
    def resume_offset(self) -> int:
        """File offset just past the last whole record read: a live file's tail goes on from there."""
        return self._resume

    def resume_state(self) -> ResumeState:
        """What a record-by-record reader needs to go on at `resume_offset` as if it had read what
        this one did: the step axis, the step counter, console lines waiting for their newline."""
        return ResumeState(
            self._resume,
            self._axis,
            self._last_step,
            tuple(self._records._console.items()),
            self.records,
            self.bad_records,
            self.skipped_bytes,
        )

    def live_reader(self) -> WandbLogReader:
        """A record-by-record reader that goes on at `resume_offset` (`WandbLogReader.resume`)."""
        return WandbLogReader.resume(self.resume_state())

    def _read(self, view: memoryview, b: np.ndarray, n: int) -> tuple[list[Columns], list[WandbEvent]]:
        """Rows and events of one piece, `view[:n]`, which starts at a chunk boundary and ends at a
        block's end or at the end of the file (`b`: the same bytes, with room after)."""
        p = _Piece(view, b)
        base = self._pos
        pos, ln, ty, chain, chain_end = self._frame(b, n)
        self._pos += n
        start = pos + CHUNK_HEADER
        tag_at = _tag_positions(b, start, ln)
        tag = np.where(tag_at < start + ln, b[tag_at], 0)
        full = ty == FULL
        keep = self._checksums(p, pos, ln, ty, full & (tag == _SUMMARY_TAG), chain, chain_end)
        self.records += int((keep & full).sum())
        # The few records the array path leaves, in file order: split ones, and all but history rows.
        for i in np.flatnonzero(keep & ((ty != FULL) | ((tag != _HISTORY_TAG) & (tag != _SUMMARY_TAG)))).tolist():
            rec = bytes(view[int(start[i]) : int(start[i] + ln[i])])
            if ty[i] != FULL:
                whole = self._fragment(i, rec, int(ty[i]), base + int(pos[i]))
                if whole is None:
                    continue
                rec = whole
                self.records += 1
            elif self._parts is not None:  # a whole record while one was being put together: that one is lost
                self._drop_parts()
            self._record(i, rec, p)
        if self._parts is not None and len(pos) and self._parts_last != len(pos) - 1:
            self._drop_parts()  # the chunks after the last part were not its continuation
        self._parts_last = -1
        kept = np.flatnonzero(keep)
        if self._parts is not None:
            self._resume = self._parts_at
        elif len(kept):
            self._resume = base + int(pos[kept[-1]] + CHUNK_HEADER + ln[kept[-1]])
        hist = np.flatnonzero(keep & full & (tag == _HISTORY_TAG))
        hist_start, hist_end, hist_tag = start[hist], (start + ln)[hist], tag_at[hist]
        if p.joined:  # history records put back together: appended to a copy of the piece, read alike
            sizes = [len(r) for _, r in p.joined]
            at = n + np.cumsum([0, *sizes[:-1]], dtype=np.int64)
            joined = np.frombuffer(b"".join(r for _, r in p.joined), np.uint8)
            p.b = np.concatenate([b[:n], joined, np.zeros(_PAD, np.uint8)])
            p.data = p.b.data
            order = np.argsort(np.concatenate([hist, [i for i, _ in p.joined]]), kind="stable")
            hist = np.concatenate([hist, [i for i, _ in p.joined]])[order]
            hist_start = np.concatenate([hist_start, at])[order]
            hist_end = np.concatenate([hist_end, at + sizes])[order]
            hist_tag = np.concatenate([hist_tag, _tag_positions(p.b, at, np.array(sizes, np.int64))])[order]
        return self._rows(p, hist, hist_start, hist_tag, hist_end), p.events

    # --- framing ---

    def _frame(self, b: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The chunks of a piece in file order: (header offsets, lengths, types, chains), and each
        chain's end (a chain is the chunks of one block)."""
        first = (-self._pos) % BLOCK_SIZE
        starts = np.array(([0] if first else []) + list(range(first, n, BLOCK_SIZE)), dtype=np.int64)
        block_ends = (starts + self._pos) // BLOCK_SIZE * BLOCK_SIZE + BLOCK_SIZE - self._pos
        chain_end = np.minimum(block_ends, n)
        u16 = byte_window(b, "<u2")
        cur, ends = starts, chain_end
        live = cur + CHUNK_HEADER <= ends  # a block tail shorter than a header is padding
        cur, ends = cur[live], ends[live]
        found: list[np.ndarray] = []
        while len(cur):
            ln = u16[cur + 4]
            end = cur + CHUNK_HEADER + ln
            ok = end <= ends
            if not ln.all():  # zero fill: the rest of the block is padding, as in leveldb
                ok &= (ln != 0) | (b[cur + 6] != 0) | (byte_window(b, "<u4")[cur] != 0)
            if not ok.all():
                over = end > ends
                # One running past its block: a bad header, and the block's rest is lost. Or running
                # past the end of the file inside the last block: not all written yet (left unread).
                if (self._pos + n) % BLOCK_SIZE:
                    over &= ends < n
                self.skipped_bytes += int((ends[over] - cur[over]).sum())
                cur, end, ends = cur[ok], end[ok], ends[ok]
            found.append(cur)
            more = end + CHUNK_HEADER <= ends
            cur, ends = (end, ends) if more.all() else (end[more], ends[more])
        if not found:
            e = np.empty(0, np.int64)
            return e, e, e, e, chain_end
        # Found position by position; in file order that is by block (a stable radix sort on int16).
        pos = np.concatenate(found)
        chain = (pos + self._pos) // BLOCK_SIZE - self._pos // BLOCK_SIZE
        order = np.argsort(chain.astype(np.int16), kind="stable")
        pos = pos[order]
        return pos, u16[pos + 4].astype(np.int64), b[pos + 6].astype(np.int64), chain[order], chain_end

    def _checksums(
        self,
        p: _Piece,
        pos: np.ndarray,
        ln: np.ndarray,
        ty: np.ndarray,
        summary: np.ndarray,
        chain: np.ndarray,
        chain_end: np.ndarray,
    ) -> np.ndarray:
        """Which chunks to keep: a bad checksum drops its chunk and the rest of its block."""
        check = np.flatnonzero(~summary)
        view = p.data
        start = pos + CHUNK_HEADER
        slices = map(slice, start[check].tolist(), (start + ln)[check].tolist())
        sums = np.fromiter(
            map(zlib.crc32, map(view.__getitem__, slices), map(_CRC_SEEDS.__getitem__, ty[check].tolist())),
            dtype=np.uint32,
            count=len(check),
        )
        bad = check[sums != byte_window(p.b, "<u4")[pos[check]]]
        keep = np.ones(len(pos), bool)
        if bad.size:
            cut = np.full(len(chain_end), len(pos))
            np.minimum.at(cut, chain[bad], bad)
            keep = np.arange(len(pos)) < cut[chain]
            first = cut[cut < len(pos)]
            self.skipped_bytes += int((chain_end[chain[first]] - pos[first]).sum())
        return keep

    def _fragment(self, i: int, rec: bytes, ty: int, at: int) -> bytes | None:
        """Put a record split over chunks back together; the whole record once its last part is in."""
        if self._parts is not None and (ty not in (MIDDLE, LAST) or i != self._parts_last + 1):
            self._drop_parts()  # the record before never ended
        if ty == FIRST:
            self._parts, self._parts_last, self._parts_at = [rec], i, at
        elif ty in (MIDDLE, LAST) and self._parts is not None:
            self._parts.append(rec)
            self._parts_last = i
            if ty == LAST:
                whole, self._parts = b"".join(self._parts), None
                return whole
        else:  # a part whose start was lost, or an unknown chunk type: dropped
            self.skipped_bytes += len(rec) + CHUNK_HEADER
        return None

    def _drop_parts(self) -> None:
        assert self._parts is not None
        self.skipped_bytes += sum(len(r) + CHUNK_HEADER for r in self._parts)
        self._parts = None

    def _record(self, i: int, rec: bytes, p: _Piece) -> None:
        """A record the array path does not take: a history row for the slow list, or an event."""
        try:
            tag = rec[varint(rec, 1)[1]] if rec[0] == _NUM_TAG else rec[0]
        except IndexError:
            tag = 0
        if tag == _HISTORY_TAG:
            p.joined.append((i, rec))
        elif tag != _SUMMARY_TAG:
            self._records._other(rec, p.events)  # a summary elsewhere in a record: not read here either

    # --- rows ---

    def _rows(
        self, p: _Piece, hist: np.ndarray, rec_start: np.ndarray, tag_at: np.ndarray, rec_end: np.ndarray
    ) -> list[Columns]:
        """The history rows of records `hist` (chunk indices, in file order) as blocks: by the array
        path, or one by one where that does not take them."""
        b = p.b
        # The HistoryRecord's length right after its tag (1-3 bytes); it must end the record.
        l0, l1, l2 = (b[tag_at + k].astype(np.int64) for k in (1, 2, 3))
        one, two = l0 < 0x80, (l0 >= 0x80) & (l1 < 0x80)
        three = (l0 >= 0x80) & (l1 >= 0x80) & (l2 < 0x80)
        size = np.where(one, l0, np.where(two, (l0 & 0x7F) | l1 << 7, (l0 & 0x7F) | (l1 & 0x7F) << 7 | l2 << 14))
        body = tag_at + 2 + (~one).astype(np.int64) + three
        slow = ~(one | two | three) | (body + size != rec_end)
        item_rec, ks, kl, vs, vl, odd = _split_items(b, np.flatnonzero(~slow), body, rec_end)
        slow[odd] = True
        col = self._keys.of_fields(b, ks, kl)
        slow[item_rec[col < 0]] = True
        slow |= _repeated_or_no_step(item_rec, col, len(hist), len(self._keys.names))
        use = ~slow[item_rec] & (col != _RUNTIME)
        item_rec, col, vs, vl = item_rec[use], col[use], vs[use], vl[use]
        values, ok = parse_numbers(b, vs, vl)
        for j in np.flatnonzero(~ok).tolist():  # NaN, Infinity, booleans, text: one by one
            v = _number(bytes(p.data[int(vs[j]) : int(vs[j] + vl[j])]))
            values[j] = np.nan if v is None else v
            ok[j] = v is not None
        item_rec, col, values = item_rec[ok], col[ok], values[ok]
        # The rows the array path left join the others in file order.
        decoded = self._decode_slow(
            [(int(hist[r]), bytes(p.data[int(rec_start[r]) : int(rec_end[r])])) for r in np.flatnonzero(slow).tolist()]
        )
        # Row numbers in file order: both lists are sorted by chunk index, so merge them by counting.
        fast = np.flatnonzero(~slow)
        slow_at = np.array([d[0] for d in decoded], dtype=np.int64)
        row_of = np.full(len(hist), -1, np.int64)
        row_of[fast] = np.arange(len(fast)) + np.searchsorted(slow_at, hist[fast])
        slow_rows = (np.arange(len(slow_at)) + np.searchsorted(hist[fast], slow_at)).tolist()
        return self._blocks(row_of[item_rec], col, values, slow_rows, decoded, len(fast) + len(slow_at))

    def _decode_slow(
        self, records: list[tuple[int, bytes]]
    ) -> list[tuple[int, dict[str, float], float | None, float | None]]:
        """(chunk index, values, own step, time) of history records decoded one by one, in order."""
        out = []
        for i, rec in records:
            try:
                values, step, t = history_values(_field_body(rec, 2))
            except (ValueError, IndexError, UnicodeDecodeError):
                self._records.bad_records += 1
                continue
            for key in values:
                self._keys.column(key)
            out.append((i, values, step, t))
        self.slow_rows += len(out)
        return out

    def _blocks(
        self,
        item_row: np.ndarray,
        col: np.ndarray,
        values: np.ndarray,
        slow_row: list[int],
        slow: list[tuple[int, dict[str, float], float | None, float | None]],
        nrows: int,
    ) -> list[Columns]:
        """Fill a dense table of the rows and cut it into blocks of equal keys.

        The table holds the columns used in it, and is filled a group of rows at a time so that it
        stays small even in a run that logs thousands of keys.
        """
        ncols = len(self._keys.names)
        group = max(_MIN_GROUP, _MAX_CELLS // max(1, int(np.count_nonzero(np.bincount(col, minlength=ncols)))))
        blocks: list[Columns] = []
        pending = list(zip(slow_row, slow, strict=True))  # in file order, as decoded
        for r0 in range(0, nrows, group):
            r1 = min(nrows, r0 + group)
            sel = slice(None) if nrows <= group else (item_row >= r0) & (item_row < r1)
            mine = [(r - r0, *rest[1:]) for r, rest in pending if r0 <= r < r1]
            used = np.bincount(col[sel], minlength=ncols) > 0
            used[[_STEP, _TIME]] = True
            used[[self._keys.index[k] for _, vals, _, _ in mine for k in vals]] = True
            cols = np.flatnonzero(used)
            local = np.full(ncols, -1, np.int64)
            local[cols] = np.arange(len(cols))
            width = len(cols)
            table = np.full((r1 - r0, width), np.nan)
            has = np.zeros((r1 - r0, width), bool)
            cell = (item_row[sel] - r0) * width + local[col[sel]]
            table.ravel()[cell] = values[sel]
            has.ravel()[cell] = True
            own_step = []  # rows without a step of their own follow the row before them
            for r, vals, step, t in mine:
                for key, v in vals.items():
                    table[r, local[self._keys.index[key]]] = v
                    has[r, local[self._keys.index[key]]] = True
                has[r, _STEP] = True
                if step is None:
                    own_step.append(r)
                else:
                    table[r, _STEP] = step
                if t is not None:
                    table[r, _TIME] = t
                    has[r, _TIME] = True
            for r in own_step:
                table[r, _STEP] = (table[r - 1, _STEP] if r else self._last_step) + 1
            blocks += self._cut(table, has, [self._keys.names[c] for c in cols.tolist()])
            self._last_step = float(table[-1, _STEP])
        return blocks

    def _cut(self, table: np.ndarray, has: np.ndarray, names: list[str]) -> list[Columns]:
        """Blocks of consecutive rows with the same keys (`names`: the table's columns)."""
        if not len(table):
            return []
        edges = np.flatnonzero((has[1:] != has[:-1]).any(axis=1)) + 1
        out = []
        for a, z in zip([0, *edges.tolist()], [*edges.tolist(), len(table)], strict=True):
            cols = [c for c in np.flatnonzero(has[a]).tolist() if names[c] not in _SPECIAL]
            keys = tuple(names[c] for c in cols)
            vals = table[a:z][:, cols]
            steps = self._steps(keys, vals, table[a:z, _STEP])
            times = table[a:z, _TIME].copy() if has[a, _TIME] else None
            out.append(Columns(keys, steps, vals, times))
        return out

    def _steps(self, keys: tuple[str, ...], vals: np.ndarray, own: np.ndarray) -> np.ndarray:
        """The rows' steps on the run's axis (what `StepAxis.step` gives row by row)."""
        axis = self._axis
        found = [k for k in STEP_KEYS if k in keys]
        if not found:
            return own.copy() if axis.key == axis.fallback_key else np.full(len(own), axis.last)
        best = axis.key if axis.key in found else found[0]
        col = vals[:, keys.index(best)]
        if not np.isnan(col).any():
            axis.key, axis.last = best, float(col[-1])
            return col.copy()
        idx = [keys.index(k) for k in found]  # NaN steps: row by row
        return np.array(
            [
                axis.step(dict(zip(found, row[idx].tolist(), strict=True)), s)
                for row, s in zip(vals, own.tolist(), strict=True)
            ]
        )


def _tag_positions(b: np.ndarray, start: np.ndarray, ln: np.ndarray) -> np.ndarray:
    """Where each record's kind tag is: after `Record.num` (field 1, a varint) when it comes first."""
    has_num = (ln > 0) & (b[start] == _NUM_TAG)
    q = start + 1
    for _ in range(10):  # to the last byte of the varint
        more = b[q] >= 0x80
        if not more.any():
            break
        q = q + more
    return np.where(has_num, q + 1, start)


def _repeated_or_no_step(item_row: np.ndarray, col: np.ndarray, nrows: int, ncols: int) -> np.ndarray:
    """Rows with a key twice, or without `_step`: the record decoder's rules decide those."""
    out = np.ones(nrows, bool)
    out[item_row[col == _STEP]] = False
    group = max(1, _MAX_CELLS // ncols)
    flat = item_row * ncols + np.maximum(col, 0)
    for r0 in range(0, nrows, group):
        r1 = min(nrows, r0 + group)
        sel = flat[(item_row >= r0) & (item_row < r1)] - r0 * ncols
        counts = np.bincount(sel, minlength=(r1 - r0) * ncols).reshape(r1 - r0, ncols)
        out[r0:r1] |= (counts > 1).any(axis=1)
    return out


def _split_items(
    b: np.ndarray, rows: np.ndarray, body: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Items `{key, value_json}` of history bodies `body[rows]..end[rows]`, all rows side by side.

    Returns per item its row, key field offset and length (tag, length, text), value offset and
    length, and the rows the array path could not split (to be decoded one by one). Only the
    item's frame is checked here: `_KEY_NAMES` checks each distinct key field once.
    """
    found_rows: list[np.ndarray] = []
    found_at: list[np.ndarray] = []
    odd: list[np.ndarray] = []
    act, cur, stop = rows, body[rows], end[rows]
    while len(act):
        # An item is `0A size  <key field: tag klen key>  82 01 vlen value`, all lengths one byte.
        size = b[cur + 1]
        key_len = b[cur + 3]
        vt = cur + key_len
        vt += 4
        val_len = b[vt + 2]
        nxt = cur + size
        nxt += 2
        good = (b[cur] == _ITEM_TAG) & (b[vt] == _VALUE_TAG) & (b[vt + 1] == 0x01) & ((size | val_len) < 0x80)
        good &= (size == key_len + val_len + 5) & (nxt <= stop)
        if not good.all():
            # The body ends here, or with HistoryRecord.step (a small message); else it is odd.
            done = (cur == stop) | ((b[cur] == _HISTORY_TAG) & (size < 0x80) & (nxt == stop))
            odd.append(act[~done & ~good])
            act, cur, stop, nxt = act[good], cur[good], stop[good], nxt[good]
        found_rows.append(act)
        found_at.append(cur)
        cur = nxt
    if not found_rows:
        e = np.empty(0, np.int64)
        return e, e, e, e, e, e
    at = np.concatenate(found_at)
    key_len = b[at + 3].astype(np.int64)
    vs = at + key_len
    vs += 7
    return (
        np.concatenate(found_rows),
        at + 2,
        key_len + 2,
        vs,
        b[vs - 1].astype(np.int64),
        np.concatenate(odd) if odd else np.empty(0, np.int64),
    )
