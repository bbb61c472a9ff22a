"""Good / Bad / Ugly per run, and Next experiments across runs: sentences tied to the run's own numbers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from monitor.diagnosis import Confidence, Hypothesis
from monitor.diagnosis.facts import fmt
from monitor.diagnosis.rl import reward_curve
from monitor.model import Severity
from monitor.report.ranking import Primary, Ranked
from monitor.report.runs import RunSummary, stability

#: Causes whose fix is operational (inspect the job), not a change to try in training.
_OPERATIONAL = frozenset({"stalled", "throughput_regression"})

_UGLY = ("nan", "divergence", "crashed", "grad_explosion", "eval_degradation", "overfit", "stalled")


@dataclass
class Verdicts:
    good: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    ugly: list[str] = field(default_factory=list)


def _trend(r: RunSummary) -> tuple[float, float, float] | None:
    """(first, last, relative slope over the last fifth) of the training loss."""
    c = r.facts.loss
    if c is None:
        return None
    v = c.finite()
    if len(v) < 10:
        return None
    first = float(np.median(v.values[:3]))
    last = float(np.median(v.values[-3:]))
    k = max(5, len(v) // 5)
    xs, ys = v.steps[-k:], v.values[-k:]
    if xs[-1] == xs[0] or not last:
        return first, last, 0.0
    start = float(np.median(ys[:3]))
    if not start:
        return first, last, 0.0
    slope = float(np.polyfit(xs - xs[0], ys, 1)[0]) * (xs[-1] - xs[0]) / abs(start)
    return first, last, slope


def _eval_worse(r: RunSummary) -> bool:
    """The eval metrics got worse than their best (an overfitting hypothesis or an eval finding says so)."""
    return any(h.cause_id == "overfitting" for h in r.hypotheses) or any(
        f.kind in ("overfit", "eval_degradation") and f.severity >= Severity.WARN for f in r.problems
    )


def _plain_loss(r: RunSummary) -> bool:
    """A training loss whose fall means learning: positive throughout, and no reward curve beside it (a
    policy-gradient loss hovers around zero and says little about progress)."""
    c = r.facts.loss
    return c is not None and bool(np.all(c.finite().values > 0)) and reward_curve(r.facts) is None


def judge_run(r: RunSummary) -> Verdicts:
    """What improves and is healthy (good), what limits the run (bad), clear failures with causes (ugly)."""
    v = Verdicts()
    if r.error:
        v.ugly.append(f"could not be read: {r.error}")
        return v
    t = _trend(r)
    if t is not None:
        first, last, slope = t
        if last < first:
            v.good.append(f"training loss fell {fmt(first)} → {fmt(last)} ({(last - first) / abs(first):+.0%})")
        if slope < -0.05 and _plain_loss(r) and not any(f.kind in ("divergence", "nan") for f in r.problems):
            if _eval_worse(r):
                v.bad.append(
                    f"training loss still falling at the end ({slope:+.0%} over the last fifth) while eval got worse: "
                    "more steps would widen the gap, not help"
                )
            else:
                v.bad.append(
                    f"still improving at the end (loss {slope:+.0%} over the last fifth): likely under-trained"
                )
    for c in (r.facts.eval_up, r.facts.eval_loss):
        if c is not None and len(c.finite()) >= 2:
            e = c.finite()
            up = c is r.facts.eval_up
            i = int(np.argmax(e.values) if up else np.argmin(e.values))
            v.good.append(f"{c.key} best {fmt(float(e.values[i]))} at {r.facts.where(float(e.steps[i]))}")
            break
    spikes = [f for f in r.findings if f.kind == "spike"]
    if len(spikes) >= 2:
        at = ", ".join(fmt(f.onset_step) for f in spikes[:5])
        v.bad.append(f"unstable: {len(spikes)} loss spikes ({r.step_key} {at})")
    noise = stability(r)
    if noise is not None and noise > 0.2:
        v.bad.append(f"noisy loss: step-to-step changes are {noise:.0%} of its level (small batch or a high LR?)")
    if any(f.kind == "converged" for f in r.findings):
        v.good.append("converged: flat loss after the LR decayed")
    if r.verdict == "healthy":
        v.good.append("no warning or bad finding")
    for h in r.hypotheses:
        text = f"{h.cause} [{h.confidence}] — {h.evidence}"
        if h.incidental:
            v.bad.append(text)
        elif any(f.kind in _UGLY and f.severity >= Severity.BAD for f in r.problems) or h.cause_id == "crash":
            v.ugly.append(text)
        else:
            v.bad.append(text)
    for f in r.problems:
        if f.kind in _UGLY and f.severity >= Severity.BAD and not r.hypotheses:
            v.ugly.append(f"{f.kind} from {r.facts.where(f.onset_step)}: {f.message} (cause unclear)")
    if r.facts.lr is not None and len(r.facts.lr.finite()):
        lr = r.facts.lr.finite().values
        if lr.max() > 0 and lr[-1] < 0.05 * lr.max() and t is not None and t[2] < -0.05:
            v.bad.append(
                f"the LR decayed to {fmt(float(lr[-1]))} while the loss still fell: the schedule may be too short"
            )
    return v


def across_runs(ranked: list[Ranked], verdicts: dict[int, Verdicts], primary: Primary | None) -> Verdicts:
    """Good / Bad / Ugly over all runs: the best result, the limits they share, the failures and their causes."""
    v = Verdicts()
    runs = [x.run for x in ranked if x.run.error is None]
    if not runs:
        v.ugly.append("no run could be read")
        return v
    best = next((x for x in ranked if x.best is not None), None)
    if best is not None and primary is not None:
        v.good.append(f"best {primary.key}: {fmt(best.best or 0.0)} by {best.run.name}")
    healthy = [r for r in runs if r.verdict == "healthy"]
    if healthy:
        v.good.append(f"{len(healthy)} of {len(runs)} runs healthy")
    still = [r for r in runs if any("under-trained" in b for b in verdicts[id(r)].bad)]
    if still:
        v.bad.append(
            f"{len(still)} of {len(runs)} runs still improving at the end: " + ", ".join(r.name for r in still[:4])
        )
    causes: dict[str, list[str]] = {}
    for r in runs:
        for h in r.hypotheses:
            if not h.incidental and h.confidence >= Confidence.MEDIUM:
                causes.setdefault(h.cause, []).append(r.name)
                break
    for cause, names in sorted(causes.items(), key=lambda kv: -len(kv[1])):
        (v.ugly if any(r.verdict == "bad" for r in runs if r.name in names) else v.bad).append(
            f"{cause}: {len(names)} run{'s' if len(names) > 1 else ''} ({', '.join(names[:4])})"
        )
    unread = [x.run for x in ranked if x.run.error is not None]
    if unread:
        v.ugly.append(f"{len(unread)} target(s) could not be read")
    return v


@dataclass(frozen=True)
class Experiment:
    what: str
    why: str


def next_experiments(ranked: list[Ranked], helped: list[str], primary: Primary | None) -> list[Experiment]:
    """3 to 6 ablation-style follow-ups, each tied to the evidence that suggests it.

    First each run's surest problem (medium or high), one per run before any run gets a second, so one
    broken run does not crowd out the others; then, for a flagged run with only a low-confidence guess,
    the experiment that tests the guess and the data that would settle it; then what the runs share."""
    out: list[Experiment] = []

    def training_first(h: Hypothesis) -> tuple[bool, tuple[bool, int, float]]:
        # What to change in the training before what to watch in the job (a stall or a slowdown asks for
        # a stack dump, not a rerun); then the surest and most specific.
        return h.cause_id not in _OPERATIONAL, h.rank_key()

    sure = [
        sorted(
            (h for h in x.run.hypotheses if not h.incidental and h.confidence >= Confidence.MEDIUM),
            key=training_first,
            reverse=True,
        )[:2]
        for x in ranked
    ]
    same: dict[tuple[str, str], tuple[int, list[str]]] = {}

    def surest(depth: int) -> None:
        picks = [(x, hs[depth]) for x, hs in zip(ranked, sure, strict=True) if len(hs) > depth]
        picks.sort(key=lambda xh: training_first(xh[1]), reverse=True)  # ties stay in rank order
        for x, h in picks:
            key = (h.cause_id, h.fix)
            if key in same:  # the same advice for another run: one experiment naming both
                i, names = same[key]
                names.append(x.run.name)
                first = out[i]
                out[i] = Experiment(f"{', '.join(names)}: {h.fix}", f"{first.why}; {x.run.name}: {h.evidence}")
            elif len(out) < 4:
                same[key] = (len(out), [x.run.name])
                out.append(
                    Experiment(f"{x.run.name}: {h.fix}; expect {h.expect}", f"{h.cause} ({h.confidence}): {h.evidence}")
                )

    surest(0)
    for x, hs in zip(ranked, sure, strict=True):
        guess = next((h for h in x.run.hypotheses if not h.incidental), None)
        if hs or guess is None or x.run.verdict == "healthy" or len(out) >= 4:
            continue
        settle = f"; what would settle it: {guess.settle}" if guess.settle else ""
        out.append(
            Experiment(
                f"{x.run.name}: test the guess: {guess.fix}; expect {guess.expect}",
                f"{guess.cause} ({guess.confidence}): {guess.evidence}{settle}",
            )
        )
    surest(1)
    for s in helped[:2]:
        out.append(Experiment(f"push further along {s.split(':')[0]} and ablate it alone on the best run", s))
    best = next((x for x in ranked if x.best is not None), None)
    for x in ranked:
        t = _trend(x.run)
        # Only a run with no problem to fix first: a broken schedule or an instability makes the slope moot.
        problem = any(not h.incidental and h.confidence >= Confidence.MEDIUM for h in x.run.hypotheses)
        if t is not None and t[2] < -0.05 and not problem and not _eval_worse(x.run) and _plain_loss(x.run):
            out.append(
                Experiment(
                    f"{x.run.name}: train about 2x longer (same schedule stretched)",
                    f"its training loss was still falling {t[2]:+.0%} over the last fifth",
                )
            )
            break
    if best is not None and best.stability is not None and len(out) < 6:
        out.append(
            Experiment(
                f"{best.run.name}: repeat with 2 more seeds before trusting its lead",
                f"best {primary.key if primary else 'metric'} {fmt(best.best or 0)}; its loss noise is "
                f"{best.stability:.1%} of its level step to step",
            )
        )
    if len(out) < 3 and best is not None:
        lr = best.run.facts.lr
        if lr is not None and len(lr.finite()):
            peak = float(lr.finite().values.max())
            out.append(
                Experiment(
                    f"{best.run.name}: LR sweep at 0.5x / 2x its peak ({fmt(peak / 2)}, {fmt(peak * 2)})",
                    f"one LR ({fmt(peak)}) tried; the LR is the first hyperparameter to bracket",
                )
            )
    if len(out) < 3 and best is not None:
        out.append(
            Experiment(
                f"{best.run.name}: ablate batch size (half and double, LR scaled with it)",
                "no config difference between runs explains the ranking yet",
            )
        )
    if len(out) < 3:
        out.append(
            Experiment(
                "log eval metrics, the LR and the grad norm at every logging step",
                "the evidence needed to rank and diagnose these runs is incomplete",
            )
        )
    return out[:6]


def top_causes(hs: tuple[Hypothesis, ...], n: int = 2) -> str:
    return "; ".join([f"{h.cause} [{h.confidence}]" for h in hs if not h.incidental][:n])
