"""The `.wandb` transaction-log reader, against files written by the real wandb SDK offline."""

from __future__ import annotations

import json
import math
import os
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from monitor.errors import FormatError, TargetError
from monitor.model import Row
from monitor.stepaxis import StepAxis, choose_step
from monitor.wandb.reader import (
    BLOCK_SIZE,
    ConfigUpdate,
    ConsoleOutput,
    Exit,
    RunMeta,
    Summary,
    SystemStats,
    WandbLogReader,
    find_wandb_file,
    read_wandb_file,
)

STEPS = 400
WRITER = f"""
import math, wandb
run = wandb.init(mode="offline", project="runwatch-test",
                 config={{"lr": 0.001, "model": {{"layers": 4}}, "notes": "x" * 40000}})
for i in range({STEPS}):
    row = {{"train/loss": 2.0 / (i + 1), "train/global_step": i * 10, "lr": 0.001, "flag": i % 2 == 0,
           "note": "text"}}
    if i == 7:
        row["train/loss"] = math.nan
    if i == 9:
        row["opt"] = {{f"group{{j}}": float(j) for j in range(20)}}
        row["k" * 150] = 1.5
    run.log(row)
    if i == 3:
        print("hello from the run")
run.log({{"eval/loss": 0.5}})
run.summary["best"] = 0.25
run.config.update({{"extra": 3}})
run.finish(exit_code=3)
"""


def write_offline_run(root: Path, script: str, *args: str, timeout: float = 240) -> Path:
    """Run `script` (which logs with the real SDK) offline in `root`; the `.wandb` file it wrote."""
    pytest.importorskip("wandb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(root))
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):  # keep it out of $HOME
        env[var] = str(root / var.lower())
    subprocess.run(
        [sys.executable, "-c", script, *args], env=env, cwd=root, check=True, timeout=timeout, capture_output=True
    )
    (f,) = (root / "wandb").glob("offline-run-*/run-*.wandb")
    return f


@pytest.fixture(scope="module")
def wandb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `wandb/` folder holding one offline run written by the real SDK (slow to start: once a module)."""
    root = tmp_path_factory.mktemp("wandb-sdk")
    write_offline_run(root, WRITER)
    return root / "wandb"


@pytest.fixture(scope="module")
def run_file(wandb_dir: Path) -> Path:
    (f,) = wandb_dir.glob("offline-run-*/run-*.wandb")
    return f


@pytest.fixture(scope="module")
def data(run_file: Path) -> bytes:
    return run_file.read_bytes()


def comparable(events: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """Events as comparable values (NaN made equal to itself), with the feeds' summaries merged."""
    out: list[Any] = []
    summary: dict[str, Any] = {}
    for e in events:
        if isinstance(e, Summary):
            summary.update(e.values)
        elif isinstance(e, Row):
            out.append((e.step, {k: "nan" if v != v else v for k, v in e.values.items()}, e.time))
        else:
            out.append(e)
    return out, summary


def rows_of(events: list[Any]) -> list[Row]:
    return [e for e in events if isinstance(e, Row)]


@pytest.mark.slow
def test_reads_every_row_on_the_global_step_axis(data: bytes) -> None:
    reader = WandbLogReader()
    rows = rows_of(reader.feed(data))
    assert len(rows) == STEPS + 1
    assert reader.step_key == "train/global_step"
    assert [r.step for r in rows[:STEPS]] == [i * 10.0 for i in range(STEPS)]
    assert rows[0].values == {"train/loss": 2.0, "train/global_step": 0.0, "lr": 0.001, "flag": 1.0}
    assert math.isnan(rows[7].values["train/loss"])
    assert rows[8].values["flag"] == 1.0 and rows[9].values["flag"] == 0.0
    assert all(k not in r.values for r in rows for k in ("_step", "_runtime", "_timestamp", "note"))
    assert rows[9].values["opt/group19"] == 19.0 and rows[9].values["k" * 150] == 1.5
    assert rows[-1] == Row((STEPS - 1) * 10.0, {"eval/loss": 0.5}, rows[-1].time)  # no step of its own
    times = [r.time for r in rows]
    assert all(isinstance(t, float) for t in times) and times == sorted(times)
    assert reader.records > 3 * STEPS and reader.skipped_bytes == 0 and reader.bad_records == 0
    assert reader.resume_offset == len(data)


@pytest.mark.slow
def test_run_meta_config_summary_console_and_exit(data: bytes, run_file: Path) -> None:
    events = WandbLogReader().feed(data)
    (meta,) = [e for e in events if isinstance(e, RunMeta)]
    assert run_file.name == f"run-{meta.run_id}.wandb"
    assert meta.project == "runwatch-test" and meta.host
    assert meta.config == {"lr": 0.001, "model": {"layers": 4}, "notes": "x" * 40000}
    assert meta.start_time is not None and abs(meta.start_time - rows_of(events)[0].time) < 60
    assert [e for e in events if isinstance(e, ConfigUpdate)] == [ConfigUpdate({"extra": 3})]
    _, summary = comparable(events)
    assert summary["best"] == 0.25 and summary["train/loss"] == 2.0 / STEPS and summary["eval/loss"] == 0.5
    lines = [line for e in events if isinstance(e, ConsoleOutput) for line in e.lines]
    assert "hello from the run" in lines
    assert any(isinstance(e, SystemStats) and e.values for e in events)
    assert events[-1] == Exit(3)


@pytest.mark.slow
@pytest.mark.parametrize("version", [0, 1])
def test_header_versions_0_and_1_are_read(data: bytes, version: int) -> None:
    assert len(rows_of(WandbLogReader().feed(data[:6] + bytes([version]) + data[7:]))) == STEPS + 1


@pytest.mark.slow
@pytest.mark.parametrize("header", [b":W&B\xe1\xbe\x02", b":W&B\xe1\xbe\xff", b"PK\x03\x04\x00\x00\x00", b"\x00" * 7])
def test_other_headers_are_refused_in_one_line(data: bytes, header: bytes) -> None:
    with pytest.raises(FormatError) as err:
        WandbLogReader().feed(header + data[7:])
    assert "\n" not in err.value.one_line()


@pytest.mark.slow
def test_any_piece_sizes_give_the_same_events(data: bytes) -> None:
    whole = comparable(WandbLogReader().feed(data))
    rnd = random.Random(7)
    for _ in range(3):
        reader, events, i = WandbLogReader(), [], 0
        while i < len(data):
            # Single bytes through the big fragmented run record and the last records.
            size = 1 if i < 300 or 40_000 < i < 42_000 or i > len(data) - 700 else rnd.randint(1, 5000)
            events += reader.feed(data[i : i + size])
            i += size
        assert comparable(events) == whole
        assert reader.resume_offset == len(data)


@pytest.mark.slow
def test_a_torn_record_waits_for_the_rest(data: bytes) -> None:
    reader = WandbLogReader()
    cut = len(data) - 5
    head = reader.feed(data[:cut])
    assert reader.resume_offset < cut  # the last record is incomplete and was not read
    assert not any(isinstance(e, Exit) for e in head)
    assert reader.feed(data[cut:])[-1] == Exit(3)


@pytest.mark.slow
def test_resuming_at_resume_offset_misses_and_repeats_nothing(data: bytes) -> None:
    whole, whole_summary = comparable(WandbLogReader().feed(data))
    for cut in (3, 7, 1000, 40_500, BLOCK_SIZE - 2, BLOCK_SIZE * 3 + 11, len(data) - 1):
        first = WandbLogReader()
        head = first.feed(data[:cut])
        # A reconnect: the partial bytes held are dropped and the file reopened at resume_offset.
        second = WandbLogReader(start_offset=first.resume_offset) if first.resume_offset else WandbLogReader()
        tail = second.feed(data[first.resume_offset :])
        assert second.skipped_bytes == 0
        # A console line split across records can be cut in two by a reconnect; everything else is exact.
        events, summary = comparable(head + tail)
        strip = [e for e in events if not isinstance(e, ConsoleOutput)]
        assert strip == [e for e in whole if not isinstance(e, ConsoleOutput)], cut
        assert summary == whole_summary


@pytest.mark.slow
def test_a_corrupt_block_is_skipped_and_counted(data: bytes) -> None:
    clean, _ = comparable(rows_of(WandbLogReader().feed(data)))
    bad = bytearray(data)
    bad[BLOCK_SIZE * 3 + 5000] ^= 0xFF
    reader = WandbLogReader()
    events = reader.feed(bytes(bad))
    rows, _ = comparable(rows_of(events))
    assert 0 < reader.skipped_bytes <= 2 * BLOCK_SIZE
    lost = len(clean) - len(rows)
    assert 0 < lost < 100
    k = next(i for i, (a, b) in enumerate(zip(rows, clean, strict=False)) if a != b)
    assert rows == clean[:k] + clean[k + lost :]  # one gap where the damage is, the rest read again
    assert events[-1] == Exit(3)


@pytest.mark.slow
def test_find_wandb_file_takes_files_run_dirs_and_wandb_folders(wandb_dir: Path, run_file: Path) -> None:
    assert find_wandb_file(run_file) == run_file
    assert find_wandb_file(run_file.parent) == run_file
    assert find_wandb_file(wandb_dir).resolve() == run_file.resolve()
    assert find_wandb_file(wandb_dir / "latest-run").resolve() == run_file.resolve()
    assert find_wandb_file(wandb_dir.parent).resolve() == run_file.resolve()
    events, reader = read_wandb_file(wandb_dir / "latest-run" / run_file.name)
    assert len(rows_of(events)) == STEPS + 1 and reader.records > 0


def test_find_wandb_file_picks_the_newest_run_and_names_what_is_missing(tmp_path: Path) -> None:
    for name in ("run-20240101_000000-aaaa", "offline-run-20250101_000000-bbbb", "run-20230101_000000-cccc"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"run-{name[-4:]}.wandb").write_bytes(b":W&B\xe1\xbe\x00")
    assert find_wandb_file(tmp_path).name == "run-bbbb.wandb"
    (tmp_path / "empty").mkdir()
    for missing, why in ((tmp_path / "nope", "no such file"), (tmp_path / "empty", "no .wandb run file")):
        with pytest.raises(TargetError, match=why):
            find_wandb_file(missing)
    with pytest.raises(TargetError, match="cannot read"):
        read_wandb_file(tmp_path)


# Records built with wandb's own protobuf classes, framed here: shapes the SDK run does not produce.


def frame(records: list[bytes], version: int = 0) -> bytes:
    """Records in leveldb log framing after a `.wandb` header, as wandb-core writes them."""
    out = bytearray(b":W&B\xe1\xbe" + bytes([version]))
    for rec in records:
        first = True
        while True:
            left = BLOCK_SIZE - len(out) % BLOCK_SIZE
            if left < 7:
                out += b"\x00" * left
                continue
            piece, rec = rec[: left - 7], rec[left - 7 :]
            ty = (1 if not rec else 2) if first else (4 if not rec else 3)
            out += struct.pack("<IHB", zlib.crc32(piece, zlib.crc32(bytes([ty]))), len(piece), ty) + piece
            first = False
            if not rec:
                break
    return bytes(out)


def history(num: int, items: dict[Any, str], step: int | None = None) -> bytes:
    pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")
    rec = pb.Record(num=num)
    for key, value_json in items.items():
        item = rec.history.item.add(value_json=value_json)
        if isinstance(key, tuple):
            item.nested_key.extend(key)
        else:
            item.key = key
    if step is not None:
        rec.history.step.num = step
    return rec.SerializeToString()


def random_items(rnd: random.Random, num: int, alphabet: list[str], values: list[str], most: int) -> dict[Any, str]:
    """History items `{key or nested key parts: value_json}` of row `num`: `_step`, `_timestamp` and up to
    `most` random keys from `alphabet` (nested ones mostly, some plain `key`s) with values from `values`."""
    items: dict[Any, str] = {("_step",): str(num), ("_timestamp",): "1700000000.5"}
    for _ in range(rnd.randint(0, most)):
        parts = tuple("".join(rnd.choices(alphabet, k=rnd.randint(1, 4))) for _ in range(rnd.choice([1, 1, 2, 3])))
        items[parts if rnd.random() < 0.8 else parts[0]] = rnd.choice(values)
    return items


EXOTIC = ["a", "Z", "/", ".", "é", "ß", "日本", "\x82", "_", " ", "k" * 40, "\n", "\x12", "\x01"]
PLAIN = ["a", "Z", "/", ".", "é", "ß", "日本", "_", " ", "loss", "train", "k" * 40]
VALUES = ["1", "-2.5e-07", "NaN", "Infinity", "-Infinity", "true", "false", "null", '"x\\u0001y"', "[1,2]"]
LONG_VALUES = ['{"_type":"histogram","bins":[' + ",".join(["0.5"] * 60) + "]}", "1" * 200, "12345678901234567890"]


@pytest.mark.parametrize(
    ("alphabet", "values", "most"),
    [(EXOTIC, VALUES + LONG_VALUES, 24), (PLAIN, VALUES, 12), (PLAIN, ["0.5", "3", "1e-3"], 20)],
    ids=["exotic", "plain", "numbers"],
)
def test_unusual_history_items_read_like_the_protobuf_parser_reads_them(
    alphabet: list[str], values: list[str], most: int
) -> None:
    rnd = random.Random(3)
    records, expected = [], []
    for num in range(1, 400):
        items = random_items(rnd, num, alphabet, values, most)
        records.append(history(num, items))
        named = {"/".join(key) if isinstance(key, tuple) else key: raw for key, raw in items.items()}
        want = {}
        for name, raw in named.items():  # a key given twice: the last one counts
            v = json.loads(raw)
            if isinstance(v, bool | int | float) and name not in ("_step", "_timestamp"):
                want[name] = "nan" if v != v else float(v)
        expected.append((float(num), want, 1700000000.5))
    data = frame(records)
    events, _ = comparable(WandbLogReader().feed(data))
    assert events == expected


def test_a_row_without_step_or_explicit_key_counts_on() -> None:
    data = frame([history(1, {"loss": "1.0"}), history(2, {"loss": "0.5"}, step=7), history(3, {"loss": "0.1"})])
    reader = WandbLogReader()
    assert [r.step for r in rows_of(reader.feed(data))] == [0.0, 7.0, 8.0]
    assert reader.step_key == "_step"


def test_zero_padding_orphan_fragments_and_a_bad_checksum() -> None:
    good = frame([history(1, {("_step",): "0", ("loss",): "1.0"})])
    zero_pad = b"\x00" * (BLOCK_SIZE - len(good))  # zero-length type-0 chunks: padding, not damage
    orphan = struct.pack("<IHB", zlib.crc32(b"tail", zlib.crc32(b"\x04")), 4, 4) + b"tail"
    body = history(2, {("_step",): "1", ("loss",): "0.5"})
    broken = struct.pack("<IHB", 12345, len(body), 1) + body
    later = frame([history(3, {("_step",): "2", ("loss",): "0.25"})])[7:]
    data = good + zero_pad + orphan + later + b"\x00" * (BLOCK_SIZE - len(orphan) - len(later)) + broken
    data += b"\x00" * (BLOCK_SIZE - len(broken)) + later
    reader = WandbLogReader()
    assert [r.values["loss"] for r in rows_of(reader.feed(data))] == [1.0, 0.25, 0.25]
    assert reader.skipped_bytes == len(orphan) + BLOCK_SIZE
    assert reader.bad_records == 0


@pytest.mark.parametrize(
    ("values", "fallback", "expected"),
    [
        ({"loss": 1.0}, 5.0, (5.0, "_step")),
        ({"iter": 3.0, "global_step": 30.0}, 5.0, (30.0, "global_step")),
        ({"trainer/global_step": 7.0, "train/global_step": 8.0}, 5.0, (8.0, "train/global_step")),
        ({"iteration": math.nan, "iter": 2.0}, 5.0, (2.0, "iter")),
    ],
)
def test_choose_step_prefers_an_explicit_global_step(
    values: dict[str, float], fallback: float, expected: tuple[float, str]
) -> None:
    assert choose_step(values, fallback) == expected


def test_step_axis_carries_the_explicit_step_over_rows_without_it() -> None:
    axis = StepAxis()
    steps = [axis.step(v, s) for s, v in enumerate([{}, {"global_step": 100.0}, {"eval": 1.0}, {"global_step": 200.0}])]
    assert steps == [0.0, 100.0, 100.0, 200.0]
    assert axis.key == "global_step"
