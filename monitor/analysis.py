"""One run's judged state: its bounded store, its detectors and what the source told about it.

Used the same way by `runwatch check` (one pass over what exists now) and by the hub (live).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from detectors.run import RunDetectors
from detectors.thresholds import DEFAULT, Thresholds
from monitor.columns import Columns
from monitor.config import RunConfig
from monitor.model import Finding, Judgement, Role, Row
from monitor.outward import outward
from monitor.parsers.base import Parser
from monitor.roles import RoleMap, primary
from monitor.store import RunStore
from monitor.textsafe import safe_text

# Outside text that names or describes a run, made safe for a terminal as it enters the model; a
# name or URL is shown everywhere (table, header, prompts, bundles), so its secrets go here too.
_SHOWN_FIELDS = frozenset({"state", "format", "step_key"})
_NAMING_FIELDS = frozenset({"name", "url"})


@dataclass(slots=True)
class RunInfo:
    """What a source knows about a run besides its metrics."""

    target: str
    name: str
    format: str = "?"
    step_key: str = "step"
    total_steps: float | None = None
    url: str | None = None
    state: str = "running"
    """running, finished, crashed, ... as the source reports it."""
    exit_code: int | None = None
    """The training process's exit code, when the source recorded it (a W&B exit record)."""
    config: dict[str, Any] = field(default_factory=dict)
    lines: int = 0
    noise: int = 0
    malformed: int = 0

    def __setattr__(self, field_name: str, value: object) -> None:
        if isinstance(value, str):
            if field_name in _NAMING_FIELDS:
                value = outward(value)
            elif field_name in _SHOWN_FIELDS:
                value = safe_text(value)
        object.__setattr__(self, field_name, value)

    def read_parser(self, parser: Parser) -> None:
        """Take what a log parser learned so far: format, step axis, line counts, run config."""
        self.format = parser.name
        self.step_key = parser.step_key
        st = parser.stats
        self.lines, self.noise, self.malformed = st.lines, st.noise, st.malformed
        if parser.config:
            self.config = dict(parser.config)


class RunAnalysis:
    """Store + detectors of one run; feed it rows, ask it for a judgement."""

    def __init__(
        self,
        info: RunInfo,
        run_config: RunConfig | None = None,
        thresholds: Thresholds = DEFAULT,
    ) -> None:
        self.info = info
        self.roles = RoleMap(run_config.metrics if run_config else None)
        total = run_config.total_steps if run_config and run_config.total_steps else info.total_steps
        self.detectors = RunDetectors(
            self.roles,
            thresholds,
            baselines=run_config.baseline if run_config else None,
            total_steps=total,
        )
        self.store = RunStore()
        self._printable_keys: set[str] = set()
        """Metric keys already seen to be printable (checking a row against it is one C call)."""

    def add_rows(self, rows: Iterable[Row], now: float) -> bool:
        """Store and judge rows; True when a finding changed."""
        rows = _safe_keys(rows if isinstance(rows, list) else list(rows), self._printable_keys)
        self.store.add_many(rows, now)
        return self.detectors.ingest_many(rows, now)

    def add_columns(self, blocks: list[Columns], now: float) -> bool:
        """Store and judge column blocks (the backfill path); True when a finding changed."""
        blocks = [b if all(map(str.isprintable, b.keys)) else b._replace(keys=_shown_keys(b.keys)) for b in blocks]
        self.store.add_columns(blocks, now)
        return self.detectors.ingest_columns(blocks, now)

    def set_total_steps(self, total: float | None) -> None:
        if total and total != self.info.total_steps:
            self.info.total_steps = total
            self.detectors.set_total_steps(total)

    def finish(self, state: str = "finished") -> None:
        """The source says the run ended."""
        self.info.state = state
        self.detectors.finish()

    def tick(self, now: float) -> bool:
        return self.detectors.tick(now)

    def judgement(self) -> Judgement:
        return self.detectors.judgement()

    def findings(self) -> tuple[Finding, ...]:
        return self.detectors.findings()

    def key_for(self, role: Role) -> str | None:
        """The metric shown for a role (the training loss is the one the detectors watch)."""
        if role is Role.TRAIN_LOSS and self.detectors.train_loss_key:
            return self.detectors.train_loss_key
        return primary(self.store.metrics.keys(), self.roles, role)

    def headline(self) -> dict[str, float]:
        """Latest value of the loss, eval loss, LR and grad norm, for summaries."""
        out: dict[str, float] = {}
        for role in (Role.TRAIN_LOSS, Role.EVAL_LOSS, Role.LR, Role.GRAD_NORM):
            key = self.key_for(role)
            if key is not None:
                value = self.store.last(key)
                if value is not None:
                    out[key] = value
        return out


def _safe_keys(rows: list[Row], known: set[str]) -> list[Row]:
    """Rows whose metric keys are safe to show (a key is outside text: a CSV header, a JSONL key)."""
    out = rows
    for i, row in enumerate(rows):
        if known.issuperset(row.values):
            continue
        printable = [k for k in row.values if k.isprintable()]
        known.update(printable)
        if len(printable) < len(row.values):
            if out is rows:
                out = list(rows)
            out[i] = Row(row.step, {safe_text(k): v for k, v in row.values.items()}, row.time)
    return out


def _shown_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(safe_text(k) for k in keys)
