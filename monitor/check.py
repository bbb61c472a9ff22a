"""`runwatch check`: read what a target holds now, judge it, report, and give an exit code.

Exit codes: 0 all healthy, 1 some unsure, 2 some bad, 3 a target could not be read.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor import runstate, verdicts
from monitor.analysis import RunAnalysis, RunInfo
from monitor.config import Config
from monitor.diagnosis import diagnose_analysis
from monitor.errors import FormatError, RunwatchError, TargetError
from monitor.feeds import make_feed
from monitor.model import Finding, Severity, Verdict
from monitor.outward import outward, outward_data
from monitor.runstate import RunState, SourceFacts
from monitor.sources.base import Chunk, RunRef, open_sources

if TYPE_CHECKING:
    from monitor.actions.reviewer import ReviewerAnswer

_STDIN_PIECE = 1 << 20
#: How long `check` follows a remote target (SSH, W&B API) for what it holds now, at most.
REMOTE_TIMEOUT = 60.0
#: A remote run is caught up once nothing new arrived for this long after its first data.
REMOTE_SETTLE = 1.5


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome for one run: an analysis and its state, or the one-line reason it could not be read."""

    target: str
    analysis: RunAnalysis | None = None
    error: str | None = None
    review: ReviewerAnswer | None = None
    """The reviewer's answer, when `check --escalate` asked about this (unsure) run."""
    state: RunState | None = None


def check_target(target: str, config: Config, fmt: str | None = None, now: float | None = None) -> RunAnalysis:
    """Read and judge a target naming one local run as of `now` (default: the current time)."""
    results = check([target], config, fmt, now)
    if len(results) != 1:
        raise TargetError(f"{target}: names {len(results)} runs; check them with check()")
    r = results[0]
    if r.analysis is None:
        raise TargetError(r.error or f"{target}: cannot read")
    return r.analysis


Progress = Callable[[str, int, int], None]
"""Told `(target, bytes read, bytes in all)` while a target is read (0 in all: not known, as for stdin)."""


def read_run(
    ref: RunRef, config: Config, fmt: str | None, wall: float, progress: Progress | None = None
) -> CheckResult:
    """Open one local run (or stdin), catch up with everything it holds, judge it as of `wall`."""
    run_cfg = config.run_for(ref.origin) or config.run_for(ref.id)
    info = RunInfo(target=ref.id, name=ref.name)
    analysis = RunAnalysis(info, run_cfg, config.thresholds)
    forced = fmt or (run_cfg.format if run_cfg else None)
    feed = make_feed(ref.feed, analysis, fmt=forced, filename=Path(ref.id).name if ref.path else "stdin")
    error: str | None = None
    if ref.path is None:  # stdin: what arrives until it closes
        offset = 0
        if progress is not None:
            progress(ref.id, 0, 0)
        while data := sys.stdin.buffer.read(_STDIN_PIECE):
            feed.chunk(Chunk(offset, data), wall)
            offset += len(data)
            if progress is not None:
                progress(ref.id, offset, 0)
        feed.end(wall)
        facts = SourceFacts(ended=True)
    else:
        path = ref.path
        if not path.exists():
            raise TargetError(f"{ref.id}: no such file or directory")
        try:
            st = path.stat()
            mtime = st.st_mtime
            if progress is not None:
                size, told = st.st_size, progress
                told(ref.id, 0, size)
                feed.on_progress = lambda done: told(ref.id, done, size)
            # Rows of a file carry no arrival time: unless they say otherwise, they were all
            # written by its last modification.
            for _ in feed.catch_up(path, mtime, final=True):
                pass
        except PermissionError:
            raise TargetError(f"{ref.id}: permission denied") from None
        except IsADirectoryError:
            raise TargetError(f"{ref.id}: is a directory with nothing runwatch can read") from None
        except FormatError as e:
            error = f"{ref.id}: cannot read: {e.message}"
        except OSError as e:
            raise TargetError(f"{ref.id}: cannot read ({e.strerror or e})") from None
        if error is None and analysis.store.rows == 0 and path.stat().st_size == 0:
            error = f"{ref.id}: empty file: no metrics found"  # what exists now is all `check` reads
        if analysis.store.rows == 0 and error is None:  # an unreadable file is not a stalled run
            analysis.detectors.touch(mtime)  # rows, when there are some, carry the time already
        facts = SourceFacts(error=error, unreadable=error is not None)
    runstate.note_end_markers(analysis)
    analysis.tick(wall)
    state = runstate.decide(analysis, facts)
    if state.word == runstate.UNREADABLE:
        _note_unreadable(analysis, state)
    return CheckResult(ref.id, analysis, state=state)


def _note_unreadable(analysis: RunAnalysis, state: RunState) -> None:
    step = analysis.detectors.last_step or 0.0
    analysis.detectors.set_external(Finding("source_error", Severity.WARN, "source", step, step, state.detail, {}))


def check(
    targets: list[str],
    config: Config,
    fmt: str | None = None,
    now: float | None = None,
    progress: Progress | None = None,
) -> list[CheckResult]:
    """Check every run every target names (a folder: each run in it); a target that cannot be read
    becomes an error result, not an exception. Remote targets are followed until caught up.
    `progress` is told how far the reading of each local target is."""
    wall = time.time() if now is None else now
    per_target: list[list[CheckResult]] = []
    remote: list[tuple[int, str]] = []
    for t in targets:
        try:
            opened = open_sources(t, config)
        except RunwatchError as e:
            per_target.append([CheckResult(t, error=e.one_line())])
            continue
        if opened.api is not None or opened.target.kind == "ssh":
            remote.append((len(per_target), t))
            per_target.append([])
            continue
        if not opened.runs:
            per_target.append(
                [CheckResult(t, error=f"{t}: no runs found (no log, metrics file, event file or W&B run)")]
            )
            continue
        out: list[CheckResult] = []
        for ref in opened.runs:
            try:
                out.append(read_run(ref, config, fmt, wall, progress))
            except RunwatchError as e:
                out.append(CheckResult(ref.id, error=e.one_line()))
        per_target.append(out)
    if remote:
        from monitor.checkremote import check_remote

        found = check_remote([t for _, t in remote], config, fmt, now, REMOTE_TIMEOUT, REMOTE_SETTLE)
        for (i, _t), results in zip(remote, found, strict=True):
            per_target[i] = results
    return [r for rs in per_target for r in rs]


def exit_code(results: list[CheckResult]) -> int:
    """0 all healthy, 1 some unsure, 2 some bad, 3 a target could not be read (or held no metrics)."""
    if any(r.error or (r.state is not None and r.state.word in runstate.UNREAD) for r in results):
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
        state = r.state or RunState(runstate.LIVE)
        decision, reason = runstate.shown_decision(state, j)
        runs.append(
            {
                "target": r.target,
                "name": info.name,
                "verdict": runstate.shown_verdict(state, j.verdict),
                "decision": decision,
                "reason": reason,
                "last_step": _jnum(a.detectors.last_step),
                "total_steps": _jnum(info.total_steps),
                "state": state.word,
                "state_detail": state.label,
                "last_update": a.detectors.stall.last_time,
                "exit_code": info.exit_code,
                "format": info.format,
                "step_key": info.step_key,
                "url": info.url,
                "metrics": {k: _jnum(v) for k, v in a.headline().items()},
                "lines": info.lines,
                "noise_lines": info.noise,
                "malformed_lines": info.malformed,
                "findings": [f.to_json() for f in j.findings],
                # Root-cause hypotheses, surest first (monitor/diagnosis); empty for a healthy run.
                "diagnosis": [h.to_json() for h in diagnose_analysis(a)],
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
        state = r.state or RunState(runstate.LIVE)
        step = a.detectors.last_step
        where = f"step {_fmt_step(step)}" + (f"/{_fmt_step(info.total_steps)}" if info.total_steps else "")
        badge = verdicts.badge(runstate.shown_verdict(state, j.verdict))
        decision, reason = runstate.shown_decision(state, j)
        out.append(f"{badge:<10} {info.name}  {where}  [{state.label}]  -> {decision.upper()}")
        out.append(f"    {reason}")
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
