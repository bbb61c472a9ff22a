"""A scripted hub: publishes hand-made snapshots through the hub's listener API.

For Pilot and snapshot tests (and replays): the app cannot tell it from `monitor.hub.Hub`.
`run_snapshot(...)` builds a `RunSnapshot` with sensible defaults; `analysis(rows)` a real
`RunAnalysis` fed with given rows, so the detail and compare plots have data.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

from monitor.analysis import RunAnalysis, RunInfo
from monitor.gpu import GpuSample, GpuSnapshot
from monitor.hub import HubEvent, HubSnapshot, RunSnapshot
from monitor.model import Decision, Finding, Row, Severity, Verdict

_DECISION = {Verdict.HEALTHY: Decision.CONTINUE, Verdict.UNSURE: Decision.WAIT, Verdict.BAD: Decision.STOP}


def run_snapshot(run_id: str, **fields: Any) -> RunSnapshot:
    """A `RunSnapshot` with defaults for every field not given."""
    verdict = fields.get("verdict", Verdict.HEALTHY)
    base: dict[str, Any] = {
        "id": run_id,
        "name": run_id,
        "target": f"/runs/{run_id}.log",
        "source": "/runs",
        "host": "localhost",
        "state": "live",
        "stale": False,
        "source_error": None,
        "verdict": verdict,
        "decision": _DECISION[verdict],
        "reason": "loss falling" if verdict is Verdict.HEALTHY else "see findings",
        "findings": (),
        "last_step": 100.0,
        "total_steps": None,
        "steps_per_s": 10.0,
        "last_update": 1000.0,
        "loss_key": "loss",
        "loss": 2.5,
        "loss_trend": (4.0, 3.5, 3.1, 2.9, 2.7, 2.5),
        "headline": (("loss", 2.5),),
        "gpu_util": None,
        "gpu_mem_pct": None,
        "format": "kv",
        "step_key": "step",
        "url": None,
        "version": 0,
    }
    base.update(fields)
    return RunSnapshot(**base)


def analysis(name: str, rows: Iterable[Row], now: float = 1000.0, log: Iterable[str] = ()) -> RunAnalysis:
    """A real run analysis fed with `rows` (and log lines); rows without a time came one a second up to `now`
    (as from a live run, so time axes have something to show)."""
    a = RunAnalysis(RunInfo(target=name, name=name, format="kv"))
    rows = list(rows)
    n = len(rows)
    a.add_rows([r if r.time is not None else r._replace(time=now - (n - 1 - i)) for i, r in enumerate(rows)], now)
    a.store.add_log_lines(log)
    return a


class ScriptedHub:
    """Satisfies `tui.hubapi.HubLike`; `publish(snapshot)` and `emit(event)` drive the app."""

    def __init__(
        self,
        analyses: dict[str, RunAnalysis] | None = None,
        gpu_history: dict[str, list[GpuSnapshot]] | None = None,
        initial: HubSnapshot | None = None,
    ) -> None:
        self.analyses = analyses or {}
        self.gpu_history: dict[str, list[GpuSnapshot]] = gpu_history or {}
        self.initial = initial
        self.last: HubSnapshot | None = None
        self.started = False
        self.stopped = False
        self.refreshes = 0
        self._snap: list[Callable[[HubSnapshot], Any]] = []
        self._events: list[Callable[[HubEvent], Any]] = []

    def add_snapshot_listener(self, cb: Callable[[HubSnapshot], Any]) -> None:
        self._snap.append(cb)

    def add_event_listener(self, cb: Callable[[HubEvent], Any]) -> None:
        self._events.append(cb)

    async def start(self) -> None:
        self.started = True
        if self.initial is not None:
            self.publish(self.initial)

    async def stop(self) -> None:
        self.stopped = True

    def refresh(self) -> None:
        self.refreshes += 1
        if self.last is not None:
            self.publish(self.last)

    def analysis(self, run_id: str) -> RunAnalysis:
        return self.analyses[run_id]

    def publish(self, snap: HubSnapshot) -> None:
        self.last = snap
        for cb in self._snap:
            cb(snap)

    def emit(self, event: HubEvent) -> None:
        for cb in self._events:
            cb(event)

    def update_run(self, run_id: str, **fields: Any) -> HubSnapshot:
        """Publish the last snapshot with one run's fields changed."""
        assert self.last is not None
        runs = tuple(dataclasses.replace(r, **fields) if r.id == run_id else r for r in self.last.runs)
        snap = dataclasses.replace(self.last, runs=runs)
        self.publish(snap)
        return snap


def finding(
    kind: str, severity: Any, step: float, message: str, *, metric: str = "loss", active: bool = True
) -> Finding:
    """A finding for scripted snapshots."""
    return Finding(kind, severity, metric, step, step, message, {}, active)


def _curve(step: int, base: float = 2.2) -> float:
    return base + 8.0 * math.exp(-step / 40.0) + 0.03 * math.sin(step * 1.7)


def sample_scene(now: float = 1000.0) -> tuple[ScriptedHub, HubSnapshot]:
    """Four deterministic runs (healthy, NaN, plateau, unreachable) with data, for tests and screenshots."""
    healthy_rows = [
        Row(
            float(s), {"loss": _curve(s), "lr": 3e-4 * min(1.0, (s + 1) / 20), "grad_norm": 0.8 + 3 * math.exp(-s / 30)}
        )
        for s in range(300)
    ]
    healthy_rows += [Row(float(s), {"eval_loss": _curve(s) + 0.1}) for s in range(0, 300, 50)]
    nan_rows = [Row(float(s), {"loss": _curve(s, 2.4) if s < 260 else math.nan}) for s in range(280)]
    plateau_rows = [Row(float(s), {"trl": 3.1 + 7 * math.exp(-s / 15.0) + 0.01 * math.sin(s)}) for s in range(300)]
    lost_rows = [Row(float(s), {"loss": _curve(s, 2.3)}) for s in range(120)]
    analyses = {
        "healthy": analysis("healthy", healthy_rows, now - 2, ["step=299 loss=2.2 lr=3e-4", "checkpoint saved"]),
        "nan": analysis("nan", nan_rows, now - 1, [f"iter {s}: loss nan" for s in range(270, 280)]),
        "plateau": analysis("plateau", plateau_rows, now - 3),
        "lost": analysis("lost", lost_rows, now - 400),
    }
    nan = finding("nan", Severity.BAD, 260, "loss is NaN at step 260")
    plateau = finding(
        "plateau", Severity.WARN, 98, "trl has not improved by 1% since step 98 (200 points)", metric="trl"
    )
    lost = finding("source_error", Severity.WARN, 119, "gpu7: connection refused", metric="source")
    runs = (
        run_snapshot("healthy", name="gpt-small", loss=_curve(299), last_step=299.0, last_update=now - 2),
        run_snapshot(
            "nan",
            name="gpt-fp16",
            verdict=Verdict.BAD,
            reason="loss is NaN at step 260",
            findings=(nan,),
            loss=math.nan,
            last_step=279.0,
            loss_trend=(2.5, 2.45, 2.44, math.nan, math.nan),
            last_update=now - 1,
        ),
        run_snapshot(
            "plateau",
            name="llmc-d12",
            verdict=Verdict.UNSURE,
            reason=plateau.message,
            findings=(plateau,),
            loss=3.1,
            last_step=299.0,
            format="llmc",
            last_update=now - 3,
        ),
        run_snapshot(
            "lost",
            name="remote-7b",
            source="gpu7",
            host="gpu7:22",
            state="retrying in 30 s",
            stale=True,
            source_error="gpu7: connection refused",
            findings=(lost,),
            last_step=119.0,
            last_update=now - 400,
        ),
    )
    snap = HubSnapshot(now, runs, (("gpu7:22", "retrying in 30 s"),), ())
    gpu = {
        "localhost": [
            GpuSnapshot(
                "localhost",
                now - 60 + 2 * i,
                (GpuSample(0, "H100", util_pct=90 + (i % 5), mem_used_mib=60000, mem_total_mib=80000),),
            )
            for i in range(30)
        ]
    }
    return ScriptedHub(analyses, gpu, initial=snap), snap


def _metric_rows(steps: Iterable[int], fn: Callable[[int], dict[str, float]]) -> list[Row]:
    return [Row(float(s), fn(s)) for s in steps]


def yolo_scene(now: float = 1000.0) -> tuple[ScriptedHub, HubSnapshot]:
    """One YOLOv5-like run (`results.csv`: 3 train and 3 val losses, 4 eval metrics, 3 LRs) and a loss-only run."""

    def yolo(e: int) -> dict[str, float]:
        d = math.exp(-e / 30.0)
        row = {}
        for i, part in enumerate(("box", "obj", "cls")):
            row[f"train/{part}_loss"] = 0.02 + (0.08 - 0.02 * i) * d + 0.001 * math.sin(e + i)
            row[f"val/{part}_loss"] = 0.025 + (0.07 - 0.02 * i) * d
        row["metrics/precision"] = 0.9 - 0.6 * d
        row["metrics/recall"] = 0.85 - 0.6 * d
        row["metrics/mAP_0.5"] = 0.88 - 0.7 * d
        row["metrics/mAP_0.5:0.95"] = 0.6 - 0.5 * d
        for i in range(3):
            row[f"x/lr{i}"] = 0.01 * (1 - e / 160) + (0.07 * math.exp(-e / 3) if i == 2 else 0.0)
        return row

    a = analysis(
        "yolo",
        _metric_rows(range(150), yolo),
        now - 2,
        [f"{e:>10}, {yolo(e)['train/box_loss']:.6f}" for e in range(140, 150)],
    )
    a.info.step_key = "epoch"
    a.info.format = "csv"
    a.info.config = {"epochs": 150, "batch_size": 16, "optimizer": "SGD", "wandb_api_key": "abcd1234secretvalue"}
    loss_only = analysis("loss-only", _metric_rows(range(0, 5000, 10), lambda s: {"loss": _curve(s // 10)}), now - 1)
    runs = (
        run_snapshot("yolo", name="yolov5-lid/results.csv", last_step=149.0, loss=0.02, format="csv", step_key="epoch"),
        run_snapshot("loss-only", name="loss-only.log", last_step=4990.0, loss=2.2, steps_per_s=25.0),
    )
    snap = HubSnapshot(now, runs, (), ())
    return ScriptedHub({"yolo": a, "loss-only": loss_only}, {}, initial=snap), snap


def mixed_scene(now: float = 1000.0) -> tuple[ScriptedHub, HubSnapshot]:
    """Runs that count steps differently: an HF run to step 6,000, three 600-step runs (one goes NaN), a 1M-step run."""
    hf = analysis(
        "hf", _metric_rows(range(0, 6001, 50), lambda s: {"loss": _curve(s // 20, 1.9), "epoch": s / 2000}), now - 2
    )
    hf.info.step_key = "train/global_step"
    analyses = {"hf": hf}
    runs = [
        run_snapshot("hf", name="hf-bert-base", last_step=6000.0, loss=1.9, step_key="train/global_step", format="hf")
    ]
    for i, base in enumerate((2.1, 2.3, 2.0)):

        def fn(s: int, base: float = base, i: int = i) -> dict[str, float]:
            return {"loss": math.nan if i == 2 and s > 500 else _curve(s // 3, base)}

        rid = f"short-{i}"
        analyses[rid] = analysis(rid, _metric_rows(range(0, 601, 5), fn), now - 3)
        analyses[rid].info.step_key = "iter"
        runs.append(
            run_snapshot(
                rid,
                name=f"nanogpt-lr{i}",
                last_step=600.0,
                loss=math.nan if i == 2 else base,
                step_key="iter",
                verdict=Verdict.BAD if i == 2 else Verdict.HEALTHY,
            )
        )
    big = analysis("big", _metric_rows(range(0, 1_000_001, 1000), lambda s: {"loss": _curve(s // 5000, 2.05)}), now - 1)
    analyses["big"] = big
    runs.append(run_snapshot("big", name="llm-1m-steps", last_step=1_000_000.0, loss=2.05, steps_per_s=1234.0))
    snap = HubSnapshot(now, tuple(runs), (), ())
    return ScriptedHub(analyses, {}, initial=snap), snap
