"""Pure display helpers: badges, numbers, durations and sparklines as plain strings.

No Textual here, so the words and glyphs a person reads are unit-testable on their own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from monitor.hub import HubSnapshot, RunSnapshot
from monitor.model import Finding, Verdict

GLYPH = {Verdict.HEALTHY: "✓", Verdict.UNSURE: "?", Verdict.BAD: "✗"}
STALE_GLYPH = "~"
ERROR_GLYPH = "!"
_ERROR_STATES = ("error", "auth failed", "failed to start")
_SPARK = "▁▂▃▄▅▆▇█"


def badge_kind(run: RunSnapshot) -> str:
    """Which badge a run shows: `healthy`, `unsure`, `bad`, `stale`, `waiting` or `error`.

    The snapshot's `shown_verdict` (decided in `monitor.runstate` for every front end) wins: a run
    not read now is stale or unreadable, one not read yet is waiting, never healthy.
    """
    shown = getattr(run, "shown_verdict", "")
    if run.verdict is Verdict.BAD:
        return "bad"  # a bad run stays bad even when its source went quiet
    if shown == "unreadable" or run.state in _ERROR_STATES:
        return "error"
    if run.stale or shown == "stale":
        return "stale"
    if shown == "waiting":
        return "waiting"
    return str(run.verdict)


def badge_text(run: RunSnapshot) -> str:
    """Glyph and word, never colour alone: `✓ healthy`, `? unsure`, `✗ bad`, `~ stale`, `… waiting`, `! error`."""
    kind = badge_kind(run)
    if kind == "error":
        return f"{ERROR_GLYPH} {'unreadable' if getattr(run, 'shown_verdict', '') == 'unreadable' else 'error'}"
    if kind == "stale":
        return f"{STALE_GLYPH} stale"
    if kind == "waiting":
        return "… waiting"
    return f"{GLYPH[run.verdict]} {run.verdict}"


def theme_variable(kind: str) -> str:
    """The theme variable holding a badge kind's colour."""
    return "verdict-stale" if kind in ("stale", "error", "waiting") else f"verdict-{kind}"


def num(x: float | None, digits: int = 4) -> str:
    """A metric value in few characters: `2.314`, `3.1e-04`, `NaN`, `—`."""
    if x is None:
        return "—"
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    ax = abs(x)
    if ax != 0 and (ax < 1e-3 or ax >= 1e5):
        return f"{x:.{max(1, digits - 2)}e}"
    return f"{x:.{digits}g}"


def num_fit(x: float | None, width: int) -> str:
    """`num`, shortened towards `width` characters: fewer digits, a bare exponent (`8.52e-05` → `8.52e-5`)."""
    text = num(x)
    for digits in (4, 3, 2):
        if len(text) <= width:
            break
        text = num(x, digits)
        if "e" in text:
            mant, exp = text.split("e")
            text = f"{mant}e{int(exp)}"
    return text


def si(x: float, digits: int = 2) -> str:
    """A tick label: `0`, `0.25`, `150`, `1.2k`, `3.5M`, `3e-4`, `5.1e12`, `NaN`."""
    if not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Inf" if x > 0 else "-Inf")
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 1e12 or ax < 1e-2:
        mant, exp = f"{x:.{max(0, digits - 1)}e}".split("e")
        mant = mant.rstrip("0").rstrip(".") if "." in mant else mant
        return f"{mant}e{int(exp)}"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if ax >= scale:
            return _short(x / scale, digits) + suffix
    return _short(x, digits)


def _short(x: float, digits: int) -> str:
    """`x` with about `digits` significant digits (at least its integer part), no trailing zeros."""
    ax = abs(x)
    whole = len(str(int(ax))) if ax >= 1 else 0
    decimals = max(0, digits - whole) if ax >= 1 else digits + max(0, -math.floor(math.log10(ax)) - 1)
    text = f"{x:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """SI labels for axis ticks, with just enough digits that neighbours read differently."""
    labels = [si(t) for t in ticks]
    for digits in range(2, 10):
        labels = [si(t, digits) for t in ticks]
        if len(set(labels)) == len(labels):
            break
    return labels


def step_text(step: float | None, total: float | None = None) -> str:
    """`1,234` or `1,234/10,000`."""
    if step is None:
        return "—"
    s = f"{step:,.0f}" if float(step).is_integer() else f"{step:,.2f}"
    if total:
        s += f"/{total:,.0f}"
    return s


def rate_text(steps_per_s: float | None) -> str:
    """Steps per second, short."""
    if steps_per_s is None:
        return "—"
    if steps_per_s == 0:
        return "0/s"
    if steps_per_s >= 100:
        return f"{steps_per_s:,.0f}/s"
    if steps_per_s >= 1:
        return f"{steps_per_s:.1f}/s"
    return f"{steps_per_s * 60:.1f}/m"


def age_text(seconds: float | None) -> str:
    """Time since the last update: `3s`, `4m`, `2h`, `—`."""
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.0f}d"


def pct_text(pct: float | None) -> str:
    """A percentage or N/A (a GPU that cannot be read is N/A, never an error)."""
    return "N/A" if pct is None else f"{pct:.0f}%"


def trend_values(values: Sequence[float], width: int = 12) -> list[float]:
    """A whole series in `width` buckets (each its mean; NaN when it held a NaN/Inf), oldest first."""
    vals = list(values)
    if len(vals) <= width:
        return vals
    out = []
    for i in range(width):
        bucket = vals[i * len(vals) // width : (i + 1) * len(vals) // width] or [vals[-1]]
        out.append(math.nan if not all(map(math.isfinite, bucket)) else sum(bucket) / len(bucket))
    return out


def sparkline(values: Sequence[float], width: int = 12) -> str:
    """Block-character trend of a series over its whole length; a non-finite value shows as `!`."""
    if not values:
        return ""
    vals = trend_values(values, width)
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return "!" * len(vals)
    lo, hi = min(finite), max(finite)
    span = hi - lo
    out = []
    for v in vals:
        if not math.isfinite(v):
            out.append("!")
        elif span <= 1e-12 * max(1.0, abs(hi)):
            out.append(_SPARK[3])
        else:
            out.append(_SPARK[min(7, int((v - lo) / span * 7.999))])
    return "".join(out)


def progress_bar(done: float, total: float, width: int = 10) -> str:
    """`▕███░░▏43%` in `width` characters: how much of a source has been read."""
    frac = max(0.0, min(1.0, done / total)) if total else 0.0
    pct = f"{frac * 100:.0f}%"
    cells = max(1, width - len(pct) - 2)
    full = round(frac * cells)
    return f"▕{'█' * full}{'░' * (cells - full)}▏{pct}"


def _size(n: float, scale: int) -> str:
    return f"{n / scale:.0f}" if n >= 10 * scale or n == 0 else f"{n / scale:.1f}"


def read_amount(done: float, total: float) -> str:
    """`120/280 MB`: how much of a source has been read, in the unit of its size."""
    for scale, unit in ((1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "kB")):
        if total >= scale:
            return f"{_size(done, scale)}/{_size(total, scale)} {unit}"
    return f"{done:.0f}/{total:.0f} B"


def byte_rate_text(per_s: float) -> str:
    """`45 MB/s`, `3.2 GB/s`, `800 kB/s`: a read rate, short."""
    for scale, unit in ((1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "kB")):
        if per_s >= scale:
            return f"{_size(per_s, scale)} {unit}/s"
    return f"{per_s:.0f} B/s"


def live_rate(steps_per_s: float | None, age: float | None, interval: float | None = None) -> float | None:
    """Steps/s as it is now: a run that logged nothing for a while decays towards 0.

    `interval` is the run's usual time between logged rows (a run may log every 100 steps). Until
    the gap is three of those (and 5 s) the rate stands; then it falls as 1/age, to 0 once the gap
    is twenty intervals (and a minute): nothing came, so nothing is being done that we can see.
    """
    if steps_per_s is None or age is None:
        return steps_per_s
    usual = interval if interval and interval > 0 else 1.0 / steps_per_s if steps_per_s > 0 else 1.0
    quiet = max(5.0, 3.0 * usual)
    if age <= quiet:
        return steps_per_s
    if age > max(60.0, 20.0 * usual):
        return 0.0
    return steps_per_s * quiet / age


_STALL_AGE = re.compile(r"no new step for [\d.]+(?: ?(?:s|min|h|d)\b)?")


def live_message(f: Finding, last_update: float | None, now: float | None) -> str:
    """A finding's message with a stall's age counted up to now (the detector wrote it once)."""
    if f.kind != "stalled" or not f.active or last_update is None or now is None:
        return f.message
    return _STALL_AGE.sub(f"no new step for {age_text(now - last_update)}", f.message, count=1)


def finding_line(f: Finding, last_update: float | None = None, now: float | None = None) -> str:
    """One line per finding: severity glyph, kind, where it began and the explanation."""
    glyph = {"bad": "✗", "warn": "?", "info": "i"}.get(str(f.severity), "·")
    if not f.active:
        glyph = "○"
    where = f"step {step_text(f.onset_step)}"
    if f.step != f.onset_step:
        where += f"→{step_text(f.step)}"
    state = "" if f.active else " (cleared)"
    return f"{glyph} {f.kind} from {where}{state}: {live_message(f, last_update, now)}"


def counts_line(snap: HubSnapshot) -> str:
    """`7 runs · ✓ 3 healthy · ? 2 unsure · ✗ 1 bad · ~ 1 stale`."""
    kinds = [badge_kind(r) for r in snap.runs]
    parts = [f"{len(snap.runs)} run{'s' if len(snap.runs) != 1 else ''}"]
    parts.append(f"✓ {kinds.count('healthy')} healthy")
    parts.append(f"? {kinds.count('unsure')} unsure")
    parts.append(f"✗ {kinds.count('bad')} bad")
    stale = kinds.count("stale") + kinds.count("error")
    if kinds.count("waiting"):
        parts.append(f"… {kinds.count('waiting')} waiting")
    if stale:
        parts.append(f"~ {stale} stale")
    return " · ".join(parts)


def worst_finding(snap: HubSnapshot) -> tuple[RunSnapshot, Finding] | None:
    """The active finding that matters most across all runs (worst severity, then latest)."""
    best: tuple[RunSnapshot, Finding] | None = None
    for run in snap.runs:
        for f in run.findings:
            if not f.active or f.kind == "converged":
                continue
            if best is None or (f.severity, run.verdict) > (best[1].severity, best[0].verdict):
                best = (run, f)
    return best


def sort_key(run: RunSnapshot, index: int) -> tuple[int, int, int]:
    """Worst first: bad, unsure, stale/error, healthy; ties keep the listed order."""
    kind = badge_kind(run)
    rank = {"bad": 0, "unsure": 1, "error": 2, "stale": 2, "waiting": 3, "healthy": 3}[kind]
    return (rank, 0, index)


def column_sort_key(run: RunSnapshot, column: str, index: int) -> tuple[float | str, ...]:
    """Sort key for a table column; `badge` is worst first, and a NaN loss sorts as the worst loss."""
    if column == "name":
        return (run.name.lower(), index)
    if column == "state":
        return (run.state, index)
    if column == "step":
        return (-(run.last_step if run.last_step is not None else -math.inf), index)
    if column == "speed":
        return (-(run.steps_per_s or 0.0), index)
    if column == "loss":
        loss = run.loss if run.loss is not None and math.isfinite(run.loss) else math.inf
        return (loss, index)
    if column == "age":
        return (-(run.last_update if run.last_update is not None else -math.inf), index)
    return sort_key(run, index)
