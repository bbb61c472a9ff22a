"""report.md and report.html from one `Report`: the same sections, the HTML self-contained (inline CSS and SVG)."""

from __future__ import annotations

import base64
from html import escape
from typing import Any

from monitor.diagnosis.facts import fmt
from monitor.report.model import Report


def _v(x: float | None) -> str:
    return "-" if x is None else fmt(float(f"{x:.4g}"))


def _cell(v: Any) -> str:
    return "-" if v is None else str(v)


def ranking_rows(rep: Report) -> list[list[str]]:
    rows = []
    for i, x in enumerate(rep.ranked, 1):
        st = "-" if x.stability is None else f"{x.stability:.1%}"
        where = f" @ {_v(x.best_step)}" if x.best_step is not None else ""
        rows.append(
            [str(i), x.run.name, _v(x.last), _v(x.best) + where, st, x.run.verdict, rep.causes[id(x.run)] or "-"]
        )
    return rows


RANK_HEAD = ["#", "run", "last", "best", "noise", "verdict", "likely causes"]


def markdown(rep: Report) -> str:
    o: list[str] = [f"# runwatch report — {len(rep.runs)} run{'s' if len(rep.runs) != 1 else ''}", ""]
    o.append(f"Generated {rep.when}. Targets: {', '.join(f'`{t}`' for t in rep.targets)}.")
    o.append(f"Step axis: {rep.axis_note}.")
    o.append(
        "Hypotheses are suspicions with a confidence (high = direct evidence at the right step), never certainties."
    )
    o.append("")
    if rep.primary:
        o += [
            f"## Ranking by `{rep.primary.key}` ({'higher' if rep.primary.higher else 'lower'} is better; "
            f"{rep.primary.why})",
            "",
        ]
    else:
        o += ["## Ranking (no common metric found)", ""]
    o.append("| " + " | ".join(RANK_HEAD) + " |")
    o.append("|" + "---|" * len(RANK_HEAD))
    for row in ranking_rows(rep):
        o.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    o.append("")
    if rep.diff:
        o += [
            "### Config differences",
            "",
            "| key | " + " | ".join(x.run.name for x in rep.ranked) + " |",
            "|---|" + "---|" * len(rep.ranked),
        ]
        order = [rep.runs.index(x.run) for x in rep.ranked]
        for k, vals in rep.diff.items():
            o.append(f"| `{k}` | " + " | ".join(_cell(vals[i]) for i in order) + " |")
        o.append("")
        o += [f"- {s}" for s in rep.helped] or [
            "- no difference lines up with the ranking yet (fewer than 3 runs or no trend)"
        ]
        o.append("")
    if len(rep.runs) > 1:
        o += ["## Across runs", ""]
        for title, items in (("Good", rep.overall.good), ("Bad", rep.overall.bad), ("Ugly", rep.overall.ugly)):
            o.append(f"**{title}**")
            o += [f"- {s}" for s in items] or ["- nothing"]
            o.append("")
    if rep.overlay_file:
        o += [f"![overlay of the best runs]({rep.overlay_file})", ""]
    o += ["## Next experiments", ""]
    for i, e in enumerate(rep.experiments, 1):
        o.append(f"{i}. **{e.what}** — because {e.why}")
    o.append("")
    for r, v, pic in zip(rep.runs, rep.verdicts, rep.pictures, strict=True):
        o += [
            f"## {r.name} — {r.verdict}",
            "",
            f"`{r.target}` · {r.state} · step axis `{r.step_key}` · last step {_v(r.last_step)} · {r.reason}",
            "",
        ]
        if pic:
            o += [f"![{r.name} overview]({pic})", ""]
        for title, items in (("Good", v.good), ("Bad", v.bad), ("Ugly", v.ugly)):
            o.append(f"**{title}**")
            o += [f"- {s}" for s in items] or ["- nothing"]
            o.append("")
        if r.hypotheses:
            o.append("**Diagnosis**")
            o.append("")
            for h in r.hypotheses:
                o.append(f"- **{h.cause}** ({h.confidence}{', incidental' if h.incidental else ''}): {h.evidence}")
                o.append(f"  - fix: {h.fix}")
                o.append(f"  - expect: {h.expect}")
                o.append(f"  - verify: {h.verify}")
                if h.settle:
                    o.append(f"  - would settle it: {h.settle}")
            o.append("")
    return "\n".join(o) + "\n"


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1000px;color:#222;
padding:0 12px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3;word-break:break-all}code{background:#f3f3f3;padding:0 3px}.muted{color:#666}
.healthy{color:#009E73}.unsure{color:#b07800}.bad{color:#D55E00}
.good{border-left:4px solid #009E73}.badl{border-left:4px solid #E69F00}.ugly{border-left:4px solid #D55E00}
.box{padding:4px 10px;margin:6px 0;background:#fafafa}.pic{margin:8px 0}.hyp{margin:6px 0 10px 0}
""".strip()

_GLYPH = {"healthy": "✓", "unsure": "?", "bad": "✗"}


def _img(svg: str, alt: str) -> str:
    data = base64.b64encode(svg.encode()).decode()
    return f'<img class="pic" alt="{escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def html(rep: Report) -> str:
    e = escape
    o: list[str] = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>runwatch report — {len(rep.runs)} runs</title><style>{_CSS}</style></head><body>",
    ]
    o.append(f"<h1>runwatch report — {len(rep.runs)} run{'s' if len(rep.runs) != 1 else ''}</h1>")
    o.append(
        f'<p class="muted">Generated {e(rep.when)}. Targets: {e(", ".join(rep.targets))}. '
        f"Step axis: {e(rep.axis_note)}. Hypotheses are suspicions with a confidence (high = direct "
        "evidence at the right step), never certainties.</p>"
    )
    if rep.primary:
        o.append(
            f'<h2>Ranking by <code>{e(rep.primary.key)}</code></h2><p class="muted">'
            f"{'higher' if rep.primary.higher else 'lower'} is better; {e(rep.primary.why)}</p>"
        )
    else:
        o.append('<h2>Ranking</h2><p class="muted">no common metric found</p>')
    o.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in RANK_HEAD) + "</tr>")
    for row in ranking_rows(rep):
        cls = row[5]
        cells = [e(c) for c in row]
        cells[5] = f'<span class="{e(cls)}">{_GLYPH.get(cls, "~")} {e(cls)}</span>'
        o.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    o.append("</table>")
    if rep.diff:
        order = [rep.runs.index(x.run) for x in rep.ranked]
        o.append(
            "<h3>Config differences</h3><table><tr><th>key</th>"
            + "".join(f"<th>{e(x.run.name)}</th>" for x in rep.ranked)
            + "</tr>"
        )
        for k, vals in rep.diff.items():
            o.append(
                f"<tr><td><code>{e(k)}</code></td>" + "".join(f"<td>{e(_cell(vals[i]))}</td>" for i in order) + "</tr>"
            )
        o.append("</table><ul>" + "".join(f"<li>{e(s)}</li>" for s in rep.helped) + "</ul>")
    if len(rep.runs) > 1:
        o.append("<h2>Across runs</h2>")
        for title, items, cls in (
            ("Good", rep.overall.good, "good"),
            ("Bad", rep.overall.bad, "badl"),
            ("Ugly", rep.overall.ugly, "ugly"),
        ):
            o.append(
                f'<div class="box {cls}"><b>{title}</b><ul>'
                + ("".join(f"<li>{e(s)}</li>" for s in items) or "<li>nothing</li>")
                + "</ul></div>"
            )
    if rep.overlay_svg:
        o.append(_img(rep.overlay_svg, "overlay of the best runs"))
    o.append("<h2>Next experiments</h2><ol>")
    o += [f"<li><b>{e(x.what)}</b> — because {e(x.why)}</li>" for x in rep.experiments]
    o.append("</ol>")
    for r, v, svg in zip(rep.runs, rep.verdicts, rep.svgs, strict=True):
        o.append(
            f'<h2>{e(r.name)} — <span class="{e(r.verdict)}">{_GLYPH.get(r.verdict, "~")} {e(r.verdict)}</span></h2>'
        )
        o.append(
            f'<p class="muted"><code>{e(r.target)}</code> · {e(r.state)} · step axis <code>{e(r.step_key)}</code>'
            f" · last step {e(_v(r.last_step))} · {e(r.reason)}</p>"
        )
        if svg:
            o.append(_img(svg, f"{r.name} overview"))
        for title, items, cls in (("Good", v.good, "good"), ("Bad", v.bad, "badl"), ("Ugly", v.ugly, "ugly")):
            o.append(
                f'<div class="box {cls}"><b>{title}</b><ul>'
                + ("".join(f"<li>{e(s)}</li>" for s in items) or "<li>nothing</li>")
                + "</ul></div>"
            )
        if r.hypotheses:
            o.append("<h3>Diagnosis</h3>")
            for h in r.hypotheses:
                o.append(
                    f'<div class="hyp"><b>{e(h.cause)}</b> <span class="muted">({e(str(h.confidence))}'
                    f"{', incidental' if h.incidental else ''})</span>: {e(h.evidence)}<ul>"
                    f"<li>fix: {e(h.fix)}</li><li>expect: {e(h.expect)}</li><li>verify: {e(h.verify)}</li>"
                    + (f"<li>would settle it: {e(h.settle)}</li>" if h.settle else "")
                    + "</ul></div>"
                )
    o.append("</body></html>")
    return "\n".join(o) + "\n"
