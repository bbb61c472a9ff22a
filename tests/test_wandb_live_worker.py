"""A live view catching up with a big `.wandb` file reads it in a worker process: the same pieces,
judged in the same order, as reading it in the view's own process; then the tail goes on alike."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from monitor import backfill
from monitor.analysis import RunAnalysis, RunInfo
from monitor.sources.base import Chunk
from monitor.wandb import bulk
from monitor.wandb import feed as wandb_feed
from monitor.wandb.feed import WandbFeed
from tests.test_wandb_log import write_offline_run

_WRITER = """
import math, wandb
run = wandb.init(project="live", config={"lr": 3e-4})
for i in range(4000):
    lr = 3e-4 * min(1.0, (i + 1) / 200) * (0.5 + 0.5 * math.cos(math.pi * i / 4000))
    loss = 3 * math.exp(-i / 800) + 0.5 + (5.0 if 2500 <= i < 2510 else 0.0)
    run.log({"train/loss": loss, "lr": lr, "grad_norm": 1.0 + (i % 13) / 10})
    if i % 500 == 0:
        run.log({"eval/loss": loss + 0.1}, commit=False)
run.finish()
"""


def state(x: object) -> object:
    """An object's state as plain data (attributes of attributes), to compare two readers."""
    if hasattr(x, "__dict__"):
        return {k: state(v) for k, v in vars(x).items()}
    slots = getattr(type(x), "__slots__", None)
    if slots is not None and not isinstance(x, tuple):
        return {k: state(getattr(x, k)) for k in slots if hasattr(x, k)}
    return repr(x)


def catch_up(file: Path, now: float) -> tuple[WandbFeed, list[int]]:
    feed = WandbFeed(RunAnalysis(RunInfo(target=str(file), name="live")), "localhost")
    seen: list[int] = []
    feed.on_progress = seen.append
    for _ in feed.catch_up(file, now, final=False):
        pass
    return feed, seen


@pytest.mark.timeout(240)
def test_a_big_file_caught_up_in_a_worker_is_judged_as_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = write_offline_run(tmp_path, _WRITER, timeout=200)
    size = file.stat().st_size
    monkeypatch.setattr(wandb_feed, "BULK_BYTES", 1)  # "big": the bulk reader
    monkeypatch.setattr(bulk, "_PIECE", 1 << 16)  # several pieces
    now = time.time()
    monkeypatch.setattr(wandb_feed, "worth_parallel", lambda path: False)
    here, _ = catch_up(file, now)
    monkeypatch.setattr(wandb_feed, "worth_parallel", lambda path: True)
    calls: list[Path] = []
    real = backfill.read_wandb_pieces

    def spy(path: Path) -> object:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(backfill, "read_wandb_pieces", spy)
    worker, progress = catch_up(file, now)
    assert calls == [file]  # it went through the worker
    assert progress == sorted(progress) and len(progress) > 3 and progress[-1] == worker.resume_offset == size
    a, b = here.analysis, worker.analysis
    assert b.store.rows == a.store.rows == 4000
    for key in a.store.metrics:
        s1, v1 = a.store.metrics[key].series()
        s2, v2 = b.store.metrics[key].series()
        assert np.array_equal(s1, s2) and np.array_equal(v1, v2, equal_nan=True), key
    assert b.detectors.findings() == a.detectors.findings() and a.detectors.findings()
    assert (b.info.state, b.info.step_key, b.info.lines, b.info.malformed, b.info.config) == (
        a.info.state,
        a.info.step_key,
        a.info.lines,
        a.info.malformed,
        a.info.config,
    )
    assert worker.resume_offset == here.resume_offset
    assert state(worker.reader) == state(here.reader)
    # What comes after goes on the same way (here: a rewritten file read again from its start).
    data = file.read_bytes()
    for f in (here, worker):
        f.chunk(Chunk(0, data, reset="rotated"), now + 1)
    assert worker.analysis.store.rows == here.analysis.store.rows


def test_a_file_that_is_not_a_wandb_log_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from monitor.errors import FormatError

    bad = tmp_path / "run-x.wandb"
    bad.write_bytes(b"not a wandb file" * 100)
    monkeypatch.setattr(wandb_feed, "BULK_BYTES", 1)
    monkeypatch.setattr(wandb_feed, "worth_parallel", lambda path: True)
    with pytest.raises(FormatError, match=r"run-x\.wandb"):
        catch_up(bad, time.time())


@pytest.mark.timeout(240)
def test_a_reader_started_before_the_ui_is_taken_up_and_judges_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `runwatch FILE` forks the bulk reader of a big .wandb target before the UI imports itself
    # (monitor.prefetch); the hub's catch-up takes that reader up instead of forking its own.
    import os

    from monitor import prefetch

    file = write_offline_run(tmp_path, _WRITER, timeout=200)
    monkeypatch.setattr(wandb_feed, "BULK_BYTES", 1)
    monkeypatch.setattr(prefetch, "BULK_BYTES", 1)
    monkeypatch.setattr(bulk, "_PIECE", 1 << 16)  # several pieces, set before the reader forks
    now = time.time()
    monkeypatch.setattr(wandb_feed, "worth_parallel", lambda path: False)
    here, _ = catch_up(file, now)
    monkeypatch.setattr(wandb_feed, "worth_parallel", lambda path: True)
    prefetch.start([str(file.parent)])  # a run folder holding one .wandb file
    assert os.path.realpath(file) in prefetch._started
    time.sleep(0.5)  # it reads ahead while nobody receives
    taken: list[bool] = []
    real = backfill._worker_messages

    def spy(target: object, args: object, started: object = None) -> object:
        taken.append(started is not None)
        return real(target, args, started)  # type: ignore[arg-type]

    monkeypatch.setattr(backfill, "_worker_messages", spy)
    worker, _ = catch_up(file, now)
    assert taken == [True] and not prefetch._started  # taken up, once
    a, b = here.analysis, worker.analysis
    assert b.store.rows == a.store.rows == 4000
    for key in a.store.metrics:
        s1, v1 = a.store.metrics[key].series()
        s2, v2 = b.store.metrics[key].series()
        assert np.array_equal(s1, s2) and np.array_equal(v1, v2, equal_nan=True), key
    assert b.detectors.findings() == a.detectors.findings() and a.detectors.findings()
    assert worker.resume_offset == here.resume_offset
    assert state(worker.reader) == state(here.reader)
    # A file replaced since its reader started is not read by that reader.
    prefetch.start([str(file)])
    proc = prefetch._started[os.path.realpath(file)][0]
    data = file.read_bytes()
    file.unlink()
    file.write_bytes(data)  # a new file (a new inode) at the same path
    assert prefetch.take(file) is None
    proc.join(5)
    assert not proc.is_alive()
