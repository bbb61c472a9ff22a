"""A run as actions see it: its id, where it lives (a parsed target), its live analysis and config."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from monitor.analysis import RunAnalysis
from monitor.config import RunConfig
from monitor.sources.wandb_api import parse_wandb_target
from monitor.targets import SSH, STDIN, WANDB_API, WANDB_LOCAL, Target, parse_target


@dataclass(frozen=True, slots=True)
class RunRef:
    """One run an action applies to. `analysis` is live: read it on the event loop's thread only."""

    run_id: str
    target: Target
    analysis: RunAnalysis
    run_config: RunConfig | None = None

    @property
    def name(self) -> str:
        return self.analysis.info.name

    @property
    def where(self) -> str:
        """Where the run lives, for a person: `gpu1:/runs/a/train.log`, a W&B run, a local path."""
        return describe_where(self.target, self.analysis.info.url)

    @property
    def wandb_file(self) -> Path | None:
        """The `.wandb` transaction log of a local W&B run, if this run is one."""
        t = self.target
        if t.kind != WANDB_LOCAL or t.path is None:
            return None
        if t.path.suffix == ".wandb":
            return t.path
        sub = self.run_id.rpartition("#")[2] if "#" in self.run_id else None
        files = sorted(t.path.glob(f"**/{sub}/*.wandb" if sub else "**/*.wandb"), key=lambda p: p.stat().st_mtime)
        return files[-1] if files else None


def make_ref(run_id: str, analysis: RunAnalysis, run_config: RunConfig | None = None) -> RunRef:
    """A `RunRef` for a hub run id (W&B project runs carry their run id in `run_id`)."""
    target = parse_target(analysis.info.target)
    if target.wandb is not None and run_id.startswith("wandb://"):
        wt = parse_wandb_target(run_id)
        if wt is not None and wt.run_id and target.wandb.run_id != wt.run_id:
            target = Target(target.raw, target.kind, wandb=target.wandb.with_run(wt.run_id))
    return RunRef(run_id, target, analysis, run_config)


def describe_where(target: Target, url: str | None = None) -> str:
    """Where a target lives, in words."""
    if target.kind == SSH and target.ssh is not None:
        return str(target.ssh)
    if target.kind == WANDB_API and target.wandb is not None:
        if target.raw.startswith(("http://", "https://")):
            return target.raw
        base = f" at {target.wandb.base_url}" if target.wandb.base_url else ""
        return f"W&B run {target.wandb.path}{base}"
    if target.kind == STDIN:
        return f"standard input on {socket.gethostname()}"
    path = target.path.resolve() if target.path is not None else Path(target.raw)
    extra = f" ({url})" if url else ""
    return f"{path} on {socket.gethostname()}{extra}"
