"""The shipped Grafana dashboard and alert rules, checked as well as can be done without Grafana
(no Grafana package in the Debian or PyPI registries this project installs from): the dashboard's
structure, every PromQL expression parsed by `promtool`, every metric and label it names present in
a real scrape of the exporter, and every panel answered with data by a real Prometheus scraping it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.metrics import MetricsServer, SnapshotCollector
from monitor.model import Decision, Finding, Severity, Verdict
from tests.test_fleet_prometheus import _free_port, _processes, _wait
from tests.test_metrics_exporter import hub_snapshot, run_snapshot

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "runwatch-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "runwatch-rules.yml"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
#: Grafana's core panel types (a typo here is a blank "unknown panel" box).
PANEL_TYPES = {
    "stat",
    "table",
    "timeseries",
    "status-history",
    "state-timeline",
    "heatmap",
    "bargauge",
    "gauge",
    "text",
}
#: What Grafana puts in place of its own interval variables.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_METRIC = re.compile(r"\brunwatch_[a-z0-9_]+")


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def variables(dash: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dash["templating"]["list"]}


def queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable, variables as "All" sends them."""
    vs = variables(dash)

    def fill(expr: str) -> str:
        def one(m: re.Match[str]) -> str:
            name = m.group(1) or m.group(2)
            if name in BUILTINS:
                return BUILTINS[name]
            assert name in vs, f"{expr!r} uses ${name}, which the dashboard does not define"
            return str(vs[name]["allValue"])

        return _VAR.sub(one, expr)

    out = [
        (f"panel {p['title']!r} {t['refId']}", fill(t["expr"])) for p in dash["panels"] for t in p.get("targets", [])
    ]
    out += [(f"annotation {a['name']!r}", fill(a["expr"])) for a in dash.get("annotations", {}).get("list", [])]
    for v in vs.values():
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", v["query"]["query"])
            assert m, v["query"]
            out.append((f"variable ${v['name']}", f"group by ({m.group(2)}) ({m.group(1)})"))
    return out


def fleet_snapshot(turned_bad: bool = False) -> Any:
    """A fleet with every kind of series the dashboard shows: verdicts, findings, losses, a GPU;
    `turned_bad`: the unsure run has gone bad."""
    healthy = run_snapshot(
        role_values=(
            ("train_loss", "train/loss", 2.31),
            ("eval_loss", "eval/loss", 2.4),
            ("lr", "lr", 3e-4),
            ("grad_norm", "grad_norm", 0.9),
        )
    )
    bad = run_snapshot(
        "gpu1:/scratch/run2/train.log",
        host="gpu1",
        source="gpu1",
        verdict=Verdict.BAD,
        decision=Decision.STOP,
        shown_verdict="bad",
        findings=(Finding("nan", Severity.BAD, "loss", 10, 10, "loss is NaN"),),
        reconnects=2,
    )
    unsure = run_snapshot("/data/run3.log", verdict=Verdict.UNSURE, decision=Decision.WAIT, shown_verdict="unsure")
    if turned_bad:
        unsure = replace(unsure, verdict=Verdict.BAD, decision=Decision.STOP, shown_verdict="bad")
    down = run_snapshot("gpu2:/x/train.log", host="gpu2", state="stale", stale=True, shown_verdict="stale")
    return hub_snapshot(healthy, bad, unsure, down)


@pytest.fixture
def exporter() -> Iterator[tuple[SnapshotCollector, str]]:
    """The real exporter on 127.0.0.1 serving `fleet_snapshot()`; its collector and address."""
    col = SnapshotCollector()
    col.update(fleet_snapshot())
    server = MetricsServer("127.0.0.1:0", col)
    server.start()
    yield col, server.address
    server.close()


def scraped_labels(address: str) -> dict[str, set[str]]:
    """Every sample name in a real scrape, with the label names it carries."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return out


def test_dashboard_structure() -> None:
    dash = dashboard()
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    vs = variables(dash)
    assert vs["datasource"]["type"] == "datasource" and vs["datasource"]["query"] == "prometheus"
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        assert p["type"] in PANEL_TYPES, p["type"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["x"] + g["w"] <= 24, (p["title"], g)
        for x in range(g["x"], g["x"] + g["w"]):  # no two panels drawn over each other
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(set(refs)) == len(refs) and all(t["expr"].strip() for t in p["targets"]), p["title"]
    for v in vs.values():
        if v["type"] == "query":
            assert v["datasource"]["uid"] == "${datasource}" and v["includeAll"] and v["allValue"] == ".*"
    titles = " ".join(p["title"].lower() for p in panels)
    assert all(w in titles for w in ("verdict", "loss", "learning rate", "gpu")), titles  # the asks


def test_dashboard_and_rules_name_only_metrics_and_labels_a_real_scrape_exposes(
    exporter: tuple[SnapshotCollector, str],
) -> None:
    import yaml  # PyYAML, which wandb requires

    exposed = scraped_labels(exporter[1])
    rules = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    exprs = [e for _, e in queries(dashboard())] + rules
    for expr in exprs:
        names = set(_METRIC.findall(re.sub(r"\{[^}]*\}", "", expr)))  # `runwatch_run_state` is a label too
        if expr.startswith("up{"):
            continue  # Prometheus's own series for the scrape
        assert names, expr
        missing = names - set(exposed)
        assert not missing, f"{expr!r} names {missing}, not in a real scrape"
        in_expr = set().union(*(exposed[n] for n in names))
        for metric, matchers in re.findall(r"(runwatch_[a-z0-9_]+)\{([^}]*)\}", expr):
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers):
                assert label in exposed[metric], f"{expr!r}: {metric} has no label {label!r}"
        for group in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr):
            for label in filter(None, (x.strip() for x in group.split(","))):
                assert label in in_expr, f"{expr!r}: no label {label!r} on {names}"


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed: run `bash scripts/test.sh` as root")
def test_every_dashboard_query_parses_with_promtool(tmp_path: Path) -> None:
    def check(exprs: list[str]) -> subprocess.CompletedProcess[str]:
        rules = {
            "groups": [{"name": "dash", "rules": [{"record": f"dash:q{i}", "expr": e} for i, e in enumerate(exprs)]}]
        }
        f = tmp_path / "dash-rules.yml"
        f.write_text(json.dumps(rules))  # JSON is YAML
        return subprocess.run([str(PROMTOOL), "check", "rules", str(f)], capture_output=True, text=True)

    found = queries(dashboard())
    res = check([e for _, e in found])
    assert res.returncode == 0 and f"SUCCESS: {len(found)} rules found" in res.stdout, res.stdout + res.stderr
    assert check(["sum by (run (runwatch_run_verdict)"]).returncode != 0  # promtool does parse what it is given


@pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus not installed: run `bash scripts/test.sh` as root (apt-get install prometheus)",
)
@pytest.mark.slow
@pytest.mark.timeout(90)
def test_every_dashboard_query_answers_in_a_real_prometheus(
    exporter: tuple[SnapshotCollector, str], tmp_path: Path
) -> None:
    collector, address = exporter
    port = _free_port()
    (tmp_path / "prom.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        f"scrape_configs:\n  - job_name: runwatch\n    static_configs:\n      - targets: ['{address}']\n"
    )
    found = queries(dashboard())
    api = f"http://127.0.0.1:{port}/api/v1/query?query="

    def results(expr: str) -> list[Any]:
        with urllib.request.urlopen(api + urllib.parse.quote(expr), timeout=5) as r:
            answer = json.load(r)
        assert answer["status"] == "success", (expr, answer)
        return list(answer["data"]["result"])

    with _processes() as procs:
        procs.append(
            subprocess.Popen(
                [
                    str(PROMETHEUS),
                    f"--config.file={tmp_path / 'prom.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / "prom.log").open("wb"),
            )
        )
        _wait("a scrape of the exporter", lambda: results('up{job="runwatch"} == 1'), 60, procs)
        time.sleep(1.5)  # a second scrape: instant queries look back from now
        empty = [where for where, expr in found if not results(expr)]
        annotations = [e for where, e in found if where.startswith("annotation")]
        # Annotations mark changes, and nothing has changed yet.
        assert annotations and empty == [w for w, _ in found if w.startswith("annotation")], f"no data for {empty}"
        bad = 'count(runwatch_run_verdict{run=~".*"} == 2) or vector(0)'
        assert float(results(bad)[0]["value"][1]) == 1  # the numbers, not only their presence
        collector.update(fleet_snapshot(turned_bad=True))
        for expr in annotations:
            hit = _wait("the annotation to mark a run turning bad", lambda e=expr: results(e), 20, procs)
            assert {r["metric"]["run"] for r in hit} == {"/data/run3.log"}
        assert float(results(bad)[0]["value"][1]) == 2
