"""What a target string names: a local log, a folder of runs, a local W&B run or folder, a remote
file over SSH, a W&B run or project. `monitor.sources.base.open_sources` turns one into its runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from monitor.sources.ssh_targets import SSHTarget, parse_ssh_target
from monitor.sources.wandb_api import WandbTarget, parse_wandb_target

FILE = "file"
FOLDER = "folder"
WANDB_LOCAL = "wandb_local"
SSH = "ssh"
WANDB_API = "wandb_api"
STDIN = "stdin"


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed target: its kind and the address the matching source needs."""

    raw: str
    kind: str
    path: Path | None = None
    ssh: SSHTarget | None = None
    wandb: WandbTarget | None = None

    @property
    def binary(self) -> bool:
        """Whether the bytes are a `.wandb` transaction log rather than text."""
        if self.kind == WANDB_LOCAL:
            return True
        return self.kind == SSH and self.ssh is not None and self.ssh.path.endswith(".wandb")

    @property
    def source_label(self) -> str:
        """Where the run lives, for the run table's source column."""
        if self.ssh is not None:
            return self.ssh.host
        if self.wandb is not None:
            return f"W&B {self.wandb.entity}/{self.wandb.project}"
        if self.path is not None:
            if self.kind == FOLDER:
                return str(self.path)
            return str(self.path.parent) if self.path.parent != Path(".") else "."
        return "stdin"

    @property
    def host(self) -> str:
        """The machine whose GPUs matter for this run ('localhost' for local files)."""
        if self.ssh is not None:
            return str(self.ssh.endpoint)
        if self.wandb is not None:
            return f"wandb:{self.raw}"
        return "localhost"


def is_wandb_local(path: Path) -> bool:
    """A `.wandb` file, a W&B run directory, or a `wandb/` folder of runs (not a folder holding one:
    that is a folder of runs of any kind, W&B's among them)."""
    if path.suffix == ".wandb":
        return True
    if path.is_dir():
        return bool(
            path.name == "wandb"
            or any(path.glob("*.wandb"))
            or any(path.glob("run-*"))
            or any(path.glob("offline-run-*"))
            or (path / "latest-run").exists()
        )
    return False


def parse_target(raw: str) -> Target:
    """Classify a target string (raises TargetError for a malformed `ssh://` or `wandb://` one)."""
    if raw == "-":
        return Target(raw, STDIN)
    wb = parse_wandb_target(raw)
    if wb is not None:
        return Target(raw, WANDB_API, wandb=wb)
    local = Path(raw).expanduser()
    # An existing local path wins over the scp-like `host:/path` reading.
    if not local.exists():
        ssh = parse_ssh_target(raw)
        if ssh is not None:
            return Target(raw, SSH, ssh=ssh)
    if is_wandb_local(local):
        return Target(raw, WANDB_LOCAL, path=local)
    if local.is_dir():
        return Target(raw, FOLDER, path=local)
    return Target(raw, FILE, path=local)
