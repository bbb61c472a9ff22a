"""The question put to a reviewer: the run's state in numbers, the findings, and what exactly is uncertain."""

from __future__ import annotations

import math

from monitor.actions.runref import RunRef
from monitor.diagnosis import diagnose_analysis
from monitor.model import Finding, Role, Severity, Verdict
from monitor.outward import outward, ref_redactor

#: Why a finding leaves the monitor unsure, in words a reviewer can weigh.
_UNCERTAIN = {
    "plateau": "the loss is flat but not diverging: the run may leave the plateau by itself, or it is stuck",
    "spike": "the loss spiked; it is not yet clear whether the run recovers or keeps spiking",
    "stalled": "no new step arrived for a while: the job may hang (a dead rank, I/O) or just be slow "
    "(evaluation, checkpointing)",
    "eval_degradation": "the eval metric got somewhat worse: it may be noise or the start of real degradation",
    "overfit": "train and eval loss are drifting apart: early overfitting or noise",
    "divergence": "the loss is rising a little, not yet clearly diverging",
    "grad_explosion": "gradient norms are large: a transient or the start of instability",
    "grad_vanishing": "gradient norms are tiny: learning may have stopped",
    "lr_anomaly": "the learning-rate schedule looks unusual",
    "gpu_idle": "the GPUs are mostly idle while the run logs",
    "overflow_skip": "mixed-precision overflow is making the optimizer skip steps",
    "source_error": "the monitor cannot currently read the run",
    # RL / LLM lens (detectors/rl.py)
    "kl_anomaly": "the policy's KL divergence is out of its usual range: updates too conservative or too aggressive",
    "entropy_collapse": "the policy's entropy is falling towards zero: it may stop exploring",
    "clip_anomaly": "most policy updates hit the clip range: the steps may be too large",
    "reward_hacking": "the reward rises while the task metric falls: reward hacking or a verifier problem, or noise",
}
LOSS_POINTS = 10
EVAL_POINTS = 3


def build_prompt(ref: RunRef, *, question: str | None = None) -> str:
    """The reviewer prompt for one run, redacted and free of escapes. Read `ref.analysis` on the loop's thread.

    It leaves this machine: names, paths and metric keys are scrubbed of secrets before it is sent.
    """
    return outward(_prompt_text(ref, question), keep_newlines=True, redactor=ref_redactor(ref))


def _prompt_text(ref: RunRef, question: str | None) -> str:
    a = ref.analysis
    info = a.info
    j = a.judgement()
    step = a.detectors.last_step
    out = [
        "You are reviewing a machine-learning training run for an on-call engineer who must decide",
        "whether to stop it. Judge only from the numbers below.",
        "",
        f"Run: {info.name}",
        f"Where: {ref.where} (log format {info.format}; step axis: {info.step_key})",
        f"State: {info.state}; {_progress(step, info.total_steps)}",
        f"Monitor's verdict: {j.verdict} -> {str(j.decision).upper()}: {j.reason}",
        "",
    ]
    loss_key = a.key_for(Role.TRAIN_LOSS)
    if loss_key is not None:
        out += _last_values(ref, loss_key, LOSS_POINTS, "training loss")
    for role in (Role.EVAL_LOSS, Role.EVAL_DOWN, Role.EVAL_UP):
        key = a.key_for(role)
        if key is not None:
            better = "higher is better" if role is Role.EVAL_UP else "lower is better"
            out += _last_values(ref, key, EVAL_POINTS, f"eval metric, {better}")
    extras = []
    for role, label in ((Role.LR, "learning rate"), (Role.GRAD_NORM, "grad norm")):
        key = a.key_for(role)
        value = a.store.last(key) if key else None
        if key and value is not None:
            extras.append(f"{label} ({key}) {_num(value)}")
    if extras:
        out += ["Latest " + "; ".join(extras), ""]
    baseline = ref.run_config.baseline if ref.run_config else {}
    if baseline:
        out.append("Baseline from the config (an eval clearly worse than this is bad):")
        out += [f"  {k} = {_num(v)}" for k, v in baseline.items()]
        out.append("")
    else:
        out += ["No baseline is configured for this run.", ""]
    findings = [f for f in j.findings if f.active or f.severity >= Severity.WARN]
    if findings:
        out.append("Findings of the monitor's detectors:")
        out += [f"- {_finding(f)}" for f in findings]
    else:
        out.append("The detectors found nothing.")
    hyps = diagnose_analysis(a)
    if hyps:
        out += ["", "The monitor's root-cause hypotheses (suspicions, surest first; weigh them, do not trust them):"]
        out += [f"- [{h.confidence}] {h.cause}: {h.evidence}" for h in hyps[:4]]
    out += ["", "What is uncertain: " + (question or _uncertain(j.verdict, j.reason, findings)), ""]
    out += [
        "Answer with exactly one word on the first line: STOP (the run is broken or wasting compute),",
        "CONTINUE (it is training normally) or WAIT (it cannot be told yet; look again later).",
        "Give a short reason, one or two sentences, on the second line.",
    ]
    return "\n".join(out) + "\n"


def _progress(step: float | None, total: float | None) -> str:
    if step is None:
        return "no step logged yet"
    if total:
        return f"step {_num(step)} of {_num(total)} ({100 * step / total:.1f}%)"
    return f"step {_num(step)} (total steps unknown)"


def _last_values(ref: RunRef, key: str, n: int, what: str) -> list[str]:
    series = ref.analysis.store.metrics.get(key)
    if series is None or series.count == 0:
        return []
    steps, values = series.recent()
    pairs = list(zip(steps[-n:].tolist(), values[-n:].tolist(), strict=True))
    return [
        f"Last {len(pairs)} values of {key} ({what}), as step: value:",
        *(f"  {_num(s)}: {_num(v)}" for s, v in pairs),
        "",
    ]


def _finding(f: Finding) -> str:
    state = "" if f.active else ", cleared"
    ev = ", ".join(f"{k}={_num(v) if isinstance(v, float) else v}" for k, v in f.evidence.items())
    where = f"from step {_num(f.onset_step)}" + (f" (seen at {_num(f.step)})" if f.step != f.onset_step else "")
    return f"{f.kind} [{f.severity}{state}] {f.metric} {where}: {f.message}" + (f" ({ev})" if ev else "")


def _uncertain(verdict: Verdict, reason: str, findings: list[Finding]) -> str:
    doubts = []
    for f in findings:
        if f.active and f.severity >= Severity.WARN:
            text = _UNCERTAIN.get(f.kind, f.message)
            if text not in doubts:
                doubts.append(text)
    if verdict is Verdict.UNSURE:
        return "; ".join(doubts) if doubts else reason
    if verdict is Verdict.BAD:
        return f"the monitor judged the run bad ({reason}); the engineer wants a second opinion before stopping it"
    return f"the monitor sees nothing wrong ({reason}); the engineer wants a second opinion anyway"


def _num(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.6g}"
