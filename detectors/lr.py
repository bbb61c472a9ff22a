"""Learning-rate schedule anomalies: a jump after decay began, a warm-up that never ends, a non-finite LR.

Intended schedules are not anomalies: warm-up from zero, linear/cosine decay, step decay and
plateau-annealing (LR divided on a plateau) all only move the LR up early or down later.
"""

from __future__ import annotations

import math

from detectors.base import Detector, fmt
from detectors.thresholds import Thresholds
from monitor.model import Severity


class LrDetector(Detector):
    """Tracks the LR's peak and phase; also tells other detectors how far the LR has decayed."""

    __slots__ = ("_decaying", "_last", "_peak", "_rising_since", "_th", "total_steps")
    kind = "lr_anomaly"

    def __init__(self, metric: str, th: Thresholds, axis: str = "step") -> None:
        super().__init__(metric, axis)
        self._th = th
        self._peak = 0.0
        self._last = math.nan
        self._decaying = False
        self._rising_since: float | None = None
        self.total_steps: float | None = None

    @property
    def ratio(self) -> float | None:
        """Current LR as a fraction of its peak (None before a positive LR was seen)."""
        if self._peak <= 0.0 or self._last != self._last:
            return None
        return self._last / self._peak

    def update(self, step: float, x: float) -> bool:
        if x != x or x in (math.inf, -math.inf) or x < 0:
            self._last = math.nan
            return self._fire(
                Severity.BAD if x != x or x == math.inf else Severity.WARN,
                step,
                step,
                f"learning rate {self.metric} is {fmt(x)} at {self.axis} {fmt(step)}",
                {"value": str(x)},
            )
        last = self._last
        self._last = x
        changed = False
        if last == last and last > 0.0 and self._decaying:
            jump = math.log(x / last) if x > 0 else 0.0
            if jump > self._th.lr_jump_ratio:
                changed = self._fire(
                    Severity.WARN,
                    step,
                    step,
                    f"learning rate jumped x{x / last:.1f} ({fmt(last)} -> {fmt(x)}) at {self.axis} {fmt(step)} after "
                    f"the schedule had started to decay",
                    {"before": last, "after": x},
                )
        if x > self._peak:
            self._peak = x
            if self._rising_since is None:
                self._rising_since = step
        elif x < 0.9 * self._peak:
            self._decaying = True
            self._rising_since = None
        total = self.total_steps
        if (
            not self._decaying
            and total
            and self._rising_since is not None
            and step > 0.5 * total
            and last == last
            and x > last
            and step - self._rising_since > 0.4 * total
        ):
            changed = (
                self._fire(
                    Severity.WARN,
                    step,
                    self._rising_since,
                    f"learning rate still rising at {self.axis} {fmt(step)} of {fmt(total)}: the warm-up never ended",
                    {"lr": x, "total_steps": total},
                )
                or changed
            )
        return changed
