"""What the hub hands to views: immutable snapshots of every run, and the events worth a line."""

from __future__ import annotations

from dataclasses import dataclass

from monitor.gpu import GpuSnapshot
from monitor.model import Decision, Finding, Verdict


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """Everything a view shows about one run at one moment."""

    id: str
    name: str
    target: str
    source: str
    host: str
    state: str
    """live, finished, crashed, idle, stale, unreadable, waiting, connecting (`monitor.runstate`)."""
    stale: bool
    source_error: str | None
    verdict: Verdict
    decision: Decision
    reason: str
    findings: tuple[Finding, ...]
    last_step: float | None
    total_steps: float | None
    steps_per_s: float | None
    last_update: float | None
    """When the run last delivered data (a finding changing on its own does not move it)."""
    loss_key: str | None
    loss: float | None
    loss_trend: tuple[float, ...]
    headline: tuple[tuple[str, float], ...]
    gpu_util: float | None
    gpu_mem_pct: float | None
    format: str
    step_key: str
    url: str | None
    version: int
    rows: int = 0
    """Rows stored so far: a data version for views that redraw only on new data."""
    shown_verdict: str = ""
    """What a person is shown (`monitor.runstate.shown_verdict`): the verdict, or stale/unreadable."""
    state_detail: str = ""
    """The state in a few words: `idle since 2026-12-03 14:02 UTC`, `retrying in 5 s`, ..."""
    exit_code: int | None = None
    progress: tuple[int, int] | None = None
    """(bytes read, bytes to read) while the run's existing content is caught up; None after."""
    read_rate: float | None = None
    """Bytes read per second while catching up (None: not catching up, or not measured yet)."""
    reconnects: int = 0
    """Times the run's source failed and was opened again."""
    role_values: tuple[tuple[str, str, float], ...] = ()
    """(role, metric key, last value) for the train loss, eval loss, LR and grad norm, where known."""


@dataclass(frozen=True, slots=True)
class HubSnapshot:
    """All runs and hosts at one moment."""

    time: float
    runs: tuple[RunSnapshot, ...]
    hosts: tuple[tuple[str, str], ...]
    """(host, one-line connection state) for SSH hosts and W&B backends."""
    gpus: tuple[tuple[str, GpuSnapshot], ...]

    def counts(self) -> dict[Verdict, int]:
        out = dict.fromkeys(Verdict, 0)
        for r in self.runs:
            out[r.verdict] += 1
        return out


@dataclass(frozen=True, slots=True)
class HubEvent:
    """A fact worth a line in `watch`: `verdict`, `state`, `run` (a new run appeared) or `caught_up`
    (what a run's file held when it was opened has been read and judged; now it is followed)."""

    time: float
    kind: str
    run_id: str
    name: str
    verdict: Verdict
    decision: Decision
    reason: str
    state: str
    detail: str = ""
    findings: tuple[Finding, ...] = ()
    shown_verdict: str = ""
    """The verdict as the TUI shows it (`monitor.runstate.shown_verdict`)."""
    last_step: float | None = None
