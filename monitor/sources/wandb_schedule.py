"""When the W&B poller polls next: an adaptive interval, error backoff and rate-limit floors.

Interval (`PollScheduler`): starts at 10 s and doubles (20, 40, 60 s cap) after `grow_after`
uneventful polls in a row (backlog polls do not count); snaps back to 10 s on `anomaly()` (the
caller's detectors decide what is an anomaly), when a run's state changes or a run appears, and
when rows arrive after `quiet_after` (300) seconds without any: a stalled run coming back.
Errors (5xx, refused, timeouts) back off 10, 20, 40, … 120 s (±10 %). A 429 is not backed off:
no request goes out before its `RateLimit-Reset` / `Retry-After` seconds (plus jitter, up to 10 %
or 1 s) have passed, and the same floor applies when a successful answer says the limit is spent
(`RateLimit-Remaining: 0`). Clock, sleep and random source are parameters (tests use a fake clock).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable


class PollScheduler:
    """When to poll next: an adaptive interval, error backoff and rate-limit floors (see the module docstring)."""

    def __init__(
        self,
        *,
        min_interval: float = 10.0,
        max_interval: float = 60.0,
        grow_after: int = 2,
        error_max: float = 120.0,
        quiet_after: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.min_interval, self.max_interval = min_interval, max_interval
        self.grow_after, self.error_max, self.quiet_after = grow_after, error_max, quiet_after
        self._clock, self._rng = clock, rng
        self.interval = min_interval
        self.errors = 0
        self._streak = 0
        self._error_delay = 0.0
        self._last_poll: float | None = None
        self._last_data: float | None = None
        self._not_before = -math.inf
        self._catch_up = False

    def anomaly(self) -> None:
        """Something needs watching closely: poll at the shortest interval again (also shortens a wait)."""
        self.interval = self.min_interval
        self._streak = 0

    def poll_now(self) -> None:
        """Poll at once (a target was added); an error backoff or a rate-limit floor still holds."""
        self._catch_up = True

    def succeeded(self, *, new_data: bool, changed: bool, backlog: bool) -> None:
        """Record a successful poll: whether rows arrived, a state changed, more rows are waiting."""
        now = self._clock()
        self.errors = 0
        self._catch_up = backlog
        resumed = new_data and self._last_data is not None and now - self._last_data >= self.quiet_after
        if changed or resumed:
            self.anomaly()
        elif not backlog:  # catching up is one poll split in pages, not a sign of health
            self._streak += 1
            if self._streak >= self.grow_after:
                self.interval = min(self.interval * 2, self.max_interval)
                self._streak = 0
        if new_data:
            self._last_data = now
        self._last_poll = now

    def failed(self) -> None:
        """Record a failed poll: back off exponentially with jitter."""
        self.errors += 1
        self._streak = 0
        self._catch_up = False
        base = min(self.min_interval * 2 ** (self.errors - 1), self.error_max)
        self._error_delay = base * (0.9 + 0.2 * self._rng())
        self._last_poll = self._clock()

    def rate_limited(self, seconds: float, *, refused: bool = False) -> None:
        """Send nothing for `seconds` (plus jitter, so many clients do not return at once).

        `refused`: the poll itself got a 429; it is retried once the limit resets, not backed off.
        """
        now = self._clock()
        jitter = self._rng() * max(1.0, 0.1 * seconds)
        self._not_before = max(self._not_before, now + seconds + jitter)
        if refused:
            self._catch_up = False
            self._last_poll = now

    def next_poll_at(self) -> float:
        """Clock time at which the next poll is due."""
        if self._last_poll is None:
            due = -math.inf
        elif self.errors:
            due = self._last_poll + self._error_delay
        elif self._catch_up:
            due = self._last_poll
        else:
            due = self._last_poll + self.interval
        return max(due, self._not_before)

    def due_in(self) -> float:
        """Seconds until the next poll is due (0 when it is due now)."""
        return max(0.0, self.next_poll_at() - self._clock())
