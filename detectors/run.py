"""All detectors of one run, wired by metric role; rows in, findings and a judgement out.

This is the hot path of parsing + judging: each metric key is routed once to a small monitor
object (cached per key), which updates shared statistics once and asks its detectors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from detectors.base import fmt
from detectors.crash import Crash, CrashDetector
from detectors.judge import judge
from detectors.layers import LayerLens
from detectors.loss import is_total_loss
from detectors.lr import LrDetector, Schedule, declared_length
from detectors.monitors import EvalMonitor, GradMonitor, LossMonitor
from detectors.rl import RlLens, policy_run
from detectors.stall import StallDetector
from detectors.thresholds import DEFAULT, Thresholds
from monitor.model import Finding, Judgement, Role, Row

Handler = Callable[[float, float], bool]

#: Keys that show a run whose losses are not objectives that fall: reinforcement learning
#: (policy/value losses follow the returns) and GANs (each loss follows the opponent).
_NOT_OBJECTIVE = re.compile(
    r"ep_rew|episode_reward|policy_gradient_loss|value_loss|approx_kl|clip_fraction|explained_variance|"
    r"entropy_loss|vf_loss|pg_loss|critic_loss|actor_loss|q_loss|(?:^|[/_ ])(?:loss_[gd]|[gd]_loss)(?:$|[/_ ])|"
    r"discriminator|generator"
)

#: Quality metrics that measure one side of a trade-off, weaker evidence than mAP/accuracy/F1.
_PARTIAL_QUALITY = re.compile(r"precision|recall")

#: Findings of earlier segments (before the steps went back) kept for the record.
_RETIRED_KEPT = 64


def _skip(step: float, x: float) -> bool:
    return False


# Order in which a column block's metrics are judged: what others look at comes first.
_ROLE_ORDER = {Role.LR: 0, Role.TRAIN_LOSS: 1, Role.GRAD_NORM: 2, Role.EVAL_LOSS: 3, Role.EVAL_DOWN: 3, Role.EVAL_UP: 3}


class RunDetectors:
    """Every detector of one run. Feed rows with `ingest`, call `tick(now)` between batches."""

    def __init__(
        self,
        roles: Callable[[str], Role],
        thresholds: Thresholds = DEFAULT,
        baselines: Mapping[str, float] | None = None,
        total_steps: float | None = None,
        axis: str = "step",
    ) -> None:
        self._roles = roles
        self.axis = axis
        """The run's step axis as findings name it ("step", "epoch", "iteration")."""
        self.crash = CrashDetector(axis)
        self._retired: list[Finding] = []
        self.restarts = 0
        """How many times the steps went back (relaunches appended to one log, resumes)."""
        self._schedule: Schedule | None = None
        self._th = thresholds
        self._baselines = dict(baselines or {})
        self._handlers: dict[str, Handler] = {}
        self._monitors: list[LossMonitor | EvalMonitor | GradMonitor | LrDetector] = []
        self._train: LossMonitor | None = None
        self._total: str | None = None
        self._not_objective = False
        self._lr: LrDetector | None = None
        self._external: dict[str, Finding] = {}
        self.stall = StallDetector(thresholds)
        self.rl = RlLens(axis=axis)
        """The RL / LLM lens (KL, entropy, clip fraction, reward vs task metric): `detectors/rl.py`."""
        self.layers = LayerLens(thresholds, axis)
        """Per-layer gradients (dead, exploding, vanishing layers): `detectors/layers.py`."""
        self.total_steps = total_steps
        self._config: Mapping[str, Any] = {}
        self._steps: float | None = None
        self._epochs: float | None = None
        """The run length its configuration declared, in steps and in epochs (for an epoch axis)."""
        self.stall.total = total_steps
        self.version = 0
        """Bumped whenever any finding appears, changes or clears."""
        self.last_step: float | None = None

    @property
    def train_loss_key(self) -> str | None:
        """The metric treated as the training loss (the first one seen)."""
        return self._train.nan.metric if self._train is not None else None

    def _loss_trouble(self) -> str | None:
        """What is live and wrong with the training (a loss diverging or spiking, gradients exploding)."""
        for m in self._monitors:
            if isinstance(m, GradMonitor) and m.explode.active:
                return f"{m.explode.metric} is exploding"
            if isinstance(m, LossMonitor) and not m.nan_only:
                if m.div.active:
                    return f"{m.div.metric} is diverging"
                if m.spike.in_spike:
                    return f"{m.spike.metric} is spiking"
        return None

    def _another_loss_holding(self, mon: LossMonitor) -> bool:
        """Whether another training loss of the run holds at its best (a trade-off between components)."""
        return any(
            isinstance(m, LossMonitor) and m is not mon and not m.nan_only and m.div.holding(m.stats)
            for m in self._monitors
        )

    def _route(self, key: str) -> Handler:
        role = self._roles(key)
        if not self._not_objective and (_NOT_OBJECTIVE.search(key.lower()) or policy_run(key)):
            # Reinforcement learning or a GAN: its losses move with the policy or the opponent.
            self._not_objective = True
            for m in self._monitors:
                if isinstance(m, LossMonitor):
                    m.nan_only = True
        th = self._th
        handler: Handler
        if role is Role.TRAIN_LOSS:
            mon = LossMonitor(key, th, lambda: self._lr, self.axis)
            if is_total_loss(key) and self._total is None:
                self._total = key
                for other in self._monitors:
                    if isinstance(other, LossMonitor):
                        other.div.component = True
            mon.div.component = self._total is not None and self._total != key
            mon.div.siblings = lambda mon=mon: self._another_loss_holding(mon)
            mon.nan_only = self._not_objective
            if self._train is None or self._total == key:
                self._train = mon
            self._monitors.append(mon)
            handler = mon
        elif role in (Role.EVAL_LOSS, Role.EVAL_DOWN, Role.EVAL_UP):
            emon = EvalMonitor(
                key,
                th,
                role,
                self._baselines.get(key),
                lambda: self._train.stats if self._train else None,
                self.axis,
                self._quality,
                lambda: self._lr,
            )
            self._monitors.append(emon)
            handler = emon
        elif role is Role.GRAD_NORM:
            gmon = GradMonitor(key, th, self.axis)
            gmon.nonfinite.trouble = self._loss_trouble
            self._monitors.append(gmon)
            handler = gmon
        elif role is Role.LR and self._lr is None:
            lr = self._lr = LrDetector(key, th, self.axis)
            lr.total_steps = self._lr_total()
            lr.declare(self._schedule)
            self._monitors.append(lr)
            handler = lr.update
        else:
            handler = self.layers.route(key, role) or _skip  # per-layer gradients (detectors/layers.py)
        handler = self.rl.route(key, role, handler, _skip)  # RL / LLM lens (detectors/rl.py)
        self._handlers[key] = handler
        return handler

    def _quality(self) -> tuple[str, float, float, float] | None:
        """The run's eval quality metric as it stands: name, latest and best value (lower is better in both)
        and evaluation noise. mAP, accuracy, F1 and the like first; precision or recall alone (which
        trade against each other) and WER-like metrics only when there is nothing else."""
        best: tuple[int, tuple[str, float, float, float]] | None = None
        for mon in self._monitors:
            if isinstance(mon, EvalMonitor) and mon.quality is None:
                last, top = mon.evals.last_y, mon.evals.best_y
                if last is None or top is None:
                    continue
                name = mon.evals.metric
                rank = 2 if not mon.evals.higher_better else (1 if _PARTIAL_QUALITY.search(name.lower()) else 0)
                if best is None or rank < best[0]:
                    best = (rank, (name, last, top, mon.evals.noise))
                    if rank == 0:
                        break
        return best[1] if best is not None else None

    def ingest(self, row: Row, now: float) -> bool:
        """Judge one row; True when any finding changed."""
        return self.ingest_many((row,), now)

    def ingest_many(self, rows: Iterable[Row], now: float) -> bool:
        """Judge a batch of rows in order; True when any finding changed.

        The hot path of parsing + judging: one dict lookup per value, a call only for metrics
        some detector watches, and the stall bookkeeping once per batch.
        """
        handlers = self._handlers
        route = self._route
        changed = False
        n = 0
        last: Row | None = None
        top = self.last_step if self.last_step is not None else -math.inf
        for row in rows:
            step = row.step
            if step > top:
                top = step
            elif (
                top - step > 0.01 * abs(top) + 1e-9
                and self._monitors
                and any((handlers.get(k) or route(k)) is not _skip for k in row.values)
            ):
                # The step went back: a relaunch appended to the same log, or a resume from an earlier
                # checkpoint. What came before is history; statistics start again (unless nothing
                # judged was seen yet, or this row has nothing judged: a log's preamble or an eval
                # summary may be counted on another axis).
                if self._restart(step, top):
                    changed = True
                handlers = self._handlers
                top = step
            for key, x in row.values.items():
                h = handlers.get(key)
                if h is None:
                    h = route(key)
                if h is not _skip and h(step, x):
                    changed = True
            n += 1
            last = row
        if last is None:
            return False
        self.last_step = top
        if self.stall.activity(top, last.time if last.time is not None else now, n):
            changed = True
        if changed:
            self.version += 1
        return changed

    def ingest_columns(self, blocks: Iterable[Any], now: float) -> bool:
        """Judge blocks of rows given column-wise (`monitor.columns.Columns`); True when a finding changed.

        Within a block each metric is walked on its own, in role order (learning rate, training
        loss, grad norm, then eval metrics), so a detector that looks at another metric sees that
        metric as of the end of the block rather than of the same row: a block is one batch of a
        backfill (a few thousand rows), and this is what makes backfilling long runs fast.
        """
        changed = False
        n = 0
        last_step = last_time = None
        for block in blocks:
            if not len(block.steps):
                continue
            handlers = self._handlers
            if self._goes_back(block.steps) or any(
                isinstance(handlers.get(k) or self._route(k), EvalMonitor) for k in block.keys
            ):
                # Judged row by row: a relaunch in the same log (rare) restarts; and evaluations (sparse)
                # are read beside the training loss and accuracy of their own row, whatever the blocks.
                if self.ingest_many(block.rows(), now):
                    changed = True
                continue
            handlers = self._handlers
            steps = block.steps.tolist()
            order = sorted(range(len(block.keys)), key=lambda j: _ROLE_ORDER.get(self._roles(block.keys[j]), 1))
            for j in order:
                key = block.keys[j]
                h = handlers.get(key)
                if h is None:
                    h = self._route(key)
                if h is _skip:
                    continue
                xs = block.values[:, j].tolist()
                many = getattr(h, "many", None)
                if many is not None:
                    if many(steps, xs):
                        changed = True
                    continue
                for step, x in zip(steps, xs, strict=True):
                    if h(step, x):
                        changed = True
            n += len(steps)
            top = max(steps)
            self.last_step = top if self.last_step is None else max(self.last_step, top)
            last_step = self.last_step
            if block.times is not None and block.times[-1] == block.times[-1]:
                last_time = float(block.times[-1])
        if last_step is None:
            return changed
        if self.stall.activity(last_step, last_time if last_time is not None else now, n):
            changed = True
        if changed:
            self.version += 1
        return changed

    def _goes_back(self, steps: np.ndarray) -> bool:
        """Whether a block's steps go back (by more than 1 %) from the run's or the block's own top."""
        top = self.last_step if self.last_step is not None else -math.inf
        peak = np.maximum.accumulate(steps)
        if top > peak[0]:
            peak = np.maximum(peak, top)
        return bool(np.any(peak - steps > 0.01 * np.abs(peak) + 1e-9))

    def _restart(self, step: float, top: float) -> bool:
        """Start the statistics again at `step` after the run went back from `top`; active findings
        are kept for the record, cleared."""
        changed = False
        retired = self._retired
        for mon in self._monitors:
            for d in (mon,) if isinstance(mon, LrDetector) else mon.detectors():
                if d._resolve(
                    step,
                    f"{d.current.message if d.current else ''} (the run restarted at "
                    f"{self.axis} {fmt(step)} after {fmt(top)})",
                ):
                    changed = True
                retired.extend(d.findings())
        retired.extend(self.rl.restart(step, top))  # RL / LLM lens
        retired.extend(self.layers.restart(step, top))  # per-layer gradients
        del retired[:-_RETIRED_KEPT]
        self._handlers = {}
        self._monitors = []
        self._train = None
        self._total = None
        self._lr = None
        self.last_step = None
        # The stall detector (owned with the ingest code) counts new steps by its highest one so far;
        # after a relaunch lower steps are new activity too.
        self.stall._last_step = -math.inf
        self.restarts += 1
        return changed

    def set_total_steps(self, total: float | None) -> None:
        """The planned run length, when a source learns it (`iteration N/TOTAL`)."""
        self.total_steps = total
        self._stall_total()
        if self._lr is not None:
            self._lr.total_steps = self._lr_total()

    def _lr_total(self) -> float | None:
        """The run length the LR schedule is judged against, in the axis's units."""
        return self._epochs if self.axis == "epoch" else self.total_steps

    def _stall_total(self) -> None:
        """The length at which the run is finished, on the axis its steps are counted in."""
        self.stall.total = self._epochs if self.axis == "epoch" else (self._steps or self.total_steps)

    def tick(self, now: float) -> bool:
        """Time-based checks (stall); True when a finding changed."""
        if self.stall.tick(now):
            self.version += 1
            return True
        return False

    def touch(self, t: float) -> None:
        """The source shows life at `t` without a new step (a file's modification time)."""
        self.stall.touch(t)

    def finish(self) -> bool:
        """The run ended (exit record, 'End of training'): stall detection stops."""
        if self.stall.finish(self.last_step or 0.0):
            self.version += 1
            return True
        self.stall.finished = True
        return False

    def declare(self, config: Mapping[str, Any]) -> bool:
        """The run's configuration (TrainingArguments, W&B config, Megatron args): its declared LR
        schedule is what the logged LR is compared with."""
        self._config = config
        schedule = Schedule.from_config(config, self.axis == "epoch") if config else None
        self._steps, self._epochs = declared_length(config) if config else (None, None)
        self._stall_total()
        if self._lr is not None:
            self._lr.total_steps = self._lr_total()
        if schedule == self._schedule:
            return False
        self._schedule = schedule
        if schedule is not None and schedule.total and not self.total_steps and self.axis != "epoch":
            self.set_total_steps(schedule.total)
        if self._lr is not None and self._lr.declare(schedule):
            self.version += 1
            return True
        return False

    def set_axis(self, axis: str) -> None:
        """Name the step axis in findings from now on ("epoch" where a run counts epochs)."""
        if axis == self.axis:
            return
        self.axis = axis
        self._stall_total()
        self.crash.rename_axis(axis)
        self.rl.rename_axis(axis)
        self.layers.rename_axis(axis)
        for mon in self._monitors:
            for d in (mon,) if isinstance(mon, LrDetector) else mon.detectors():
                d.rename_axis(axis)
        if self._config:
            # The declared schedule's length and warm-up in the axis's own units (epochs or steps).
            self.declare(self._config)

    def set_crash(self, crash: Crash | None) -> bool:
        """What the log's text after its last metric line shows (`detectors.crash.find_crash`)."""
        if not self.crash.update(crash, self.last_step):
            return False
        # A process that died is over, not stalled; if training went on after all, it may stall again.
        if crash is not None:
            self.stall.finish(self.last_step or 0.0)
        else:
            self.stall.finished = False
        self.version += 1
        return True

    def exited(self, code: int | None) -> bool:
        """The process's recorded exit code (a W&B exit record); non-zero makes the run crashed."""
        if self.crash.exited(code, self.last_step):
            self.version += 1
            return True
        return False

    def set_external(self, finding: Finding) -> None:
        """A finding from outside the metric stream (source_error, gpu_idle), one per kind."""
        self._external[finding.kind] = finding
        self.version += 1

    def clear_external(self, kind: str) -> None:
        if self._external.pop(kind, None) is not None:
            self.version += 1

    def findings(self) -> tuple[Finding, ...]:
        """Every finding, current and past, in step order."""
        out: list[Finding] = list(self._retired)
        for mon in self._monitors:
            dets = (mon,) if isinstance(mon, LrDetector) else mon.detectors()
            for d in dets:
                out.extend(d.findings())
        out.extend(self.rl.findings())
        out.extend(self.layers.findings())
        out.extend(self.stall.findings())
        out.extend(self.crash.findings())
        out.extend(self._external.values())
        out.sort(key=lambda f: (f.step, f.kind))
        return tuple(out)

    def judgement(self) -> Judgement:
        """The judge's verdict on the findings so far."""
        return judge(self.findings())
