"""The crash check looks only at log lines new since it last looked, yet judges the whole tail."""

from __future__ import annotations

from monitor.analysis import RunAnalysis, RunInfo
from monitor.model import Row


def _crashed(a: RunAnalysis) -> bool:
    return any(f.kind == "crashed" and f.active for f in a.findings())


def test_crash_seen_across_batches_and_forgotten_once_scrolled_out() -> None:
    a = RunAnalysis(RunInfo(target="run.log", name="run"))
    a.info.format = "kv"
    a.add_rows([Row(float(i), {"loss": 2.0}) for i in range(50)], 0.0)
    a.store.add_log_lines([f"step={i} loss=2.0" for i in range(50)])
    assert not _crashed(a)
    a.store.add_log_lines(["Traceback (most recent call last):", '  File "train.py", line 3'])
    assert not _crashed(a)  # no exception line yet
    a.store.add_log_lines(["some harmless line"])
    a.store.add_log_lines(["RuntimeError: boom"])
    assert _crashed(a)  # the traceback came two batches ago: still part of the tail
    a.findings()  # nothing new: judged as before
    assert _crashed(a)
    # Training went on: the error was caught, and later scrolls out of the tail altogether.
    a.store.add_log_lines([f"step={i} loss=2.0" for i in range(50, 60)])
    assert not _crashed(a)
    a.store.add_log_lines([f"step={i} loss=2.0" for i in range(60, 700)])
    assert not _crashed(a)


def test_a_tail_longer_than_it_keeps_still_finds_the_crash_at_its_end() -> None:
    a = RunAnalysis(RunInfo(target="run.log", name="run"))
    a.info.format = "kv"
    a.store.add_log_lines([f"step={i} loss=2.0" for i in range(2000)] + ["Segmentation fault (core dumped)"])
    assert _crashed(a)
    assert len(a.store.log_tail) == a.store.log_tail.maxlen
    assert a.store.log_lines_added == 2001
