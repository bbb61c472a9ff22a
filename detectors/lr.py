"""Learning-rate schedule anomalies: a jump, a warm-up that never ends, no decay, a reset, a non-finite LR.

Intended schedules are not anomalies: warm-up from zero, linear/cosine decay, step decay,
ReduceLROnPlateau cuts (the LR only goes down) and warm restarts (back up to the same peak).
Where the run declared its schedule (HF `TrainingArguments`, W&B config, Megatron or nanoGPT
arguments) the logged LR is compared with it: `Schedule.from_config`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from detectors.base import Detector, fmt
from detectors.thresholds import Thresholds
from monitor.model import Severity

_DECAYING = ("linear", "cosine", "polynomial", "inverse_sqrt", "inverse-square-root", "exponential", "wsd", "step")
_RESTARTS = ("restart", "cyclic", "one_cycle", "onecycle", "sgdr", "triangular")
_CONSTANT = ("constant",)
_PLATEAU = ("plateau",)


@dataclass(frozen=True, slots=True)
class Schedule:
    """What a run said its LR schedule is: `style` (decay / constant / restarts / plateau / ?), warm-up and length."""

    style: str
    name: str
    warmup: float | None = None
    total: float | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Schedule | None:
        """The schedule a run's configuration declares, or None when it declares none."""
        get = _Lookup(config)
        name = get.text("lr_scheduler_type", "lr_decay_style", "lr_scheduler", "scheduler", "lr_schedule", "sched")
        decay_lr = get.text("decay_lr")
        if name is None and decay_lr is not None:
            name = "cosine" if decay_lr.lower() in ("true", "1") else "constant"
        if name is None:
            return None
        low = name.lower()
        name = low.rsplit(".", 1)[-1]
        style = "?"
        if any(k in low for k in _RESTARTS):
            style = "restarts"
        elif any(k in low for k in _PLATEAU):
            style = "plateau"
        elif any(k in low for k in _CONSTANT) or low in ("none", "fixed"):
            style = "constant"
        elif any(k in low for k in _DECAYING):
            style = "decay"
        total = get.number(
            "lr_decay_iters", "max_steps", "train_iters", "max_iters", "total_steps", "num_training_steps"
        )
        if total is not None and total <= 0:
            total = None
        warmup = get.number("warmup_steps", "lr_warmup_iters", "warmup_iters", "num_warmup_steps", "lr_warmup_steps")
        ratio = get.number("warmup_ratio", "lr_warmup_fraction")
        if (warmup is None or warmup <= 0) and ratio is not None and 0 < ratio < 1 and total is not None:
            warmup = ratio * total
        return cls(style, name, warmup if warmup and warmup > 0 else None, total)


class _Lookup:
    """Case-insensitive lookups in a flat or W&B-style (`{"value": x}`) config, one level of nesting too."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.flat: dict[str, Any] = {}
        for k, v in config.items():
            if isinstance(v, Mapping) and "value" in v:
                v = v["value"]
            if isinstance(v, Mapping):
                for k2, v2 in v.items():
                    self.flat.setdefault(str(k2).lower().replace("-", "_"), v2)
            else:
                self.flat[str(k).lower().replace("-", "_")] = v

    def text(self, *keys: str) -> str | None:
        for k in keys:
            v = self.flat.get(k)
            if v is not None and not isinstance(v, Mapping | list):
                s = str(v).strip().strip("'\"")
                if s and s.lower() != "null":
                    return s
        return None

    def number(self, *keys: str) -> float | None:
        for k in keys:
            v = self.flat.get(k)
            if isinstance(v, bool):
                continue
            try:
                x = float(v)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
            if math.isfinite(x):
                return x
        return None


class LrDetector(Detector):
    """Tracks the LR's peak and phase; also tells other detectors how far the LR has decayed."""

    __slots__ = (
        "_decaying",
        "_first",
        "_last",
        "_last_step",
        "_peak",
        "_rising_since",
        "_rose",
        "_schedule",
        "_th",
        "total_steps",
    )
    kind = "lr_anomaly"

    def __init__(self, metric: str, th: Thresholds, axis: str = "step") -> None:
        super().__init__(metric, axis)
        self._th = th
        self._peak = 0.0
        self._first = math.nan
        self._last = math.nan
        self._last_step = 0.0
        self._decaying = False
        self._rising_since: float | None = None
        self._rose = False
        self._schedule: Schedule | None = None
        self.total_steps: float | None = None

    @property
    def ratio(self) -> float | None:
        """Current LR as a fraction of its peak (None before a positive LR was seen)."""
        if self._peak <= 0.0 or self._last != self._last:
            return None
        return self._last / self._peak

    def declare(self, schedule: Schedule | None) -> bool:
        """The schedule the run declared; the LR seen so far is compared with it at once."""
        if schedule == self._schedule:
            return False
        self._schedule = schedule
        if schedule is not None and schedule.total and not self.total_steps:
            self.total_steps = schedule.total
        return self._check_schedule(self._last_step, self._last)

    def update(self, step: float, x: float) -> bool:
        if x != x or x in (math.inf, -math.inf) or x < 0:
            self._last = math.nan
            if self._already(Severity.BAD if x != x or x == math.inf else Severity.WARN):
                return False
            return self._fire(
                Severity.BAD if x != x or x == math.inf else Severity.WARN,
                step,
                step,
                f"learning rate {self.metric} is {fmt(x)} at {self.axis} {fmt(step)}",
                {"value": str(x)},
            )
        last = self._last
        prev_step = self._last_step
        self._last = x
        self._last_step = step
        if self._first != self._first and x > 0.0:
            self._first = x
        changed = False
        restarts = self._schedule is not None and self._schedule.style == "restarts"
        if last == last and last > 0.0 and self._decaying and not restarts:
            changed = self._after_decay(step, last, x)
        if x > self._peak:
            if self._rising_since is None:
                self._rising_since = prev_step if last == last else step
            self._peak = x
        elif x < 0.9 * self._peak:
            self._decaying = True
            self._rising_since = None
        self._rose = last == last and x > last
        return self._check_schedule(step, x) or changed

    def _after_decay(self, step: float, last: float, x: float) -> bool:
        th = self._th
        peak = self._peak
        if x > last * math.exp(th.lr_jump_ratio):
            if 0.8 * peak <= x <= 1.2 * peak:
                return False  # a warm restart: back to the same peak
            what = "above its peak" if x > 1.2 * peak else "after the schedule had started to decay"
            return self._fire(
                Severity.WARN,
                step,
                step,
                f"learning rate jumped x{x / last:.3g} ({fmt(last)} -> {fmt(x)}) at {self.axis} {fmt(step)} {what}",
                {"before": last, "after": x, "peak": peak},
            )
        first = self._first
        if (
            last <= 0.1 * peak
            and x > 1.5 * last
            and x < 0.5 * peak
            and first == first
            and first <= 0.1 * peak
            and not self._already(Severity.WARN)
        ):
            return self._fire(
                Severity.WARN,
                step,
                step,
                f"learning rate rising again from {fmt(last)} at {self.axis} {fmt(step)} after it had decayed: "
                "the warm-up restarted (a schedule reset on resume?)",
                {"before": last, "after": x, "peak": peak},
            )
        return False

    def _check_schedule(self, step: float, x: float) -> bool:
        """Warm-up that never ends, or no decay although one was declared (with a known length)."""
        if x != x or self._already(Severity.WARN):
            return False
        sched = self._schedule
        total = self.total_steps
        warmup = sched.warmup if sched is not None else None
        if self._rose and self._rising_since is not None:
            if warmup is not None and step > 2.0 * warmup + 0.05 * (total or 0.0) and step > warmup + 10:
                return self._fire(
                    Severity.WARN,
                    step,
                    self._rising_since,
                    f"learning rate still rising at {self.axis} {fmt(step)} although the warm-up was "
                    f"{fmt(warmup)} steps: the warm-up never ended",
                    {"lr": x, "warmup": warmup},
                )
            if not self._decaying and total and step > 0.5 * total and step - self._rising_since > 0.4 * total:
                return self._fire(
                    Severity.WARN,
                    step,
                    self._rising_since,
                    f"learning rate still rising at {self.axis} {fmt(step)} of {fmt(total)}: the warm-up never ended",
                    {"lr": x, "total_steps": total},
                )
        if sched is not None and sched.style == "decay" and total and self._peak > 0.0:
            start = sched.warmup or 0.0
            if step > start + 0.3 * (total - start) and step <= 1.5 * total and x >= 0.97 * self._peak:
                return self._fire(
                    Severity.WARN,
                    step,
                    start,
                    f"learning rate still {fmt(x)} (its peak) at {self.axis} {fmt(step)} although the run "
                    f"declared a {sched.name} schedule over {fmt(total)} steps: it is not decaying",
                    {"lr": x, "peak": self._peak, "schedule": sched.name, "total_steps": total},
                )
        return False
