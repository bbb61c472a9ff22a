"""The TOML config: runs to watch, per-run metric roles and baselines, thresholds, reviewer, theme, keys.

Looked up at `--config PATH`, else `./runwatch.toml`, else `$XDG_CONFIG_HOME/runwatch/config.toml`.
Unknown keys and bad values are errors naming the file, the line and the key.

    theme = "dark"                      # dark | light | high-contrast
    evidence_dir = "./runwatch-evidence"

    [thresholds]                        # any field of detectors.thresholds.Thresholds
    spike_z = 6.0

    [[run]]
    target = "ssh://gpu1/home/me/train.log"
    name = "gpt-small"                  # optional
    format = "megatron"                 # optional, else auto-detected
    total_steps = 100000                # optional
    metrics = { train_loss = "loss/total", eval_loss = ["val/nll"] }
    baseline = { "val/nll" = 2.10 }     # eval worse than this is bad
    stop = { command = "scancel {job_id}", job_id = "123456" }

    [reviewer]
    backend = "command"                 # command | openai | anthropic
    command = ["llm", "-m", "gpt-4o-mini"]

    [keys]
    stop = "s"
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detectors.thresholds import DEFAULT, Thresholds
from monitor.errors import ConfigError
from monitor.model import Role

try:
    import tomllib
except ImportError:  # pragma: no cover - Python < 3.11 installs tomli instead
    import tomli as tomllib  # type: ignore[no-redef]

THEMES = ("dark", "light", "high-contrast")
_ROLE_NAMES = {r.value for r in Role}


@dataclass(frozen=True, slots=True)
class RunConfig:
    """One `[[run]]` entry."""

    target: str
    name: str | None = None
    format: str | None = None
    total_steps: float | None = None
    metrics: dict[str, tuple[str, ...]] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    stop: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReviewerConfig:
    """The `[reviewer]` table: which LLM to ask about unsure runs."""

    backend: str = "command"
    command: tuple[str, ...] = ()
    model: str | None = None
    base_url: str | None = None
    timeout: float = 120.0
    auto: bool = False
    """Ask the reviewer by itself about runs judged unsure (at most once per run per interval)."""
    interval_minutes: float = 30.0
    auto_stop: bool = False
    """Let a STOP answer stop the run without asking; off, a STOP answer only opens the confirmation."""
    retries: int = 1
    """Extra attempts after a time-out or a transient error."""
    anthropic_version: str = "2023-06-01"
    """The `anthropic-version` header the anthropic backend sends."""


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the config file can say; `Config()` is the default."""

    path: Path | None = None
    theme: str = "dark"
    evidence_dir: Path = Path("runwatch-evidence")
    thresholds: Thresholds = DEFAULT
    runs: tuple[RunConfig, ...] = ()
    reviewer: ReviewerConfig = ReviewerConfig()
    keys: dict[str, str] = field(default_factory=dict)

    def run_for(self, target: str) -> RunConfig | None:
        """The `[[run]]` entry for `target`, if the config has one."""
        for r in self.runs:
            if r.target == target:
                return r
        return None


def default_path(cwd: Path | None = None) -> Path | None:
    """The config file that applies when `--config` is not given, if any exists."""
    local = (cwd or Path.cwd()) / "runwatch.toml"
    if local.is_file():
        return local
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "runwatch" / "config.toml"
    return xdg if xdg.is_file() else None


def load(path: Path | None) -> Config:
    """Read and validate a config file; `None` gives the defaults."""
    if path is None:
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    return _Validator(path, text).config(data)


class _Validator:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def fail(self, key: str, why: str) -> ConfigError:
        leaf = key.rsplit(".", 1)[-1].split("[")[0]
        line = next(
            (i + 1 for i, ln in enumerate(self.lines) if re.match(rf"\s*\"?{re.escape(leaf)}\"?\s*=", ln)),
            None,
        )
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"{where}: {key}: {why}")

    def known(self, table: dict[str, Any], allowed: set[str], prefix: str) -> None:
        for k in table:
            if k not in allowed:
                raise self.fail(f"{prefix}{k}", f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    def typed(self, value: Any, types: type | tuple[type, ...], key: str, what: str) -> Any:
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise self.fail(key, f"expected {what}, got {value!r}")
        if not isinstance(value, types):
            raise self.fail(key, f"expected {what}, got {value!r}")
        return value

    def config(self, d: dict[str, Any]) -> Config:
        self.known(d, {"theme", "evidence_dir", "thresholds", "run", "reviewer", "keys"}, "")
        theme = self.typed(d.get("theme", "dark"), str, "theme", "a string")
        if theme not in THEMES:
            raise self.fail("theme", f"unknown theme {theme!r} (expected {', '.join(THEMES)})")
        th = DEFAULT
        thresholds = self.typed(d.get("thresholds", {}), dict, "thresholds", "a table")
        try:
            th = DEFAULT.with_overrides(
                {k: self.typed(v, (int, float), f"thresholds.{k}", "a number") for k, v in thresholds.items()}
            )
        except KeyError as e:
            raise self.fail(f"thresholds.{e.args[0]}", "unknown threshold") from None
        runs = tuple(self.run(r, i) for i, r in enumerate(self.typed(d.get("run", []), list, "run", "[[run]] tables")))
        keys = self.typed(d.get("keys", {}), dict, "keys", "a table")
        for k, v in keys.items():
            self.typed(v, str, f"keys.{k}", "a key name")
        return Config(
            path=self.path,
            theme=theme,
            evidence_dir=Path(self.typed(d.get("evidence_dir", "runwatch-evidence"), str, "evidence_dir", "a path")),
            thresholds=th,
            runs=runs,
            reviewer=self.reviewer(self.typed(d.get("reviewer", {}), dict, "reviewer", "a table")),
            keys=dict(keys),
        )

    def run(self, r: Any, i: int) -> RunConfig:
        p = f"run[{i}]."
        r = self.typed(r, dict, f"run[{i}]", "a table")
        self.known(r, {"target", "name", "format", "total_steps", "metrics", "baseline", "stop"}, p)
        if "target" not in r:
            raise self.fail(f"run[{i}]", "missing 'target'")
        metrics: dict[str, tuple[str, ...]] = {}
        for role, keys in self.typed(r.get("metrics", {}), dict, p + "metrics", "a table").items():
            if role not in _ROLE_NAMES:
                raise self.fail(
                    f"{p}metrics.{role}", f"unknown role (expected one of: {', '.join(sorted(_ROLE_NAMES))})"
                )
            ks = [keys] if isinstance(keys, str) else self.typed(keys, list, f"{p}metrics.{role}", "a key or list")
            metrics[role] = tuple(self.typed(k, str, f"{p}metrics.{role}", "a metric name") for k in ks)
        baseline = {}
        for k, v in self.typed(r.get("baseline", {}), dict, p + "baseline", "a table").items():
            baseline[k] = float(self.typed(v, (int, float), f"{p}baseline.{k}", "a number"))
            if not math.isfinite(baseline[k]):
                raise self.fail(f"{p}baseline.{k}", "must be finite")
        stop = {
            k: str(self.typed(v, (str, int), f"{p}stop.{k}", "a string"))
            for k, v in self.typed(r.get("stop", {}), dict, p + "stop", "a table").items()
        }
        total = r.get("total_steps")
        return RunConfig(
            target=self.typed(r["target"], str, p + "target", "a string"),
            name=self.typed(r.get("name"), (str, type(None)), p + "name", "a string"),
            format=self.typed(r.get("format"), (str, type(None)), p + "format", "a format name"),
            total_steps=float(self.typed(total, (int, float), p + "total_steps", "a number")) if total else None,
            metrics=metrics,
            baseline=baseline,
            stop=stop,
        )

    def reviewer(self, d: dict[str, Any]) -> ReviewerConfig:
        p = "reviewer."
        self.known(
            d,
            {
                "backend",
                "command",
                "model",
                "base_url",
                "timeout",
                "auto",
                "interval_minutes",
                "auto_stop",
                "retries",
                "anthropic_version",
            },
            p,
        )
        backend = self.typed(d.get("backend", "command"), str, p + "backend", "a string")
        if backend not in ("command", "openai", "anthropic"):
            raise self.fail(p + "backend", f"unknown backend {backend!r} (expected command, openai, anthropic)")
        cmd = d.get("command", [])
        cmd = cmd.split() if isinstance(cmd, str) else self.typed(cmd, list, p + "command", "a list of strings")
        return ReviewerConfig(
            backend=backend,
            command=tuple(str(c) for c in cmd),
            model=self.typed(d.get("model"), (str, type(None)), p + "model", "a string"),
            base_url=self.typed(d.get("base_url"), (str, type(None)), p + "base_url", "a URL"),
            timeout=float(self.typed(d.get("timeout", 120.0), (int, float), p + "timeout", "seconds")),
            auto=self.typed(d.get("auto", False), bool, p + "auto", "true or false"),
            interval_minutes=float(
                self.typed(d.get("interval_minutes", 30.0), (int, float), p + "interval_minutes", "minutes")
            ),
            auto_stop=self.typed(d.get("auto_stop", False), bool, p + "auto_stop", "true or false"),
            retries=self.typed(d.get("retries", 1), int, p + "retries", "a whole number"),
            anthropic_version=self.typed(
                d.get("anthropic_version", "2023-06-01"), str, p + "anthropic_version", "a string"
            ),
        )
