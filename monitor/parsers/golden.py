"""Megatron-LM CI golden values: `{"lm loss": {"start_step": 1, ..., "values": {"1": 12.95, ...}}, ...}`."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from monitor.model import Row
from monitor.parsers.base import DocumentParser


def parse_document(text: str) -> list[Row]:
    """One row per step with every metric logged at that step, steps in increasing order.

    The *string* `"nan"` pads steps the run never reached (it is missing data, so it is skipped);
    a bare JSON `NaN` is a real NaN value. Raises ValueError on text that is not such a document.
    """
    return read_golden(text)[0]


def read_golden(text: str) -> tuple[list[Row], dict[str, Any], int]:
    """Rows, per-metric `start_step`/`end_step`/`step_interval`, and how many values were skipped."""
    try:
        doc = json.loads(text)
    except RecursionError as err:
        raise ValueError("golden values file is nested too deeply") from err
    if not isinstance(doc, dict):
        raise ValueError("golden values file is not a JSON object")
    by_step: dict[float, dict[str, float]] = {}
    config: dict[str, Any] = {}
    skipped = 0
    for metric, spec in doc.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("values"), dict):
            continue
        config[metric] = {k: v for k, v in spec.items() if k != "values"}
        for key, value in spec["values"].items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                skipped += 1
                continue
            try:
                step = float(key)
                by_step.setdefault(step, {})[metric] = float(value)
            except (ValueError, OverflowError):
                skipped += 1
                continue
    return [Row(step, by_step[step]) for step in sorted(by_step)], config, skipped


class MegatronGoldenParser(DocumentParser):
    """Megatron CI golden-values JSON, fed line by line and parsed as one document by `finish()`.

    Keys are the metric names as in the file (`lm loss`, `num-zeros`, `mem-allocated-bytes`,
    `mem-max-allocated-bytes`, `iteration-time`); step = iteration.
    """

    name: ClassVar[str] = "megatron-golden"
    what: ClassVar[str] = "golden values"
    description: ClassVar[str] = "Megatron-LM CI golden values JSON"
    sample: ClassVar[str] = (
        '{"lm loss": {"start_step": 1, "end_step": 51000, "step_interval": 5, "values": {"1": 12.95, ...}}}'
    )

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "iteration"

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        base = filename.replace("\\", "/").rsplit("/", 1)[-1]
        if base.startswith("golden_values") and base.endswith(".json"):
            return 0.97
        text = "\n".join(head[:200])
        return 0.9 if '"step_interval"' in text and '"values"' in text else 0.0

    def read(self, text: str) -> tuple[list[Row], dict[str, Any], int]:
        return read_golden(text)

    def learned(self, rows: list[Row], config: dict[str, Any]) -> None:
        self.finished = True
        ends = [c.get("end_step") for c in config.values()]
        ends_num = [float(e) for e in ends if isinstance(e, int | float) and not isinstance(e, bool) and abs(e) < 1e18]
        if ends_num:
            self.total_steps = max(ends_num)
