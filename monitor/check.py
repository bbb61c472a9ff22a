"""`runwatch check`: read what a target holds now, judge it, report, and give an exit code.

Exit codes: 0 all healthy, 1 some unsure, 2 some bad, 3 a target could not be read.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from monitor.analysis import RunAnalysis, RunInfo
from monitor.backfill import parse_in_worker, read_wandb_in_worker, text_chunks, worth_parallel
from monitor.columns import Columns, to_columns
from monitor.config import Config
from monitor.errors import RunwatchError, TargetError
from monitor.model import Finding, Severity, Verdict
from monitor.outward import outward, outward_data
from monitor.parsers import CONFIDENT, clean_line, detect_format, feed_lines, guess_format, make_parser
from monitor.sources.ssh_tail import Chunk
from monitor.targets import is_wandb_local, metrics_file_in

if TYPE_CHECKING:
    from monitor.actions.reviewer import ReviewerAnswer

_CHUNK = 1 << 20
_HEAD_LINES = 200
_BATCH = 4096
_MAX_HEAD = 20_000


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome for one target: an analysis, or the one-line reason it could not be read."""

    target: str
    analysis: RunAnalysis | None = None
    error: str | None = None
    review: ReviewerAnswer | None = None
    """The reviewer's answer, when `check --escalate` asked about this (unsure) run."""


def read_lines(stream: IO[bytes]) -> Iterator[str]:
    """Decoded lines of a byte stream, read in large chunks (invalid UTF-8 replaced, never fatal).

    A finished file's last line may lack its newline; check reads it (a live tail would wait).
    """
    for text in text_chunks(stream):
        yield from text.splitlines()


def _local_kind(path: Path) -> tuple[str, Path]:
    """What a local target is: ('wandb' | 'tfevents' | 'text', the file to read)."""
    if path.is_dir():
        if is_wandb_local(path):
            return "wandb", path
        found = metrics_file_in(path)
        if found is None:
            raise TargetError(f"{path}: no log, metrics file, trainer_state.json or W&B run found in this directory")
        path = found
    if path.suffix == ".wandb":
        return "wandb", path
    if path.name.startswith("events.out.tfevents."):
        return "tfevents", path
    return "text", path


def _head_and_format(lines: Iterator[str], filename: str) -> tuple[list[str], str]:
    """Read just enough lines to recognise the format (more when only hints match, up to 20k)."""
    head: list[str] = []
    want = _HEAD_LINES
    name, score = "kv", 0.0
    for line in lines:
        head.append(line)
        if len(head) >= want:
            name, score = guess_format([clean_line(x) for x in head], filename)
            if score >= CONFIDENT or want >= _MAX_HEAD:
                return head, name
            want *= 10
    return head, detect_format(head, filename)


def analyse_text(lines: Iterator[str], info: RunInfo, config: Config, fmt: str | None, now: float) -> RunAnalysis:
    """Parse and judge a text log (any supported format) in one pass."""
    run_cfg = config.run_for(info.target)
    forced = fmt or (run_cfg.format if run_cfg else None)
    if forced:
        parser = make_parser(forced)
        head: list[str] = []
    else:
        head, name = _head_and_format(lines, info.name)
        parser = make_parser(name)
    analysis = RunAnalysis(info, run_cfg, config.thresholds)

    def add(batch: list[str]) -> None:
        rows = feed_lines(parser, batch)
        analysis.set_total_steps(parser.total_steps)
        if rows:
            analysis.add_columns(to_columns(rows), now)

    add(head)
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= _BATCH:
            add(batch)
            batch = []
    add(batch)
    analysis.add_rows(parser.finish(), now)
    info.read_parser(parser)
    analysis.store.add_log_lines((head + batch)[-200:])
    if parser.finished:
        analysis.finish()
    return analysis


def analyse_parallel(path: Path, info: RunInfo, config: Config, fmt: str | None, now: float) -> RunAnalysis:
    """Like `analyse_text` for a big file: a worker process parses while this one judges."""
    run_cfg = config.run_for(info.target)
    name = fmt or (run_cfg.format if run_cfg else None)
    if not name:
        with path.open("rb") as f:
            _, name = _head_and_format(read_lines(f), info.name)
    make_parser(name)  # an unknown --format fails here, in one line, before a worker starts
    analysis = RunAnalysis(info, run_cfg, config.thresholds)

    def on_blocks(blocks: list[Columns], total: float | None) -> None:
        analysis.set_total_steps(total)
        analysis.add_columns(blocks, now)

    summary = parse_in_worker(path, name, on_blocks)
    info.format, info.step_key, info.config = summary.format, summary.step_key, summary.config
    info.lines, info.noise, info.malformed = summary.lines, summary.noise, summary.malformed
    analysis.store.add_log_lines(summary.tail)
    if summary.finished:
        analysis.finish()
    return analysis


def analyse_wandb(path: Path, info: RunInfo, config: Config, now: float) -> RunAnalysis:
    """Read a W&B run's `.wandb` transaction log and judge it (big files: read in a worker process)."""
    from monitor import wandb_log
    from monitor.feeds import WandbFeed

    file = wandb_log.find_wandb_file(path)
    analysis = RunAnalysis(info, config.run_for(info.target), config.thresholds)
    feed = WandbFeed(analysis, "localhost")
    if worth_parallel(file):

        def on_blocks(blocks: list[Columns], others: list[object]) -> None:
            feed.events(others, now)
            analysis.add_columns(blocks, now)

        done = read_wandb_in_worker(file, on_blocks)
        info.step_key, info.lines = done["step_key"], done["records"]
    else:
        offset = 0
        with file.open("rb") as f:
            while data := f.read(_CHUNK):
                feed.chunk(Chunk(offset, data), now)
                offset += len(data)
    return analysis


def analyse_tfevents(path: Path, info: RunInfo, config: Config, now: float) -> RunAnalysis:
    """Read a TensorBoard event file and judge its scalars."""
    from monitor.parsers.tfevents import read_tfevents

    rows, _stats = read_tfevents(path.read_bytes())
    analysis = RunAnalysis(info, config.run_for(info.target), config.thresholds)
    info.format = "tfevents"
    analysis.add_rows(sorted(rows, key=lambda r: r.step), now)
    return analysis


def check_target(target: str, config: Config, fmt: str | None = None, now: float | None = None) -> RunAnalysis:
    """Read and judge one target as of `now` (default: the current time). Raises RunwatchError."""
    wall = time.time() if now is None else now
    if target == "-":
        info = RunInfo(target="-", name="stdin")
        analysis = analyse_text(read_lines(sys.stdin.buffer), info, config, fmt, wall)
        analysis.tick(wall)
        return analysis
    path = Path(target).expanduser()
    if not path.exists():
        raise TargetError(f"{target}: no such file or directory")
    kind, file = _local_kind(path)
    run_cfg = config.run_for(target)
    info = RunInfo(target=target, name=(run_cfg.name if run_cfg and run_cfg.name else _run_name(path)))
    try:
        mtime = file.stat().st_mtime
        # Rows of a file carry no arrival time; they were all written by its last modification.
        if kind == "wandb":
            analysis = analyse_wandb(file, info, config, mtime)
        elif kind == "tfevents":
            analysis = analyse_tfevents(file, info, config, mtime)
        elif worth_parallel(file):
            analysis = analyse_parallel(file, info, config, fmt, mtime)
        else:
            with file.open("rb") as f:
                analysis = analyse_text(read_lines(f), info, config, fmt, mtime)
    except PermissionError:
        raise TargetError(f"{target}: permission denied") from None
    except IsADirectoryError:
        raise TargetError(f"{target}: is a directory with nothing runwatch can read") from None
    except OSError as e:
        raise TargetError(f"{target}: cannot read ({e.strerror or e})") from None
    analysis.detectors.touch(mtime)
    analysis.tick(wall)
    return analysis


def _run_name(path: Path) -> str:
    """A short run name from a path: the file's parent folder and name."""
    p = path.resolve()
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def check(targets: list[str], config: Config, fmt: str | None = None, now: float | None = None) -> list[CheckResult]:
    """Check every target; a target that cannot be read becomes an error result, not an exception."""
    results = []
    for t in targets:
        try:
            results.append(CheckResult(t, check_target(t, config, fmt, now)))
        except RunwatchError as e:
            results.append(CheckResult(t, error=e.one_line()))
    return results


def exit_code(results: list[CheckResult]) -> int:
    """0 all healthy, 1 some unsure, 2 some bad, 3 a target could not be read."""
    if any(r.error for r in results):
        return 3
    worst = max((r.analysis.judgement().verdict for r in results if r.analysis), default=Verdict.HEALTHY)
    return int(worst)


def to_json(results: list[CheckResult]) -> dict[str, Any]:
    """The `--json` document: `{"runs": [...]}`, one entry per target."""
    runs: list[dict[str, Any]] = []
    for r in results:
        if r.analysis is None:
            runs.append({"target": r.target, "verdict": "error", "decision": None, "error": r.error, "findings": []})
            continue
        a = r.analysis
        j = a.judgement()
        info = a.info
        runs.append(
            {
                "target": r.target,
                "name": info.name,
                "verdict": str(j.verdict),
                "decision": str(j.decision),
                "reason": j.reason,
                "last_step": _jnum(a.detectors.last_step),
                "total_steps": _jnum(info.total_steps),
                "state": info.state,
                "format": info.format,
                "step_key": info.step_key,
                "url": info.url,
                "metrics": {k: _jnum(v) for k, v in a.headline().items()},
                "lines": info.lines,
                "noise_lines": info.noise,
                "malformed_lines": info.malformed,
                "findings": [f.to_json() for f in j.findings],
            }
        )
        if r.review is not None:
            runs[-1]["reviewer"] = {
                "decision": r.review.decision,
                "reason": r.review.reason,
                "error": r.review.error,
                "backend": r.review.backend,
                "attempts": r.review.attempts,
            }
    return outward_data({"runs": runs})  # secrets out of names, paths and messages; JSON escapes the rest


def _jnum(x: float | None) -> float | int | str | None:
    if x is None:
        return None
    if x != x or x in (float("inf"), float("-inf")):
        return str(x)
    return int(x) if float(x).is_integer() else x


BADGE = {Verdict.HEALTHY: "✓ healthy", Verdict.UNSURE: "? unsure", Verdict.BAD: "✗ bad"}


def to_text(results: list[CheckResult], verbose: bool = False) -> str:
    """A plain report a person reads in a terminal or a cron mail."""
    out: list[str] = []
    for r in results:
        if r.analysis is None:
            out.append(f"! error    {r.target}\n    {r.error}")
            continue
        a = r.analysis
        j = a.judgement()
        info = a.info
        step = a.detectors.last_step
        where = f"step {_fmt_step(step)}" + (f"/{_fmt_step(info.total_steps)}" if info.total_steps else "")
        out.append(f"{BADGE[j.verdict]:<10} {info.name}  {where}  -> {str(j.decision).upper()}")
        out.append(f"    {j.reason}")
        shown = [f for f in j.findings if verbose or f.active or f.severity >= Severity.WARN]
        for f in shown:
            out.append("    " + _finding_line(f))
        metrics = ", ".join(f"{k}={_fmt_val(v)}" for k, v in a.headline().items())
        noise = f", {info.noise} noise" if info.noise else ""
        bad = f", {info.malformed} malformed" if info.malformed else ""
        out.append(f"    [{info.format}; step axis: {info.step_key}; {info.lines} lines{noise}{bad}] {metrics}")
        if r.review is not None:
            out.append(f"    reviewer ({r.review.backend}): {r.review.one_line()}")
    return outward("\n".join(out), keep_newlines=True)  # names, paths and keys are outside text: no escapes, no secrets


def _finding_line(f: Finding) -> str:
    state = "" if f.active else " (cleared)"
    return f"- {f.kind} [{f.severity}]{state} from step {_fmt_step(f.onset_step)}: {f.message}"


def _fmt_step(x: float | None) -> str:
    if x is None:
        return "-"
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _fmt_val(x: float) -> str:
    return f"{x:.4g}"
