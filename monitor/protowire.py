"""A minimal protobuf wire-format decoder: enough to read W&B records and TensorBoard events by field number.

No schema and no generated classes: a message is decoded into `{field number: [values]}`, varints
as ints and every other wire type as bytes, and the caller knows what its fields mean.
"""

from __future__ import annotations

import struct
from typing import Any

Fields = dict[int, list[Any]]


def varint(buf: bytes, i: int) -> tuple[int, int]:
    """The varint at `buf[i]` and the offset after it (IndexError if it runs off the end)."""
    value = shift = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7


def message(buf: bytes) -> Fields:
    """One message's fields by number, in order: varints as ints, fixed and length-delimited as bytes.

    Raises ValueError for a truncated message or a group (wire types 3/4, unused since proto2).
    """
    fields: Fields = {}
    i, n = 0, len(buf)
    value: Any
    while i < n:
        key, i = varint(buf, i)
        wt = key & 7
        if wt == 0:
            value, i = varint(buf, i)
        elif wt == 2:
            size, i = varint(buf, i)
            value, i = buf[i : i + size], i + size
        elif wt == 1 or wt == 5:
            size = 8 if wt == 1 else 4
            value, i = buf[i : i + size], i + size
        else:
            raise ValueError(f"protobuf wire type {wt}")
        if i > n:
            raise ValueError("truncated protobuf message")
        fields.setdefault(key >> 3, []).append(value)
    return fields


def last(fields: Fields, num: int, default: Any = 0) -> Any:
    """The last value of field `num` (proto3: the last one wins), or `default`."""
    values = fields.get(num)
    return values[-1] if values else default


def signed(v: int) -> int:
    """A varint read back as the signed int32/int64 it encodes (negatives take ten bytes)."""
    return v - (1 << 64) if v >= 1 << 63 else v


def timestamp(buf: bytes) -> float:
    """A google.protobuf.Timestamp {seconds, nanos} as epoch seconds."""
    f = message(buf)
    return signed(last(f, 1)) + last(f, 2) * 1e-9


def double(raw: bytes) -> float:
    """A fixed64 `double` field's value."""
    return struct.unpack("<d", raw)[0]
