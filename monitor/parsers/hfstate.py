"""HF Trainer `trainer_state.json`: a whole JSON document whose `log_history` holds the metrics."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from monitor.model import Row
from monitor.parsers.base import DocumentParser


def parse_document(text: str) -> list[Row]:
    """Rows of a `trainer_state.json` text, one per `log_history` entry, in file order.

    A live source re-reads the file whenever the Trainer rewrites it and keeps only rows with new
    steps. Raises ValueError when the text is not (yet) a complete JSON document.
    """
    return read_state(text)[0]


def read_state(text: str) -> tuple[list[Row], dict[str, Any], int]:
    """Rows, top-level scalars (`best_metric`, `global_step`, `max_steps`, ...) and skipped entries.

    Python's json accepts the bare `NaN`/`Infinity` tokens the Trainer writes, so they come through
    as real non-finite floats. Entries of the final summary (`train_runtime`, `train_loss`, ...) get
    keys prefixed `summary/` (as the stdout parser does), so `train_loss` is not mistaken for `loss`.
    """
    try:
        doc = json.loads(text)
    except RecursionError as err:
        raise ValueError("trainer_state.json is nested too deeply") from err
    if not isinstance(doc, dict):
        raise ValueError("trainer_state.json is not a JSON object")
    config = {k: v for k, v in doc.items() if k != "log_history" and not isinstance(v, dict | list)}
    rows: list[Row] = []
    skipped = 0
    for entry in doc.get("log_history") or []:
        step = entry.get("step") if isinstance(entry, dict) else None
        if not isinstance(step, int | float) or isinstance(step, bool):
            skipped += 1
            continue
        try:
            values = {
                k: float(v)
                for k, v in entry.items()
                if k != "step" and isinstance(v, int | float) and not isinstance(v, bool)
            }
            at = float(step)
        except OverflowError:  # an integer too big for a float: this entry cannot be read
            skipped += 1
            continue
        if "train_runtime" in values:
            values = {k if k == "epoch" else "summary/" + k: v for k, v in values.items()}
        if values:
            rows.append(Row(at, values))
        else:
            skipped += 1
    return rows, config, skipped


class HFTrainerStateParser(DocumentParser):
    """`trainer_state.json` fed line by line; parsed as one document by `finish()`.

    Keys as in `log_history` (`loss`, `grad_norm`, `learning_rate`, `epoch`, `eval_*`; summary keys
    prefixed `summary/`); step = the entry's `step`; top-level scalars go to `config`.
    """

    name: ClassVar[str] = "hf-trainer-state"
    what: ClassVar[str] = "trainer_state.json"
    description: ClassVar[str] = "HF Trainer trainer_state.json"
    sample: ClassVar[str] = (
        '{"log_history": [{"epoch": 0.04, "grad_norm": NaN, "learning_rate": 1e-05, "loss": 1.2, "step": 10}], ...}'
    )

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "step"

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        if filename.replace("\\", "/").rsplit("/", 1)[-1] == "trainer_state.json":
            return 0.97
        text = "\n".join(head[:200])
        return 0.95 if '"log_history"' in text else 0.0

    def read(self, text: str) -> tuple[list[Row], dict[str, Any], int]:
        return read_state(text)

    def learned(self, rows: list[Row], config: dict[str, Any]) -> None:
        max_steps = config.get("max_steps")
        if isinstance(max_steps, int | float) and 0 < max_steps < 1e18:  # a huge integer is no plan
            self.total_steps = float(max_steps)
        self.finished = any("summary/train_runtime" in row.values for row in rows[-3:])
