"""The data model every part of runwatch shares: rows of metric values, findings and verdicts.

Everything here is immutable once built, so it can cross threads and message boundaries freely.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Row(NamedTuple):
    """Metric values logged together at one step (a log line, a CSV row, a W&B history row).

    A row is a batch of points `(key, step, value, time)` sharing step and time; parsers emit rows
    because a line usually carries several metrics and building one object per value is too slow.
    `step` is on the run's step axis (see `monitor.parsers.base.Parser.step_key`); `time` is epoch
    seconds when the source knows it, else None. `values` must not be mutated after the row is emitted.
    """

    step: float
    values: dict[str, float]
    time: float | None = None


class Point(NamedTuple):
    """One metric value at one step."""

    key: str
    step: float
    value: float
    time: float | None = None


class Severity(enum.IntEnum):
    """How much a finding matters; ordered so that `max()` picks the worst."""

    INFO = 0
    WARN = 1
    BAD = 2

    def __str__(self) -> str:
        return self.name.lower()


class Verdict(enum.IntEnum):
    """The judge's word on a run; ordered so that `max()` picks the worst."""

    HEALTHY = 0
    UNSURE = 1
    BAD = 2

    def __str__(self) -> str:
        return self.name.lower()


class Decision(enum.Enum):
    """What the judge advises doing with a run."""

    CONTINUE = "continue"
    WAIT = "wait"
    STOP = "stop"

    def __str__(self) -> str:
        return self.value


class Role(enum.Enum):
    """What a metric means to the detectors (from its name, overridable per run in the config)."""

    TRAIN_LOSS = "train_loss"
    EVAL_LOSS = "eval_loss"
    EVAL_UP = "eval_up"
    """An eval metric where higher is better (accuracy, F1, mAP, BLEU)."""
    EVAL_DOWN = "eval_down"
    """An eval metric where lower is better (perplexity, WER)."""
    LR = "lr"
    GRAD_NORM = "grad_norm"
    LOSS_SCALE = "loss_scale"
    OTHER = "other"


#: Finding kinds (ARCHITECTURE.md "Verdict vocabulary").
KINDS = (
    "nan",
    "divergence",
    "spike",
    "plateau",
    "grad_explosion",
    "grad_vanishing",
    "lr_anomaly",
    "overfit",
    "eval_degradation",
    "stalled",
    "idle",
    "gpu_idle",
    "source_error",
    "converged",
    "overflow_skip",
    "crashed",
    # RL / LLM lens (detectors/rl.py)
    "kl_anomaly",
    "entropy_collapse",
    "clip_anomaly",
    "reward_hacking",
)


@dataclass(frozen=True, slots=True)
class Finding:
    """Something a detector noticed about one metric of one run.

    `step` is where it was detected and `onset_step` where it began, both on the run's step axis.
    `message` is one line a person understands; `evidence` holds the numbers behind it.
    `active` is False once the condition has cleared (a spike that recovered); the finding is
    kept so the record shows it happened.
    """

    kind: str
    severity: Severity
    metric: str
    step: float
    onset_step: float
    message: str
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)
    active: bool = True

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form used by `check --json`, evidence bundles and `watch --jsonl`."""
        return {
            "kind": self.kind,
            "severity": str(self.severity),
            "metric": self.metric,
            "step": _num(self.step),
            "onset_step": _num(self.onset_step),
            "message": self.message,
            "active": self.active,
            "evidence": {k: _num(v) if isinstance(v, float) else v for k, v in self.evidence.items()},
        }


@dataclass(frozen=True, slots=True)
class Judgement:
    """A verdict, the advised decision and the findings that led to them."""

    verdict: Verdict
    decision: Decision
    reason: str
    findings: tuple[Finding, ...] = ()

    @property
    def worst(self) -> Finding | None:
        """The finding that matters most: active first, then by severity, then the one whose trouble
        began first (the cause, not the latest symptom)."""
        if not self.findings:
            return None
        return max(self.findings, key=lambda f: (f.active, f.severity, -f.onset_step, -f.step))


def _num(x: float) -> float | int | str:
    """A float as JSON can hold it: integral floats as ints, non-finite as strings."""
    if x != x or x in (float("inf"), float("-inf")):
        return str(x)
    if float(x).is_integer() and abs(x) < 2**53:
        return int(x)
    return x
