"""A bounded per-GPU history of samples, and the mean utilisation a `gpu_idle` detector will read."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from monitor.gpu.snapshot import GpuSample, GpuSnapshot


def mean_util(samples: Sequence[GpuSample], last_n: int) -> float | None:
    """Mean `util_pct` over the last `last_n` samples, skipping N/A ones; None when none has a value."""
    if last_n <= 0:
        return None
    values = [s.util_pct for s in samples[-last_n:] if s.util_pct is not None]
    return sum(values) / len(values) if values else None


class GpuHistory:
    """The last `maxlen` samples (and their times) of each GPU of one host, oldest first."""

    def __init__(self, maxlen: int = 300) -> None:
        if maxlen < 1:
            raise ValueError(f"history length must be at least 1, not {maxlen}")
        self.maxlen = maxlen
        self._samples: dict[int, deque[GpuSample]] = {}
        self._times: dict[int, deque[float]] = {}

    def add(self, snapshot: GpuSnapshot) -> None:
        """Append each GPU of a snapshot; snapshots without GPUs (a status only) add nothing."""
        for gpu in snapshot.gpus:
            if gpu.index not in self._samples:
                self._samples[gpu.index] = deque(maxlen=self.maxlen)
                self._times[gpu.index] = deque(maxlen=self.maxlen)
            self._samples[gpu.index].append(gpu)
            self._times[gpu.index].append(snapshot.time)

    def resize(self, maxlen: int) -> None:
        """Keep at most `maxlen` samples per GPU from now on (e.g. to follow a plot's width)."""
        if maxlen < 1:
            raise ValueError(f"history length must be at least 1, not {maxlen}")
        self.maxlen = maxlen
        self._samples = {i: deque(d, maxlen=maxlen) for i, d in self._samples.items()}
        self._times = {i: deque(d, maxlen=maxlen) for i, d in self._times.items()}

    def indices(self) -> tuple[int, ...]:
        """GPU indices seen so far, in order."""
        return tuple(sorted(self._samples))

    def samples(self, index: int) -> tuple[GpuSample, ...]:
        """Samples of one GPU, oldest first."""
        return tuple(self._samples.get(index, ()))

    def times(self, index: int) -> tuple[float, ...]:
        """The snapshot times matching `samples(index)`."""
        return tuple(self._times.get(index, ()))

    def mean_util(self, index: int, last_n: int) -> float | None:
        """Mean utilisation of one GPU over its last `last_n` samples (see `mean_util`)."""
        return mean_util(self.samples(index), last_n)
