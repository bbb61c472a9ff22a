"""`runwatch report`: Good / Bad / Ugly, likely causes, next experiments, a ranking and pictures, for many runs.

Targets are read exactly as `runwatch check` reads them (`monitor.check.check`); the report is written as
`report.md` and a self-contained `report.html` (inline CSS, pictures embedded), with each picture also
saved beside them as an SVG file.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from pathlib import Path

from monitor.check import check
from monitor.config import Config
from monitor.outward import outward, run_redactor
from monitor.report import pictures, render
from monitor.report.model import Report
from monitor.report.ranking import choose_primary, config_diff, rank, what_helped
from monitor.report.runs import RunSummary, summarise
from monitor.report.sections import across_runs, judge_run, next_experiments, top_causes

__all__ = ["ReportFiles", "build", "write"]


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    pictures: tuple[Path, ...]


def build(
    targets: list[str],
    config: Config,
    *,
    primary: str | None = None,
    step_key: str | None = None,
    fmt: str | None = None,
    now: float | None = None,
) -> Report:
    """Check every target as `runwatch check` does and put together the report's content."""
    results = check(targets, config, fmt, now)
    runs = [summarise(r, step_key) for r in results]
    _name_uniquely(runs)
    prim = choose_primary([r for r in runs if r.error is None], primary)
    ranked = rank(runs, prim)
    diff = config_diff([x.run for x in ranked if x.run.error is None])
    ordered = [x.run for x in ranked if x.run.error is None]
    diff = {k: [_pick(ordered, runs, i, v) for i in range(len(runs))] for k, v in diff.items()}
    helped = what_helped(ranked, diff, prim)
    svgs = [pictures.overview(r) if r.error is None else None for r in runs]
    axes = sorted({r.step_key for r in runs if r.error is None})
    cands = sorted({c for r in runs for c in r.step_candidates})
    note = f"`{', '.join(axes) or '-'}`" + (
        f" (keys found: {', '.join(cands)}" + "; `--step-key` overrides)" if cands else ""
    )
    when = (_dt.datetime.fromtimestamp(now, _dt.UTC) if now else _dt.datetime.now(_dt.UTC)).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    verdicts = [judge_run(r) for r in runs]
    rep = Report(
        targets=list(targets),
        when=when,
        runs=runs,
        verdicts=verdicts,
        svgs=svgs,
        pictures=[None] * len(runs),
        primary=prim,
        ranked=ranked,
        diff=diff,
        helped=helped,
        experiments=next_experiments(ranked, helped, prim),
        axis_note=note,
        causes={id(r): top_causes(r.hypotheses) for r in runs},
        overlay_svg=pictures.overlay(ranked, prim),
        overall=across_runs(ranked, {id(r): v for r, v in zip(runs, verdicts, strict=True)}, prim),
    )
    return rep


def _pick(ordered: list[RunSummary], runs: list[RunSummary], i: int, vals: list[object]) -> object:
    """The value of run `i` (in `runs` order) from a list in `ordered` order (None for unread runs)."""
    r = runs[i]
    return vals[ordered.index(r)] if r in ordered else None


def _name_uniquely(runs: list[RunSummary]) -> None:
    seen: dict[str, int] = {}
    for r in runs:
        n = seen[r.name] = seen.get(r.name, 0) + 1
        if n > 1:
            r.name = f"{r.name} ({n})"


def _slug(name: str, i: int) -> str:
    return f"{i + 1:02d}-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:60] or "run")


def write(rep: Report, out: Path) -> ReportFiles:
    """Write report.md, report.html and the pictures under `out` (created), secrets redacted."""
    red = run_redactor(*(r.config for r in rep.runs))
    _redact(rep, red)
    out.mkdir(parents=True, exist_ok=True)
    pics: list[Path] = []
    for i, (r, svg) in enumerate(zip(rep.runs, rep.svgs, strict=True)):
        if svg is None:
            continue
        p = out / f"{_slug(r.name, i)}.svg"
        p.write_text(svg, encoding="utf-8")
        rep.pictures[i] = p.name
        pics.append(p)
    if rep.overlay_svg:
        p = out / "overlay.svg"
        p.write_text(rep.overlay_svg, encoding="utf-8")
        rep.overlay_file = p.name
        pics.append(p)
    md = out / "report.md"
    md.write_text(render.markdown(rep), encoding="utf-8")
    ht = out / "report.html"
    ht.write_text(render.html(rep), encoding="utf-8")
    return ReportFiles(md, ht, tuple(pics))


def _redact(rep: Report, red: object) -> None:
    """Names, targets and config values are outside text: secrets out before they reach a file."""
    from monitor.redact import Redactor

    assert isinstance(red, Redactor)
    rep.targets = [outward(t, redactor=red) for t in rep.targets]
    for r in rep.runs:
        r.name = outward(r.name, redactor=red)
        r.target = outward(r.target, redactor=red)
        r.reason = outward(r.reason, redactor=red)
    rep.diff = {k: red.data(v) for k, v in red.data(rep.diff).items()}
