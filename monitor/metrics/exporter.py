"""Hub snapshots as Prometheus metrics.

Only the latest `HubSnapshot` is kept; every scrape builds the families from it, so a run that was
removed disappears at once and nothing per run outlives it. Labels stay few and bounded: `run` (the
run's id: its path, `host:/path` or W&B URL), `source`, `host`, and where needed `metric` (the
log's key), `kind` and `severity` (from the finding vocabulary) or `gpu` (the index, as DCGM's
exporter labels it). Steps and values are never labels. Label values are redacted (secrets in paths
or names); escaping quotes, backslashes and newlines is the client library's job.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator

from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from monitor import runstate
from monitor.model import Severity, Verdict
from monitor.redact import Redactor
from monitor.snapshot import HubSnapshot, RunSnapshot

#: Every state word a run can be in (`monitor.runstate`), for the state set.
STATES = (
    runstate.LIVE,
    runstate.FINISHED,
    runstate.CRASHED,
    runstate.IDLE,
    runstate.STALE,
    runstate.WAITING,
    runstate.CONNECTING,
    runstate.UNREADABLE,
)
#: (role in `RunSnapshot.role_values`, metric name, help).
ROLE_METRICS = (
    ("train_loss", "runwatch_run_train_loss", "Last training loss the run logged."),
    ("eval_loss", "runwatch_run_eval_loss", "Last evaluation loss the run logged."),
    ("lr", "runwatch_run_learning_rate", "Last learning rate the run logged."),
    ("grad_norm", "runwatch_run_grad_norm", "Last gradient norm the run logged."),
)
_RUN_LABELS = ["run", "source", "host"]
_MIB = 1024 * 1024


def _plain(text: str) -> str:
    return text


class SnapshotCollector(Collector):
    """A collector that turns a hub snapshot into metric families on each scrape.

    Pushed (`update`, a hub snapshot listener) or pulled: with `pull`, each scrape asks for a fresh
    snapshot, so a service builds one per scrape instead of four a second; when the pull fails the
    last snapshot is served."""

    def __init__(self, pull: Callable[[], HubSnapshot] | None = None) -> None:
        self._snapshot: HubSnapshot | None = None
        self._lock = threading.Lock()
        self.pull = pull
        # Its own redactor (secret-named environment variables), used under the lock: scrapes run
        # in server threads, and its cache makes the same labels cheap on every scrape.
        self._redactor = Redactor()
        self._redactor.remember_env(os.environ)

    def update(self, snap: HubSnapshot) -> None:
        """Keep `snap` as what the next scrape shows (a hub snapshot listener)."""
        with self._lock:
            self._snapshot = snap

    @property
    def ready(self) -> bool:
        """Whether there is something to serve: a snapshot arrived, or one can be pulled."""
        return self._snapshot is not None or self.pull is not None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self.pull is not None:
                with contextlib.suppress(Exception):  # a hub shutting down: serve the last snapshot
                    self._snapshot = self.pull()
            families = snapshot_families(self._snapshot, self._redactor.text)
        yield from families


def snapshot_families(snap: HubSnapshot | None, label: Callable[[str], str] = _plain) -> list[Metric]:
    """The metric families for one snapshot (empty families before the first one); `label` redacts
    names, paths and keys on their way into label values."""
    f = _Families(label)
    if snap is not None:
        f.snapshot_time.add_metric([], snap.time)
        for run in snap.runs:
            f.add_run(run)
        for host, line in snap.hosts:
            f.host_up.add_metric([label(host)], 0.0 if _host_down(host, line) else 1.0)
        for host, gsnap in snap.gpus:
            f.add_gpus(label(host), gsnap)
    return f.all()


def _host_down(host: str, line: str) -> bool:
    """Whether a host's one-line state (`gpu1: live`, `gpu1: retrying (next try in 8 s): …`, a W&B
    backend's `ok` or its error) says it cannot be reached now."""
    word = line.removeprefix(f"{host}: ").split(" ", 1)[0].strip(":").lower()
    return word not in ("live", "ok")


class _Families:
    """The families of one scrape, filled run by run."""

    def __init__(self, label: Callable[[str], str]) -> None:
        self._label = label
        g, lab = GaugeMetricFamily, _RUN_LABELS
        self.verdict = g(
            "runwatch_run_verdict",
            "The judge's verdict: 0 healthy, 1 unsure, 2 bad (absent until the run's metrics were read).",
            labels=lab,
        )
        self.info = InfoMetricFamily("runwatch_run", "The run's name, shown verdict, decision and state.", labels=lab)
        self.state = StateSetMetricFamily("runwatch_run_state", "The run's state.", labels=lab)
        self.last_step = g("runwatch_run_last_step", "Last step the run logged.", labels=lab)
        self.steps = g("runwatch_run_steps_per_second", "Recent steps per second.", labels=lab)
        self.updated = g(
            "runwatch_run_last_update_timestamp_seconds", "When the run last delivered data (Unix time).", labels=lab
        )
        self.roles = {role: g(name, doc, labels=[*lab, "metric"]) for role, name, doc in ROLE_METRICS}
        self.findings = g(
            "runwatch_run_findings",
            "Active findings on the run, by kind and severity.",
            labels=[*lab, "kind", "severity"],
        )
        self.source_up = g("runwatch_run_source_up", "1 while the run's source can be read, else 0.", labels=lab)
        self.reconnects = CounterMetricFamily(
            "runwatch_run_source_reconnects", "Times the run's source failed and was opened again.", labels=lab
        )
        self.host_up = g("runwatch_host_up", "1 while an SSH host or W&B backend answers, else 0.", labels=["host"])
        gl = ["host", "gpu"]
        self.gpu_util = g("runwatch_gpu_utilization_ratio", "GPU utilisation (0 to 1).", labels=gl)
        self.gpu_used = g("runwatch_gpu_memory_used_bytes", "GPU memory in use.", labels=gl)
        self.gpu_total = g("runwatch_gpu_memory_total_bytes", "GPU memory in all.", labels=gl)
        self.gpu_up = g("runwatch_gpu_up", "1 when the host's GPUs could be read, else 0.", labels=["host"])
        self.snapshot_time = g("runwatch_snapshot_timestamp_seconds", "When the hub made the snapshot served.")

    def add_run(self, r: RunSnapshot) -> None:
        _label = self._label
        key = [_label(r.id), _label(r.source), _label(r.host)]
        if r.rows > 0 or r.verdict is Verdict.BAD:  # nothing read is never "healthy": no verdict yet
            self.verdict.add_metric(key, float(int(r.verdict)))
        shown = r.shown_verdict or str(r.verdict)
        self.info.add_metric(
            key,
            {"name": _label(r.name), "verdict": shown, "decision": str(r.decision.value), "state": r.state},
        )
        self.state.add_metric(key, {s: s == r.state for s in STATES})
        if r.last_step is not None:
            self.last_step.add_metric(key, r.last_step)
        if r.steps_per_s is not None:
            self.steps.add_metric(key, r.steps_per_s)
        if r.last_update is not None:
            self.updated.add_metric(key, r.last_update)
        for role, metric, value in r.role_values:
            fam = self.roles.get(role)
            if fam is not None:
                fam.add_metric([*key, _label(metric)], value)
        counts: dict[tuple[str, str], int] = {}
        for finding in r.findings:
            if finding.active:
                k = (finding.kind, Severity(finding.severity).name.lower())
                counts[k] = counts.get(k, 0) + 1
        for (kind, severity), n in sorted(counts.items()):
            self.findings.add_metric([*key, kind, severity], float(n))
        self.source_up.add_metric(key, 0.0 if r.stale else 1.0)
        self.reconnects.add_metric(key, float(r.reconnects))

    def add_gpus(self, host: str, snap: object) -> None:
        from monitor.gpu import GpuSnapshot

        assert isinstance(snap, GpuSnapshot)
        self.gpu_up.add_metric([host], 1.0 if snap.ok else 0.0)
        for g in snap.gpus:
            lab = [host, str(g.index)]
            if g.util_pct is not None:
                self.gpu_util.add_metric(lab, g.util_pct / 100.0)
            if g.mem_used_mib is not None:
                self.gpu_used.add_metric(lab, g.mem_used_mib * _MIB)
            if g.mem_total_mib is not None:
                self.gpu_total.add_metric(lab, g.mem_total_mib * _MIB)

    def all(self) -> list[Metric]:
        return [
            self.verdict,
            self.info,
            self.state,
            self.last_step,
            self.steps,
            self.updated,
            *self.roles.values(),
            self.findings,
            self.source_up,
            self.reconnects,
            self.host_up,
            self.gpu_up,
            self.gpu_util,
            self.gpu_used,
            self.gpu_total,
            self.snapshot_time,
        ]


def make_registry(collector: SnapshotCollector) -> CollectorRegistry:
    """A registry with the runs' metrics and the process's own (CPU, memory, open files, GC, Python)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    for c in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        reg.register(c)
    return reg
