"""The metrics endpoint: families from hub snapshots, a real HTTP scrape, escaping checked by
`promtool check metrics` and by the client library's own parser, /healthz, a port in use."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from monitor.errors import RunwatchError
from monitor.gpu import GpuSample, GpuSnapshot
from monitor.metrics import MetricsServer, SnapshotCollector, parse_addr
from monitor.model import Decision, Finding, Severity, Verdict
from monitor.snapshot import HubSnapshot, RunSnapshot

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = 'run "quoted" \\ back\nslash {braces} ünïcødé ✗'


def run_snapshot(run_id: str = "/data/run1/train.log", **kw: object) -> RunSnapshot:
    fields: dict[str, object] = dict(
        id=run_id,
        name=run_id.rsplit("/", 1)[-1],
        target=run_id,
        source="/data/run1",
        host="localhost",
        state="live",
        stale=False,
        source_error=None,
        verdict=Verdict.HEALTHY,
        decision=Decision.CONTINUE,
        reason="loss falling",
        findings=(),
        last_step=1200.0,
        total_steps=None,
        steps_per_s=2.5,
        last_update=1_764_000_000.0,
        loss_key="train/loss",
        loss=2.31,
        loss_trend=(),
        headline=(),
        gpu_util=None,
        gpu_mem_pct=None,
        format="jsonl",
        step_key="step",
        url=None,
        version=1,
        rows=1200,
        shown_verdict="healthy",
        role_values=(("train_loss", "train/loss", 2.31), ("lr", "lr", 3e-4), ("grad_norm", "grad_norm", 0.9)),
    )
    fields.update(kw)
    return RunSnapshot(**fields)  # type: ignore[arg-type]


def hub_snapshot(*runs: RunSnapshot, gpus: bool = True) -> HubSnapshot:
    gpu = GpuSnapshot("gpu1", 1_764_000_000.0, (GpuSample(0, "H100", 87.0, 40_000.0, 81_559.0), GpuSample(1)))
    hosts = (
        ("W&B team/proj", "ok"),
        ("W&B team/other", "HTTP 500 from the API"),
        ("gpu1", "gpu1: live"),
        ("gpu2", "gpu2: retrying (next try in 8 s): Connection refused"),
        ("gpu3", "gpu3: connecting"),
    )
    return HubSnapshot(1_764_000_001.0, runs, hosts, (("gpu1", gpu),) if gpus else ())


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, parsed by the client library's parser."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, metric_name: str, /, **labels: str) -> float:
    hits = [v for (n, lab), v in samples(text).items() if n == metric_name and set(labels.items()) <= lab]
    assert len(hits) == 1, (metric_name, labels, hits)
    return hits[0]


@pytest.fixture
def served() -> object:
    col = SnapshotCollector()
    server = MetricsServer("127.0.0.1:0", col)
    server.start()
    yield col, f"http://{server.address}"
    server.close()


def get(url: str, accept: str = "") -> tuple[int, str, str]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def test_families_from_a_snapshot(served: tuple[SnapshotCollector, str]) -> None:
    col, base = served
    bad = run_snapshot(
        "gpu1:/scratch/run2/train.log",
        host="gpu1",
        source="gpu1",
        verdict=Verdict.BAD,
        decision=Decision.STOP,
        shown_verdict="bad",
        findings=(
            Finding("nan", Severity.BAD, "loss", 10, 10, "loss is NaN"),
            Finding("spike", Severity.WARN, "loss", 5, 5, "spike", active=False),
            Finding("spike", Severity.WARN, "loss", 8, 8, "spike"),
        ),
        reconnects=3,
    )
    stale = run_snapshot("/data/run3.log", state="stale", stale=True, shown_verdict="stale", last_step=None)
    col.update(hub_snapshot(run_snapshot(), bad, stale))
    code, ctype, text = get(base + "/metrics")
    assert code == 200 and ctype.startswith("text/plain")
    assert value(text, "runwatch_run_verdict", run="/data/run1/train.log") == 0
    assert value(text, "runwatch_run_verdict", run="gpu1:/scratch/run2/train.log", host="gpu1") == 2
    info = {"run": "gpu1:/scratch/run2/train.log", "verdict": "bad", "decision": "stop", "state": "live"}
    assert value(text, "runwatch_run_info", **info) == 1
    assert value(text, "runwatch_run_state", run="/data/run3.log", runwatch_run_state="stale") == 1
    assert value(text, "runwatch_run_state", run="/data/run3.log", runwatch_run_state="live") == 0
    assert value(text, "runwatch_run_last_step", run="/data/run1/train.log") == 1200
    assert not [k for k in samples(text) if k[0] == "runwatch_run_last_step" and ("run", "/data/run3.log") in k[1]]
    assert value(text, "runwatch_run_steps_per_second", run="/data/run1/train.log") == 2.5
    assert value(text, "runwatch_run_train_loss", run="/data/run1/train.log", metric="train/loss") == 2.31
    assert value(text, "runwatch_run_learning_rate", run="/data/run1/train.log", metric="lr") == 3e-4
    assert value(text, "runwatch_run_grad_norm", run="/data/run1/train.log") == 0.9
    assert value(text, "runwatch_run_last_update_timestamp_seconds", run="/data/run1/train.log") == 1_764_000_000
    assert value(text, "runwatch_run_findings", kind="nan", severity="bad") == 1
    assert value(text, "runwatch_run_findings", kind="spike", severity="warn") == 1  # the cleared one not counted
    assert value(text, "runwatch_run_source_up", run="/data/run3.log") == 0
    assert value(text, "runwatch_run_source_up", run="/data/run1/train.log") == 1
    assert value(text, "runwatch_run_source_reconnects_total", run="gpu1:/scratch/run2/train.log") == 3
    hosts = ("gpu1", "gpu2", "gpu3", "W&B team/proj", "W&B team/other")
    up = {h: value(text, "runwatch_host_up", host=h) for h in hosts}
    assert up == {"gpu1": 1, "gpu2": 0, "gpu3": 0, "W&B team/proj": 1, "W&B team/other": 0}
    assert value(text, "runwatch_gpu_utilization_ratio", host="gpu1", gpu="0") == pytest.approx(0.87)
    assert value(text, "runwatch_gpu_memory_used_bytes", host="gpu1", gpu="0") == 40_000 * 1024 * 1024
    assert not [k for k in samples(text) if k[0] == "runwatch_gpu_utilization_ratio" and ("gpu", "1") in k[1]]
    assert value(text, "process_resident_memory_bytes") > 0
    # Low cardinality: no step or value ever becomes a label.
    allowed = {
        "run",
        "source",
        "host",
        "metric",
        "kind",
        "severity",
        "gpu",
        "name",
        "verdict",
        "decision",
        "state",
        "runwatch_run_state",
    }
    used = {k for (n, lab) in samples(text) if n.startswith("runwatch_") for k, _ in lab}
    assert used <= allowed, used - allowed


def test_a_run_not_read_has_no_verdict(served: tuple[SnapshotCollector, str]) -> None:
    col, base = served
    unread = run_snapshot("/a.log", rows=0, state="unreadable", shown_verdict="unreadable", last_step=None)
    stale = run_snapshot("/b.log", state="stale", stale=True, shown_verdict="stale", verdict=Verdict.UNSURE)
    col.update(hub_snapshot(unread, stale))
    text = get(base + "/metrics")[2]
    assert not [k for k in samples(text) if k[0] == "runwatch_run_verdict" and ("run", "/a.log") in k[1]]
    assert value(text, "runwatch_run_info", run="/a.log", verdict="unreadable") == 1
    assert value(text, "runwatch_run_verdict", run="/b.log") == 1  # the last verdict stays while stale


def test_a_removed_run_disappears(served: tuple[SnapshotCollector, str]) -> None:
    col, base = served
    col.update(hub_snapshot(run_snapshot("/a.log"), run_snapshot("/b.log")))
    assert "/b.log" in get(base + "/metrics")[2]
    col.update(hub_snapshot(run_snapshot("/a.log")))
    text = get(base + "/metrics")[2]
    assert "/a.log" in text and "/b.log" not in text


def test_hostile_names_and_keys_are_escaped(served: tuple[SnapshotCollector, str], tmp_path: Path) -> None:
    col, base = served
    run = run_snapshot(HOSTILE, name=HOSTILE, source=HOSTILE, role_values=(("train_loss", HOSTILE, 1.5),))
    col.update(hub_snapshot(run))
    code, _, text = get(base + "/metrics")
    assert code == 200
    # The label values come back exactly through the library's parsers (both formats)...
    assert value(text, "runwatch_run_train_loss", run=HOSTILE, metric=HOSTILE) == 1.5
    assert value(text, "runwatch_run_info", name=HOSTILE) == 1
    code, ctype, om = get(base + "/metrics", "application/openmetrics-text; version=1.0.0")
    assert code == 200 and ctype.startswith("application/openmetrics-text") and om.endswith("# EOF\n")
    om_samples = [s for fam in openmetrics_families(om) for s in fam.samples]
    assert [s.value for s in om_samples if s.name == "runwatch_run_train_loss" and s.labels["metric"] == HOSTILE] == [
        1.5
    ]
    # ...and nothing of them breaks the exposition's lines.
    assert "\nslash" not in text and "\nslash" not in om
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (bash scripts/test.sh installs prometheus as root)")
    # promtool reads the Prometheus text format (what Prometheus asks for without OpenMetrics).
    res = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True)
    assert res.returncode == 0, (res.stdout.decode(), res.stderr.decode())


def test_healthz(served: tuple[SnapshotCollector, str]) -> None:
    col, base = served
    assert get(base + "/healthz")[0] == 503
    col.update(hub_snapshot())
    assert get(base + "/healthz")[:1] == (200,)
    assert get(base + "/nothing")[0] == 404


@pytest.mark.parametrize(
    ("text", "want"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), (":9464", ("0.0.0.0", 9464)), ("[::1]:80", ("::1", 80))],
)
def test_parse_addr(text: str, want: tuple[str, int]) -> None:
    assert parse_addr(text) == want


@pytest.mark.parametrize("text", ["9464", "host:", "host:port", "h:70000", "train.log"])
def test_parse_addr_refuses(text: str) -> None:
    with pytest.raises(RunwatchError):
        parse_addr(text)


def test_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("iter 0: loss 3.0, time 100.00ms, mfu 40.00%\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = subprocess.run(
            [sys.executable, "-m", "tui.cli", "watch", str(log), "--metrics-addr", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "address already in use" in lines[0] and str(port) in lines[0], res.stderr


def test_secrets_in_names_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "hf_Zq8wXv3LpT5nR2mK9sJ4"
    monkeypatch.setenv("HF_TOKEN", secret)
    col = SnapshotCollector()
    col.update(hub_snapshot(run_snapshot(f"/runs/{secret}/train.log", name=f"job {secret}")))
    server = MetricsServer("127.0.0.1:0", col)
    server.start()
    try:
        text = get(f"http://{server.address}/metrics")[2]
    finally:
        server.close()
    assert secret not in text
    assert "runwatch_run_verdict{" in text


def test_pulled_snapshots_are_fresh_per_scrape_and_a_failed_pull_serves_the_last() -> None:
    snaps = [hub_snapshot(run_snapshot("/a.log", last_step=1.0)), hub_snapshot(run_snapshot("/a.log", last_step=2.0))]

    def pull() -> HubSnapshot:
        if not snaps:
            raise TimeoutError("hub loop busy")
        return snaps.pop(0)

    col = SnapshotCollector(pull)
    server = MetricsServer("127.0.0.1:0", col)
    server.start()
    try:
        base = f"http://{server.address}"
        assert get(base + "/healthz")[0] == 200
        steps = [value(get(base + "/metrics")[2], "runwatch_run_last_step", run="/a.log") for _ in range(3)]
    finally:
        server.close()
    assert steps == [1.0, 2.0, 2.0]
