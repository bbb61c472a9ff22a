"""Ranking runs by a primary metric, the config keys that differ between them, and which go with better results."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.model import Role
from monitor.report.runs import RunSummary, stability
from monitor.roles import classify

_TASK = re.compile(r"acc|accuracy|success|exact[_ ]?match|(?:^|[/_])em(?:$|[/_])|pass@")
_REWARD = re.compile(r"(?:^|[/_])(?:rewards?|ep_rew\w*|episode_reward\w*|return)(?:$|[/_])")
_HIGHER = re.compile(r"acc|success|exact|match|f1|map|bleu|rouge|auc|reward|return|score|top[_ ]?[15]|pass@")
#: Config keys that describe a run's bookkeeping, not its recipe.
_NOT_RECIPE = re.compile(
    r"^(?:global_step|best_metric|best_model_checkpoint|total_flos|trial_\w+|is_\w+|num_input_tokens_seen|"
    r"log_history|output_dir|logging_dir|run_name|wandb\.\w+|_wandb.*|.*\bpath\b.*|.*_dir)$"
)


#: The config diff shows at most this many keys.
MAX_DIFF_KEYS = 30


@dataclass(frozen=True)
class Primary:
    """The metric runs are ranked by, and whether higher is better."""

    key: str
    higher: bool
    why: str


@dataclass(frozen=True)
class Ranked:
    run: RunSummary
    last: float | None
    best: float | None
    best_step: float | None
    stability: float | None


def choose_primary(runs: list[RunSummary], forced: str | None = None) -> Primary | None:
    """Eval accuracy/success/exact-match, else eval loss, else reward, else the training loss (or `forced`).

    Keys come from the runs' curves and from their summaries (a W&B run may report its eval result only
    there)."""
    if forced:
        return Primary(forced, bool(_HIGHER.search(forced.lower())) and "loss" not in forced.lower(), "--primary")
    seen: Counter[str] = Counter()
    for r in runs:
        seen.update({k for k, c in r.metrics.items() if len(c.finite())} | set(r.summary))
    keys = sorted(seen, key=lambda k: (-seen[k], len(k), k))

    def pick(pred: Any) -> str | None:
        return next((k for k in keys if pred(k)), None)

    k = pick(lambda k: classify(k) is Role.EVAL_UP and _TASK.search(k.lower()))
    if k:
        return Primary(k, True, "an eval accuracy / success / exact-match metric")
    k = pick(lambda k: classify(k) is Role.EVAL_UP)
    if k:
        return Primary(k, True, "an eval metric where higher is better")
    k = pick(lambda k: classify(k) is Role.EVAL_LOSS)
    if k:
        return Primary(k, False, "the eval loss (no eval accuracy logged)")
    k = pick(lambda k: _REWARD.search(k.lower()))
    if k:
        return Primary(k, True, "the reward (no eval metric logged)")
    k = pick(lambda k: classify(k) is Role.TRAIN_LOSS)
    if k:
        return Primary(k, False, "the training loss (nothing else logged)")
    return None


def rank(runs: list[RunSummary], primary: Primary | None) -> list[Ranked]:
    """Runs best first by their best value of the primary metric (runs without it last).

    A run that logged the metric only in its summary is ranked by that value (no best step)."""
    out = []
    for r in runs:
        c = r.metrics.get(primary.key) if primary else None
        last = best = best_step = None
        if c is not None and len(c.finite()):
            v = c.finite()
            last = float(v.values[-1])
            i = int(np.argmax(v.values) if primary and primary.higher else np.argmin(v.values))
            best, best_step = float(v.values[i]), float(v.steps[i])
        elif primary is not None and primary.key in r.summary:
            last = best = r.summary[primary.key]
        out.append(Ranked(r, last, best, best_step, stability(r)))
    sign = -1.0 if primary and primary.higher else 1.0
    return sorted(out, key=lambda x: (x.best is None, sign * x.best if x.best is not None else 0.0))


def config_diff(runs: list[RunSummary]) -> dict[str, list[Any]]:
    """Config keys that two runs set to different values, with the value per run (None where unset)."""
    keys = sorted({k for r in runs for k in r.config if not _NOT_RECIPE.match(k)})
    out: dict[str, list[Any]] = {}
    for k in keys:
        vals = [r.config.get(k) for r in runs]
        # Two runs that set it differently; a key only some runs report is not a difference by itself.
        if len({repr(v) for v in vals if v is not None}) > 1:
            out[k] = vals
    return dict(list(out.items())[:MAX_DIFF_KEYS])


def what_helped(ranked: list[Ranked], diff: dict[str, list[Any]], primary: Primary | None) -> list[str]:
    """Sentences on which differing config keys went with better results (rank correlation, 3+ runs)."""
    if primary is None:
        return []
    order = {id(x.run): i for i, x in enumerate(ranked) if x.best is not None}
    out = []
    for k in diff:
        pairs = []
        for x in ranked:
            v = x.run.config.get(k)
            if id(x.run) in order and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                pairs.append((float(v), order[id(x.run)]))
        if len(pairs) < 3 or len({p[0] for p in pairs}) < 2:
            continue
        rho = _spearman([p[0] for p in pairs], [-p[1] for p in pairs])
        if abs(rho) >= 0.6:
            how = "higher" if rho > 0 else "lower"
            out.append(
                f"`{k}`: {how} values went with a better {primary.key} "
                f"(rank correlation {rho:+.2f} over {len(pairs)} runs)"
            )
    return out


def _spearman(x: list[float], y: list[float]) -> float:
    rx = np.argsort(np.argsort(x)).astype(float)
    ry = np.argsort(np.argsort(y)).astype(float)
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])
