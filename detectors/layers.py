"""Per-layer gradients: dead layers (all-zero gradients), and layers whose gradient norm explodes or vanishes.

Read from per-layer grad-norm scalars (`grad_norm/<param>`, Lightning's `grad_2.0_norm/<param>`) and from
W&B gradient histograms (`gradients/<param>` as `wandb.watch` logs them), which the `.wandb` reader turns into
the L2 norm they stand for (`monitor.wandb.reader.histogram_norm`; an all-zero gradient reads exactly 0).
Each layer gets the run-level gradient monitor of `detectors.monitors` (O(1) per point) and a dead-layer
check. Warnings only: one odd layer is worth a look, not a reason to stop a run.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from detectors.base import Detector, fmt
from detectors.monitors import GradMonitor
from detectors.thresholds import Thresholds
from monitor.model import Finding, Role, Severity

_LAYER = re.compile(r"^(?:gradients|grad_norms?|grad_2\.0_norm|gradient_norms?|grads?)/(.+)$", re.IGNORECASE)

#: Logged points in a row with an all-zero gradient that make a layer dead.
DEAD_POINTS = 5
#: Input-side layers' gradient norms this many times smaller than the output side's...
DEPTH_RATIO = 1e-3
#: ...in this many logged rows in a row: gradients vanish with depth.
DEPTH_ROWS = 3
_INDEX = re.compile(r"(?:^|[._/])(?:layers?|blocks?|h|fc|conv|linear|dense|encoder|decoder|stage)?[._]?(\d+)[._/]")


def layer_of(key: str, role: Role) -> str | None:
    """The parameter (layer) a per-layer gradient metric is about, else None."""
    if role is not Role.OTHER:
        return None
    m = _LAYER.match(key.strip())
    return m.group(1) if m else None


class DeadLayerDetector(Detector):
    """A layer's gradient exactly zero for several logged points while other layers still get gradients."""

    __slots__ = ("_onset", "_run", "lens")
    kind = "grad_vanishing"

    def __init__(self, metric: str, lens: LayerLens, axis: str = "step") -> None:
        super().__init__(metric, axis)
        self.lens = lens
        self._run = 0
        self._onset = 0.0

    def update(self, step: float, x: float) -> bool:
        if x - x != 0.0:
            return False
        if x != 0.0:
            self._run = 0
            self.lens.live_step = step
            cur = self.current
            if cur is None or not cur.active:
                return False
            return self._resolve(step, f"{self.metric} gets gradients again from {self.axis} {fmt(step)}")
        if self._run == 0:
            self._onset = step
        self._run += 1
        if self._run < DEAD_POINTS or self._already(Severity.WARN) or self.lens.live_step < self._onset:
            return False
        return self._fire(
            Severity.WARN,
            step,
            self._onset,
            f"{self.metric}: gradients all zero for {self._run} logged points since {self.axis} {fmt(self._onset)} "
            "while other layers still get gradients: a dead layer (frozen, detached, or dead activations)?",
            {"points": self._run, "dead_layer": True},
        )


def depth_of(layer: str) -> int | None:
    """A weight's depth from its name (`layers.3.mlp.weight`, `fc2.weight`): the first layer index in it.
    None for biases and norms (their gradient norms are not comparable with the weights') and unnumbered ones."""
    low = layer.lower()
    if not low.endswith("weight") or "norm" in low or "ln" in low.split(".") or "bn" in low:
        return None
    m = _INDEX.search(layer)
    return int(m.group(1)) if m else None


class DepthDetector(Detector):
    """Gradient norms falling by orders of magnitude from the output-side layers to the input-side ones."""

    __slots__ = ("_onset", "_run")
    kind = "grad_vanishing"

    def __init__(self, metric: str, axis: str = "step") -> None:
        super().__init__(metric, axis)
        self._run = 0
        self._onset = 0.0

    def row(self, step: float, norms: dict[int, list[tuple[str, float]]]) -> bool:
        """One logged row's per-layer norms by depth."""
        depths = sorted(norms)
        if len(depths) < 3:
            return False
        first, last = norms[depths[0]], norms[depths[-1]]
        lo = sorted(x for _, x in first)[len(first) // 2]
        hi = sorted(x for _, x in last)[len(last) // 2]
        if not (hi > 0.0 and lo < DEPTH_RATIO * hi):
            self._run = 0
            cur = self.current
            if cur is None or not cur.active:
                return False
            return self._resolve(step, f"per-layer gradients comparable across depth again by {self.axis} {fmt(step)}")
        if self._run == 0:
            self._onset = step
        self._run += 1
        if self._run < DEPTH_ROWS or self._already(Severity.WARN):
            return False
        self.metric = first[0][0]
        return self._fire(
            Severity.WARN,
            step,
            self._onset,
            f"gradients vanish towards the input: {first[0][0]} {fmt(lo)} vs {last[0][0]} {fmt(hi)} at "
            f"{self.axis} {fmt(step)} ({fmt(hi / max(lo, 1e-300))}x smaller) for {self._run} logged rows",
            {"input_norm": lo, "output_norm": hi, "input_layer": first[0][0], "output_layer": last[0][0]},
        )


class LayerLens:
    """The per-layer gradient detectors of one run."""

    def __init__(self, th: Thresholds, axis: str = "step") -> None:
        self._th = th
        self.axis = axis
        self.live_step = -float("inf")
        """The last step at which any layer had a non-zero gradient."""
        self._monitors: list[GradMonitor] = []
        self._dead: list[DeadLayerDetector] = []
        self.depth = DepthDetector("gradients", axis)
        self._row_step = -float("inf")
        self._row: dict[int, list[tuple[str, float]]] = {}

    def route(self, key: str, role: Role) -> Callable[[float, float], bool] | None:
        """Set up `key`'s detectors when it is a per-layer gradient; the handler to call, else None."""
        if layer_of(key, role) is None:
            return None
        mon = GradMonitor(key, self._th, self.axis)
        dead = DeadLayerDetector(key, self, self.axis)
        self._monitors.append(mon)
        self._dead.append(dead)

        depth = depth_of(layer_of(key, role) or "")

        def handler(step: float, x: float) -> bool:
            a = self._tick(step)
            if depth is not None and x > 0.0 and x < float("inf"):
                self._row.setdefault(depth, []).append((key, x))
            a = dead.update(step, x) or a
            if x == 0.0:
                return a  # a dead layer is said once, not as a vanishing norm too
            return mon(step, x) or a

        return handler

    def _tick(self, step: float) -> bool:
        """A new row began: judge the last one across depth (O(layers) once a row)."""
        if step == self._row_step:
            return False
        row, self._row, done = self._row, {}, self._row_step
        self._row_step = step
        return self.depth.row(done, row) if row else False

    def detectors(self) -> list[Detector]:
        out: list[Detector] = [self.depth, *self._dead]
        for m in self._monitors:
            out.extend(m.detectors())
        return out

    def restart(self, step: float, top: float) -> list[Finding]:
        out: list[Finding] = []
        for d in self.detectors():
            was = d.current.message if d.current else ""
            d._resolve(step, f"{was} (the run restarted at {self.axis} {fmt(step)} after {fmt(top)})")
            out.extend(d.findings())
        self._monitors, self._dead = [], []
        self.depth = DepthDetector("gradients", self.axis)
        self._row, self._row_step = {}, -float("inf")
        self.live_step = -float("inf")
        return out

    def rename_axis(self, axis: str) -> None:
        self.axis = axis
        for d in self.detectors():
            d.rename_axis(axis)

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        for d in self.detectors():
            out.extend(d.findings())
        return out
