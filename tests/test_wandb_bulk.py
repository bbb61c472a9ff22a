"""The bulk `.wandb` reader gives the rows the record-by-record reader gives, on real and odd files."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pytest

import monitor.wandb.bulk as bulk
from monitor.errors import FormatError
from monitor.model import Row
from monitor.wandb.bulk import WandbBulkReader
from monitor.wandb.reader import BLOCK_SIZE, ConfigUpdate, ConsoleOutput, Exit, RunMeta, WandbLogReader
from tests.test_wandb_log import EXOTIC, LONG_VALUES, PLAIN, VALUES, frame, history, random_items, write_offline_run

STEPS = 3000
WRITER = f"""
import math, wandb
run = wandb.init(mode="offline", project="runwatch-test", config={{"lr": 0.001}})
for i in range({STEPS}):
    row = {{"train/loss": 2.0 / (i + 1) + (i % 7) * 1e-9, "train/global_step": i * 10, "lr": 0.001 * 0.999 ** i,
           "grad_norm": 1.0 + i % 3, "flag": i % 2 == 0, "phase": "train"}}
    if i == 700:
        row["train/loss"] = math.nan
    if i == 701:
        row["train/loss"] = math.inf
    if i % 100 == 0:
        row["opt"] = {{f"group{{j}}": float(j) for j in range(3)}}
        row["k" * 90] = 1.5
        row["layers/" + "/".join("abc")] = -0.0
        row["hist"] = wandb.Histogram([1, 2, 3])
    if i % 250 == 0:
        row["wide/" + "x" * 40 + str(i % 1000)] = float(i)
        row["日本/loss"] = 0.5
    run.log(row)
    if i % 500 == 0:
        run.log({{"eval/loss": 1.0 / (i + 1), "eval/acc": i / {STEPS}}})
        print("step", i)
run.config.update({{"extra": 3}})
run.finish(exit_code=3)
"""


@pytest.fixture(scope="module")
def sdk_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run written by the real SDK offline: eval rows, nested and long keys, text, NaN, histograms."""
    return write_offline_run(tmp_path_factory.mktemp("wandb-bulk"), WRITER, timeout=300)


def key(row: Row) -> tuple[Any, ...]:
    """A row as a comparable value (NaN equal to itself, -0.0 told from 0.0)."""

    def same(v: float | None) -> Any:
        return "nan" if v is not None and v != v else (v, str(v))

    return same(row.step), tuple(sorted((k, same(v)) for k, v in row.values.items())), same(row.time)


def reference(data: bytes) -> tuple[list[tuple[Any, ...]], list[Any], WandbLogReader]:
    """Rows and other events as the record-by-record reader gives them."""
    reader = WandbLogReader()
    events = reader.feed(data)
    others = [e for e in events if isinstance(e, RunMeta | ConfigUpdate | ConsoleOutput | Exit)]
    return [key(e) for e in events if isinstance(e, Row)], others, reader


def read_bulk(data: bytes) -> tuple[list[tuple[Any, ...]], list[Any], WandbBulkReader]:
    reader = WandbBulkReader()
    rows: list[tuple[Any, ...]] = []
    others: list[Any] = []
    for blocks, events in reader.read(io.BytesIO(data)):
        for block in blocks:
            rows += [key(r) for r in block.rows()]
        others += [e for e in events if isinstance(e, RunMeta | ConfigUpdate | ConsoleOutput | Exit)]
    return rows, others, reader


@pytest.fixture(params=[64 << 10, 32 << 20], ids=["64KiB-pieces", "32MiB-pieces"])
def piece(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(bulk, "_PIECE", request.param)
    return int(request.param)


@pytest.mark.slow
def test_sdk_run_reads_the_same_rows_and_events(sdk_file: Path, piece: int) -> None:
    data = sdk_file.read_bytes()
    want, want_others, ref = reference(data)
    rows, others, reader = read_bulk(data)
    assert rows == want
    assert len(rows) == STEPS + STEPS // 500
    assert others == want_others and any(isinstance(e, ConsoleOutput) for e in others)
    assert reader.step_key == ref.step_key == "train/global_step"
    assert reader.records == ref.records
    assert reader.skipped_bytes == 0 and reader.bad_records == 0
    assert reader.slow_rows < len(rows) // 10  # the rows with histograms and long keys


@pytest.mark.slow
def test_a_file_cut_anywhere_reads_its_whole_records_and_a_live_reader_goes_on(sdk_file: Path) -> None:
    data = sdk_file.read_bytes()
    whole, whole_others, _ = reference(data)
    rnd = random.Random(5)
    for cut in [7, 100, BLOCK_SIZE - 3, BLOCK_SIZE + 11] + [rnd.randrange(len(data)) for _ in range(8)]:
        want, _, _ = reference(data[:cut])
        rows, others, reader = read_bulk(data[:cut])
        assert rows == want, cut
        assert reader.resume_offset <= cut and reader.skipped_bytes == 0
        # The rest, as a live tail reads it once it is written: nothing missed, nothing twice.
        live = reader.live_reader()
        events = live.feed(data[reader.resume_offset :])
        assert rows + [key(e) for e in events if isinstance(e, Row)] == whole, cut
        assert (
            others + [e for e in events if isinstance(e, RunMeta | ConfigUpdate | ConsoleOutput | Exit)] == whole_others
        )
        assert live.step_key == "train/global_step" and live.records == reference(data)[2].records


@pytest.mark.slow
def test_damage_never_invents_rows_and_loses_no_more_than_the_reference(sdk_file: Path) -> None:
    data = sdk_file.read_bytes()
    # Rows without an explicit step take the last one seen, so after a loss they are compared without it.
    clean = {r[1:] for r in reference(data)[0]}
    rnd = random.Random(11)
    for _ in range(30):
        damaged = bytearray(data)
        for _ in range(rnd.randint(1, 20)):
            damaged[rnd.randrange(7, len(data))] ^= 1 << rnd.randrange(8)
        want, _, _ = reference(bytes(damaged))
        rows, _, _ = read_bulk(bytes(damaged))
        got = {r[1:] for r in rows}
        assert got <= clean
        assert {r[1:] for r in want} <= got


@pytest.mark.parametrize(
    ("alphabet", "values", "most"),
    [(EXOTIC, VALUES + LONG_VALUES, 24), (PLAIN, VALUES, 12), (PLAIN, ["0.5", "3", "1e-3", "-0", "1E+5"], 20)],
    ids=["exotic", "plain", "numbers"],
)
def test_unusual_history_items_read_like_the_record_reader(alphabet: list[str], values: list[str], most: int) -> None:
    rnd = random.Random(3)
    records = []
    for num in range(1, 600):
        records.append(history(num, random_items(rnd, num, alphabet, values, most)))
    data = frame(records)
    assert read_bulk(data)[0] == reference(data)[0]


def test_rows_without_step_duplicate_keys_and_odd_fields_follow_the_record_reader() -> None:
    records = [
        history(1, {"loss": "1.0"}),  # no `_step`: counts on
        history(2, {"loss": "0.5"}, step=7),  # HistoryRecord.step only
        history(3, {("_step",): "9", "loss": "0.1", ("loss",): "0.2"}),  # one key twice: the last counts
        history(4, {("_step",): "10", ("loss",): "0.3", ("iter",): "NaN"}),  # a NaN explicit step is no step
        history(5, {("_step",): "11", ("iter",): "40", ("loss",): "1e400"}),  # an explicit step; inf
        history(6, {("_step",): "12", ("loss",): "0.04"}),  # no explicit step: the last one is kept
        history(7, {("_step",): "13", ("global_step",): "77", ("x",): "true"}),  # another explicit key
    ]
    data = frame(records)
    want, _, ref = reference(data)
    rows, _, reader = read_bulk(data)
    assert rows == want
    assert reader.step_key == ref.step_key == "global_step"


def test_a_wide_run_is_tabled_in_groups_of_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "_MAX_CELLS", 64)
    monkeypatch.setattr(bulk, "_MIN_GROUP", 3)
    rnd = random.Random(2)
    records = [
        history(n, {("_step",): str(n), **{(f"m{j}",): f"{rnd.random()!r}" for j in rnd.sample(range(40), 12)}})
        for n in range(1, 300)
    ]
    records[100] = history(100, {"loss": "1.0", ("m1",): "2"})  # decoded one by one, within a group
    data = frame(records)
    assert read_bulk(data)[0] == reference(data)[0]


def test_a_new_key_in_every_row_is_read_alike() -> None:
    records = [history(n, {("_step",): str(n), ("loss",): "0.5", (f"sample_{n}",): str(n)}) for n in range(1, 3000)]
    data = frame(records)
    rows, _, reader = read_bulk(data)
    assert rows == reference(data)[0]
    assert reader.slow_rows == 0


def test_numbers_are_read_bit_for_bit() -> None:
    rnd = random.Random(9)
    numbers = [repr(rnd.uniform(-1e3, 1e3)) for _ in range(500)] + [
        repr(rnd.random() * 10.0 ** rnd.randint(-30, 30)) for _ in range(500)
    ]
    numbers += ["12345678901234567890", "9007199254740993", "1e-320", "-0", "0.1", "1.7976931348623157e308"]
    data = frame([history(n, {("_step",): str(n), ("v",): v}) for n, v in enumerate(numbers)])
    rows, _, _ = read_bulk(data)
    assert [r[1][0][1] for r in rows] == [(float(v), str(float(v))) for v in numbers]


@pytest.mark.parametrize("header", [b":W&B\xe1\xbe\x07", b"not a wandb file", b":W&"])
def test_other_headers_are_refused_in_one_line(header: bytes) -> None:
    with pytest.raises(FormatError) as e:
        read_bulk(header + bytes(100))
    assert "\n" not in str(e.value)


def test_resume_state_hands_the_bulk_readers_place_to_a_live_reader(tmp_path: Path) -> None:
    from monitor.wandb.resume import ResumeState

    records = [
        history(n, {("_step",): str(n), ("train/global_step",): str(10 * n), ("loss",): "1.5"}) for n in range(1, 50)
    ]
    data = frame(records)
    cut = len(data) * 2 // 3 + 3  # inside a record
    reader = WandbBulkReader()
    list(reader.read(io.BytesIO(data[:cut])))
    state = reader.resume_state()
    assert isinstance(state, ResumeState) and state.offset == reader.resume_offset < cut
    live = WandbLogReader.resume(state)
    rows = [e.step for e in live.feed(data[state.offset :]) if not isinstance(e, (RunMeta, Exit))]
    whole = [e.step for e in WandbLogReader().feed(data) if not isinstance(e, (RunMeta, Exit))]
    assert live.step_key == "train/global_step" and rows == whole[-len(rows) :] and rows
