"""`summary.md` of an evidence bundle: what a colleague reads first the next morning."""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

from monitor.model import Finding, Verdict

if TYPE_CHECKING:
    from monitor.actions.evidence import Evidence

_BADGE = {Verdict.HEALTHY: "✓ healthy", Verdict.UNSURE: "? unsure", Verdict.BAD: "✗ bad"}


def render_summary(ev: Evidence) -> str:
    """Plain-language Markdown: the run, where, when, the verdict and why, the findings, the files."""
    j = ev.judgement
    when = datetime.fromtimestamp(ev.saved_at).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    out = [
        f"# runwatch evidence: {ev.name}",
        "",
        f"Saved {when} by {ev.saved_by}." + (f" Why: {ev.why}." if ev.why else ""),
        "",
        "## The run",
        "",
        f"- Name: {ev.name}",
        f"- Where: {ev.where}",
        f"- Target as given: `{ev.target}`",
    ]
    if ev.url and ev.url not in ev.where:
        out.append(f"- Run URL: {ev.url}")
    progress = _num(ev.last_step) if ev.last_step is not None else "none yet"
    if ev.total_steps:
        progress += f" of {_num(ev.total_steps)}"
        if ev.last_step is not None:
            progress += f" ({100 * ev.last_step / ev.total_steps:.1f}%)"
    out += [
        f"- State reported by the source: {ev.state}",
        f"- Last step: {progress} (step axis: `{ev.step_key}`; log format: {ev.format})",
    ]
    if ev.headline:
        out.append("- Latest values: " + ", ".join(f"{k} = {_num(v)}" for k, v in ev.headline))
    out += [
        "",
        "## Verdict",
        "",
        f"**{_BADGE[j.verdict]}**, advice: **{str(j.decision).upper()}**. {j.reason}",
        "",
        "## Findings",
        "",
    ]
    if j.findings:
        out += [_finding(f) for f in sorted(j.findings, key=lambda f: (not f.active, -f.severity, f.onset_step))]
    else:
        out.append("The detectors found nothing.")
    if ev.diagnosis:
        out += [
            "",
            "## Likely causes",
            "",
            "Hypotheses, surest first; none is certain (confidence says how direct the evidence is).",
            "",
        ]
        for h in ev.diagnosis:
            out.append(f"- **{h.cause}** [{h.confidence}]: {h.evidence}")
            out.append(f"  - fix: {h.fix}; expect: {h.expect}; verify: {h.verify}")
            if h.settle:
                out.append(f"  - would settle it: {h.settle}")
    if ev.review is not None:
        r = ev.review
        asked = datetime.fromtimestamp(r.asked_at).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        out += ["", "## Reviewer", "", f"Asked {r.backend} at {asked}: **{r.one_line()}**", "", "See `reviewer.md`."]
    if ev.action is not None:
        out += ["", "## Action", "", "Saved right before this action (details in `action.json`):", ""]
        out += ["    " + line for line in str(ev.action.get("description", "")).splitlines()]
    out += ["", "## Files", ""]
    n_points = sum(len(s) for _, s, _ in ev.series)
    out += [
        "- `findings.json`: the verdict and every finding as data",
        f"- `metrics.csv`: every point held, {n_points} points over {len(ev.series)} metrics "
        "(older history is kept as min/max pairs per bucket)",
    ]
    out += [f"- `plot_{name}.txt`: {', '.join(keys)} as a text plot" for name, keys in ev.plot_keys]
    if ev.screenshot_svg:
        out.append("- `screenshot.svg`: the screen when this was saved")
    if ev.overview_svg:
        out.append("- `overview.svg`: loss/eval, LR and grad norm with a line where each finding began")
    out += [
        f"- `log_tail.txt`: the last {len(ev.log_tail)} log lines",
        "- `config.json`: the run's config entry and what the source reported (secrets redacted)",
    ]
    if ev.review is not None:
        out.append("- `reviewer.md`, `reviewer.json`: the reviewer's prompt and answer")
    if ev.action is not None:
        out.append("- `action.json`: the action about to be taken")
    out += ["- `manifest.json`: size and sha256 of every file", ""]
    return "\n".join(out)


def _finding(f: Finding) -> str:
    state = "active" if f.active else "cleared"
    where = f"from step {_num(f.onset_step)}"
    if f.step != f.onset_step:
        where += f", detected at step {_num(f.step)}"
    line = f"- **{f.kind}** [{f.severity}, {state}] on `{f.metric}` {where}: {f.message}"
    if f.evidence:
        line += "\n  - numbers: " + ", ".join(f"{k} = {_val(v)}" for k, v in f.evidence.items())
    return line


def _val(v: Any) -> str:
    return _num(v) if isinstance(v, float | int) and not isinstance(v, bool) else str(v)


def _num(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.6g}"
