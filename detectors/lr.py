"""Learning-rate schedule anomalies: a jump, a warm-up that never ends, no decay, a reset, a non-finite LR.

Intended schedules are not anomalies: warm-up from zero, linear/cosine decay, step decay,
ReduceLROnPlateau cuts (the LR only goes down) and warm restarts (back up to the same peak).
Where the run declared its schedule (HF `TrainingArguments`, W&B config, Megatron or nanoGPT
arguments) the logged LR is compared with it: `Schedule.from_config`.

Each finding says what it found in machine-readable form too (the messages are for people):
`evidence["anomaly"]` is one of `jump`, `rising_again` (a climb point after point after a decay: a
warm-up running again or still running under the decay), `reset` (a warm-up from near zero again after
a decay), `warmup_never_ends`, `no_decay`, `nonfinite` or `negative`; `evidence["decayed"]` whether the
schedule had started to decay before it; a jump says `above_peak`; the schedule checks say what the LR
was compared with in `evidence["declared"]`: `warmup` (a declared warm-up length), `schedule` (a
declared schedule) or `length` (only the run's length).
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
#: Restart schedules whose LR climbs gradually within a cycle; the others (SGDR, cosine with warm
#: restarts) jump back up in one step, so a climb point after point there is a warm-up run again.
_GRADUAL = ("cyclic", "one_cycle", "onecycle", "triangular")
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
    def from_config(cls, config: Mapping[str, Any], epochs: bool = False) -> Schedule | None:
        """The schedule a run's configuration declares, or None when it declares none; with `epochs`,
        its warm-up and length in epochs (for a log whose axis counts epochs, e.g. YOLO's results.csv)."""
        get = _Lookup(config)
        name = get.text("lr_scheduler_type", "lr_decay_style", "lr_scheduler", "scheduler", "lr_schedule", "sched")
        decay_lr = get.text("decay_lr")
        if name is None and decay_lr is not None:
            name = "cosine" if decay_lr.lower() in ("true", "1") else "constant"
        cos_lr = get.text("cos_lr")
        if name is None and cos_lr is not None:
            # Ultralytics YOLO: a cosine decay with cos_lr, else a linear one down to lrf.
            name = "cosine" if cos_lr.lower() in ("true", "1") else "linear"
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
        if epochs:
            total = declared_length(config)[1]
            warmup = get.number("warmup_epochs", "lr_warmup_epochs")
        else:
            total = get.number(
                "lr_decay_iters", "max_steps", "train_iters", "max_iters", "total_steps", "num_training_steps"
            )
            warmup = get.number(
                "warmup_steps", "lr_warmup_iters", "warmup_iters", "num_warmup_steps", "lr_warmup_steps"
            )
        if total is not None and total <= 0:
            total = None
        ratio = get.number("warmup_ratio", "lr_warmup_fraction")
        if (warmup is None or warmup <= 0) and ratio is not None and 0 < ratio < 1 and total is not None:
            warmup = ratio * total
        return cls(style, name, warmup if warmup and warmup > 0 else None, total)


def declared_length(config: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """The run length a configuration declares: steps (`max_steps`, Megatron `train_iters`, nanoGPT
    `max_iters`) and epochs (YOLO `epochs`, Lightning `max_epochs`, HF `num_train_epochs`)."""
    get = _Lookup(config)
    steps = get.number("max_steps", "train_iters", "max_iters", "total_steps", "num_training_steps")
    epochs = get.number("max_epochs", "num_train_epochs", "epochs", "n_epochs", "num_epochs")
    return (steps if steps and steps > 0 else None), (epochs if epochs and epochs > 0 else None)


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
        "_climb",
        "_climb_from",
        "_decaying",
        "_first",
        "_flat_from",
        "_last",
        "_last_step",
        "_peak",
        "_restarts_jump",
        "_restarts_ok",
        "_rise_limit",
        "_rising_since",
        "_rose",
        "_schedule",
        "_th",
        "_total",
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
        self._climb = 0
        self._climb_from = 0.0
        self._schedule: Schedule | None = None
        self._total: float | None = None
        self._rise_limit = math.inf
        self._flat_from = math.inf
        self._restarts_ok = False
        self._restarts_jump = False

    @property
    def ratio(self) -> float | None:
        """Current LR as a fraction of its peak (None before a positive LR was seen)."""
        if self._peak <= 0.0 or self._last != self._last:
            return None
        return self._last / self._peak

    @property
    def warming(self) -> bool:
        """Still in the LR's initial warm-up: rising to new peaks, never decayed."""
        return not self._decaying and self._rising_since is not None

    @property
    def in_warmup(self) -> bool:
        """Rising through its initial warm-up right now (not a constant LR, not a warm-up that was
        already found never to end)."""
        cur = self.current
        return self._rose and not self._decaying and self._rising_since is not None and not (cur and cur.active)

    def declare(self, schedule: Schedule | None) -> bool:
        """The schedule the run declared; the LR seen so far is compared with it at once."""
        if schedule == self._schedule:
            return False
        self._schedule = schedule
        if schedule is not None and schedule.total and not self._total:
            self._total = schedule.total
        self._limits()
        return self._check_schedule(self._last_step, self._last)

    @property
    def total_steps(self) -> float | None:
        """The planned run length, when known (from the log, the config or the declared schedule)."""
        return self._total

    @total_steps.setter
    def total_steps(self, total: float | None) -> None:
        self._total = total
        self._limits()

    def _limits(self) -> None:
        """Steps past which a still-rising or an undecayed LR is worth checking (inf: never)."""
        sched, total = self._schedule, self._total
        warmup = sched.warmup if sched is not None else None
        rise = math.inf
        if warmup is not None:
            rise = max(2.0 * warmup + 0.05 * (total or 0.0), warmup + 10.0)
        if total:
            rise = min(rise, 0.5 * total)
        self._rise_limit = rise
        flat = math.inf
        if sched is not None and sched.style == "decay" and total:
            start = sched.warmup or 0.0
            flat = start + 0.3 * (total - start)
        self._flat_from = flat
        restarts = sched is not None and sched.style == "restarts"
        gradual = restarts and sched is not None and any(k in sched.name for k in _GRADUAL)
        self._restarts_ok = gradual
        self._restarts_jump = restarts and not gradual

    def update(self, step: float, x: float) -> bool:
        if not 0.0 <= x < math.inf:
            self._last = math.nan
            if self._already(Severity.BAD if x != x or x == math.inf else Severity.WARN):
                return False
            return self._fire(
                Severity.BAD if x != x or x == math.inf else Severity.WARN,
                step,
                step,
                f"learning rate {self.metric} is {fmt(x)} at {self.axis} {fmt(step)}",
                {"value": str(x), "anomaly": "nonfinite" if x != x or x == math.inf else "negative"},
            )
        last = self._last
        prev_step = self._last_step
        self._last = x
        self._last_step = step
        if self._first != self._first and x > 0.0:
            self._first = x
        changed = False
        if self._decaying and x > last * 1.000001 and last > 0.0 and not self._restarts_ok:
            if self._climb == 0:
                self._climb_from = prev_step
            self._climb += 1
            changed = self._after_decay(step, last, x)
        else:
            self._climb = 0
        if x > self._peak:
            if self._rising_since is None:
                self._rising_since = prev_step if last == last else step
            self._peak = x
        elif x < 0.9 * self._peak:
            self._decaying = True
            self._rising_since = None
        rose = self._rose = x > last  # False after a NaN (last is NaN)
        if (rose and step > self._rise_limit) or step > self._flat_from:
            return self._check_schedule(step, x) or changed
        return changed

    def _after_decay(self, step: float, last: float, x: float) -> bool:
        th = self._th
        peak = self._peak
        if self._restarts_jump and self._climb < 3 and x <= 1.2 * peak:
            # Warm restarts jump back up in one step, to the peak or to a decayed peak: any single
            # rise to there is a restart; a climb point after point (below) is not, nor is a jump far
            # past the peak (no restart goes there).
            return False
        if x > last * math.exp(th.lr_jump_ratio):
            if 0.8 * peak <= x <= 1.2 * peak:
                return False  # a warm restart: back to the same peak
            what = "above its peak" if x > 1.2 * peak else "after the schedule had started to decay"
            return self._fire(
                Severity.WARN,
                step,
                step,
                f"learning rate jumped x{x / last:.3g} ({fmt(last)} -> {fmt(x)}) at {self.axis} {fmt(step)} {what}",
                {
                    "before": last,
                    "after": x,
                    "peak": peak,
                    "anomaly": "jump",
                    "above_peak": x > 1.2 * peak,
                    "decayed": True,
                },
            )
        if self._climb >= 3 and not self._already(Severity.WARN):
            # Cosine, linear, step and plateau schedules never rise once they decay; a warm restart
            # jumps back to its peak in one point. Rising point after point is a warm-up running
            # again (a schedule reset on resume) or still running under the decay.
            return self._fire(
                Severity.WARN,
                step,
                self._climb_from,
                f"learning rate rising again since {self.axis} {fmt(self._climb_from)} ({fmt(x)} at {self.axis} "
                f"{fmt(step)}) after it had decayed: a warm-up running again or still running under the decay",
                {"lr": x, "peak": peak, "rising_points": self._climb, "anomaly": "rising_again", "decayed": True},
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
                {"before": last, "after": x, "peak": peak, "anomaly": "reset", "decayed": True},
            )
        return False

    def _check_schedule(self, step: float, x: float) -> bool:
        """Warm-up that never ends, or no decay although one was declared (with a known length)."""
        if x != x or self._already(Severity.WARN):
            return False
        sched = self._schedule
        total = self._total
        warmup = sched.warmup if sched is not None else None
        if self._rose and self._rising_since is not None:
            # Once the LR has decayed the warm-up did end: a rise after that (a warm restart back to
            # its peak, a climb under the decay) is judged in `_after_decay`.
            if (
                warmup is not None
                and not self._decaying
                and step > 2.0 * warmup + 0.05 * (total or 0.0)
                and step > warmup + 10
            ):
                return self._fire(
                    Severity.WARN,
                    step,
                    self._rising_since,
                    f"learning rate still rising at {self.axis} {fmt(step)} although the warm-up was "
                    f"{fmt(warmup)} steps: the warm-up never ended",
                    {
                        "lr": x,
                        "warmup": warmup,
                        "anomaly": "warmup_never_ends",
                        "declared": "warmup",
                        "decayed": self._decaying,
                    },
                )
            if not self._decaying and total and step > 0.5 * total and step - self._rising_since > 0.4 * total:
                return self._fire(
                    Severity.WARN,
                    step,
                    self._rising_since,
                    f"learning rate still rising at {self.axis} {fmt(step)} of {fmt(total)}: the warm-up never ended",
                    {
                        "lr": x,
                        "total_steps": total,
                        "anomaly": "warmup_never_ends",
                        "declared": "length" if sched is None else "schedule",
                        "decayed": self._decaying,
                    },
                )
        if sched is not None and sched.style == "decay" and total and self._peak > 0.0:
            start = sched.warmup or 0.0
            if step > start + 0.3 * (total - start) and step <= 1.5 * total and x >= 0.97 * self._peak:
                return self._fire(
                    Severity.WARN,
                    step,
                    start,
                    f"learning rate still {fmt(x)} (its peak) at {self.axis} {fmt(step)} although the run "
                    f"declared a {sched.name} schedule over {fmt(total)} {self.axis}s: it is not decaying",
                    {
                        "lr": x,
                        "peak": self._peak,
                        "schedule": sched.name,
                        "total_steps": total,
                        "anomaly": "no_decay",
                        "declared": "schedule",
                        "decayed": self._decaying,
                    },
                )
        return False
