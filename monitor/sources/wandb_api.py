"""runwatch's client for the W&B public API: targets, credentials, and one batched GraphQL POST per poll.

Pieces, from the outside in:

- `parse_wandb_target(s) -> WandbTarget | None`: `wandb://ENTITY/PROJECT/RUN_ID`, `wandb://ENTITY/PROJECT`
  (the project's running runs), `wandb://ENTITY/PROJECT?last=20&state=finished&tag=T` (a selection of
  its runs, see `monitor.sources.wandb_select`) and W&B run URLs (`https://wandb.ai/E/P/runs/ID?...`). None means
  "not a W&B target"; a `wandb://` string that is malformed raises `TargetError`.
- `resolve_credentials(base_url=None) -> WandbCredentials`: the base URL (target's, else
  `WANDB_BASE_URL`, else wandb's own settings, read without a request) and the API key
  (`WANDB_API_KEY`, else the `~/.netrc` entry `wandb login` wrote). None found: `RunwatchError`.
- `WandbClient(credentials)`: blocking HTTP through `urllib.request`; call it in a thread
  (`asyncio.to_thread`, as `WandbPoller` does). `poll(projects, page_size)` sends ONE POST for any
  number of runs and projects (one GraphQL alias per project and per run): for each run `state`,
  `heartbeatAt`, `historyLineCount`, `displayName`, `id` (the storage id `stop_run` needs) and
  `history(minStep:, maxStep:, samples:)` (the query wandb-core's `HistoryPage` uses; rows come
  back whole, in step order, as long as `maxStep - minStep <= samples`), on request the run's
  `config` and `summaryMetrics`, and optionally the project's running runs or a selection of its
  runs (`runs(filters:, first:, order:)`, with config, summary and tags).
  `stop_run(storage_id) -> bool` sends the `StopRun` mutation (the web
  UI's Stop button). Failures raise `WandbApiError` (a `RunwatchError`) with `kind`
  "unreachable" (refused, timeout, DNS) or "api_error" (HTTP 4xx/5xx, GraphQL errors, junk) and
  `retry_after` seconds for 429s (`RateLimit-Reset` / `Retry-After`).

The poller that drives this (adaptive interval, incremental cursors, states) is
`monitor.sources.wandb_poller.WandbPoller`.
"""

from __future__ import annotations

import base64
import email.utils
import gzip
import http.client
import json
import math
import netrc
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from monitor.errors import RunwatchError, TargetError
from monitor.sources.wandb_select import ORDER, Selection, parse_selection

#: States W&B reports for a run.
RUN_STATES = ("running", "pending", "finished", "failed", "crashed", "killed", "preempting", "preempted")
#: runwatch's own states for a run whose data cannot be fetched (the run is stale, not broken).
UNREACHABLE = "unreachable"
API_ERROR = "api_error"
#: States after which a run logs nothing more. `crashed` and `preempted` are left out: W&B marks a
#: run crashed when heartbeats stop and back to running when they resume, and preempted runs resume.
TERMINAL_STATES = frozenset({"finished", "failed", "killed"})

NO_CREDENTIALS = "no W&B credentials: run `wandb login` or set WANDB_API_KEY"

_NAME = r"[A-Za-z0-9_.\-]+"
_WANDB_SCHEME = re.compile(
    rf"^wandb://(?P<e>{_NAME})/(?P<p>{_NAME})(?:/(?:runs/)?(?P<r>{_NAME}))?/?(?:\?(?P<q>[^#\s]*))?$"
)
_RUN_PATH = re.compile(rf"^/(?:wandb/)?(?P<e>{_NAME})/(?P<p>{_NAME})/runs/(?P<r>{_NAME})(?:/.*)?$")
_FORGE_HOSTS = {"forge.coreweave.com", "qa.forge.coreweave.com"}


@dataclass(frozen=True, slots=True)
class WandbTarget:
    """A W&B run (`run_id` set) or a project (`run_id` None): its running runs, watched as they
    come and go, or with `select` the runs that selection lists once.

    `base_url` is the API address when the target named one (a run URL), else None: the
    default from the environment applies.
    """

    entity: str
    project: str
    run_id: str | None = None
    base_url: str | None = None
    select: Selection | None = None

    @property
    def is_project(self) -> bool:
        return self.run_id is None

    @property
    def path(self) -> str:
        """`ENTITY/PROJECT[/RUN_ID]`, as `wandb.Api().run()` takes it."""
        return "/".join(p for p in (self.entity, self.project, self.run_id) if p)

    def with_run(self, run_id: str) -> WandbTarget:
        """The target for one run of this target's project."""
        return WandbTarget(self.entity, self.project, run_id, self.base_url)

    def __str__(self) -> str:
        return f"wandb://{self.path}" + (f"?{self.select.query()}" if self.select else "")


def api_base_for_host(scheme: str, netloc: str) -> str:
    """The API base URL behind a W&B web UI host (the reverse of wandb's `api_to_app_url`)."""
    host = netloc.lower()
    if host in ("wandb.ai", "www.wandb.ai"):
        return "https://api.wandb.ai"
    if host in _FORGE_HOSTS:
        return f"https://api.{host}"
    if host.startswith("app."):
        return f"{scheme}://api.{netloc[4:]}"
    return f"{scheme}://{netloc}"


def parse_wandb_target(text: str) -> WandbTarget | None:
    """A `WandbTarget` from a `wandb://` string or a W&B run URL; None when `text` is neither."""
    s = text.strip()
    if s.startswith("wandb://"):
        m = _WANDB_SCHEME.match(s)
        if not m:
            raise TargetError(f"{text!r}: expected wandb://ENTITY/PROJECT or wandb://ENTITY/PROJECT/RUN_ID")
        if m["q"] is None:
            return WandbTarget(m["e"], m["p"], m["r"])
        if m["r"]:
            raise TargetError(f"{text!r}: a selection (?last=, state=, tag=) applies to a project, not a run")
        return WandbTarget(m["e"], m["p"], select=parse_selection(m["q"], text))
    if not s.startswith(("http://", "https://")):
        return None
    parts = urlsplit(s)
    m = _RUN_PATH.match(unquote(parts.path))
    if not m or not parts.netloc:
        return None
    return WandbTarget(m["e"], m["p"], m["r"], api_base_for_host(parts.scheme, parts.netloc))


# -- credentials ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WandbCredentials:
    """Where the W&B API is and the key to use there."""

    base_url: str
    api_key: str = field(repr=False)


def default_base_url(env: Mapping[str, str] | None = None) -> str:
    """`WANDB_BASE_URL`, else the base URL in wandb's settings (`wandb login --host`), else wandb's default.

    Reading wandb's settings imports wandb (~0.5 s) but sends no request and starts no process.
    """
    env = os.environ if env is None else env
    if env.get("WANDB_BASE_URL"):
        return env["WANDB_BASE_URL"].rstrip("/")
    from wandb.sdk import wandb_setup

    return str(wandb_setup.singleton().settings.base_url).rstrip("/")


def _netrc_key(base_url: str, env: Mapping[str, str]) -> str | None:
    path = Path(env["NETRC"]).expanduser() if env.get("NETRC") else None
    if path is None:
        home = Path(env.get("HOME") or Path.home())
        path = next((p for p in (home / ".netrc", home / "_netrc") if p.exists()), home / ".netrc")
    try:
        entries = netrc.netrc(str(path))
    except FileNotFoundError:
        return None
    except (netrc.NetrcParseError, OSError) as e:
        raise RunwatchError(f"cannot read {path}: {e}", title="W&B login needed") from e
    parts = urlsplit(base_url)
    hosts = [parts.netloc, parts.hostname or ""]
    if parts.hostname and parts.hostname.removeprefix("api.") in _FORGE_HOSTS:
        hosts.append("api.wandb.ai")  # wandb falls back to the W&B host behind a Forge proxy
    for host in hosts:
        found = entries.authenticators(host) if host else None
        if found and found[2]:
            return found[2]
    return None


def resolve_credentials(base_url: str | None = None, *, env: Mapping[str, str] | None = None) -> WandbCredentials:
    """Base URL and API key for the W&B API; raises `RunwatchError` (one line) when there is no key."""
    env = os.environ if env is None else env
    base = (base_url or default_base_url(env)).rstrip("/")
    key = env.get("WANDB_API_KEY") or _netrc_key(base, env)
    if not key:
        raise RunwatchError(NO_CREDENTIALS, title="W&B login needed")
    return WandbCredentials(base, key.strip())


# -- HTTP ----------------------------------------------------------------------------------------


class WandbApiError(RunwatchError):
    """A W&B API request that failed: `kind` is "unreachable" or "api_error"; 429s carry `retry_after`."""

    def __init__(
        self,
        message: str,
        *,
        kind: str = API_ERROR,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, title="W&B API")
        self.kind = kind
        self.status = status
        self.retry_after = retry_after


def retry_after_seconds(headers: Mapping[str, str] | Any, now: float | None = None) -> float | None:
    """Seconds to wait per `RateLimit-Reset` and/or `Retry-After` (seconds or an HTTP date); longer wins."""
    now = time.time() if now is None else now
    waits = []
    for name in ("RateLimit-Reset", "X-RateLimit-Reset", "Retry-After"):
        raw = headers.get(name)
        if raw is None:
            continue
        raw = str(raw).strip()
        try:
            value = float(raw)
            waits.append(value - now if value > 1e9 else value)  # some servers send an epoch time
        except ValueError:
            try:
                waits.append(email.utils.parsedate_to_datetime(raw).timestamp() - now)
            except (TypeError, ValueError):
                continue
    return max(0.0, *waits) if waits else None


@dataclass(frozen=True, slots=True)
class RunCursor:
    """Fetch `run_id`'s history rows with `min_step <= _step < max_step`."""

    run_id: str
    min_step: int
    max_step: int
    meta: bool = False
    """Also fetch the run's config and summary."""


@dataclass(frozen=True, slots=True)
class ProjectQuery:
    """One project's part of a poll: some runs' new rows, and optionally a page of its running runs
    or the runs a selection names."""

    entity: str
    project: str
    runs: tuple[RunCursor, ...] = ()
    list_running: bool = False
    list_after: str | None = None
    select: Selection | None = None


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What one poll learnt about one run. `history` holds parsed rows (dicts) sorted by `_step`."""

    name: str
    storage_id: str | None
    display_name: str | None
    state: str
    heartbeat_at: str | None
    history_line_count: int | None
    history: tuple[dict[str, Any], ...] = ()
    config: dict[str, Any] | None = None
    """The run config (`{key: value}`, W&B's `_wandb` bookkeeping left out), when asked for."""
    summary: dict[str, Any] | None = None
    """The run summary as W&B holds it (last or chosen values per key), when asked for."""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProjectAnswer:
    """A project's part of a poll's answer. `runs[run_id]` is None when W&B does not know the run."""

    runs: Mapping[str, RunInfo | None]
    running: tuple[RunInfo, ...] | None = None
    next_page: str | None = None
    selected: tuple[RunInfo, ...] | None = None
    """The runs the project's selection named (newest first), when it was asked for."""


@dataclass(frozen=True, slots=True)
class PollAnswer:
    """The answer to one batched poll; `wait` is set when W&B said the rate limit is spent."""

    projects: tuple[ProjectAnswer, ...]
    wait: float | None = None


_RUN_FIELDS = "id name displayName state heartbeatAt historyLineCount"
_META_FIELDS = "config summaryMetrics tags"
STOP_RUN = "mutation StopRun($id: ID!) { stopRun(input: {id: $id}) { success } }"


def build_poll_query(projects: Sequence[ProjectQuery], page_size: int) -> tuple[str, dict[str, Any]]:
    """The `RunwatchPoll` document and its variables: one alias per project (`pN`) and per run (`rN`)."""
    decls = ["$pageSize: Int!"]
    body = []
    variables: dict[str, Any] = {"pageSize": page_size}
    for i, pq in enumerate(projects):
        decls += [f"$e{i}: String!", f"$p{i}: String!"]
        variables[f"e{i}"], variables[f"p{i}"] = pq.entity, pq.project
        sel = []
        for j, rc in enumerate(pq.runs):
            k = f"{i}_{j}"
            decls += [f"$n{k}: String!", f"$min{k}: Int64!", f"$max{k}: Int64!"]
            variables.update({f"n{k}": rc.run_id, f"min{k}": rc.min_step, f"max{k}": rc.max_step})
            meta = f" {_META_FIELDS}" if rc.meta else ""
            sel.append(
                f"r{j}: run(name: $n{k}) {{ {_RUN_FIELDS}{meta} "
                f"history(minStep: $min{k}, maxStep: $max{k}, samples: $pageSize) }}"
            )
        if pq.list_running:
            decls += [f"$f{i}: JSONString", f"$a{i}: String"]
            variables[f"f{i}"], variables[f"a{i}"] = json.dumps({"state": "running"}), pq.list_after
            sel.append(
                f'running: runs(filters: $f{i}, first: 100, after: $a{i}, order: "+created_at") '
                f"{{ edges {{ node {{ {_RUN_FIELDS} }} }} pageInfo {{ endCursor hasNextPage }} }}"
            )
        if pq.select is not None:
            decls += [f"$s{i}: JSONString", f"$k{i}: Int"]
            variables[f"s{i}"], variables[f"k{i}"] = pq.select.filters_json(), pq.select.last
            sel.append(
                f'selected: runs(filters: $s{i}, first: $k{i}, order: "{ORDER}") '
                f"{{ edges {{ node {{ {_RUN_FIELDS} {_META_FIELDS} }} }} }}"
            )
        body.append(f"p{i}: project(name: $p{i}, entityName: $e{i}) {{ {' '.join(sel) or 'name'} }}")
    return f"query RunwatchPoll({', '.join(decls)}) {{ {' '.join(body)} }}", variables


def _history_row(item: Any) -> dict[str, Any] | None:
    # W&B sends each row as a JSON string; NaN and Infinity appear as bare literals, which json accepts.
    row = json.loads(item) if isinstance(item, str | bytes) else item
    step = row.get("_step") if isinstance(row, dict) else None
    return row if isinstance(step, int | float) and math.isfinite(step) else None


def _json_object(raw: Any) -> dict[str, Any] | None:
    """A JSONString field (W&B sends config and summary as JSON text) as a dict; None when absent."""
    if raw is None:
        return None
    obj = json.loads(raw) if isinstance(raw, str | bytes) else raw
    return obj if isinstance(obj, dict) else {}


def run_config(raw: Any) -> dict[str, Any] | None:
    """A run's config from W&B's `{key: {"value": v, "desc": d}}` form (`_wandb` left out)."""
    obj = _json_object(raw)
    if obj is None:
        return None
    return {
        k: (v["value"] if isinstance(v, dict) and "value" in v else v)
        for k, v in obj.items()
        if not str(k).startswith("_wandb")
    }


def _run_info(node: Mapping[str, Any], with_history: bool) -> RunInfo:
    rows: list[dict[str, Any]] = []
    if with_history:
        rows = [r for r in map(_history_row, node.get("history") or ()) if r is not None]
        rows.sort(key=lambda r: r["_step"])
    count = node.get("historyLineCount")
    tags = node.get("tags")
    return RunInfo(
        name=str(node["name"]),
        storage_id=node.get("id"),
        display_name=node.get("displayName"),
        state=str(node.get("state") or "unknown").lower(),
        heartbeat_at=node.get("heartbeatAt"),
        history_line_count=int(count) if isinstance(count, int | float) else None,
        history=tuple(rows),
        config=run_config(node.get("config")),
        summary=_json_object(node.get("summaryMetrics")),
        tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
    )


class WandbClient:
    """Blocking HTTP access to one W&B backend; call it from a thread, never the event loop."""

    def __init__(self, credentials: WandbCredentials, *, timeout: float = 30.0) -> None:
        self.credentials = credentials
        self.timeout = timeout
        token = base64.b64encode(f"api:{credentials.api_key}".encode()).decode()
        self._headers = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": "gzip",
            "User-Agent": "runwatch",
        }

    @property
    def base_url(self) -> str:
        return self.credentials.base_url

    def graphql(self, query: str, variables: Mapping[str, Any]) -> tuple[dict[str, Any], float | None]:
        """POST one GraphQL document; returns `(data, wait)`, `wait` set when the rate limit is spent."""
        host = urlsplit(self.base_url).netloc or self.base_url
        payload = json.dumps({"query": query, "variables": dict(variables)}).encode()
        req = urllib.request.Request(f"{self.base_url}/graphql", payload, self._headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw, headers = resp.read(), resp.headers
            if headers.get("Content-Encoding", "").lower() == "gzip":
                raw = gzip.decompress(raw)
        except urllib.error.HTTPError as e:
            raise _http_error(e) from None
        except urllib.error.URLError as e:
            raise WandbApiError(f"cannot reach {host}: {_reason(e.reason)}", kind=UNREACHABLE) from None
        except (OSError, EOFError, http.client.HTTPException) as e:
            raise WandbApiError(f"cannot reach {host}: {_reason(e)}", kind=UNREACHABLE) from None
        try:
            body = json.loads(raw)
        except ValueError:
            raise WandbApiError(f"{host} answered with something that is not JSON") from None
        data = body.get("data") if isinstance(body, dict) else None
        errors = body.get("errors") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            msg = errors[0].get("message") if errors and isinstance(errors[0], dict) else "no data"
            raise WandbApiError(f"W&B API error: {' '.join(str(msg).split())[:200]}")
        wait = None
        if str(headers.get("RateLimit-Remaining", "")).strip() == "0":
            wait = retry_after_seconds(headers)
        return data, wait

    def poll(self, projects: Sequence[ProjectQuery], page_size: int) -> PollAnswer:
        """One POST: new history rows and state for every run in `projects`, plus requested listings."""
        query, variables = build_poll_query(projects, page_size)
        data, wait = self.graphql(query, variables)
        try:
            answers = []
            for i, pq in enumerate(projects):
                proj = data.get(f"p{i}") or {}
                runs: dict[str, RunInfo | None] = {}
                for j, rc in enumerate(pq.runs):
                    node = proj.get(f"r{j}")
                    runs[rc.run_id] = _run_info(node, True) if node else None
                running, next_page = None, None
                if pq.list_running and proj.get("running"):
                    conn = proj["running"]
                    edges = conn.get("edges") or ()
                    running = tuple(_run_info(e["node"], False) for e in edges if e.get("node"))
                    info = conn.get("pageInfo") or {}
                    next_page = info.get("endCursor") if info.get("hasNextPage") else None
                selected = None
                if pq.select is not None:
                    edges = (proj.get("selected") or {}).get("edges") or ()
                    selected = tuple(_run_info(e["node"], False) for e in edges if e.get("node"))
                answers.append(ProjectAnswer(runs, running, next_page, selected))
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise WandbApiError(f"unexpected answer from W&B: {type(e).__name__}: {e}") from None
        return PollAnswer(tuple(answers), wait)

    def stop_run(self, storage_id: str) -> bool:
        """Ask W&B to stop the run (its storage id, `RunInfo.storage_id`); True when W&B accepted it."""
        data, _ = self.graphql(STOP_RUN, {"id": storage_id})
        return bool((data.get("stopRun") or {}).get("success"))


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    text = str(reason) or type(reason).__name__
    return " ".join(text.split())[:200]


def _http_error(e: urllib.error.HTTPError) -> WandbApiError:
    if e.code == 429:
        wait = retry_after_seconds(e.headers)
        when = f"; retrying in {wait:.0f} s" if wait is not None else ""
        return WandbApiError(f"rate limited by W&B (HTTP 429){when}", status=429, retry_after=wait)
    if e.code in (401, 403):
        hint = "run `wandb login` or check WANDB_API_KEY"
        return WandbApiError(f"W&B rejected the API key (HTTP {e.code}): {hint}", status=e.code)
    return WandbApiError(f"W&B API answered HTTP {e.code} {e.reason}".rstrip(), status=e.code)
