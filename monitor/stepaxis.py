"""The run's step axis: an explicit global step when the run logs one, else the source's own counter."""

from __future__ import annotations

#: Keys that carry a run's global step, best first (ARCHITECTURE.md "Step axis").
STEP_KEYS = ("train/global_step", "trainer/global_step", "global_step", "iteration", "iter")


def choose_step(values: dict[str, float], fallback: float, fallback_key: str = "_step") -> tuple[float, str]:
    """The step of one row and the key it came from: the best explicit step key present, else `fallback`."""
    for key in STEP_KEYS:
        v = values.get(key)
        if v is not None and v == v:  # a NaN step is no step
            return v, key
    return fallback, fallback_key


class StepAxis:
    """`choose_step` over a stream of rows, keeping the axis steady once an explicit key has appeared.

    A row without the explicit key (an eval row logged on its own) gets the last explicit step seen
    rather than the source's counter, so one run never mixes two axes; rows before the first
    explicit step keep the counter. `key` names the axis for display.
    """

    __slots__ = ("fallback_key", "key", "last")

    def __init__(self, fallback_key: str = "_step") -> None:
        self.fallback_key = fallback_key
        self.key = fallback_key
        """The key the step axis comes from ("train/global_step", or the fallback's name)."""
        self.last = 0.0
        """The last explicit step seen, given to rows that lack one."""

    def step(self, values: dict[str, float], fallback: float) -> float:
        """The step of one row on this run's axis."""
        key = self.key
        if key != self.fallback_key:
            v = values.get(key)
            if v is not None and v == v:
                self.last = v
                return v
            v, found = choose_step(values, fallback, self.fallback_key)
            if found == self.fallback_key:
                return self.last
        else:
            v, found = choose_step(values, fallback, self.fallback_key)
        if found != self.fallback_key:
            self.key = found
            self.last = v
        return v
