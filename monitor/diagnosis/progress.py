"""Causes in what the run learns and how it runs: not learning, overfitting, a bad eval set, stalls,
slowdowns and crashes.

Confidence rules:
- not learning (never for a loss that fell well below its start and came back: that run learned, then
  lost it): high only when the config names the class or vocabulary count K and the loss sits within
  5% of ln(K) with no gain (chance level, measured) over ten or more points (a shorter log, every point at
  ln(K), is medium); medium when ln(K) is inferred from the first loss, or
  the loss gained under 2% over the run, or it stopped improving while the LR was still scheduled; low for
  a flat loss at a constant or decayed LR (its noise floor or convergence read the same).
- overfitting: high when the overfit detector found it, the eval metric got 25% or more worse than its
  best over three or more evaluations, by more than its own evaluation-to-evaluation noise, while the
  training loss kept falling, with no LR anomaly and the task metric not holding; medium with a smaller
  or less certain gap; low otherwise.
- a bad eval sample: see `eval_data`.
- stalled, throughput: medium at most (a hang, an end without an end marker and a slow filesystem read
  alike in the metrics); a stack dump settles it. Low when the log stopped after the training loss went
  non-finite for good: the NaN explains the end.
- crash: high when the log names it (out of memory, disk full); medium otherwise.
"""

from __future__ import annotations

import math
import re

import numpy as np

from monitor.diagnosis import bands
from monitor.diagnosis.facts import Curve, RunFacts, evalish, fmt
from monitor.diagnosis.model import Confidence, Hypothesis
from monitor.diagnosis.schedule import lr_jumped
from monitor.model import Severity

_CLASS_KEYS = ("num_classes", "n_classes", "num_labels", "nc", "classes", "vocab_size", "n_vocab", "padded_vocab_size")
_STEP_TIME = re.compile(
    r"^(?:train/)?(?:time|iter_time|step_time|time_per_step|elapsed_time_per_iteration|dt|time_ms)$"
)


def classes_of(config: dict) -> tuple[str, int] | None:
    for k in _CLASS_KEYS:
        v = config.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v >= 2:
            return k, v
        if isinstance(v, list) and len(v) >= 2 and k in ("classes", "names"):
            return k, len(v)
    return None


def not_learning(f: RunFacts) -> Hypothesis | None:
    """Loss stuck near the uniform-guess value ln(K), flat from the start, or flat since a step with the LR still up."""
    if f.loss is None:
        return None
    lo = f.loss.finite()
    if len(lo) < 4:
        return None
    # A short log (a few epochs) is judged at chance level only when every logged point is there.
    short = len(lo) < 10
    first = float(np.median(lo.values[:3]))
    tail = float(np.median(lo.values[-max(3, len(lo) // 10) :]))
    gain = (first - tail) / abs(first) if first else 0.0
    # A loss that fell well below its start and came back learned, then lost it (a collapse or a
    # divergence): "not learning at all" is the wrong reading of a flat start-to-end.
    smooth = np.median(np.lib.stride_tricks.sliding_window_view(lo.values, min(5, len(lo))), axis=1)
    lost = first > 0 and float(smooth.min()) < 0.8 * first
    k = classes_of(dict(f.config))
    if k is not None:
        chance = math.log(k[1])
        near = _all_near(lo.values, chance) if short else abs(tail - chance) <= 0.05 * chance + 0.02
        if near and abs(gain) < 0.05 and not lost:
            return Hypothesis(
                "not_learning",
                "the model is likely not learning at all (chance level)",
                Confidence.MEDIUM if short else Confidence.HIGH,
                f"loss {fmt(tail)} at the end, {fmt(first)} at the start: "
                f"ln({k[0]}={k[1]}) = {fmt(chance)} is a uniform guess",
                "check the labels match the inputs, that gradients reach the weights (no frozen params, "
                "optimizer over the right parameters) and the LR is not ~0",
                f"the loss falls below {fmt(chance)} within the first few hundred steps",
                "overfit one small batch first: its loss must go to ~0",
                steps=(float(lo.steps[0]), float(lo.steps[-1])),
                weight=0.8,
            )
    if k is None and abs(gain) < 0.05 and not lost:
        guess = _chance_from_first(first)
        if guess is not None and (
            _all_near(lo.values, math.log(guess)) if short else abs(tail - math.log(guess)) <= 0.05 * math.log(guess)
        ):
            return Hypothesis(
                "not_learning",
                "the model is likely not learning at all (the loss stays at a uniform guess)",
                Confidence.MEDIUM,
                f"loss {fmt(first)} at the start and {fmt(tail)} at the end; the first loss is ln({guess}) = "
                f"{fmt(math.log(guess))}, a uniform guess over {guess} classes/tokens (inferred, not from the config)",
                "check the labels match the inputs, that gradients reach the weights and the LR is not ~0",
                f"the loss falls below {fmt(math.log(guess))} within the first few hundred steps",
                "overfit one small batch first: its loss must go to ~0",
                steps=(float(lo.steps[0]), float(lo.steps[-1])),
                settle="the number of classes or the vocab size in the config would confirm the chance level",
                weight=0.7,
            )
    if short:
        return None
    plateaus = [x for x in f.of("plateau", warn=True) if x.active and not evalish(x.metric)]
    if abs(gain) < 0.02 and len(lo) >= 20 and not lost:
        return Hypothesis(
            "not_learning",
            "the model is possibly not learning at all",
            Confidence.MEDIUM,
            f"loss {fmt(first)} at the start and {fmt(tail)} at the end ({gain:+.1%})",
            "check the optimizer covers the model's parameters, the LR is not ~0 and the labels are right",
            "the loss falls clearly within the first 10% of the run",
            "overfit one small batch first: its loss must go to ~0",
            steps=(float(lo.steps[0]),),
            settle=""
            if k
            else "the number of classes or the vocab size in the config would tell whether this is chance level",
            weight=0.6,
        )
    if not plateaus or f.of("divergence", warn=True):
        return None  # a loss that left its band upwards is not a loss that stopped learning
    p = plateaus[0]
    since = float(p.evidence.get("since_step", p.onset_step))
    lr_txt, conf = "", Confidence.LOW
    if f.lr is not None and len(f.lr.finite()):
        lv = f.lr.finite()
        at, top = lv.at(since), float(lv.values.max())
        if at == at and top > 0:
            # Flat at a constant LR may be that LR's noise floor: only an LR that was still moving
            # (a schedule) makes a flat loss look stuck.
            constant = float(np.min(lv.since(since).values)) >= 0.97 * float(np.max(lv.since(since).values))
            if at < 0.3 * top:
                lr_txt = f"; the LR was {fmt(at)} ({at / top:.0%} of its peak): it may simply have converged"
            elif constant:
                lr_txt = f"; the LR stayed at {fmt(at)}: it may be that LR's noise floor (decaying it would tell)"
            else:
                lr_txt = f"; the LR was {fmt(at)} ({at / top:.0%} of its peak) and still scheduled: not convergence"
                conf = Confidence.MEDIUM
    return Hypothesis(
        "not_learning",
        "learning likely stopped (the updates no longer reach the weights that matter)",
        conf,
        f"{p.message}{lr_txt}",
        "check what changed at that step: a frozen/unfrozen module, an optimizer rebuilt over the wrong "
        "parameters, a data loader repeating one shard",
        f"the loss keeps falling after {f.where(since)} as it did before",
        f"compare the parameter update norms per module before and after {f.where(since)}",
        steps=(since,),
        settle="" if conf > Confidence.LOW else "the LR and per-module update norms around that step would settle it",
        weight=0.55,
    )


def _all_near(values: np.ndarray, chance: float) -> bool:
    """Every value within 5% of the chance-level loss."""
    return bool(np.all(np.abs(values - chance) <= 0.05 * chance))


#: Class and vocabulary counts common enough that a first loss of ln(K) names them.
_COMMON_K = (2, 3, 5, 10, 100, 1000, 65, 256, 32000, 32768, 50257, 50304, 128256, 151936)


def _chance_from_first(first: float) -> int | None:
    """K when the first loss is within 1% of ln(K) for a common class/vocab count K."""
    for k in _COMMON_K:
        if abs(first - math.log(k)) <= 0.01 * math.log(k):
            return k
    return None


def _eval_curve(f: RunFacts) -> tuple[Curve, bool] | None:
    """The eval metric to judge (lower-is-better flag)."""
    if f.eval_loss is not None and len(f.eval_loss.finite()) >= 4:
        return f.eval_loss.finite(), True
    if f.eval_up is not None and len(f.eval_up.finite()) >= 4:
        return f.eval_up.finite(), False
    return None


def overfitting(f: RunFacts) -> Hypothesis | None:
    """Eval gets worse from its best while the training loss still falls; says the epoch it began."""
    found = f.of("overfit", "eval_degradation", warn=True)
    ec = _eval_curve(f)
    if ec is None:
        return None
    ev, lower = ec
    vals = ev.values if lower else -ev.values
    b = int(np.argmin(vals))
    after = len(ev) - b - 1
    if after < 2:
        return None
    best, last = float(ev.values[b]), float(ev.values[-1])
    worse = (vals[-1] - vals[b]) / max(abs(vals[b]), 1e-12)
    if worse < 0.03:
        return None
    bstep = float(ev.steps[b])
    falls = None
    if f.loss is not None and len(f.loss.finite()):
        lo = f.loss.finite()
        a, z = lo.at(bstep), float(np.median(lo.values[-max(3, len(lo) // 20) :]))
        if a == a and a > 0:
            falls = (a, z)
    gap = f"; the training loss went {fmt(falls[0])} -> {fmt(falls[1])} meanwhile" if falls else ""
    train_falls = falls is not None and falls[1] <= 0.95 * falls[0]
    lr_moved = bool(f.of("lr_anomaly", warn=True)) or (f.lr is not None and lr_jumped(f) is not None)
    # An eval loss that rises while the task metric holds is overconfidence more than memorising.
    task_held, task_key = "", ""
    for task, higher in ((f.eval_up, True), (f.eval_down, False)):
        if not lower or task_held or task is None or len(task.finite()) < 2:
            continue
        tv = task.finite()
        at_best, end = tv.at(bstep), float(tv.values[-1])
        if at_best == at_best and (end >= at_best if higher else end <= at_best):
            task_held = f"; but {tv.key} held ({fmt(at_best)} -> {fmt(end)}): overconfidence more than memorising"
            task_key = tv.key
    overfit_found = any(x.kind == "overfit" for x in found)
    beyond = _beyond_eval_noise(ev.values, b)
    if train_falls and worse >= 0.25 and after >= 3 and overfit_found and not lr_moved and not task_held and beyond:
        conf = Confidence.HIGH
    elif falls is not None and falls[1] > 1.05 * falls[0]:
        return None  # the training loss rose too: the run got worse overall, which is not overfitting
    elif (train_falls or found) and (worse >= 0.1 or (overfit_found and worse >= 0.05)):
        conf = Confidence.MEDIUM
    else:
        conf = Confidence.LOW
    return Hypothesis(
        "overfitting",
        "eval loss rising while the task metric holds: overconfident predictions (mild overfitting)"
        if task_held
        else "the model is likely overfitting (memorising the training set)"
        if conf
        else "possibly overfitting",
        conf,
        f"{ev.key} best {fmt(best)} at {f.where(bstep)}, {fmt(last)} at the end "
        f"({worse:+.1%} worse over {after} evals){gap}{task_held}",
        f"select checkpoints on {task_key}, not on {ev.key}; if {ev.key} itself matters (calibrated "
        f"probabilities, box precision), keep the checkpoint of {f.where(bstep)} or regularise more (weight "
        "decay, augmentation; label smoothing for a classifier)"
        if task_held
        else f"stop at (or keep the checkpoint of) {f.where(bstep)}; "
        "more data or augmentation, more weight decay or dropout",
        f"{task_key} as good or better, {ev.key} no longer rising after {f.where(bstep)}"
        if task_held
        else f"{ev.key} stays near {fmt(best)} or improves after {f.where(bstep)}; the train/eval gap stops widening",
        f"compare {task_key} and {ev.key} per checkpoint on the rerun"
        if task_held
        else "rerun with early stopping on the eval metric and compare its best value",
        steps=(bstep,),
        settle="" if conf else "a training loss logged beside the eval metric would tell overfitting from a data shift",
        weight=0.5 if train_falls else 0.3,
    )


def _beyond_eval_noise(values: np.ndarray, best: int) -> bool:
    """The last evaluation is further from the best than `bands.Z` times the evaluation-to-evaluation noise
    (robust spread of successive differences, in log units for a positive metric)."""
    v = np.log(values) if bool(np.all(values > 0)) else values
    d = np.diff(v)
    if len(d) < 3:
        return False
    noise = 1.4826 * float(np.median(np.abs(d - np.median(d))))
    return abs(float(v[-1] - v[best])) > bands.Z * noise


def eval_data(f: RunFacts) -> Hypothesis | None:
    """NaN only in the eval metrics while training stays finite: a bad validation sample or eval numerics.

    High when every evaluation since the first non-finite one (two or more) is non-finite and the training
    loss stayed finite; one such evaluation is medium; one that came back is low (eval numerics).
    """
    nans = [x for x in f.of("nan", warn=True) if evalish(x.metric)]
    if not nans or any(not evalish(x.metric) for x in f.of("nan", warn=True)):
        return None
    x = nans[0]
    ok = f.loss is not None and len(f.loss.since(x.onset_step).finite()) == len(f.loss.since(x.onset_step))
    if not x.active:  # a bad sample would be bad at every evaluation; this one came back
        return Hypothesis(
            "eval_numerics",
            "a transient non-finite eval value (evaluation numerics, e.g. fp16 in eval)",
            Confidence.LOW,
            x.message,
            "evaluate in fp32 or bf16; guard divisions in the metric",
            "finite eval metrics at every evaluation",
            "rerun the evaluation of that checkpoint in fp32",
            steps=(x.onset_step,),
            settle="the per-sample eval losses of that checkpoint",
            weight=0.3,
        )
    c = f.others.get(x.metric)
    since = c.since(x.onset_step).values if c is not None else np.array([])
    # A bad sample is bad at every evaluation: two or more in a row, all non-finite, say so directly.
    every = len(since) >= 2 and not np.isfinite(since).any()
    seen = (
        f"; non-finite at all {len(since)} evaluations since"
        if every
        else "; one evaluation so far (the next one would tell a bad sample from a transient)"
    )
    return Hypothesis(
        "eval_data_bad",
        "likely a bad sample in the validation set (or unsafe numerics in evaluation)",
        Confidence.HIGH if ok and every else Confidence.MEDIUM,
        f"{x.message}{seen}" + ("; the training loss stayed finite" if ok else ""),
        "find the validation sample that gives a non-finite loss (evaluate per sample) and fix or drop it",
        "finite eval metrics at every evaluation",
        "evaluate the last checkpoint sample by sample",
        steps=(x.onset_step,),
        weight=0.8,
    )


def stalled(f: RunFacts) -> Hypothesis | None:
    """The steps stopped: a hung process, data loader or collective."""
    xs = [x for x in f.of("stalled", warn=True) if x.active]
    if not xs:
        return None
    x = xs[0]
    # The log stopping after the loss went non-finite is how a broken run ends (it died or was stopped):
    # the NaN explains it, and it is no separate hang to chase.
    dead = next(
        (y for y in f.of("nan", warn=True) if not evalish(y.metric) and y.onset_step <= x.onset_step and y.active),
        None,
    )
    if dead is not None:
        return Hypothesis(
            "stalled",
            "the log stopped after the loss went non-finite (the job likely died or was stopped there)",
            Confidence.LOW,
            f"{x.message}; {dead.metric} non-finite from {f.where(dead.onset_step)} and never finite again",
            "fix the non-finite loss first (see that hypothesis); check the job's exit status",
            "no stop after the fix",
            "the job's exit status or the scheduler's log at that time",
            steps=(x.onset_step,),
            settle="the job's exit status would tell a crash from a hang",
            weight=0.2,
        )
    slow = throughput_drop(f)
    ev = x.message + (f"; before that, {slow[3]}" if slow else "")
    return Hypothesis(
        "stalled",
        "steps stopped: the job possibly hung (data loader, a collective, I/O) or ended without an end marker"
        if not slow
        else "the data loader likely stalled (steps slowed, then stopped)",
        Confidence.MEDIUM,
        ev,
        "py-spy dump the process to see where it waits; use a timeout on the data loader/collectives; "
        "check the filesystem",
        "steps keep coming at their usual rate",
        "watch steps/s on the rerun; a stack dump at the stall shows the waiting call",
        steps=(x.onset_step,),
        settle="a stack dump of the hung process (py-spy dump --pid) would settle where it waits",
        weight=0.6,
    )


def _seconds_per_step(f: RunFacts) -> Curve | None:
    for k, c in f.others.items():
        if _STEP_TIME.match(k.lower()) and len(c.finite()) >= 20:
            return c.finite()
    t = f.times
    if t is None or len(t) < 20:
        return None
    ds, dt = np.diff(t.steps), np.diff(t.values)
    ok = (ds > 0) & (dt >= 0)
    if ok.sum() < 20:
        return None
    return Curve("seconds/step", t.steps[1:][ok], dt[ok] / ds[ok])


def throughput_drop(f: RunFacts) -> tuple[float, float, float, str] | None:
    """(step, before, after, sentence) when the time per step rose >= 1.5x and stayed there."""
    c = _seconds_per_step(f)
    if c is None:
        return None
    n = len(c)
    early = float(np.median(c.values[: n // 2]))
    late = float(np.median(c.values[-max(5, n // 5) :]))
    if not early > 0 or late < 1.5 * early:
        return None
    i = int(np.nonzero(c.values > 1.5 * early)[0][0])
    st = float(c.steps[i])
    return (
        st,
        early,
        late,
        f"time per step rose x{late / early:.3g} ({fmt(early)} -> {fmt(late)} {c.key}) from {f.where(st)}",
    )


def throughput(f: RunFacts) -> Hypothesis | None:
    d = throughput_drop(f)
    if d is None or f.of("stalled", warn=True):
        return None
    return Hypothesis(
        "throughput_regression",
        "throughput regressed (likely input pipeline, I/O or contention)",
        Confidence.MEDIUM if d[2] >= 2 * d[1] else Confidence.LOW,
        d[3],
        "profile one slow step (data loading vs compute); more data loader workers, local copies of the "
        "data, check GPU clocks/other jobs",
        f"time per step back near {fmt(d[1])}",
        "compare steps/s and GPU utilisation before and after the change",
        steps=(d[0],),
        settle="GPU utilisation and data-loader wait time per step would tell input-bound from compute-bound",
        weight=0.4,
    )


_CRASHES = (
    (
        re.compile(r"out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED", re.I),
        "GPU out of memory",
        Confidence.HIGH,
        "halve the per-device batch size and use gradient accumulation to keep the effective batch; "
        "activation checkpointing; shorter sequences",
        "peak GPU memory below the card's capacity; the run passes the crash step",
    ),
    (
        re.compile(r"\bKilled\b|signal 9|SIGKILL|exit(?:ed with)? code:? ?(?:-9|137)|oom-kill", re.I),
        "killed (host RAM OOM killer or the scheduler)",
        Confidence.MEDIUM,
        "check dmesg / the scheduler's log; lower data loader workers or prefetch, memory-map the dataset",
        "host memory stays flat; the run passes the crash step",
    ),
    (
        re.compile(r"DataLoader|dataloader worker", re.I),
        "the data loader failed (a worker died or timed out)",
        Confidence.MEDIUM,
        "check the workers' memory (/dev/shm, host RAM) and the data files; fewer workers or a larger timeout",
        "the loader keeps feeding batches past the crash step",
    ),
    (
        re.compile(r"NCCL|Watchdog|timed out|timeout", re.I),
        "a distributed collective timed out (a rank hung or died)",
        Confidence.MEDIUM,
        "find the rank that stopped first; raise the timeout only after fixing it",
        "all ranks reach the crash step together",
    ),
    (
        re.compile(r"No space left|Disk quota", re.I),
        "the disk filled up",
        Confidence.HIGH,
        "free space or move checkpoints/logs; keep fewer checkpoints",
        "checkpoints save without error",
    ),
)


def crashed(f: RunFacts) -> Hypothesis | None:
    xs = [x for x in f.of("crashed") if x.severity >= Severity.WARN]
    if not xs:
        return None
    x = xs[-1]
    text = " ".join([x.message, str(x.evidence.get("last_line", "")), str(x.evidence.get("exit_code", ""))])
    for pat, what, conf, fix, expect in _CRASHES:
        if pat.search(text):
            return Hypothesis(
                "crash",
                f"the run crashed: {what}",
                conf,
                f"{x.message} ({f.where(x.step)})",
                fix,
                expect,
                "rerun the failing configuration for a few hundred steps past the crash step",
                steps=(x.step,),
                weight=0.9,
            )
    return Hypothesis(
        "crash",
        "the run crashed (cause in the traceback)",
        Confidence.MEDIUM,
        f"{x.message} ({f.where(x.step)})",
        "read the traceback's last frame; fix and resume from the last checkpoint",
        "the run passes the crash step",
        "resume and watch the step where it crashed",
        steps=(x.step,),
        settle="the full traceback and the process's exit code",
        weight=0.8,
    )
