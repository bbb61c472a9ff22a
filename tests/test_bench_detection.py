"""The detection benchmark's protocol (bench/detection.py): the split, the matching rules, the report."""

from __future__ import annotations

import json
from pathlib import Path

from bench import detection as d
from bench.make_faults import generate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "real"


def _case(verdict: str, events: list[dict], files: tuple[str, ...] = ("a.log",)) -> d.Case:
    label = {"verdict": verdict, "events": events, "files": list(files)}
    return d.Case("c", "/nowhere", "real", "dev", verdict, label, [(f, "x") for f in files])


def _alarm(kind: str, step: float, severity: str = "bad") -> d.Alarm:
    return d.Alarm(kind, severity, "loss", step, f"{kind} at {step}")


def _score(case: d.Case, alarms: list[d.Alarm], verdict: str = "bad") -> d.Score:
    checked = {f: d.Checked("c", f, verdict, alarms, 0.0, 1000.0, 10.0) for f, _ in case.files}
    sc = d.Score()
    d.score_case(case, checked, sc)
    return sc


def test_real_cases_split_by_repository() -> None:
    a = d.real_split({"source_repo": "someone/repo"})
    assert a == d.real_split({"source_repo": "someone/repo", "source_path": "other.log"})
    assert a == d.real_split({"source": "someone/repo:train.log@abc"})
    splits = {d.real_split({"source_repo": f"owner/repo{i}"}) for i in range(20)}
    assert splits == {"dev", "test"}


def test_an_alarm_at_or_after_onset_less_one_interval_finds_the_event() -> None:
    case = _case("divergence", [{"verdict": "divergence", "onset_step": 500}])
    sc = _score(case, [_alarm("divergence", 495)])
    (ev,) = sc.events
    assert ev.found == 495 and not sc.false
    s = d.summarise(sc)
    assert s["recall"] == 1.0 and s["kinds"]["divergence"]["median_delay"] == -5


def test_an_early_alarm_is_false_and_does_not_find_the_event() -> None:
    case = _case("divergence", [{"verdict": "divergence", "onset_step": 500}])
    sc = _score(case, [_alarm("divergence", 300)])
    assert sc.events[0].found is None
    assert len(sc.false) == 1
    assert d.summarise(sc)["false_bad"] == 1


def test_acceptable_alternatives_match_and_alarms_after_the_trouble_are_consequences() -> None:
    ev = {"verdict": "divergence", "onset_step": 500, "acceptable_alternatives": ["spike"]}
    case = _case("divergence", [ev])
    sc = _score(case, [_alarm("spike", 510, "warn"), _alarm("eval_degradation", 700)])
    assert sc.events[0].found == 510 and sc.events[0].found_kind == "spike"
    assert not sc.false  # the eval went bad after the run diverged: a consequence, not a false alarm


def test_onset_window_sets_the_earliest_matching_step() -> None:
    case = _case("overfit", [{"verdict": "overfit", "onset_step": 20, "onset_window": [15, 30]}])
    assert _score(case, [_alarm("overfit", 16)]).events[0].found == 16
    assert _score(case, [_alarm("overfit", 14)]).events[0].found is None


def test_healthy_steps_false_bad_rate_and_healthy_judged_bad() -> None:
    case = _case("healthy", [])
    sc = _score(case, [_alarm("spike", 100, "warn"), _alarm("divergence", 200)], verdict="bad")
    s = d.summarise(sc)
    assert s["healthy_judged_bad"] == 1 and s["false_alarms"] == 2 and s["false_bad"] == 1
    assert s["false_bad_per_10k_healthy_steps"] == 1e4 / 1000


def test_nan_at_onset_allows_one_logging_interval() -> None:
    case = _case("nan", [{"verdict": "nan", "onset_step": 400}])
    assert d.summarise(_score(case, [_alarm("nan", 410)]))["nan_at_onset"] == 1
    assert d.summarise(_score(case, [_alarm("nan", 420)]))["nan_at_onset"] == 0


def test_shared_corpus_loads_labelled_cases_only() -> None:
    cases = d.load_cases([SHARED])
    names = {c.name for c in cases}
    assert names and not any(n.startswith("sample-") for n in names)
    for c in cases:
        assert c.set == "real" and c.split in ("dev", "test")
        assert all(not f.endswith((".yaml", ".yml", ".toml")) for f, _ in c.files)


def test_benchmark_runs_end_to_end_on_generated_runs(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "faults"
    generate(runs, quick=True, only=["softmax-000", "linreg-000"])
    out = tmp_path / "numbers.json"
    assert d.main([str(runs), "--split", "all", "--json", str(out), "--jobs", "1"]) == 0
    text = capsys.readouterr().out
    assert "== set=generated" in text and "by format" in text
    numbers = json.loads(out.read_text())["groups"]
    assert numbers["all"]["cases"] == 6
    assert {c.split for c in d.load_cases([runs])} == {"dev", "test"}  # softmax is dev, linreg test
