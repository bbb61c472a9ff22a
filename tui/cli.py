"""The `runwatch` command: `check` (headless judgement), `demo`, and the live views.

Imports stay lazy so `runwatch check` starts fast and never loads Textual.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.errors import ConfigError, RunwatchError

if TYPE_CHECKING:
    from monitor.config import Config
    from monitor.progressline import ProgressLine

USAGE_EXIT = 2
UNREADABLE_EXIT = 3
CONFIG_EXIT = 3
"""A config that cannot be used: the same code from check, watch, demo and the UI (check's 2 means bad)."""


def _parse_now(text: str) -> float:
    """`--now`: epoch seconds or ISO 8601 (a time without zone is local time)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not epoch seconds or ISO 8601: {text!r}") from None


def _load_config(path: Path | None) -> Config:
    from monitor import config

    return config.load(path if path is not None else config.default_path())


def _progress_line(a: argparse.Namespace) -> ProgressLine | None:
    """`check`'s progress line: only on a terminal's stderr, never with `--json`."""
    if a.json or not sys.stderr.isatty():
        return None
    import shutil

    from monitor.progressline import ProgressLine

    return ProgressLine(sys.stderr, shutil.get_terminal_size().columns)


def cmd_check(a: argparse.Namespace) -> int:
    from monitor import check

    cfg = _load_config(a.config)
    targets = a.targets or [r.target for r in cfg.runs]
    if not targets:
        print("runwatch: no targets: name files or runs, or list [[run]] tables in the config", file=sys.stderr)
        return UNREADABLE_EXIT
    try:
        from monitor.sources.wandb_select import apply_selection

        targets = apply_selection(targets, a.last, a.state, a.tag)
        line = _progress_line(a)
        try:
            results = check.check(targets, cfg, fmt=a.format, now=a.now, progress=line.update if line else None)
        finally:
            if line is not None:
                line.clear()
    except RunwatchError as e:
        print(f"runwatch: {e.one_line()}", file=sys.stderr)
        return UNREADABLE_EXIT
    for r in results:
        if r.error:
            print(f"runwatch: {r.error}", file=sys.stderr)
    if a.escalate:
        from monitor.actions.headless import escalate_results

        results = escalate_results(results, cfg)
    if a.json:
        print(json.dumps(check.to_json(results), indent=None if a.compact else 2, allow_nan=False))
    else:
        print(check.to_text(results, verbose=a.verbose))
    return check.exit_code(results)


def cmd_demo(a: argparse.Namespace) -> int:
    """Simulated training runs writing real logs in the background, watched live in the terminal UI."""
    from tui.actions import check_keymap
    from tui.demo import run_demo

    cfg = _load_config(a.config)
    check_keymap(cfg.keys)
    return run_demo(cfg, theme=a.theme, rate=a.rate)


def cmd_ui(a: argparse.Namespace) -> int:
    """The terminal UI on the targets given, else on the config's runs."""
    from monitor import prefetch
    from monitor.targets import parse_target

    cfg = _load_config(a.config)
    targets = a.targets or [r.target for r in cfg.runs]
    if not targets:
        print(
            "runwatch: no targets: name files or runs, list [[run]] tables in the config, or try `runwatch demo`",
            file=sys.stderr,
        )
        return USAGE_EXIT
    for t in targets:
        parse_target(t)  # a malformed target is one line on stderr before the screen opens
    # Big .wandb files start being read on the second core while the UI imports and draws itself.
    prefetch.start(targets)
    from tui.actions import check_keymap
    from tui.app import make_app

    check_keymap(cfg.keys)
    return int(make_app(cfg, targets, theme=a.theme, fmt=a.format).run() or 0)


def cmd_watch(a: argparse.Namespace) -> int:
    import asyncio

    from monitor.targets import parse_target
    from monitor.watch import watch

    cfg = _load_config(a.config)
    targets = a.targets or [r.target for r in cfg.runs]
    fleet = None
    if a.metrics_addr is not None or a.targets_file is not None:  # service mode (issue 12)
        from monitor.fleet import Fleet

        fleet = Fleet(a.metrics_addr, a.targets_file)  # a port in use fails here, in one line
        targets = [*a.targets, *(t for t in fleet.targets if t not in a.targets)] if a.targets_file else targets
    if not targets and fleet is None:
        print("runwatch: no targets: name files or runs, or list [[run]] tables in the config", file=sys.stderr)
        return USAGE_EXIT
    for t in targets:
        parse_target(t)  # a malformed target is one line on stderr before anything starts
    if a.evidence_dir is not None:
        from dataclasses import replace

        cfg = replace(cfg, evidence_dir=a.evidence_dir)
    run = watch(targets, cfg, fmt=a.format, jsonl=a.jsonl, on_bad=a.on_bad, yes=a.yes, dry_run=a.dry_run, fleet=fleet)
    return asyncio.run(run)


def cmd_formats(_a: argparse.Namespace) -> int:
    from monitor.parsers import format_samples

    for name, description, sample in format_samples():
        print(f"{name:18} {description}")
        if sample:
            print(f"{'':18}   e.g. {sample}")
    return 0


# --- `runwatch report` (monitor/report) ---
def cmd_report(a: argparse.Namespace) -> int:
    from monitor.report.command import run_report

    cfg = _load_config(a.config)
    targets = a.targets or [r.target for r in cfg.runs]
    if not targets:
        print("runwatch: no targets: name files or runs, or list [[run]] tables in the config", file=sys.stderr)
        return UNREADABLE_EXIT
    return run_report(a, cfg, targets)


# --- end `runwatch report` ---


def build_parser() -> argparse.ArgumentParser:
    from monitor.config import THEMES

    ap = argparse.ArgumentParser(
        prog="runwatch",
        usage="runwatch [--config PATH] [--theme NAME] [TARGET ...]  |  runwatch COMMAND ...",
        description="Babysit ML training runs from a terminal. With targets (or none: the config's runs) "
        "it opens the terminal UI.",
    )
    ap.add_argument("--config", type=Path, help="config file (default ./runwatch.toml, then XDG config)")
    ap.add_argument("--theme", choices=THEMES, help="dark, light or high-contrast (default: the config's)")
    sub = ap.add_subparsers(dest="command")
    c = sub.add_parser("check", help="judge targets once and exit 0 healthy / 1 unsure / 2 bad / 3 unreadable")
    c.add_argument(
        "targets",
        nargs="*",
        help="files, folders (every run inside), W&B runs and projects (wandb://E/P[/ID], URLs), "
        "host:/path, ssh://..., - for stdin",
    )
    c.add_argument("--json", action="store_true", help='print {"runs": [...]} as JSON')
    c.add_argument("--compact", action="store_true", help="one-line JSON")
    c.add_argument("--format", help="force a log format (see `runwatch formats`)")
    c.add_argument("--now", type=_parse_now, help="judge as of this time (epoch seconds or ISO 8601)")
    c.add_argument("-v", "--verbose", action="store_true", help="also list cleared and informational findings")
    c.add_argument("--escalate", action="store_true", help="ask the configured reviewer about each unsure run")
    c.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    from monitor.sources.wandb_select import add_selection_args

    add_selection_args(c, "without any of these flags a project means its running runs")
    c.set_defaults(func=cmd_check)
    w = sub.add_parser("watch", help="watch targets live; print a line per verdict or source state change")
    w.add_argument("targets", nargs="*", help="files, W&B runs (wandb://E/P[/ID], URLs), host:/path, ssh://...")
    w.add_argument("--jsonl", action="store_true", help="JSON lines with timestamps")
    w.add_argument(
        "--on-bad",
        choices=("evidence", "stop"),
        help="when a run turns bad: save an evidence bundle, or save one and stop the run (needs --yes)",
    )
    w.add_argument("--yes", action="store_true", help="really stop runs with --on-bad stop (else a dry run)")
    w.add_argument("--dry-run", action="store_true", help="show and audit stops without doing them")
    w.add_argument("--evidence-dir", type=Path, help="where bundles and audit.jsonl go (default: the config's)")
    w.add_argument("--format", help="force a log format (see `runwatch formats`)")
    w.add_argument(
        "--metrics-addr",
        nargs="?",
        const="127.0.0.1:9464",
        metavar="HOST:PORT",
        help="serve Prometheus metrics and /healthz here (127.0.0.1:9464 when given without a value)",
    )
    w.add_argument(
        "--targets-file",
        type=Path,
        metavar="FILE",
        help="one target per line; re-read when it changes or on SIGHUP (runs added and removed live)",
    )
    w.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    w.set_defaults(func=cmd_watch)
    d = sub.add_parser("demo", help="simulated runs: no account, GPU or network needed")
    d.add_argument("--rate", type=float, default=10.0, help="log lines per second per simulated run (default 10)")
    d.add_argument("--theme", choices=THEMES, default=argparse.SUPPRESS)
    d.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    d.set_defaults(func=cmd_demo)
    u = sub.add_parser("ui", help="the terminal UI (the default: `runwatch [TARGET...]`)")
    u.add_argument("targets", nargs="*", help="files, W&B runs (wandb://E/P[/ID], URLs), host:/path, ssh://...")
    u.add_argument("--format", help="force a log format (see `runwatch formats`)")
    u.add_argument("--theme", choices=THEMES, default=argparse.SUPPRESS)
    u.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    u.set_defaults(func=cmd_ui)
    from monitor.report.command import add_report_parser  # `runwatch report`

    add_report_parser(sub, cmd_report)
    f = sub.add_parser("formats", help="list the log formats runwatch reads")
    f.set_defaults(func=cmd_formats)
    return ap


def _default_to_ui(argv: list[str], commands: set[str]) -> list[str]:
    """`runwatch [TARGET...]` means `runwatch ui [TARGET...]`: insert `ui` before the first target."""
    takes_value = {"--config", "--theme"}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok in ("-h", "--help"):
            return argv
        if tok in takes_value:
            i += 2
            continue
        if tok.startswith("-") and tok != "-":
            i += 1
            continue
        return argv if tok in commands else [*argv[:i], "ui", *argv[i:]]
    return [*argv, "ui"]


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    # Every subcommand, including ones added later, so a target never shadows a command.
    commands = {n for act in ap._actions if isinstance(act, argparse._SubParsersAction) for n in act.choices}
    a = ap.parse_args(_default_to_ui(list(sys.argv[1:] if argv is None else argv), commands))
    if not getattr(a, "command", None):
        ap.print_help()
        return USAGE_EXIT
    try:
        return int(a.func(a))
    except ConfigError as e:
        print(f"runwatch: {e.one_line()}", file=sys.stderr)
        return CONFIG_EXIT
    except RunwatchError as e:
        print(f"runwatch: {e.one_line()}", file=sys.stderr)
        return USAGE_EXIT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`runwatch check … | head`): stop quietly, as other Unix tools do.
        # Python would flush stdout again at exit and fail once more, so point it at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it


if __name__ == "__main__":
    sys.exit(main())
