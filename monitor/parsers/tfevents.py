"""TensorBoard event files (`events.out.tfevents.*`): scalar summaries as rows, pure Python.

A file is a TFRecord stream: uint64 LE length, uint32 LE masked CRC-32C of the length, the data,
uint32 masked CRC-32C of the data. Each record is a `tensorflow.Event`: wall_time (1, double),
step (2, int64), summary (5) holding Values: tag (1), simple_value (2, float) or a tensor (8) whose
single float/double element is the scalar (TF2's `tf.summary.scalar`). Images, histograms, text and
graphs are skipped. Only the length's CRC is checked (8 bytes, cheap in pure Python): it is what
keeps the framing honest; checking every record's data would cost more than decoding it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from monitor.errors import FormatError
from monitor.model import Row
from monitor.protowire import Fields, double, last, message, signed

_MAX_RECORD = 1 << 30  # a length beyond this is damage, not data
_DT_FLOAT, _DT_DOUBLE = 1, 2
_FLT_MAX = 3.4028234663852886e38
_CRC_TABLE: list[int] = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C (Castagnoli), rotated and offset ("masked")."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@dataclass(slots=True)
class TfeventsStats:
    """What a reader saw."""

    records: int = 0
    """Event records read."""
    scalars: int = 0
    """Scalar values turned into row values."""
    skipped_values: int = 0
    """Summary values that are not scalars (images, histograms, text)."""
    skipped_bytes: int = 0
    """Bytes passed over to find the next record after damage."""
    tags: set[str] = field(default_factory=set)
    """The scalar tags seen."""


class TfeventsReader:
    """Incremental event-file reader: feed the file's bytes in any pieces, get rows of whole records.

    Consecutive events of one step within a feed become one row (PyTorch writes one event per
    scalar); a step split across feeds gives two rows of that step.
    """

    step_key = "step"

    def __init__(self, start_offset: int = 0) -> None:
        """`start_offset` N > 0 resumes at a record boundary (a `resume_offset`)."""
        self._pos = start_offset  # absolute offset of _buf[0], the next unread record
        self._buf = b""
        self._checked = start_offset > 0
        self.stats = TfeventsStats()

    @property
    def resume_offset(self) -> int:
        """Absolute offset of the next unread whole record: reopen the file there after a reconnect."""
        return self._pos

    def feed(self, data: bytes) -> list[Row]:
        """Read the next bytes of the file; return the rows of every record now complete."""
        buf = self._buf + data if self._buf else bytes(data)
        rows: list[Row] = []
        off, n = 0, len(buf)
        while n - off >= 12:
            (length,) = struct.unpack_from("<Q", buf, off)
            if length > _MAX_RECORD or masked_crc32c(buf[off : off + 8]) != struct.unpack_from("<I", buf, off + 8)[0]:
                if not self._checked:
                    raise FormatError("not a TensorBoard event file (its first record's length checksum is wrong)")
                off += 1  # damage: look for the next offset where a length checks out
                self.stats.skipped_bytes += 1
                continue
            self._checked = True
            end = off + 12 + length + 4
            if end > n:
                break  # torn: the writer has not finished this record
            self._event(buf[off + 12 : end - 4], rows)
            off = end
        self._pos += off
        self._buf = buf[off:]
        return rows

    def _event(self, rec: bytes, rows: list[Row]) -> None:
        """Append the scalars of one Event record, joining the previous row when the step is the same."""
        self.stats.records += 1
        try:
            event = message(rec)
            if 5 not in event:
                return
            wall = double(event[1][-1]) if 1 in event else None
            step = float(signed(last(event, 2)))
            values: dict[str, float] = {}
            for encoded in message(last(event, 5, b"")).get(1, ()):
                tag, value = _scalar(message(encoded))
                if value is None:
                    self.stats.skipped_values += 1
                else:
                    values[tag] = value
        except (ValueError, IndexError, UnicodeDecodeError, struct.error):
            self.stats.skipped_bytes += len(rec)
            return
        if not values:
            return
        self.stats.scalars += len(values)
        self.stats.tags.update(values)
        prev = rows[-1] if rows else None
        if prev is not None and prev.step == step and prev.values.keys().isdisjoint(values):
            prev.values.update(values)  # not yet handed out: still ours to fill
        else:
            rows.append(Row(step, values, wall))


def _scalar(value: Fields) -> tuple[str, float | None]:
    """A Summary.Value's tag and its scalar, or None when it holds something else."""
    tag = last(value, 1, b"").decode("utf-8", "replace")
    if 2 in value:
        return tag, _float32(value[2][-1])
    if 8 not in value:
        return tag, None
    tensor = message(value[8][-1])
    dtype = last(tensor, 1)
    if dtype not in (_DT_FLOAT, _DT_DOUBLE):
        return tag, None
    size, num = (4, 5) if dtype == _DT_FLOAT else (8, 6)  # float_val or double_val
    # Packed (one bytes value) or not (one per element), joined they read alike; else tensor_content.
    raw = b"".join(tensor.get(num, ())) or last(tensor, 4, b"")
    if len(raw) != size:
        return tag, None  # not a single element
    return tag, _float32(raw) if size == 4 else double(raw)


def _float32(raw: bytes) -> float:
    """A float32 as the shortest decimal that reads back to it: 0.1, not 0.10000000149011612."""
    (v,) = struct.unpack("<f", raw)
    if v != v or v in (float("inf"), float("-inf")):
        return v
    for digits in (6, 7, 8):  # nine always reads back
        short = float(f"{v:.{digits}g}")
        if abs(short) <= _FLT_MAX and struct.pack("<f", short) == raw:
            return short
    return float(f"{v:.9g}")


def read_tfevents(data: bytes) -> tuple[list[Row], TfeventsStats]:
    """The scalar rows of a whole event file (a torn last record is left out) and what was seen."""
    reader = TfeventsReader()
    return reader.feed(data), reader.stats
