"""The report's pictures: one overview per run and an overlay of the best runs, as SVG text."""

from __future__ import annotations

from monitor.diagnosis.facts import Curve, RunFacts
from monitor.model import Finding, Severity
from monitor.report.ranking import Primary, Ranked
from monitor.report.runs import RunSummary
from monitor.report.svg import BAD, INFO, PALETTE, WARN, document, panel, x_range

#: At most this many runs share the overlay.
OVERLAY_RUNS = 6


def _markers(findings: tuple[Finding, ...]) -> list[tuple[float, str, str]]:
    out = []
    for f in findings:
        if f.kind in ("converged",):
            continue
        colour = BAD if f.severity >= Severity.BAD else WARN if f.severity >= Severity.WARN else INFO
        out.append((float(f.onset_step), colour, f"{f.kind} [{f.severity}] from step {f.onset_step:g}: {f.message}"))
    return out


def overview(r: RunSummary) -> str:
    """Loss (and eval loss / eval metric), LR and grad norm of one run, with a dashed line where each finding began."""
    return overview_svg(r.name, r.facts, r.findings, r.step_key)


def overview_svg(name: str, f: RunFacts, findings: tuple[Finding, ...], step_key: str) -> str:
    """`overview` from a run's facts (also used by evidence bundles)."""
    xr = x_range([f.loss, f.eval_loss, f.eval_up, f.lr, f.grad])
    m = _markers(findings)
    loss = [(c, PALETTE[i]) for i, c in enumerate((f.loss, f.eval_loss)) if c is not None]
    panels = [panel("loss", loss, m, xr, 0, log=True, x_label=step_key)]
    if f.eval_up is not None:
        panels.append(panel("eval metric", [(f.eval_up, PALETTE[2])], m, xr, 150 * len(panels), x_label=step_key))
    lr = [(f.lr, PALETTE[3])] if f.lr is not None else []
    panels.append(panel("learning rate", lr, m, xr, 150 * len(panels), x_label=step_key))
    g = [(f.grad, PALETTE[5])] if f.grad is not None else []
    panels.append(panel("grad norm", g, m, xr, 150 * len(panels), log=True, x_label=step_key))
    return document(f"{name}: loss, eval, learning rate and grad norm", panels)


def overlay(ranked: list[Ranked], primary: Primary | None) -> str | None:
    """The primary metric (and the training loss) of the best `OVERLAY_RUNS` runs on one axis each."""
    top = [x for x in ranked if x.run.error is None][:OVERLAY_RUNS]
    if len(top) < 2:
        return None
    panels = []
    axis = ", ".join(sorted({x.run.step_key for x in top}))
    if primary is not None:
        cs: list[tuple[Curve, str]] = []
        for i, x in enumerate(top):
            c = x.run.metrics.get(primary.key)
            if c is not None:
                cs.append((Curve(f"{i + 1}. {x.run.name}"[:40], c.steps, c.values), PALETTE[i]))
        if cs:
            panels.append(panel(primary.key, cs, [], x_range([c for c, _ in cs]), 0, x_label=axis))
    ls = []
    for i, x in enumerate(top):
        c = x.run.facts.loss
        if c is not None:
            ls.append((Curve(f"{i + 1}. {x.run.name}"[:40], c.steps, c.values), PALETTE[i]))
    if ls:
        panels.append(
            panel("training loss", ls, [], x_range([c for c, _ in ls]), 150 * len(panels), log=True, x_label=axis)
        )
    return document("overlay of the best runs", panels) if panels else None
