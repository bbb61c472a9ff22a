"""A small local stand-in for the W&B backend: GraphQL over HTTP on 127.0.0.1, for tests only.

`FakeWandbServer` answers what the real `wandb.Api` client (0.31, through wandb-core) sends for
`Api().run(...)`, `.scan_history()`, `.history()` and `Api().runs(...)`, plus runwatch's own
batched poll and the `StopRun` mutation. It executes queries with a tiny GraphQL interpreter
(aliases, variables, fragments) over fake projects and runs, so a client that asks for a field
the fake backend does not know is caught: the field resolves to null and is listed in
`server.problems` (tests assert that list is empty). Unknown operation names and unknown paths
are reported the same way, and printed to stderr.

Every request is recorded (`server.requests`: path, operation, variables, headers, status).
Faults can be queued for the next N GraphQL requests: `rate_limit`, `fail`, `hang`.
`stop()` closes the listening socket (connection refused) and `start()` re-opens the same port.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import wandb_graphql as gql

#: Operations this server knows by name (wandb sends no operationName; the name comes from the text).
KNOWN_OPERATIONS = frozenset(
    {
        "Viewer",
        "GetViewer",
        "GetDefaultEntity",
        "ServerFeaturesQuery",
        "Run",
        "RunState",
        "Runs",
        "RunHistoryKeys",
        "RunParquetHistory",
        "HistoryPage",
        "SampledHistoryPage",
        "RunSampledHistory",
        "RunFullHistory",
        "RunwatchPoll",
        "StopRun",
    }
)


@dataclass
class FakeRun:
    """One run held by the fake backend; mutate it through the server's methods while a test runs."""

    entity: str
    project: str
    name: str
    state: str = "running"
    display_name: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    created_at: str = "2024-01-01T00:00:00"
    heartbeat_at: str = "2024-01-01T00:00:00"
    stop_requested: bool = False
    tags: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    """Summary values set apart from the history (the summary is the last value of each key, then these)."""

    @property
    def storage_id(self) -> str:
        """The opaque id W&B uses for mutations (base64 of `Run:v1:name:project:entity`)."""
        raw = f"Run:v1:{self.name}:{self.project}:{self.entity}"
        return base64.b64encode(raw.encode()).decode()

    @property
    def last_step(self) -> int:
        return int(self.rows[-1]["_step"]) if self.rows else -1


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request the server saw."""

    method: str
    path: str
    operation: str | None
    variables: dict[str, Any]
    headers: dict[str, str]
    status: int
    query: str = ""


@dataclass
class _Fault:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


_OP_NAME = re.compile(r"\b(query|mutation|subscription)\s+([A-Za-z_]\w*)")


def operation_name(query: str) -> str | None:
    """The first operation's name in a GraphQL document, read from the text (comments skipped)."""
    text = re.sub(r"#[^\n]*", "", query)
    m = _OP_NAME.search(text)
    return m.group(2) if m else None


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))


class FakeWandbServer:
    """A threaded HTTP server on 127.0.0.1 that plays the W&B GraphQL backend."""

    def __init__(self, api_key: str = "test-key-" + "0" * 40, *, otel_status: int = 404) -> None:
        self.api_key = api_key
        self.otel_status = otel_status
        self.runs: dict[tuple[str, str, str], FakeRun] = {}
        self.requests: list[RecordedRequest] = []
        self.problems: list[str] = []
        self.default_entity = "test-entity"
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeWandbServer:
        """Listen (again) on 127.0.0.1; the first start picks a free port, later ones reuse it."""
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = _HTTPServer(("127.0.0.1", self.port), handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-wandb", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: new connections are refused until `start()`."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeWandbServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- data ------------------------------------------------------------------------------------
    def add_run(
        self,
        entity: str,
        project: str,
        name: str,
        *,
        state: str = "running",
        display_name: str = "",
        rows: Iterable[dict[str, Any]] = (),
        config: dict[str, Any] | None = None,
        tags: Iterable[str] = (),
        summary: dict[str, Any] | None = None,
        created_at: str = "2024-01-01T00:00:00",
    ) -> FakeRun:
        """Create a run, optionally with history rows (see `append`), tags and summary-only values."""
        run = FakeRun(entity, project, name, state, display_name or name, config=dict(config or {}))
        run.tags, run.summary, run.created_at = list(tags), dict(summary or {}), created_at
        with self._lock:
            self.runs[(entity, project, name)] = run
        for row in rows:
            self.append(run, row)
        return run

    def append(self, run: FakeRun, row: dict[str, Any]) -> dict[str, Any]:
        """Append a history row; `_step` defaults to the next step, `_timestamp`/`_runtime` are added."""
        with self._lock:
            full = dict(row)
            full.setdefault("_step", run.last_step + 1)
            now = time.time()
            full.setdefault("_timestamp", now)
            full.setdefault("_runtime", float(len(run.rows)))
            run.rows.append(full)
            run.heartbeat_at = _iso(now)
            return full

    def set_state(self, run: FakeRun, state: str) -> None:
        with self._lock:
            run.state = state

    def run(self, entity: str, project: str, name: str) -> FakeRun:
        return self.runs[(entity, project, name)]

    # -- faults ----------------------------------------------------------------------------------
    def rate_limit(self, n: int = 1, *, reset: float = 5, retry_after: bool = False) -> None:
        """The next `n` GraphQL requests get 429 with `RateLimit-Reset` (or `Retry-After`) seconds."""
        hdr = {"Retry-After": str(reset)} if retry_after else {"RateLimit-Reset": str(reset)}
        hdr["RateLimit-Remaining"] = "0"
        self._queue(n, _Fault(429, hdr))

    def fail(self, n: int = 1, *, status: int = 500) -> None:
        """The next `n` GraphQL requests get `status` with a plain-text body."""
        self._queue(n, _Fault(status))

    def spend_limit(self, n: int = 1, *, reset: float = 30) -> None:
        """The next `n` GraphQL requests are answered, saying `RateLimit-Remaining: 0` and when it resets."""
        self._queue(n, _Fault(200, {"RateLimit-Remaining": "0", "RateLimit-Reset": str(reset)}))

    def hang(self, n: int = 1, *, seconds: float = 30.0) -> None:
        """The next `n` GraphQL requests wait `seconds` before they are answered normally."""
        self._queue(n, _Fault(200, delay=seconds))

    def _queue(self, n: int, fault: _Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * n)

    # -- assertions helpers ----------------------------------------------------------------------
    def graphql_requests(self, operation: str | None = None) -> list[RecordedRequest]:
        """Recorded POSTs to /graphql, optionally only those of one operation."""
        with self._lock:
            return [
                r for r in self.requests if r.path == "/graphql" and (operation is None or r.operation == operation)
            ]

    def operations(self) -> list[str | None]:
        return [r.operation for r in self.graphql_requests()]

    def _problem(self, text: str) -> None:
        with self._lock:
            self.problems.append(text)
        print(f"FakeWandbServer: {text}", file=sys.stderr, flush=True)

    # -- GraphQL ---------------------------------------------------------------------------------
    def execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """Run one GraphQL document against the fake data; returns the response body."""
        try:
            doc = gql.parse(query)
            with self._lock:
                data = gql.execute(doc, variables, _Root(self), self._problem)
        except gql.GraphQLError as e:
            self._problem(f"GraphQL error: {e}")
            return {"errors": [{"message": str(e)}], "data": None}
        return {"data": data}


class _Root(gql.Node):
    def __init__(self, server: FakeWandbServer) -> None:
        self.s = server

    def f_viewer(self) -> dict[str, Any]:
        return {
            "id": "VXNlcjox",
            "name": "Test User",
            "username": "tester",
            "email": "tester@example.invalid",
            "entity": self.s.default_entity,
            "admin": False,
            "flags": "{}",
            "deletedAt": None,
            "apiKeys": {"edges": []},
            "teams": {"edges": [{"node": {"name": self.s.default_entity}}]},
        }

    def f_serverInfo(self) -> dict[str, Any]:
        return {"features": [], "latestLocalVersionInfo": None, "cliVersionInfo": {}}

    def f_project(self, name: str, entityName: str | None = None) -> _ProjectNode:
        return _ProjectNode(self.s, entityName or self.s.default_entity, name)

    def f_stopRun(self, input: dict[str, Any]) -> dict[str, Any]:
        for run in self.s.runs.values():
            if run.storage_id == input.get("id"):
                run.stop_requested = True
                return {"success": True, "clientMutationId": None}
        return {"success": False, "clientMutationId": None}


class _ProjectNode(gql.Node):
    def __init__(self, s: FakeWandbServer, entity: str, name: str) -> None:
        self.s, self.entity, self.name_ = s, entity, name

    def _runs(self, filters: Any) -> list[FakeRun]:
        found = [r for r in self.s.runs.values() if (r.entity, r.project) == (self.entity, self.name_)]
        spec = json.loads(filters) if isinstance(filters, str) else (filters or {})
        return [r for r in found if _matches(r, spec, self.s._problem)]

    def f_id(self) -> str:
        return base64.b64encode(f"Project:v1:{self.name_}:{self.entity}".encode()).decode()

    def f_name(self) -> str:
        return self.name_

    def f_entityName(self) -> str:
        return self.entity

    def f_internalId(self) -> str:
        return "1"

    def f_readOnly(self) -> bool:
        return False

    def f_runCount(self, filters: Any = None) -> int:
        return len(self._runs(filters))

    def f_run(self, name: str) -> _RunNode | None:
        run = self.s.runs.get((self.entity, self.name_, name))
        return _RunNode(run) if run else None

    def f_runs(
        self, filters: Any = None, after: str | None = None, first: int = 50, order: str | None = None
    ) -> dict[str, Any]:
        found = self._runs(filters)
        if order not in (None, "", "+created_at", "created_at", "-created_at"):
            self.s._problem(f"unsupported run order {order!r}")
        # W&B's default order is oldest first; names break ties as the backend's ids would.
        found.sort(key=lambda r: (r.created_at, r.name), reverse=order == "-created_at")
        start = int(after) if after else 0
        page = found[start : start + (first or 50)]
        edges = [{"node": _RunNode(r), "cursor": str(start + i + 1)} for i, r in enumerate(page)]
        end = start + len(page)
        return {
            "edges": edges,
            "pageInfo": {"endCursor": str(end), "hasNextPage": end < len(found)},
            "totalCount": len(found),
        }


def _matches(run: FakeRun, spec: dict[str, Any], problem: Callable[[str], None]) -> bool:
    """A small subset of W&B's MongoDB-style run filters."""
    for key, want in spec.items():
        if key == "$and":
            if not all(_matches(run, s, problem) for s in want):
                return False
            continue
        if key == "$or":
            if not any(_matches(run, s, problem) for s in want):
                return False
            continue
        if key == "tags":  # a list field: `{"tags": {"$in": [...]}}` matches a run carrying any of them
            if not isinstance(want, dict) or set(want) - {"$in", "$nin"}:
                problem(f"unsupported tags filter {want!r}")
                return False
            if "$in" in want and not set(want["$in"]) & set(run.tags):
                return False
            if "$nin" in want and set(want["$nin"]) & set(run.tags):
                return False
            continue
        have = {"state": run.state, "name": run.name, "displayName": run.display_name}.get(key)
        if key not in ("state", "name", "displayName"):
            problem(f"unsupported run filter key {key!r}")
            return False
        if isinstance(want, dict):
            for op, arg in want.items():
                if op not in ("$in", "$nin", "$ne"):
                    problem(f"unsupported run filter operator {op!r}")
                    return False
                ok = have != arg if op == "$ne" else (have in arg) == (op == "$in")
                if not ok:
                    return False
        elif have != want:
            return False
    return True


def _sample(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Evenly spaced rows, first and last kept, like the backend when a range holds more than `n`."""
    if n <= 0 or len(rows) <= n:
        return rows
    if n == 1:
        return [rows[-1]]
    return [rows[round(i * (len(rows) - 1) / (n - 1))] for i in range(n)]


class _RunNode(gql.Node):
    def __init__(self, run: FakeRun) -> None:
        self.r = run

    def f_id(self) -> str:
        return self.r.storage_id

    def f_name(self) -> str:
        return self.r.name

    def f_displayName(self) -> str:
        return self.r.display_name

    def f_state(self) -> str:
        return self.r.state

    def f_heartbeatAt(self) -> str:
        return self.r.heartbeat_at

    def f_createdAt(self) -> str:
        return self.r.created_at

    def f_historyLineCount(self) -> int:
        return len(self.r.rows)

    def f_projectId(self) -> str:
        return "1"

    def f_config(self) -> str:
        return json.dumps({k: {"value": v, "desc": None} for k, v in self.r.config.items()})

    def f_summaryMetrics(self) -> str:
        summary: dict[str, Any] = {}
        for row in self.r.rows:
            summary.update(row)
        summary.update(self.r.summary)
        return json.dumps(summary)

    def f_systemMetrics(self) -> str:
        return "{}"

    def f_user(self) -> dict[str, Any]:
        return {"name": "Test User", "username": "tester"}

    def f_tags(self) -> list[str]:
        return list(self.r.tags)

    def f_readOnly(self) -> bool:
        return False

    # Fields the real client reads but runwatch does not care about.
    f_sweepName = f_group = f_jobType = f_commit = f_description = f_notes = lambda self: None

    def f_historyKeys(self) -> dict[str, Any]:
        keys: dict[str, Any] = {}
        for row in self.r.rows:
            for k in row:
                keys.setdefault(k, {"typeCounts": [{"type": "number", "count": 0}]})
                keys[k]["typeCounts"][0]["count"] += 1
        return {"lastStep": self.r.last_step, "keys": keys}

    def _between(self, lo: int | None, hi: int | None) -> list[dict[str, Any]]:
        lo = -(2**63) if lo is None else int(lo)
        hi = 2**63 if hi is None else int(hi)
        return [row for row in self.r.rows if lo <= row["_step"] < hi]

    def f_history(self, samples: int = 500, minStep: int | None = None, maxStep: int | None = None) -> list[str]:
        return [json.dumps(row) for row in _sample(self._between(minStep, maxStep), samples)]

    def f_sampledHistory(self, specs: list[str]) -> list[list[dict[str, Any]]]:
        out = []
        for raw in specs:
            spec = json.loads(raw)
            keys = spec.get("keys") or []
            rows = self._between(spec.get("minStep"), spec.get("maxStep"))
            picked = [{k: row[k] for k in keys if k in row} for row in rows if all(k in row for k in keys)]
            out.append(_sample(picked, int(spec.get("samples", 500))))
        return out

    def f_parquetHistory(self, liveKeys: list[str]) -> dict[str, Any]:
        return {"parquetUrls": [], "liveData": [json.loads(json.dumps(row)) for row in self.r.rows]}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up on a hung request closed its socket: expected, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeWandbServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # the default logs every request
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        ctype = "application/json" if body[:1] in (b"{", b"[") else "text/plain"
        self.send_header("Content-Type", ctype)
        if len(body) > 512 and "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body)  # as the real backend does; both clients ask for it
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _record(self, path: str, op: str | None, variables: dict[str, Any], status: int, q: str = "") -> None:
        fake = self.fake
        with fake._lock:
            fake.requests.append(
                RecordedRequest(self.command, path, op, variables, dict(self.headers.items()), status, q)
            )

    def do_GET(self) -> None:
        self._record(self.path, None, {}, 404)
        self.fake._problem(f"unexpected GET {self.path}")
        self._send(404, b"not found")

    def do_POST(self) -> None:
        fake = self.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        if path.startswith("/sdk/otel/"):
            self._record(path, None, {}, fake.otel_status)
            self._send(fake.otel_status, b"{}" if fake.otel_status == 200 else b"not found")
            return
        if path != "/graphql":
            self._record(path, None, {}, 404)
            fake._problem(f"unexpected POST {path}")
            self._send(404, b"not found")
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._record(path, None, {}, 400)
            fake._problem("request body is not JSON")
            self._send(400, b"bad json")
            return
        query = body.get("query") or ""
        variables = body.get("variables") or {}
        op = body.get("operationName") or operation_name(query)
        with fake._lock:
            fault = fake._faults.pop(0) if fake._faults else None
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and fault.status != 200:
            self._record(path, op, variables, fault.status, query)
            self._send(fault.status, f"injected {fault.status}".encode(), fault.headers)
            return
        expected = "Basic " + base64.b64encode(f"api:{fake.api_key}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._record(path, op, variables, 401, query)
            self._send(401, b'{"errors":[{"message":"unauthorized"}]}')
            return
        if op not in KNOWN_OPERATIONS:
            fake._problem(f"unknown GraphQL operation {op!r}: {' '.join(query.split())[:300]}")
        self._record(path, op, variables, 200, query)
        self._send(200, json.dumps(fake.execute(query, variables)).encode(), fault.headers if fault else None)
