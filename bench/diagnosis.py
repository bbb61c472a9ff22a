"""Diagnosis benchmark: is the top root-cause hypothesis the fault that was injected?

    python bench/diagnosis.py [--split dev|test|all] [--jobs N] [--list N] [DIR …]

Cases are the generated fault runs of `bench/make_faults.py` (default `bench/.cache/faults/`, made
first when absent): each `label.toml` names its injected `fault` (or none for the healthy twin). Each
case's first channel file is read exactly as `runwatch check` reads it (`check_target`, as of the
label's `check_time`) and diagnosed with `monitor.diagnosis`.

Scored per injected cause:
- *top-1*: the top hypothesis is one of the causes accepted for that fault (`ACCEPTED`);
- *high wrong*: a high-confidence hypothesis whose cause is not accepted for the fault (on a healthy
  twin: any high-confidence hypothesis). Target: never. Incidental hypotheses (something that did
  happen but does not limit the run, e.g. a rare fp16 overflow skip that the healthy base shares)
  are not counted as wrong; they are counted apart.
Healthy twins also count how many got any hypothesis at all (false alarms).
The split is `bench/detection.py`'s: dev families for tuning, test families held out.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.faults.plan import DEV_FAMILIES  # noqa: E402
from monitor.check import check_target  # noqa: E402
from monitor.config import Config  # noqa: E402
from monitor.diagnosis import Confidence, diagnose_analysis  # noqa: E402

GENERATED = ROOT / "bench" / ".cache" / "faults"

#: Causes a careful engineer would accept as the root cause of each injected fault.
ACCEPTED: dict[str, set[str]] = {
    "nan_loss": {"nonfinite"},
    "inf_loss": {"nonfinite"},
    "nan_subloss": {"nonfinite"},
    "nan_eval": {"eval_data_bad"},
    "fp16_burst": {"fp16_overflow"},
    "lr_grows": {"lr_too_high", "warmup_never_ends", "lr_jump"},
    "lr_jump": {"lr_too_high", "lr_jump"},
    "warmup_never_ends": {"warmup_never_ends", "lr_too_high"},
    "no_decay": {"no_decay"},
    "schedule_reset": {"schedule_reset"},
    "spike": {"bad_batch"},
    "grad_explosion": {"exploding_gradients"},
    "grad_vanishing": {"vanishing_gradients"},
    "plateau": {"not_learning"},
    "overfit": {"overfitting"},
    "eval_shift": {"overfitting"},
    "stalled": {"stalled"},
    "crashed": {"crash"},
    "healthy": set(),
    "none": set(),
}


def run_case(d: str) -> dict[str, Any]:
    """Diagnose one case (in a worker process)."""
    path = Path(d)
    label = tomllib.loads((path / "label.toml").read_text())
    fault = str(label.get("fault") or "healthy")
    fault = "healthy" if fault == "none" else fault
    fam = str(label.get("family", "?"))
    out: dict[str, Any] = {"case": path.name, "fault": fault, "split": "dev" if fam in DEV_FAMILIES else "test"}
    f = str(label["files"][0])
    try:
        a = check_target(str(path / f), Config(), now=label.get("check_time"))
        hs = diagnose_analysis(a)
    except Exception as e:  # a benchmark reports every failure and goes on
        out["error"] = f"{type(e).__name__}: {e}"
        return out
    out["hyps"] = [(h.cause_id, int(h.confidence), h.incidental, h.one_line()[:200]) for h in hs]
    return out


def wrong_high(fault: str, hyps: list[tuple[str, int, bool, str]]) -> bool:
    ok = ACCEPTED.get(fault, set())
    return any(c == int(Confidence.HIGH) and cid not in ok and not inc for cid, c, inc, _ in hyps)


def score(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    per: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"n": 0, "top1": 0, "high_wrong": 0, "incidental": 0, "any": 0, "errors": 0}
    )
    for r in results:
        s = per[r["fault"]]
        s["n"] += 1
        if "error" in r:
            s["errors"] += 1
            continue
        ok = ACCEPTED.get(r["fault"], set())
        hyps = r["hyps"]
        s["any"] += any(not inc for _, _, inc, _ in hyps)
        s["incidental"] += any(inc for _, _, inc, _ in hyps)
        if hyps and hyps[0][0] in ok:
            s["top1"] += 1
        if wrong_high(r["fault"], hyps):
            s["high_wrong"] += 1
    return dict(per)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="*", type=Path, help="folders of generated cases (default bench/.cache/faults)")
    ap.add_argument("--split", choices=("dev", "test", "all"), default="dev")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (at most 2)")
    ap.add_argument("--list", type=int, default=20, help="list at most this many misses")
    a = ap.parse_args(argv)
    roots = a.dirs or [GENERATED]
    if not a.dirs and not GENERATED.exists():
        from bench.make_faults import generate

        generate(GENERATED, jobs=min(a.jobs, 2))
    cases = sorted(str(lab.parent) for r in roots for lab in r.glob("*/label.toml"))
    with ProcessPoolExecutor(max(1, min(a.jobs, 2))) as pool:
        results = list(pool.map(run_case, cases, chunksize=4))
    results = [r for r in results if a.split == "all" or r["split"] == a.split]
    per = score(results)
    print(f"diagnosis on {len(results)} generated cases (split {a.split})")
    print(f"{'fault':<20}{'n':>4}{'top-1':>8}{'high wrong':>12}{'problem hyp':>13}{'incidental':>12}")
    tot = {"n": 0, "top1": 0, "high_wrong": 0}
    for fault in sorted(per):
        s = per[fault]
        top = "-" if fault == "healthy" else f"{s['top1'] / s['n']:.0%}"
        err = f"  errors {s['errors']}" if s["errors"] else ""
        print(f"{fault:<20}{s['n']:>4}{top:>8}{s['high_wrong']:>12}{s['any']:>13}{s['incidental']:>12}{err}")
        for k in tot:
            tot[k] += s[k] if fault != "healthy" or k != "top1" else 0
    faulty = tot["n"] - per.get("healthy", {"n": 0})["n"]
    tot["high_wrong"] -= per.get("healthy", {"high_wrong": 0})["high_wrong"]
    print(f"{'all faults':<20}{faulty:>4}{tot['top1'] / max(faulty, 1):>8.0%}{tot['high_wrong']:>12}")
    if "healthy" in per:
        h = per["healthy"]
        print(f"healthy twins: {h['n']}, with a problem hypothesis {h['any']}, high-confidence wrong {h['high_wrong']}")
    shown = 0
    for r in results:
        ok = ACCEPTED.get(r["fault"], set())
        hyps = r.get("hyps", [])
        healthy = r["fault"] == "healthy"
        top_ok = (bool(hyps) and hyps[0][0] in ok) if not healthy else all(inc for _, _, inc, _ in hyps)
        if (not top_ok or wrong_high(r["fault"], hyps)) and shown < a.list:
            shown += 1
            text = r.get("error") or " | ".join(h[3] for h in hyps[:3]) or "no hypothesis"
            print(f"- {r['case']} ({r['fault']}): {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
