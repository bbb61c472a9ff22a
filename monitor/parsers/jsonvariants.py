"""JSON-lines files written by training frameworks whose step key a plain JSONL reader gets wrong:
LLaMA-Factory's `trainer_log.jsonl` (and the helper other JSON-lines sniffers share)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from monitor.model import Row
from monitor.parsers.base import Parser
from monitor.parsers.jsonfmt import json_line_values


def json_objects(head: list[str], limit: int = 50) -> list[dict[str, Any]]:
    """The JSON objects among the first `limit` non-blank lines of `head` (others skipped)."""
    out: list[dict[str, Any]] = []
    for line in [x.strip() for x in head if x.strip()][:limit]:
        if line.startswith("{") and line.endswith("}"):
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(obj, dict):
                out.append(obj)
    return out


def _basename(filename: str) -> str:
    return filename.replace("\\", "/").rsplit("/", 1)[-1]


class LlamaFactoryParser(Parser):
    """LLaMA-Factory `trainer_log.jsonl`: `{"current_steps": 10, "total_steps": 5100, "loss": ..., "lr": ...,
    "epoch": ..., "percentage": ..., "elapsed_time": "0:07:44", ...}`, one object per logging step.

    Step: `current_steps` (optimizer steps; `epoch` stays a metric); `total_steps` is the planned
    length. Eval lines carry `eval_loss` (and no `loss`) at their step. `percentage` and the
    elapsed/remaining time strings are progress, not metrics.
    """

    name: ClassVar[str] = "llamafactory"
    description: ClassVar[str] = "LLaMA-Factory trainer_log.jsonl (current_steps / total_steps)"
    sample: ClassVar[str] = (
        '{"current_steps": 1, "total_steps": 5100, "loss": 0.6491, "accuracy": 1.0, "lr": 9.803921568627451e-10, '
        '"epoch": 0.0019588638589618022, "percentage": 0.02, "elapsed_time": "0:01:03", "remaining_time": '
        '"3 days, 17:51:32"}'
    )

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "current_steps"
        self._last = 0.0

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        objects = json_objects(head)
        n = sum(1 for o in objects if "current_steps" in o and "total_steps" in o)
        if n:
            return min(0.97, 0.9 + 0.01 * n)
        return 0.6 if _basename(filename) == "trainer_log.jsonl" else 0.0

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        values = json_line_values(stats, line)
        if values is None:
            return []
        step = values.pop("current_steps", None)
        total = values.pop("total_steps", None)
        values.pop("percentage", None)
        if total is not None and total > 0:
            self.total_steps = total
        if not values:
            stats.noise += 1
            return []
        if step is None:
            step = self._last
        self._last = step
        if self.total_steps is not None and step >= self.total_steps:
            self.finished = True
        stats.metric_lines += 1
        return [Row(step, values)]
