"""The `runwatch report` subcommand's arguments and its run (the CLI module only wires it in)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitor.config import Config
from monitor.errors import RunwatchError


def add_report_parser(sub: Any, func: Callable[[argparse.Namespace], int]) -> None:
    r = sub.add_parser(
        "report",
        help="write report.md and a self-contained report.html: good/bad/ugly, causes, next experiments, ranking",
    )
    r.add_argument("targets", nargs="*", help="what `runwatch check` takes: files, folders, W&B runs and projects")
    r.add_argument(
        "--out", type=Path, default=Path("runwatch-report"), help="output folder (default ./runwatch-report)"
    )
    r.add_argument("--primary", help="rank by this metric key (default: eval accuracy, else eval loss, else reward)")
    r.add_argument("--step-key", help="plot on this logged key (e.g. epoch, global_step) instead of the run's step")
    r.add_argument("--format", help="force a log format (see `runwatch formats`)")
    r.add_argument("--now", type=float, help="judge as of this time (epoch seconds)")
    r.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    from monitor.sources.wandb_select import DEFAULT_LAST, add_selection_args

    add_selection_args(r, f"without any of these flags a report reads the newest {DEFAULT_LAST} runs of any state")
    r.set_defaults(func=func)


def run_report(a: argparse.Namespace, cfg: Config, targets: list[str]) -> int:
    """Build and write the report; 0 when every target was read, 3 when one could not be (still written)."""
    from monitor.report import build, write
    from monitor.sources.wandb_select import apply_selection

    try:
        # A report looks back: a W&B project without a selection means its newest runs, whatever their state.
        targets = apply_selection(targets, a.last, a.state, a.tag, default=True)
        rep = build(targets, cfg, primary=a.primary, step_key=a.step_key, fmt=a.format, now=a.now)
    except RunwatchError as e:
        print(f"runwatch: {e.one_line()}", file=sys.stderr)
        return 3
    files = write(rep, a.out)
    for r in rep.runs:
        if r.error:
            print(f"runwatch: {r.error}", file=sys.stderr)
    print(f"{files.markdown}\n{files.html}\n{len(files.pictures)} picture(s) in {a.out}")
    return 3 if any(r.error for r in rep.runs) else 0
