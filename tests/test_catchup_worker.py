"""A big live log caught up with a parse worker is judged exactly as when one process reads it all."""

from __future__ import annotations

from pathlib import Path

import pytest

import monitor.catchup as catchup
import monitor.feeds as feeds
from monitor.analysis import RunAnalysis, RunInfo
from monitor.feeds import TextFeed
from monitor.sources.base import Chunk


def _write_log(path: Path) -> None:
    lines = ["launcher banner: starting", "Namespace(lr=0.0003, max_steps=30000)"]
    for i in range(30000):
        loss = 2.0 + 8.0 * 0.999**i
        if i >= 29900:
            loss = float("nan")
        lines.append(f"step={i} loss={loss:.5f} lr=0.0003 grad_norm={1.0 + (i % 7) / 10:.2f}")
        if i == 20000:
            lines += ["Traceback (most recent call last):", "ValueError: caught and logged"]
    path.write_text("\n".join(lines) + "\nstep=30000 loss=2.1")  # the last line unfinished


def _catch_up(path: Path, worker: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[TextFeed, list[bool]]:
    monkeypatch.setattr(feeds, "_PIECE", 1 << 16)
    monkeypatch.setattr(catchup, "PARALLEL_BYTES", 1 << 17 if worker else 1 << 40)
    feed = TextFeed(RunAnalysis(RunInfo(target=str(path), name="run")), None, path.name)
    changes = list(feed.catch_up(path, 1000.0, final=False))
    return feed, changes


def _state(feed: TextFeed) -> tuple[object, ...]:
    a = feed.analysis
    j = a.judgement()
    info = a.info
    findings = [(f.kind, f.severity, f.step, f.onset_step, f.message, f.active) for f in j.findings]
    metrics = {k: repr((s.last, list(s._steps), list(s._values), list(s._h_max))) for k, s in a.store.metrics.items()}
    return (
        j.verdict,
        j.decision,
        findings,
        a.store.rows,
        metrics,
        list(a.store.log_tail),
        (info.format, info.step_key, info.axis, info.lines, info.noise, info.malformed, info.config, info.state),
        feed.resume_offset,
        feed.splitter.peek_partial(),
    )


def test_worker_catch_up_matches_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "train.log"
    _write_log(log)
    one, _ = _catch_up(log, False, monkeypatch)
    two, changes = _catch_up(log, True, monkeypatch)
    assert len(changes) > 10  # the worker's pieces came one by one
    assert two.splitter is not one.splitter  # the worker's came back
    assert two.parser is not one.parser
    assert _state(two) == _state(one)
    assert _state(one)[0].name == "BAD"  # the NaN was seen
    # Following on from there, both read the same.
    more = b" lr=0.0003\nstep=30001 loss=2.05 lr=0.0003\n"
    for feed in (one, two):
        feed.chunk(Chunk(feed.resume_offset, more), 2000.0)
    assert _state(two) == _state(one)
    assert one.analysis.detectors.last_step == 30001
