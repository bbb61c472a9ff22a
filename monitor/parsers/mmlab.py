"""OpenMMLab logs (MMEngine, and MMCV 1.x before it: MMDetection, MMPose, MMSeg, MMPretrain...):
the text log (`Epoch(train) [1][ 50/100]  lr: 1.98e-03 ... loss: 1.49`) and the JSON scalars
(`vis_data/scalars.json`, MMCV's `*.log.json`)."""

from __future__ import annotations

import json
import re
from typing import ClassVar

from monitor.model import Row
from monitor.parsers.base import Parser
from monitor.parsers.common import to_float
from monitor.parsers.jsonfmt import flatten
from monitor.parsers.jsonvariants import json_objects

# `Epoch(train) [1][ 50/100]`, `Epoch [1][50/7330]`, `Epoch(val) [1][7330]`, `Iter(train) [  50/80000]`,
# `Epoch(test) [500/500]`.
_HEAD = re.compile(
    r"\b(Epoch|Iter)(?:\((train|val|test)\))?\s*\[\s*(\d+)(?:\s*/\s*(\d+))?\s*\](?:\s*\[\s*(\d+)(?:\s*/\s*(\d+))?\s*\])?"
)
_PAIR = re.compile(
    r"(?<![\w/.\-])([A-Za-z_][\w/.@\-]*+): ([-+]?(?:nan|inf|\d[\d.]*+(?:[eE][-+]?\d++)?))(?![\w.:])", re.I
)
#: Progress fields of every line: not metrics of an evaluation.
_PROGRESS = frozenset({"eta", "time", "data_time", "memory"})


def _mm_shaped(m: re.Match[str]) -> bool:
    """An MMEngine/MMCV progress head: a phase (`Epoch(train)`), an epoch-and-iteration pair
    (`Epoch [3][50/100]`) or an iteration counter (`Iter [50/8000]`). A bare `Epoch [3/100],` is how
    many hand-written loops print their epoch summaries; it alone does not make a file an MMLab log."""
    return bool(m.group(2)) or m.group(5) is not None or m.group(1) == "Iter"


def _eval_key(phase: str, key: str) -> str:
    """An evaluation metric's key with its phase (`val/coco/bbox_mAP`), so roles see it is an eval."""
    return key if key.startswith(phase + "/") else f"{phase}/{key}"


class MMEngineLogParser(Parser):
    """MMEngine / MMCV text logs.

    Train lines give every `name: number` field (`lr`, `base_lr`, `time`, `data_time`, `memory`,
    `grad_norm`, `loss`, `loss_cls`, `acc`, ...; `eta` is dropped). Step: the global iteration,
    `(epoch-1) × iterations_per_epoch + iteration` for epoch-based runs and the iteration for
    iteration-based ones. Validation and test lines (`Epoch(val) [1][100/100]  coco/bbox_mAP: ...`)
    take the latest train step, their metrics prefixed `val/` or `test/`.
    """

    name: ClassVar[str] = "mmengine"
    description: ClassVar[str] = "MMEngine / MMCV text logs (MMDetection, MMPose, MMSeg, ...)"
    sample: ClassVar[str] = (
        "04/15 16:50:26 - mmengine - INFO - Epoch(train) [1][ 50/100]  lr: 1.9820e-03  eta: 0:00:15  "
        "time: 0.3082  data_time: 0.0042  memory: 3312  loss: 1.4919  loss_rpn_cls: 0.6004  "
        "loss_rpn_bbox: 0.1391  loss_cls: 0.6614  acc: 88.8672  loss_bbox: 0.0910"
    )

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "iteration"
        self._last = 0.0

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        n = 0
        for line in head:
            if ("Epoch" in line or "Iter" in line) and ": " in line:
                m = _HEAD.search(line)
                if m and _mm_shaped(m) and _PAIR.search(line, m.end()):
                    n += 1
        return 0.0 if not n else min(0.95, 0.87 + 0.02 * n)

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        m = _HEAD.search(line) if ("Epoch" in line or "Iter" in line) else None
        if m is None:
            stats.noise += 1
            return []
        kind, phase = m.group(1), m.group(2) or "train"
        values = {key: float(num) for key, num in _PAIR.findall(line, m.end()) if key != "eta"}
        if phase != "train":
            values = {_eval_key(phase, k): v for k, v in values.items() if k not in _PROGRESS}
            if not values:
                stats.noise += 1  # an evaluation progress line
                return []
            stats.metric_lines += 1
            return [Row(self._last, values)]
        if not values:
            stats.noise += 1
            return []
        if kind == "Iter":
            step = float(m.group(3))
            total = to_float(m.group(4) or "")
        else:
            epoch, i, n = float(m.group(3)), to_float(m.group(5) or ""), to_float(m.group(6) or "")
            if i is None or n is None:
                stats.count_malformed(line)
                return []
            step = (epoch - 1) * n + i
            values["epoch"] = epoch
            total = None
        if total:
            self.total_steps = total
        self._last = step
        stats.metric_lines += 1
        return [Row(step, values)]


class MMEngineScalarsParser(Parser):
    """MMEngine `vis_data/scalars.json` (and `<timestamp>.json`) and MMCV 1.x `*.log.json`.

    MMEngine train lines carry `step` (the global iteration) beside `epoch` and `iter`; its
    validation lines carry `step` = the epoch and no `iter`, so they take the latest train step
    (and their metrics are prefixed `val/`). MMCV lines say `"mode": "train"` or `"val"`; their
    `iter` restarts each epoch in epoch-based runs, so the global iteration is counted across epochs.
    The environment/config line at the top of an MMCV log is not a metric line.
    """

    name: ClassVar[str] = "mmengine-json"
    description: ClassVar[str] = "MMEngine scalars.json / MMCV *.log.json"
    sample: ClassVar[str] = (
        '{"coco/bbox_mAP": 0.714, "coco/bbox_mAP_50": 0.833, "coco/bbox_mAP_75": 0.816, "coco/bbox_mAP_s": 0.0, '
        '"coco/bbox_mAP_m": 0.453, "coco/bbox_mAP_l": 0.833, "data_time": 0.0045637178421020505, '
        '"time": 0.016298961639404298, "step": 40}'
    )

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "iteration"
        self._last = 0.0
        self._epoch = 0.0
        self._offset = 0.0
        self._epoch_iters = 0.0
        self._trained = False

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        objects = json_objects(head)
        n = sum(
            1
            for o in objects
            if ("iter" in o and "step" in o) or (o.get("mode") in ("train", "val") and ("iter" in o or "epoch" in o))
        )
        if n:
            return min(0.96, 0.9 + 0.01 * n)
        base = filename.replace("\\", "/").rsplit("/", 1)[-1]
        if base == "scalars.json" or base.endswith(".log.json"):
            # an MMEngine file that holds only validation lines so far (`step` = the epoch)
            return 0.93 if any("step" in o or "mode" in o for o in objects) else 0.7
        return 0.0

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        text = line.strip()
        if not text.startswith("{"):
            stats.noise += 1
            return []
        try:
            obj = json.loads(text)
        except ValueError:
            stats.count_malformed(line)
            return []
        if not isinstance(obj, dict):
            stats.noise += 1
            return []
        mode = obj.get("mode")
        values = flatten(obj)
        if mode is None and "step" not in values:
            stats.noise += 1  # MMCV's env_info / config line, or another stray object
            return []
        if mode == "val" or mode == "test" or (mode is None and "iter" not in values):
            phase = "test" if mode == "test" else "val"
            iters = values.get("iter")
            at = self._last
            if not self._trained and mode is None and "step" in values:
                at = values["step"]  # only validation so far: MMEngine's `step` here is the epoch
                self.step_key = self.axis = "epoch"
            if mode is not None and iters:
                self._epoch_iters = iters  # MMCV val lines carry the iterations of the epoch
            for key in ("step", "iter", "epoch", "lr"):
                values.pop(key, None)
            values = {_eval_key(phase, k): v for k, v in values.items() if k not in _PROGRESS}
            if not values:
                stats.noise += 1
                return []
            stats.metric_lines += 1
            return [Row(at, values)]
        step = values.pop("step", None)
        it = values.pop("iter", None)
        if step is None:
            if it is None:
                stats.noise += 1
                return []
            step = self._global(values.get("epoch"), it)
        self._last = step
        if not values:
            stats.noise += 1
            return []
        if not self._trained:
            self._trained = True
            self.step_key, self.axis = "iteration", "step"
        stats.metric_lines += 1
        return [Row(step, values)]

    def _global(self, epoch: float | None, it: float) -> float:
        """The global iteration of MMCV's per-epoch `iter`."""
        if epoch is not None and epoch > self._epoch:
            if self._epoch:
                self._offset += self._epoch_iters or (self._last - self._offset)
            self._epoch = epoch
            self._epoch_iters = 0.0
        return self._offset + it
