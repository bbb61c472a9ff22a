"""The bar of issue 12 against real peers: a real Prometheus (scrape and rule evaluation every 1 s,
the shipped alert rules) scrapes `runwatch watch --metrics-addr` following a log that goes NaN,
sees `runwatch_run_verdict` = 2 within 15 s, and a real Alertmanager delivers the firing alert to a
webhook receiver on 127.0.0.1. `bash scripts/test.sh` installs both as root; without them these
tests skip and say so."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "runwatch-rules.yml"
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
PROMTOOL = shutil.which("promtool")

needs_peers = pytest.mark.skipif(
    PROMETHEUS is None or ALERTMANAGER is None,
    reason="prometheus / prometheus-alertmanager not installed: run `bash scripts/test.sh` as root "
    "(apt-get install -y prometheus prometheus-alertmanager)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def _wait(what: str, check: Any, timeout: float, procs: list[subprocess.Popen[bytes]]) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        for p in procs:
            assert p.poll() is None, f"{p.args[0]} exited {p.returncode} while waiting for {what}"
        try:
            got = check()
            if got:
                return got
        except OSError as e:  # not listening yet
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last})")


def _line(i: int, loss: float) -> str:
    return f"iter {i}: loss {loss:.4f}, time 100.00ms, mfu 40.00%\n"


class _Webhook:
    """An Alertmanager webhook receiver on 127.0.0.1 that keeps every alert it is sent."""

    def __init__(self) -> None:
        alerts: list[dict[str, Any]] = []
        self.alerts = alerts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                alerts.extend(json.loads(body).get("alerts", []))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["labels"].get("alertname") == alertname and a["status"] == "firing"]


@contextlib.contextmanager
def _processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@needs_peers
@pytest.mark.slow
def test_prometheus_sees_a_nan_run_bad_and_alertmanager_delivers(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("".join(_line(i, 3.0 * math.exp(-i / 100)) for i in range(100)))
    hook = _Webhook()
    am_port, prom_port, rw_port = _free_port(), _free_port(), _free_port()
    (tmp_path / "am.yml").write_text(
        "route:\n  receiver: hook\n  group_by: [alertname, run]\n  group_wait: 0s\n  group_interval: 1s\n"
        f"receivers:\n  - name: hook\n    webhook_configs:\n      - url: {hook.url}\n"
    )
    (tmp_path / "prom.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: ['{RULES}']\n"
        f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n"
        f"scrape_configs:\n  - job_name: runwatch\n    static_configs:\n      - targets: ['127.0.0.1:{rw_port}']\n"
    )
    stderr = (tmp_path / "watch.err").open("wb")
    with _processes() as procs:
        watch = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", "watch", str(log), "--metrics-addr", f"127.0.0.1:{rw_port}"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        procs.append(watch)
        procs.append(
            subprocess.Popen(
                [
                    ALERTMANAGER,
                    f"--config.file={tmp_path / 'am.yml'}",
                    f"--storage.path={tmp_path / 'am'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / "am.log").open("wb"),
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={tmp_path / 'prom.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / "prom.log").open("wb"),
            )
        )
        prom = f"http://127.0.0.1:{prom_port}/api/v1/query?query="

        def query(expr: str) -> list[dict[str, Any]]:
            answer = _get_json(prom + urllib.parse.quote(expr))
            assert answer["status"] == "success", answer
            return list(answer["data"]["result"])

        def verdict() -> float | None:
            res = [r for r in query("runwatch_run_verdict") if r["metric"]["run"].endswith("train.log")]
            return float(res[0]["value"][1]) if res else None

        _wait("Prometheus to scrape a healthy verdict", lambda: verdict() == 0, 60, procs)
        with log.open("a") as f:
            f.write(_line(100, float("nan")))
        wrote = time.monotonic()
        _wait("runwatch_run_verdict == 2 in Prometheus", lambda: verdict() == 2, 15, procs)
        took = time.monotonic() - wrote
        assert took < 15
        info = query('runwatch_run_info{verdict="bad"}')
        assert info and info[0]["metric"]["decision"] == "stop"

        alerts = _wait("Alertmanager to deliver RunwatchRunBad", lambda: hook.firing("RunwatchRunBad"), 30, procs)
        assert alerts[0]["labels"]["run"].endswith("train.log")
        assert alerts[0]["labels"]["severity"] == "page"
        assert "is bad" in alerts[0]["annotations"]["summary"]

        # SIGTERM: a clean stop, said in one line, the port released.
        watch.send_signal(signal.SIGTERM)
        assert watch.wait(timeout=20) == 0
        with socket.socket() as s:  # as a restarted server binds it (TIME_WAIT from scrapes allowed)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", rw_port))
    err = (tmp_path / "watch.err").read_text()
    assert "metrics on http://127.0.0.1" in err and "stopped" in err, err
    print(f"NaN written -> verdict 2 in Prometheus after {took:.1f} s")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed: run `bash scripts/test.sh` as root")
def test_shipped_alert_rules_pass_promtool() -> None:
    res = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)  # type: ignore[list-item]
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


@pytest.mark.skipif(
    PROMTOOL is None or shutil.which("amtool") is None,
    reason="promtool / amtool not installed: run `bash scripts/test.sh` as root",
)
def test_shipped_example_configs_pass_their_checkers() -> None:
    deploy = ROOT / "deploy"
    prom = subprocess.run(
        [PROMTOOL, "check", "config", "--syntax-only", str(deploy / "prometheus" / "prometheus.yml")],  # type: ignore[list-item]
        capture_output=True,
        text=True,
    )
    assert prom.returncode == 0, prom.stdout + prom.stderr
    am = subprocess.run(
        ["amtool", "check-config", str(deploy / "alertmanager" / "alertmanager.yml")], capture_output=True, text=True
    )
    assert am.returncode == 0, am.stdout + am.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed: run `bash scripts/test.sh` as root")
@pytest.mark.slow
def test_hostile_file_names_and_keys_scraped_from_watch_pass_promtool(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    names = ['run "quoted" {braces}.jsonl', "ünïcødé ✗ run.jsonl", "new\nline.jsonl", "back\\slash.jsonl"]
    paths = [tmp_path / n for n in names]
    for p in paths:
        p.write_text(
            "".join(json.dumps({"step": i, 'loss "q" {x}': 3.0 - i * 0.01, "lr": 1e-3}) + "\n" for i in range(20))
        )
    port = _free_port()
    with _processes() as procs:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tui.cli", "watch", *map(str, paths), "--metrics-addr", f"127.0.0.1:{port}"],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

        def scraped() -> str | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            return text if text.count("runwatch_run_train_loss{") == len(paths) else None

        text = _wait("every hostile run's loss exported", scraped, 60, procs)
    runs = set()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "runwatch_run_train_loss":
                runs.add(s.labels["run"])
                assert s.labels["metric"] == 'loss "q" {x}'
    assert runs == {str(p) for p in paths}
    res = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True)  # type: ignore[list-item]
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
