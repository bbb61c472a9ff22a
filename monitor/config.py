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

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from detectors.thresholds import DEFAULT, Thresholds
from monitor.configschema import Locator, build, finite_values
from monitor.errors import ConfigError
from monitor.model import Role

try:
    import tomllib
except ImportError:  # pragma: no cover - Python < 3.11 installs tomli instead
    import tomli as tomllib  # type: ignore[no-redef]

THEMES = ("dark", "light", "high-contrast")
_ROLE_NAMES = {r.value for r in Role}


def _roles(metrics: dict[str, tuple[str, ...]]) -> str | None:
    bad = [r for r in metrics if r not in _ROLE_NAMES]
    return f"unknown role {bad[0]!r} (expected one of: {', '.join(sorted(_ROLE_NAMES))})" if bad else None


@dataclass(frozen=True, slots=True)
class RunConfig:
    """One `[[run]]` entry."""

    target: str
    """What to watch: any target the command line takes (a file, a folder, host:/path, wandb://...)."""
    name: str | None = None
    """The name shown for the run (default: from the target)."""
    format: str | None = None
    """The log format, else auto-detected (`runwatch formats`)."""
    total_steps: float | None = None
    """The planned length, when the log does not say it."""
    metrics: dict[str, tuple[str, ...]] = field(default_factory=dict, metadata={"check": _roles})
    """Metric keys per role (`train_loss`, `eval_loss`, `lr`, ...), overriding what names suggest."""
    baseline: dict[str, float] = field(default_factory=dict, metadata={"check": finite_values})
    """Eval metric values a run must not be clearly worse than."""
    stop: dict[str, str] = field(default_factory=dict, metadata={"coerce_str": True})
    """How to stop the run: `command` and the values it names (`{job_id}`, `{pid}`, `{session}`)."""


@dataclass(frozen=True, slots=True)
class ReviewerConfig:
    """The `[reviewer]` table: which LLM to ask about unsure runs."""

    backend: str = field(default="command", metadata={"choices": ("command", "openai", "anthropic")})
    command: tuple[str, ...] = field(default=(), metadata={"split": True})
    """The command a `command` backend runs (a list, or one string split at spaces)."""
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

    path: Path | None = field(default=None, metadata={"key": None})
    """The file this was read from (not a key of the file)."""
    theme: str = field(default="dark", metadata={"choices": THEMES})
    evidence_dir: Path = Path("runwatch-evidence")
    thresholds: Thresholds = DEFAULT
    """Any field of `detectors.thresholds.Thresholds`."""
    runs: tuple[RunConfig, ...] = field(default=(), metadata={"key": "run"})
    """The `[[run]]` tables."""
    reviewer: ReviewerConfig = ReviewerConfig()
    keys: dict[str, str] = field(default_factory=dict)
    """Key remapping: action name = key."""

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
    """Read and validate a config file against the schema (`monitor.configschema`); `None` gives the defaults."""
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
    config: Config = build(Config, data, "", Locator(path, text))
    return replace(config, path=path)
