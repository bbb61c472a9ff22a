"""A report's content, computed once and rendered as Markdown and HTML."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitor.report.ranking import Primary, Ranked
from monitor.report.runs import RunSummary
from monitor.report.sections import Experiment, Verdicts


@dataclass
class Report:
    targets: list[str]
    when: str
    runs: list[RunSummary]
    verdicts: list[Verdicts]
    svgs: list[str | None]
    pictures: list[str | None]
    """File names of the per-run pictures saved beside the report."""
    primary: Primary | None
    ranked: list[Ranked]
    diff: dict[str, list[Any]]
    helped: list[str]
    experiments: list[Experiment]
    axis_note: str
    causes: dict[int, str] = field(default_factory=dict)
    overall: Verdicts = field(default_factory=Verdicts)
    """Good / Bad / Ugly across all runs."""
    overlay_svg: str | None = None
    overlay_file: str | None = None
