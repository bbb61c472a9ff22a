"""One run's judged state: its bounded store, its detectors and what the source told about it.

Used the same way by `runwatch check` (one pass over what exists now) and by the hub (live).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from detectors.crash import Crash, find_crash, might_crash
from detectors.run import RunDetectors
from detectors.thresholds import DEFAULT, Thresholds
from monitor.columns import Columns
from monitor.config import RunConfig
from monitor.errors import RunwatchError
from monitor.model import Finding, Judgement, Role, Row
from monitor.outward import outward
from monitor.parsers import clean_line, make_parser
from monitor.parsers.base import DocumentParser, Parser
from monitor.roles import RoleMap, primary
from monitor.store import RunStore
from monitor.textsafe import safe_text

# Outside text that names or describes a run, made safe for a terminal as it enters the model; a
# name or URL is shown everywhere (table, header, prompts, bundles), so its secrets go here too.
_SHOWN_FIELDS = frozenset({"state", "format", "step_key"})
_NAMING_FIELDS = frozenset({"name", "url"})


#: Fields of launcher error reports that a generic key-value reader may take for metrics.
_ERROR_FIELDS = frozenset(
    {"exitcode", "rank", "local_rank", "pid", "time", "host", "error_file", "code", "port", "useIpv6", "world_size"}
)


#: Files beside a metrics file where training scripts keep the run's configuration.
_CONFIG_FILES = ("config.json", "args.json", "training_args.json", "hparams.yaml", "config.yaml", "opt.yaml")
_CONFIG_MAX_BYTES = 1 << 20


def config_beside(target: str) -> dict[str, Any]:
    """The run configuration saved next to a local metrics file (JSON, or YAML's top-level
    `key: value` lines), for comparing the logged LR with the declared schedule; {} when none."""
    path = Path(target)
    try:
        if not path.is_file():
            return {}
    except OSError:
        return {}
    out: dict[str, Any] = {}
    for name in _CONFIG_FILES:
        f = path.parent / name
        try:
            if not f.is_file() or f.stat().st_size > _CONFIG_MAX_BYTES:
                continue
            text = f.read_text(errors="replace")
        except OSError:
            continue
        if f.suffix == ".json":
            try:
                data = json.loads(text)
            except ValueError:
                continue
            if isinstance(data, dict):
                out = {**data, **out}
        else:
            for line in text.splitlines():
                key, sep, value = line.partition(":")
                if sep and key and not key[0].isspace() and value.strip():
                    out.setdefault(key.strip(), value.strip())
    return out


@dataclass(slots=True)
class RunInfo:
    """What a source knows about a run besides its metrics."""

    target: str
    name: str
    format: str = "?"
    step_key: str = "step"
    axis: str = "step"
    """What the step axis counts, as findings say it ("step", "epoch"), when the parser tells."""
    total_steps: float | None = None
    url: str | None = None
    state: str = "running"
    """running, finished, crashed, ... as the source reports it."""
    exit_code: int | None = None
    """The training process's exit code, when the source recorded it (a W&B exit record)."""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    """Final or chosen values the source keeps apart from the curves (a W&B run's summary)."""
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
        # What the steps count, as findings name it; parsers that say nothing count steps, unless
        # their step axis is the epoch itself.
        self.axis = getattr(parser, "axis", None) or ("epoch" if parser.step_key == "epoch" else "step")
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
            axis=info.axis,
        )
        self.store = RunStore()
        self._printable_keys: set[str] = set()
        """Metric keys already seen to be printable (checking a row against it is one C call)."""
        self._text_seen = 0
        """How many log lines the store had added when the tail was last judged."""
        self._quick_hit = -1
        """Number (0-based, in the order added) of the newest log line that might show a crash."""
        self._config_seen: dict[str, Any] | None = None
        # The config saved beside a metrics file is known before any row, whichever front end reads it.
        self._beside = config_beside(info.target)
        self._config_seen = info.config
        self.detectors.declare({**self._beside, **info.config})

    def add_rows(self, rows: Iterable[Row], now: float) -> bool:
        """Store and judge rows; True when a finding changed."""
        rows = _safe_keys(rows if isinstance(rows, list) else list(rows), self._printable_keys)
        self._sync_config()
        self.store.add_many(rows, now)
        self.detectors.set_axis(self.info.axis)
        return self.detectors.ingest_many(rows, now)

    def add_columns(self, blocks: list[Columns], now: float) -> bool:
        """Store and judge column blocks (the backfill path); True when a finding changed."""
        blocks = [b if all(map(str.isprintable, b.keys)) else b._replace(keys=_shown_keys(b.keys)) for b in blocks]
        self._sync_config()
        self.store.add_columns(blocks, now)
        self.detectors.set_axis(self.info.axis)
        return self.detectors.ingest_columns(blocks, now)

    def set_total_steps(self, total: float | None) -> None:
        if total and total != self.info.total_steps:
            self.info.total_steps = total
            self.detectors.set_total_steps(total)

    def finish(self, state: str = "finished", exit_code: int | None = None) -> None:
        """The source says the run ended (`failed`/`crashed`, or a non-zero `exit_code`: it crashed)."""
        self.info.state = state
        self.detectors.finish()
        if exit_code is not None:
            self.detectors.exited(exit_code)
        elif state in ("failed", "crashed"):
            self.detectors.exited(None)

    def tick(self, now: float) -> bool:
        # Time-based checks with what the source has learned (axis, declared length, a crash in
        # the log's tail): a run that finished or died is not stalled.
        self._sync_text()
        return self.detectors.tick(now)

    def judgement(self) -> Judgement:
        self._sync_text()
        return self.detectors.judgement()

    def findings(self) -> tuple[Finding, ...]:
        self._sync_text()
        return self.detectors.findings()

    # --- crash findings from the log's last lines (kept apart: the parsers own line reading) ---

    def _sync_text(self) -> None:
        """Take what the source learned besides rows (axis name, declared config), and judge the log
        tail again when it changed: does the text after the last metric line show a crash?"""
        self.detectors.set_axis(self.info.axis)
        self._sync_config()
        store = self.store
        added = store.log_lines_added
        if added == self._text_seen:
            return
        tail = store.log_tail
        # Only the lines new since the last look go through the cheap filter; the newest that
        # passes it is remembered (by its number), so a tail of harmless lines costs no rescan.
        for back, line in enumerate(islice(reversed(tail), min(added - self._text_seen, len(tail)))):
            if might_crash((line,)):
                self._quick_hit = added - 1 - back
                break
        self._text_seen = added
        could = self._quick_hit >= added - len(tail)  # some line still in the tail might show a crash
        self.detectors.set_crash(self._crash_in(list(tail)) if could else None)

    def _sync_config(self) -> None:
        """Declare the run's configuration to the detectors as soon as it is known, before the rows
        that follow: the LR is then compared with its schedule point by point, the same whenever
        (and however often) the run is judged."""
        if self.info.config is not self._config_seen:
            self._config_seen = self.info.config
            self.detectors.declare({**self._beside, **self.info.config})

    def _crash_in(self, lines: list[str]) -> Crash | None:
        """The crash the tail shows; the caller has checked some line passes `might_crash`."""
        if not lines:
            return None
        try:
            parser = make_parser(self.info.format)
        except RunwatchError:
            parser = make_parser("kv")  # console output (W&B) and unknown formats: generic lines
        if isinstance(parser, DocumentParser):
            return None  # a JSON document holds no process output
        # The text after the last line the parser reads as training metrics (not e.g. `exitcode: 1`).
        start = 0
        for i in range(len(lines) - 1, -1, -1):
            if self._is_training_line(parser, lines[i]):
                start = i + 1
                break
        return find_crash(lines[start:])

    def _is_training_line(self, parser: Parser, line: str) -> bool:
        line = clean_line(line)
        if not line.strip():
            return False
        try:
            rows = parser.feed(line)
        except Exception:  # an odd line is not a metric line, whatever a parser makes of it
            return False
        roles = self.roles
        keys = {k for r in rows for k in r.values}
        if any(roles(k) is not Role.OTHER for k in keys):
            return True
        # Unrecognised metric names still make a training line, unless they are an error report's
        # fields (torchrun's `exitcode  : -9 (pid: 4242)`, `rank      : 0 (local_rank: 0)`).
        return bool(keys - _ERROR_FIELDS)

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
