"""Detectron2 output: `metrics.json` (JSON lines) and the text log its `CommonMetricPrinter` and
evaluators write (`d2.utils.events INFO:  eta: ...  iter: 19  total_loss: 0.41 ...`)."""

from __future__ import annotations

import math
import re
from typing import ClassVar

from monitor.model import Row
from monitor.parsers.base import Parser
from monitor.parsers.jsonfmt import json_line_values
from monitor.parsers.jsonvariants import json_objects


#: Keys of the per-class AP fields Detectron2's evaluators write (`bbox/AP-person`, `segm/AP-car`).
def _per_class(key: str) -> bool:
    head, _, tail = key.partition("/")
    return bool(tail) and tail.startswith(("AP-", "AP50-", "AP75-")) and head in ("bbox", "segm", "keypoints")


class Detectron2Parser(Parser):
    """Detectron2 `metrics.json`: one JSON object per line, train lines (`iteration`, `total_loss`,
    `loss_cls`, `lr`, `data_time`, ...) and evaluation lines (`bbox/AP`, `bbox/AP50`, `bbox/AP-<class>`).

    Step: `iteration`. A literal `NaN` in a per-class AP field means the class has no instance in
    the evaluation set, not a broken run: such keys get role `other` in `roles` so that detectors
    leave them alone (and `NaN` in `bbox/AP`, a loss or the learning rate stays a real NaN).
    """

    name: ClassVar[str] = "detectron2"
    description: ClassVar[str] = "Detectron2 metrics.json (JSON lines keyed by iteration)"
    sample: ClassVar[str] = (
        '{"data_time": 0.008433341979980469, "iteration": 19, "loss": 1.9228371381759644, '
        '"loss_box_reg": 0.050025828182697296, "loss_classifier": 0.5316952466964722, "lr": 0.0002}'
    )

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "iteration"
        self._last = 0.0

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        objects = json_objects(head)
        marks = ("data_time", "total_loss", "loss_cls", "loss_box_reg", "fast_rcnn/cls_accuracy", "bbox/AP")
        n = sum(1 for o in objects if "iteration" in o and any(m in o for m in marks))
        if n:
            return min(0.96, 0.88 + 0.02 * n)
        return 0.0

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        values = json_line_values(stats, line)
        if values is None:
            return []
        step = values.pop("iteration", None)
        for key, value in values.items():
            if math.isnan(value) and _per_class(key):
                self.roles[key] = "other"
        if not values:
            stats.noise += 1
            return []
        if step is None:
            step = self._last
        self._last = step
        stats.metric_lines += 1
        return [Row(step, values)]


_EVENTS = re.compile(r"\bd2\.utils\.events\b.*?\biter: (\d+)")
_PAIR = re.compile(
    r"(?<![\w/.\-])([A-Za-z_][\w/.\-]*+): ([-+]?(?:nan|inf|\d[\d.]*+(?:[eE][-+]?\d++)?))(?:M)?(?![\w.:])", re.I
)
_COPYPASTE = re.compile(r"\bcopypaste: (.*)$")


class Detectron2LogParser(Parser):
    """Detectron2's text log: `CommonMetricPrinter` lines (`iter: 19  total_loss: 0.4109  loss_cls: ...
    lr: 0.00019981  max_mem: 11810M`) and the evaluators' `copypaste:` CSV summary
    (`Task: bbox`, `AP,AP50,...`, `3.07,6.89,...`).

    Keys as printed (`eta` dropped, `max_mem` in MB); evaluation results as `<task>/<metric>`
    (`bbox/AP`, `segm/AP50`), the names `metrics.json` uses, at the latest iteration. Step: `iter`.
    """

    name: ClassVar[str] = "detectron2-log"
    description: ClassVar[str] = "Detectron2 text log (d2.utils.events iter: N total_loss: ... / copypaste: results)"
    sample: ClassVar[str] = (
        "[11/17 15:16:42] d2.utils.events INFO:  eta: 21:12:23  iter: 19  total_loss: 0.4109  loss_cls: 0.2853  "
        "loss_box_reg: 0.09846  loss_rpn_cls: 0.01065  loss_rpn_loc: 0.01603  time: 0.6826  data_time: 0.3791  "
        "lr: 0.00019981  max_mem: 11810M"
    )

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "iter"
        self._last = 0.0
        self._task = ""
        self._names: list[str] | None = None

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        n = sum(1 for line in head if "d2.utils.events" in line and _EVENTS.search(line))
        if n:
            return min(0.96, 0.9 + 0.01 * n)
        # a long config dump comes first: the logger names are a hint meanwhile
        return 0.6 if any("d2.engine." in line or "detectron2" in line for line in head) else 0.0

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        if "d2.utils.events" in line:
            m = _EVENTS.search(line)
            if m:
                step = float(m.group(1))
                values = {k: float(v) for k, v in _PAIR.findall(line, m.end()) if k != "eta"}
                if values:
                    self._last = step
                    stats.metric_lines += 1
                    return [Row(step, values)]
        elif "copypaste: " in line:
            rows = self._copypaste(line)
            if rows:
                stats.metric_lines += 1
                return rows
        stats.noise += 1
        return []

    def _copypaste(self, line: str) -> list[Row]:
        """The three `copypaste:` lines: the task, the metric names, their values."""
        m = _COPYPASTE.search(line)
        if m is None:
            return []
        text = m.group(1).strip()
        if text.startswith("Task: "):
            self._task, self._names = text[6:].strip(), None
            return []
        cells = [c.strip() for c in text.split(",")]
        if self._names is None:
            self._names = cells
            return []
        values: dict[str, float] = {}
        for name, cell in zip(self._names, cells, strict=False):
            try:
                values[f"{self._task}/{name}" if self._task else name] = float(cell)
            except ValueError:
                continue
        self._names = None
        return [Row(self._last, values)] if values else []
