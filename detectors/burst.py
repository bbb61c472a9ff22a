"""The shape of a loss excursion above its best, which tells a burst that decays back from a divergence."""

from __future__ import annotations

import math

from detectors.series import SeriesStats
from detectors.thresholds import Thresholds


class Burst:
    """The shape of the loss's current excursion above its best: where it began, its highest raw
    point, the point just before that one, and its highest level.

    A burst (a heavy-tailed batch, a BPTT gradient that slipped past clipping) throws the loss far
    up at once from where it stood, then decays back; a divergence climbs, or jumps and stays up.
    An excursion is a burst when its highest point came within its first `_BURST_RISE` points, at
    least twice the big margin above the best, in one jump (the first high point within the big
    margin of the highest) from a point within the big margin of the best, with the slow level
    still at its best. Such an excursion gets the spike detector's patience (`spike_recover_points`)
    to start coming down, and then, while its level is below its own peak by the small margin (or
    its newest points are that far under it), it is still recovering: its height and trend do not
    count, for at most `_BURST_LIMIT` x `spike_recover_points` points.
    """

    __slots__ = ("jump_y", "peak_level", "peak_n", "peak_y", "pre_y", "settled", "start")

    def __init__(self) -> None:
        self.start = 0
        self.settled = False
        self.peak_y = self.pre_y = self.jump_y = self.peak_level = -math.inf
        self.peak_n = 0

    def follow(self, s: SeriesStats, best: float, big: float, settled: float) -> None:
        """Fold in the newest point of an excursion (`start` is reset to 0 when it ends)."""
        ring = s.ring
        k = len(ring)
        if self.start == 0:
            # The excursion's first point above the small margin; its highest raw value may be a
            # few points before (the level follows a jump late, later still after a spike).
            self.start = s.n
            # A slow level already drifted up is a divergence under way, whatever its last jump.
            self.settled = s.slow - min(best, s.best) <= settled
            self.peak_level = s.level
            back = min(k, _BURST_RISE + 1)
            i = max(range(k - back, k), key=ring.__getitem__) if k else 0
            self.peak_y = ring[i] if k else s.y
            self.peak_n = s.n - (k - 1 - i)
            # Where it jumped from: the point before the first of these that left the best far
            # behind (the highest point of a burst may come a point or two after its first).
            top = min(best, s.best) + 2.0 * big
            j = next((j for j in range(k - back, i) if ring[j] > top), i)
            self.pre_y = ring[j - 1] if j >= 1 else self.peak_y
            self.jump_y = ring[j] if k else s.y
            return
        if s.y > self.peak_y:
            self.peak_y = s.y
            self.peak_n = s.n
        if s.level > self.peak_level:
            self.peak_level = s.level

    def decaying(self, s: SeriesStats, best: float, big: float, small: float, th: Thresholds) -> bool:
        """Whether the excursion is a burst still coming back (see the class)."""
        if self.start == 0 or not self.settled or s.n - self.start > _BURST_LIMIT * th.spike_recover_points:
            return False
        ref = min(best, s.best)
        if (
            self.peak_n - self.start > _BURST_RISE
            or self.peak_y - best < 2.0 * big
            or self.pre_y - ref > big
            or self.jump_y < self.peak_y - big
        ):
            # It climbed, never jumped far, jumped from a loss already up, or stepped up to its
            # peak over several points: not a burst.
            return False
        if s.n - self.start < th.spike_recover_points or s.level < self.peak_level - small:
            return True
        # The level lags a decay by about its span: the newest points already well under it are
        # coming down too.
        recent = sorted(list(s.ring)[-_BURST_RECENT:])
        return recent[len(recent) // 2] < s.level - small


#: Points from an excursion's start within which its highest point must come for it to be a burst.
_BURST_RISE = 3
#: Newest points whose median, well under the level, says the level is coming down.
_BURST_RECENT = 5
#: A burst still above the big margin after this many `spike_recover_points` is judged as usual.
_BURST_LIMIT = 8
