"""One run as the hub holds it (`HubRun`), and the snapshot views are shown of it (`run_snapshot`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from monitor import runstate
from monitor.analysis import RunAnalysis
from monitor.feeds import Feed
from monitor.gpu import GpuSnapshot
from monitor.hubgpu import gpu_for
from monitor.model import Role, Verdict
from monitor.outward import outward
from monitor.redact import Redactor
from monitor.runstate import RunState, SourceFacts
from monitor.snapshot import RunSnapshot
from monitor.sources.base import RunRef
from monitor.targets import Target

_SPARK_POINTS = 48


@dataclass
class HubRun:
    """One run the hub watches: its source's facts, its state and its analysis."""

    id: str
    ref: RunRef
    analysis: RunAnalysis
    feed: Feed | None = None
    facts: SourceFacts = field(default_factory=SourceFacts)
    state: RunState = field(default_factory=lambda: RunState(runstate.CONNECTING))
    last_update: float | None = None
    verdict: Verdict | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    retries: int = 0
    """Times its source failed and was opened again."""
    writer_seen: bool = False
    """Whether a process was seen holding the run's local file open for writing."""
    ended_by_writer: bool = False
    trusted: bool = True
    """Whether data from the source clears its error (not while a failed source is re-read)."""
    opened_at: float = 0.0
    progress: tuple[int, int] | None = None
    """(bytes read, bytes to read) while catching up with what the file held when opened."""
    told_caught_up: bool = False
    """Whether the `caught_up` event was sent (views show 'reading' until then)."""
    read_since: tuple[float, int] | None = None
    """When a snapshot first saw the catching up, and the bytes read then (for the read rate)."""

    def read_rate(self, now: float) -> float | None:
        """Bytes read per second since a snapshot first saw this catching up (None when not catching up)."""
        if self.progress is None:
            self.read_since = None
            return None
        done = self.progress[0]
        if self.read_since is None or done < self.read_since[1]:  # (read again from the start)
            self.read_since = (now, done)
            return None
        t0, d0 = self.read_since
        return (done - d0) / (now - t0) if now > t0 and done > d0 else None

    @property
    def target(self) -> Target:
        return self.ref.target

    @property
    def source_error(self) -> str | None:
        return self.facts.error


def run_snapshot(run: HubRun, gpu: GpuSnapshot | None, now: float, red: Redactor | None = None) -> RunSnapshot:
    """What views are shown of one run now (`red`: the environment's redactor, looked up once per snapshot)."""
    a = run.analysis
    j = a.judgement()
    info = a.info
    loss_key = a.key_for(Role.TRAIN_LOSS)
    trend: tuple[float, ...] = ()
    loss = None
    if loss_key is not None and loss_key in a.store.metrics:
        _, values = a.store.metrics[loss_key].recent()
        trend = tuple(values[-_SPARK_POINTS:].tolist())
        loss = a.store.last(loss_key)
    util, mem = gpu_for(gpu)
    roles = tuple(
        (role.value, key, value)
        for role in (Role.TRAIN_LOSS, Role.EVAL_LOSS, Role.LR, Role.GRAD_NORM)
        if (key := a.key_for(role)) is not None and (value := a.store.last(key)) is not None
    )
    state = run.state
    detail = state.label if state.word != runstate.STALE else (run.facts.connection or state.label)
    return RunSnapshot(
        id=run.id,
        name=info.name,
        # hostile wall: paths and remote errors are outside text, shown in the TUI; the run's id stays raw.
        target=outward(run.target.raw, redactor=red),
        source=outward(run.target.source_label, redactor=red),
        host=run.target.host,
        state=state.word,
        stale=state.stale,
        source_error=outward(run.facts.error, redactor=red) if run.facts.error else run.facts.error,
        verdict=j.verdict,
        decision=j.decision,
        reason=j.reason,
        findings=j.findings,
        last_step=a.detectors.last_step,
        total_steps=info.total_steps,
        steps_per_s=a.store.steps_per_second(now),
        last_update=a.detectors.stall.last_time or run.last_update,
        rows=a.store.rows,
        loss_key=loss_key,
        loss=loss,
        loss_trend=trend,
        headline=tuple({key: value for _, key, value in roles}.items()),  # = a.headline(), read once
        gpu_util=util,
        gpu_mem_pct=mem,
        format=info.format,
        step_key=info.step_key,
        url=info.url,
        version=a.detectors.version,
        shown_verdict=runstate.shown_verdict(state, j.verdict),
        state_detail=detail,
        exit_code=info.exit_code,
        progress=run.progress,
        read_rate=run.read_rate(now),
        reconnects=run.retries,
        role_values=roles,
    )
