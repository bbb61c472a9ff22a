"""TensorBoard event files: a real YOLOv5 run, and events built here for the shapes it lacks."""

from __future__ import annotations

import csv
import math
import struct
from pathlib import Path

import pytest

from monitor.errors import FormatError
from monitor.model import Row
from monitor.parsers.tfevents import TfeventsReader, masked_crc32c, read_tfevents

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "real" / "sample-08-yolov5-results-csv"
TAGS = [
    "train/box_loss",
    "train/obj_loss",
    "train/cls_loss",
    "metrics/precision",
    "metrics/recall",
    "metrics/mAP_0.5",
    "metrics/mAP_0.5:0.95",
    "val/box_loss",
    "val/obj_loss",
    "val/cls_loss",
    "x/lr0",
    "x/lr1",
    "x/lr2",
]


@pytest.fixture(scope="module")
def yolo() -> bytes:
    files = sorted(SAMPLE.glob("events.out.tfevents.*"))
    if not files:
        pytest.skip(f"corpus sample not found under {SAMPLE}")
    return files[0].read_bytes()


def test_yolov5_scalars_one_row_per_epoch(yolo: bytes) -> None:
    rows, stats = read_tfevents(yolo)
    assert [r.step for r in rows] == [float(e) for e in range(300)]
    assert all(list(r.values) == TAGS for r in rows)
    assert stats.tags == set(TAGS) and stats.scalars == 300 * len(TAGS)
    assert stats.skipped_values == 5  # the result images
    assert math.isnan(rows[167].values["train/box_loss"])
    assert rows[0].values["x/lr0"] == 0.1  # float32 shown as the decimal that was logged
    assert 1.6e9 < rows[0].time < rows[-1].time < 1.7e9


def test_yolov5_scalars_match_results_csv(yolo: bytes) -> None:
    rows, _ = read_tfevents(yolo)
    with (SAMPLE / "results.csv").open() as f:
        table = [{k.strip(): float(v) for k, v in rec.items()} for rec in csv.DictReader(f, skipinitialspace=True)]
    assert len(table) == len(rows)
    for row, rec in zip(rows, table, strict=True):
        assert row.step == rec["epoch"]
        for tag in TAGS:
            got, want = row.values[tag], rec[tag]
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-4, abs=1e-6), tag


def test_pieces_and_a_torn_tail_give_the_same_scalars(yolo: bytes) -> None:
    whole, _ = read_tfevents(yolo)
    reader, rows = TfeventsReader(), []
    for i in range(0, len(yolo), 4093):
        rows += reader.feed(yolo[i : i + 4093])
    assert reader.resume_offset == len(yolo)
    assert points(rows) == points(whole)
    torn = TfeventsReader()
    head = torn.feed(yolo[:-3])
    assert torn.resume_offset < len(yolo) - 3
    resumed = TfeventsReader(start_offset=torn.resume_offset)
    assert points(head + resumed.feed(yolo[torn.resume_offset :])) == points(whole)


def points(rows: list[Row]) -> list[tuple[float, str, object]]:
    """Rows as (step, tag, value) points, NaN made comparable, however events were grouped."""
    return [(r.step, k, "nan" if v != v else v) for r in rows for k, v in r.values.items()]


# Events encoded here: TF2 tensor scalars, a double, a vector, a damaged stretch.


def varint(v: int) -> bytes:
    v &= (1 << 64) - 1  # negatives as int64 two's complement: ten bytes
    out = bytearray()
    while True:
        out.append(v & 0x7F | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not v:
            return bytes(out)


def field(num: int, payload: bytes | int, wt: int = 2) -> bytes:
    if wt == 0:
        assert isinstance(payload, int)
        return varint(num << 3) + varint(payload)
    assert isinstance(payload, bytes)
    return varint(num << 3 | wt) + (varint(len(payload)) if wt == 2 else b"") + payload


def event(step: int, *values: bytes, wall: float = 1700000000.0) -> bytes:
    summary = b"".join(field(1, v) for v in values)
    return record(field(1, struct.pack("<d", wall), wt=1) + field(2, step, wt=0) + field(5, summary))


def record(body: bytes) -> bytes:
    length = struct.pack("<Q", len(body))
    return length + struct.pack("<I", masked_crc32c(length)) + body + struct.pack("<I", masked_crc32c(body))


def simple(tag: str, v: float) -> bytes:
    return field(1, tag.encode()) + field(2, struct.pack("<f", v), wt=5)


def tensor(tag: str, dtype: int, content: bytes, num: int | None = None) -> bytes:
    t = field(1, dtype, wt=0) + (field(num, content) if num else field(4, content))
    return field(1, tag.encode()) + field(8, t)


def test_tensor_scalars_doubles_and_non_scalars() -> None:
    data = record(field(1, struct.pack("<d", 1.0), wt=1) + field(3, b"brain.Event:2")) + event(
        5,
        simple("a", 0.5),
        tensor("b", 1, struct.pack("<f", 0.25), num=5),  # float_val, packed
        tensor("c", 2, struct.pack("<d", 1 / 3), num=6),  # double_val
        tensor("d", 2, struct.pack("<d", 2.5)),  # tensor_content
        tensor("vector", 1, struct.pack("<2f", 1, 2), num=5),
        tensor("text", 7, b"hi"),
        field(1, b"image") + field(4, b"\x08\x01"),
    )
    data += event(5, simple("a", 0.75)) + event(6, simple("a", -1.0)) + event(-1, simple("e", 1e-3))
    rows, stats = read_tfevents(data)
    assert rows == [
        Row(5.0, {"a": 0.5, "b": 0.25, "c": 1 / 3, "d": 2.5}, 1700000000.0),
        Row(5.0, {"a": 0.75}, 1700000000.0),  # a tag twice at one step: two rows, nothing lost
        Row(6.0, {"a": -1.0}, 1700000000.0),
        Row(-1.0, {"e": 0.001}, 1700000000.0),
    ]
    assert stats.skipped_values == 3 and stats.records == 5


def test_damage_is_skipped_and_counted() -> None:
    good = [event(i, simple("loss", 1.0 / (i + 1))) for i in range(3)]
    data = good[0] + b"\x13garbage!" + good[1] + good[2]
    reader = TfeventsReader()
    assert [r.step for r in reader.feed(data)] == [0.0, 1.0, 2.0]
    assert reader.stats.skipped_bytes == 9


def test_not_an_event_file_is_refused_in_one_line() -> None:
    with pytest.raises(FormatError) as err:
        read_tfevents(b"step,loss\n1,0.5\n2,0.25\n")
    assert "\n" not in err.value.one_line()
    rows, stats = read_tfevents(b"")
    assert rows == [] and stats.records == 0
