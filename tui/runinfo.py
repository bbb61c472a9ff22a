"""The config/summary pane's text: what is known about a run besides its curves, secrets redacted.

Pure: a run's snapshot and analysis in, lines out. Config values (run config, trainer args, W&B
config) go through the evidence redactor first, so a key that says it is secret is masked and its
value scrubbed from everything after it (the command line, paths).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitor.actions.redact import Redactor
from monitor.analysis import RunAnalysis
from monitor.hub import RunSnapshot
from monitor.outward import outward
from tui import format as fmt

_CMD_KEYS = ("command", "cmd", "cmdline", "command_line", "args", "argv", "program")
_MAX_VALUE = 200


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested config as dotted keys: `{"optim": {"lr": 3e-4}}` → `[("optim.lr", 3e-4)]`."""
    if isinstance(obj, Mapping) and obj:
        out: list[tuple[str, Any]] = []
        for k, v in obj.items():
            out.extend(_flatten(v, f"{prefix}{k}."))
        return out
    return [(prefix.rstrip("."), obj)] if prefix else []


def _value(v: Any) -> str:
    text = str(v)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def info_sections(run: RunSnapshot | None, a: RunAnalysis | None) -> list[tuple[str, list[tuple[str, str]]]]:
    """(section title, [(key, value)]) for the pane: run, config, latest values."""
    red = Redactor()
    config = red.data(dict(a.info.config)) if a is not None and a.info.config else {}
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    about: list[tuple[str, str]] = []
    if run is not None:
        about += [("name", run.name), ("state", run.state), ("source", run.source), ("host", run.host)]
        about += [("path", run.target), ("format", run.format), ("step axis", run.step_key)]
        if run.url:
            about.append(("url", run.url))
        if run.total_steps:
            about.append(("total steps", fmt.step_text(run.total_steps)))
    if a is not None:
        about.append(("lines read", f"{a.info.lines:,} ({a.info.malformed:,} malformed, {a.info.noise:,} other)"))
    flat = _flatten(config)
    for k, v in flat:
        if k.rsplit(".", 1)[-1].lower() in _CMD_KEYS:
            about.append(("command line", _value(" ".join(map(str, v)) if isinstance(v, list) else v)))
    sections.append(("run", [(k, red.text(str(v))) for k, v in about]))
    if flat:
        sections.append(("config", [(k, _value(v)) for k, v in sorted(flat)]))
    if a is not None and a.store.metrics:
        summary = [(k, fmt.num(s.last)) for k, s in sorted(a.store.metrics.items())]
        sections.append(("summary (latest values)", summary))
    return [(t, [(outward(k), outward(v, redactor=red)) for k, v in rows]) for t, rows in sections]  # hostile wall
