"""Detection benchmark: `check` over every labelled case of a corpus; recall, false alarms, precision, delay.

    python bench/detection.py ../shared/corpus/real

Each case directory with a `label.toml` (schema in the corpus README) is read file by file with the
same code as `runwatch check`, replayed as of each file's modification time. A finding *alarms* when
its kind is a problem (not `converged`/`overflow_skip`); cleared findings count, since they alarmed
while live. An alarm matches a labelled event of the same file when its kind is the event's verdict
or one of its `acceptable_alternatives`; alarms matching nothing are false alarms.
"""

from __future__ import annotations

import sys
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.check import check_target
from monitor.config import Config
from monitor.model import Finding, Verdict

NOT_ALARMS = {"converged", "overflow_skip", "source_error"}
_SKIP_SUFFIXES = {".toml", ".yaml", ".yml"}


@dataclass
class Event:
    case: str
    file: str
    kind: str
    onset: float
    alternatives: tuple[str, ...] = ()
    optional: bool = False
    found_step: float | None = None
    found_kind: str | None = None


@dataclass
class CaseResult:
    case: str
    label: str
    files: dict[str, Verdict] = field(default_factory=dict)
    false_alarms: list[tuple[str, Finding]] = field(default_factory=list)
    alarms: int = 0
    errors: list[str] = field(default_factory=list)


def _events(case: str, label: dict, files: list[str]) -> list[Event]:
    out = []
    for ev in label.get("events", []):
        targets = [ev["file"]] if "file" in ev else files
        for f in targets:
            out.append(
                Event(
                    case,
                    f,
                    ev["verdict"],
                    float(ev["onset_step"]),
                    tuple(ev.get("acceptable_alternatives", ())),
                    bool(ev.get("acceptable_to_miss", False)),
                )
            )
    return out


def run_case(case_dir: Path) -> tuple[CaseResult, list[Event]]:
    label = tomllib.loads((case_dir / "label.toml").read_text())
    files = [f for f in label.get("files", []) if Path(f).suffix not in _SKIP_SUFFIXES]
    result = CaseResult(case_dir.name, label["verdict"])
    events = _events(case_dir.name, label, files)
    for fname in files:
        path = case_dir / fname
        try:
            a = check_target(str(path), Config(), now=path.stat().st_mtime)
        except Exception as e:  # a benchmark reports every failure and goes on
            result.errors.append(f"{fname}: {e}")
            continue
        result.files[fname] = a.judgement().verdict
        for f in a.findings():
            if f.kind in NOT_ALARMS:
                continue
            result.alarms += 1
            matched = False
            for ev in events:
                if ev.file != fname or (f.kind != ev.kind and f.kind not in ev.alternatives):
                    continue
                matched = True
                if ev.found_step is None or (ev.found_kind != ev.kind and f.kind == ev.kind):
                    ev.found_step, ev.found_kind = f.step, f.kind
            if not matched:
                result.false_alarms.append((fname, f))
    return result, events


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    corpus = Path(argv[0])
    cases = sorted(p.parent for p in corpus.glob("*/label.toml"))
    if not cases:
        print(f"no case with a label.toml under {corpus}", file=sys.stderr)
        return 2
    results: list[CaseResult] = []
    events: list[Event] = []
    for c in cases:
        r, evs = run_case(c)
        results.append(r)
        events.extend(evs)

    print(f"Detection benchmark on {corpus} ({len(cases)} labelled cases, {len(events)} labelled events)\n")
    print(f"{'case':46} {'label':17} {'final verdicts':24} alarms  false")
    for r in results:
        verdicts = ",".join(str(v) for v in r.files.values()) or "-"
        print(f"{r.case:46} {r.label:17} {verdicts:24} {r.alarms:6d} {len(r.false_alarms):6d}")
        for e in r.errors:
            print(f"    ERROR {e}")
    print()
    print(f"{'event (case / file)':62} {'kind':17} {'onset':>9} {'found as':17} {'at':>9} {'delay':>8}")
    for ev in events:
        where = f"{ev.case}/{ev.file}"[:62]
        opt = " (optional)" if ev.optional else ""
        if ev.found_step is None:
            print(f"{where:62} {ev.kind:17} {ev.onset:9g} {'MISSED' + opt:17}")
        else:
            delay = ev.found_step - ev.onset
            print(f"{where:62} {ev.kind:17} {ev.onset:9g} {ev.found_kind or '':17} {ev.found_step:9g} {delay:8g}")
    print()
    by_kind: dict[str, list[Event]] = defaultdict(list)
    for ev in events:
        by_kind[ev.kind].append(ev)
    print(f"{'kind':17} {'events':>6} {'required':>8} {'found':>5} {'recall':>7} {'median delay':>13}")
    for kind, evs in sorted(by_kind.items()):
        req = [e for e in evs if not e.optional]
        found = [e for e in evs if e.found_step is not None]
        found_req = [e for e in req if e.found_step is not None]
        delays = sorted(e.found_step - e.onset for e in found if e.found_step is not None)
        med = f"{delays[len(delays) // 2]:g}" if delays else "-"
        rec = f"{len(found_req) / len(req):.0%}" if req else "-"
        print(f"{kind:17} {len(evs):6d} {len(req):8d} {len(found):5d} {rec:>7} {med:>13}")
    req_all = [e for e in events if not e.optional]
    found_all = [e for e in req_all if e.found_step is not None]
    alarms = sum(r.alarms for r in results)
    false = sum(len(r.false_alarms) for r in results)
    healthy = [r for r in results if r.label == "healthy"]
    bad_healthy = [r.case for r in healthy if Verdict.BAD in r.files.values()]
    fa_healthy = max((len(r.false_alarms) for r in healthy), default=0)
    print()
    print(
        f"overall recall (required events, right kind): {len(found_all)}/{len(req_all)} = "
        f"{len(found_all) / max(1, len(req_all)):.0%}"
    )
    print(f"alarms: {alarms}, false alarms: {false}, precision: {(alarms - false) / max(1, alarms):.0%}")
    print(
        f"healthy cases: {len(healthy)}, with a bad final verdict: {len(bad_healthy)} {bad_healthy or ''}, "
        f"most false alarms on one healthy case: {fa_healthy}"
    )
    nan_events = [e for e in events if e.kind == "nan" and not e.optional]
    nan_ok = all(e.found_step is not None and e.found_step - e.onset <= 1 for e in nan_events)
    print(f"nan events caught within 1 step of onset: {'yes' if nan_ok else 'NO'} ({len(nan_events)} events)")
    if false:
        print("\nfalse alarms:")
        for r in results:
            for fname, f in r.false_alarms:
                print(f"  {r.case}/{fname}: {f.kind} at {f.step:g}: {f.message}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
