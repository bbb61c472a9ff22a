"""A run that stopped logging: no new step for many times its usual interval (`stalled`, a
warning), and, with no end marker, none for hours (`idle`, information: most likely it ended
without saying so, and a finished run is not a problem)."""

from __future__ import annotations

from datetime import UTC, datetime

from detectors.base import Detector, fmt
from detectors.thresholds import Thresholds
from monitor.model import Severity

# When a run's own interval is unknown (a log without timestamps), wait this long before calling it stalled.
_UNKNOWN_INTERVAL_WAIT = 15 * 60.0


class StallDetector(Detector):
    """Learns the usual time between new steps; `tick(now)` fires when the gap grows far beyond it."""

    __slots__ = ("_gap", "_interval", "_last_step", "_last_t", "_th", "finished", "total")
    kind = "stalled"

    def __init__(self, th: Thresholds) -> None:
        super().__init__("step")
        self._th = th
        self._last_t: float | None = None
        self._last_step = -float("inf")
        self._interval: float | None = None
        self._gap = 1.0
        self.finished = False
        self.total: float | None = None
        """The run's declared length in steps (max_steps), when known: reaching it is finishing."""

    def activity(self, step: float, t: float, rows: int = 1) -> bool:
        """`rows` new rows, the last at `step`, arrived (or were logged) by time `t`."""
        if step > self._last_step:
            if self._last_step > -float("inf"):
                self._gap = max(1.0, (step - self._last_step) / max(1, rows))
            if self._last_t is not None and t > self._last_t:
                dt = (t - self._last_t) / max(1, rows)
                iv = self._interval
                # A median-like EWMA: one long pause (an eval, a checkpoint) barely moves it.
                self._interval = dt if iv is None else iv + 0.1 * (min(dt, 3.0 * iv) - iv)
            self._last_step = step
            if self._last_t is None or t > self._last_t:
                self._last_t = t
            cur = self.current
            if cur is not None and cur.active:
                return self._resolve(step, f"run logging again at step {fmt(step)}")
        return False

    def touch(self, t: float) -> None:
        """The source shows life at `t` (e.g. a file's modification time) without a new step."""
        if self._last_t is None or t > self._last_t:
            self._last_t = t

    @property
    def last_time(self) -> float | None:
        """When the run last showed life: its last recorded row time, else when its rows arrived."""
        return self._last_t

    @property
    def interval(self) -> float | None:
        """Usual seconds between new steps, when known."""
        return self._interval

    def tick(self, now: float) -> bool:
        if self.finished or self._last_t is None:
            return False
        total = self.total
        if total and self._last_step + self._gap >= total:
            # The last step reached the declared length (within one logging interval: a 0-based
            # counter ends at max_steps - 1): the run finished, it did not stall.
            return self.finish(self._last_step)
        th = self._th
        iv = self._interval
        limit = max(th.stall_min_seconds, th.stall_factor * iv if iv else _UNKNOWN_INTERVAL_WAIT)
        gap = now - self._last_t
        if gap <= limit:
            return False
        if gap > max(limit, th.idle_after_seconds):
            when = datetime.fromtimestamp(self._last_t, UTC).strftime("%Y-%m-%d %H:%M UTC")
            if self._already(Severity.INFO, "idle"):
                return False
            step = self._last_step if self._last_step > -float("inf") else 0.0
            at = f"step {fmt(step)}" if self._last_step > -float("inf") else "no step logged"
            return self._fire(
                Severity.INFO,
                step,
                step,
                f"not updated since {when} ({at}, no end marker)",
                {"seconds_since_update": round(gap, 1), "last_update": self._last_t},
                kind="idle",
            )
        usual = f"usual interval {iv:.0f}s" if iv else "interval unknown"
        if self._last_step == -float("inf"):  # stuck before its first step (data loading, a hung launch)
            return self._fire(
                Severity.WARN,
                0.0,
                0.0,
                f"no step logged {_dur(gap)} after the source last showed life",
                {"seconds_since_update": round(gap, 1), "interval": iv},
            )
        return self._fire(
            Severity.WARN,
            self._last_step,
            self._last_step,
            f"no new step for {_dur(gap)} after step {fmt(self._last_step)} ({usual})",
            {"seconds_since_update": round(gap, 1), "interval": iv},
        )

    def finish(self, step: float) -> bool:
        """The run ended; a finished run is never stalled."""
        self.finished = True
        return self._resolve(step, "run finished")


def _dur(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
