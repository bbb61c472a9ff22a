"""Ask a reviewer (an LLM behind a command or an HTTP API) whether to STOP, CONTINUE or WAIT.

Backends, from `[reviewer]` in the config:

- `command`: an argv template (`["llm", "-m", "{model}"]`, `["codex", "exec", "-"]`, `["claude", "-p"]`);
  the prompt goes to stdin (or replaces a `{prompt}` argument), the answer is read from stdout.
- `openai`: `POST {base}/v1/chat/completions` (OpenAI, vLLM, Ollama, llama.cpp); key `OPENAI_API_KEY`,
  base `base_url` or `OPENAI_BASE_URL`.
- `anthropic`: `POST {base}/v1/messages` with `x-api-key` and `anthropic-version`; key
  `ANTHROPIC_API_KEY`, base `base_url` or `ANTHROPIC_BASE_URL`.

`ask_reviewer()` blocks (stdlib `urllib` / `subprocess`): call it in a thread, or use
`ask_reviewer_async()`. It never raises for the reviewer's failures: a time-out, an HTTP error
or an answer without STOP / CONTINUE / WAIT comes back as a `ReviewerAnswer` with `error` set
and no decision, which leaves the run's verdict as it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from monitor.config import ReviewerConfig
from monitor.errors import RunwatchError

DECISIONS = ("STOP", "CONTINUE", "WAIT")
SYSTEM = (
    "You review machine-learning training runs for an on-call engineer. Reply with exactly one word on "
    "the first line, STOP, CONTINUE or WAIT, and a short reason (one or two sentences) on the second line."
)
_MAX_ANSWER = 64_000


class ReviewerError(RunwatchError):
    """A reviewer that could not be asked or gave no usable answer; `retry` says if trying again may help."""

    def __init__(self, message: str, *, retry: bool = False) -> None:
        super().__init__(message, title="Reviewer")
        self.retry = retry


@dataclass(frozen=True, slots=True)
class ReviewerAnswer:
    """What the reviewer said about one run (or why it said nothing usable)."""

    run_id: str
    run_name: str
    backend: str
    """The reviewer, for a person: `command: llm -m gpt-4o-mini`, `openai gpt-4o at http://…`."""
    decision: str | None
    """STOP, CONTINUE or WAIT; None when there is no usable answer (see `error`)."""
    reason: str
    error: str | None
    prompt: str
    raw: str = ""
    """The answer text as received (stdout, or the message content)."""
    transcript: tuple[str, ...] = ()
    """One line per attempt: what was tried and what happened."""
    asked_at: float = 0.0
    elapsed: float = 0.0
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.decision is not None

    def one_line(self) -> str:
        """`WAIT: the loss is still falling slowly` or `no answer: timed out after 120 s`."""
        if self.decision is not None:
            return f"{self.decision}: {self.reason}" if self.reason else self.decision
        return f"no answer: {self.error}"

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "name": self.run_name,
            "backend": self.backend,
            "decision": self.decision,
            "reason": self.reason,
            "error": self.error,
            "asked_at": datetime.fromtimestamp(self.asked_at).astimezone().isoformat(timespec="seconds"),
            "elapsed_s": round(self.elapsed, 3),
            "attempts": self.attempts,
            "transcript": list(self.transcript),
            "prompt": self.prompt,
            "answer": self.raw,
        }

    def to_markdown(self) -> str:
        """The exchange for a person: who was asked, when, the decision, the prompt and the answer."""
        when = datetime.fromtimestamp(self.asked_at).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        lines = [
            f"# Reviewer: {self.run_name}",
            "",
            f"Asked {self.backend} at {when} ({self.attempts} attempt(s), {self.elapsed:.1f} s).",
            "",
            f"**{self.one_line()}**",
            "",
            "## Attempts",
            "",
            *(f"- {t}" for t in self.transcript),
            "",
            "## Prompt",
            "",
            "```",
            self.prompt.rstrip(),
            "```",
            "",
            "## Answer as received",
            "",
            "```",
            (self.raw.rstrip() or "(nothing)"),
            "```",
            "",
        ]
        return "\n".join(lines)


# ---- answers -----------------------------------------------------------------------------------

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_LEAD = re.compile(
    r"^[\s*_#>`\-\"'\[(]*(?:decision|answer|verdict)?\s*[:=]?\s*[*_`\"'\[(]*(STOP|CONTINUE|WAIT)\b", re.I
)
_LABELLED = re.compile(r"(?:decision|answer|verdict)\W{0,4}\s*[:=]\s*\W{0,3}(STOP|CONTINUE|WAIT)\b", re.I)
_WORD = re.compile(r"\b(STOP|CONTINUE|WAIT)\b")
_CHOICE = re.compile(r"\b(?:STOP|CONTINUE|WAIT)\s*(?:or|/|\|)\s*(?:STOP|CONTINUE|WAIT)\b", re.I)


def parse_answer(text: str) -> tuple[str, str] | None:
    """(decision, reason) from a reviewer's reply, or None when it does not clearly say one of the three."""
    body = _THINK.sub("", text).strip()
    if not body:
        return None
    try:
        obj = json.loads(body.strip("`").removeprefix("json").strip())
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        d = str(obj.get("decision") or obj.get("answer") or "").strip().upper()
        if d in DECISIONS:
            return d, _clean_reason(str(obj.get("reason") or ""))
        return None
    if _CHOICE.search(body):
        return None  # "STOP or WAIT" restates the question instead of answering it
    lines = [ln for ln in body.splitlines() if ln.strip()]
    m = _LEAD.match(lines[0])
    if m:
        rest = lines[0][m.end() :].strip(" *_`\"'])\t:;,.-–—")
        reason = " ".join([rest, *lines[1:]]).strip()
        return m[1].upper(), _clean_reason(reason)
    m = _LABELLED.search(body)
    if m:
        reason = (body[: m.start()] + " " + body[m.end() :]).strip()
        return m[1].upper(), _clean_reason(reason)
    words = set(_WORD.findall(body))
    if len(words) == 1:
        return words.pop(), _clean_reason(_WORD.sub("", body, count=1))
    return None


def _clean_reason(text: str) -> str:
    text = re.sub(r"^(?:reason|because)\s*[:=\-–—]\s*", "", " ".join(text.split()).strip(" *_`:.-–—"), flags=re.I)
    return text[:400] + ("…" if len(text) > 400 else "")


# ---- backends ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Backend:
    label: str
    ask: Callable[[str, float], str] = field(repr=False)


def make_backend(cfg: ReviewerConfig, env: Mapping[str, str] | None = None) -> _Backend:
    """The configured reviewer; raises `ReviewerError` when it is not usable as configured."""
    env = os.environ if env is None else env
    if cfg.backend == "command":
        if not cfg.command:
            raise ReviewerError('no reviewer configured: set [reviewer] command = [...] (e.g. ["llm", "-m", ...])')
        argv = [a.replace("{model}", cfg.model or "") for a in cfg.command]
        return _Backend(f"command: {' '.join(argv)}", lambda prompt, timeout: _run_command(argv, prompt, timeout))
    if cfg.backend == "openai":
        base = (cfg.base_url or env.get("OPENAI_BASE_URL") or "https://api.openai.com").rstrip("/")
        key = env.get("OPENAI_API_KEY", "")
        model = _model(cfg)
        url = f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"
        return _Backend(f"openai {model} at {base}", lambda p, t: _openai(url, key, model, p, t))
    if cfg.backend == "anthropic":
        base = (cfg.base_url or env.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com").rstrip("/")
        key = env.get("ANTHROPIC_API_KEY", "")
        if not key:
            raise ReviewerError("ANTHROPIC_API_KEY is not set")
        model = _model(cfg)
        url = f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"
        version = cfg.anthropic_version
        return _Backend(f"anthropic {model} at {base}", lambda p, t: _anthropic(url, key, version, model, p, t))
    raise ReviewerError(f"unknown reviewer backend {cfg.backend!r}")


def _model(cfg: ReviewerConfig) -> str:
    if not cfg.model:
        raise ReviewerError(f"[reviewer] model is not set (the {cfg.backend} backend needs a model name)")
    return cfg.model


def _run_command(argv: list[str], prompt: str, timeout: float) -> str:
    uses_arg = any("{prompt}" in a for a in argv)
    args = [a.replace("{prompt}", prompt) for a in argv]
    try:
        # A session of its own, so a time-out kills the whole tree (a wrapper script's children too).
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL if uses_arg else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as e:
        raise ReviewerError(f"cannot run {argv[0]!r}: {e.strerror or e}") from None
    try:
        out, err = proc.communicate(None if uses_arg else prompt.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        raise ReviewerError(f"timed out after {timeout:g} s", retry=True) from None
    except BaseException:
        _kill_tree(proc)
        raise
    if proc.returncode != 0:
        tail = " ".join(err.decode(errors="replace").split())[-300:]
        raise ReviewerError(f"{argv[0]} exited with status {proc.returncode}: {tail or 'no message'}", retry=True)
    return out.decode(errors="replace")[:_MAX_ANSWER]


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - a child that survives SIGKILL of its group
        pass


def _post(url: str, headers: dict[str, str], body: dict[str, Any], timeout: float) -> Any:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read(_MAX_ANSWER * 4)
    except urllib.error.HTTPError as e:
        detail = " ".join(e.read(500).decode(errors="replace").split())[:200]
        retry = e.code == 429 or e.code >= 500
        raise ReviewerError(f"HTTP {e.code} {e.reason}: {detail}".rstrip(": "), retry=retry) from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, TimeoutError):
            raise ReviewerError(f"timed out after {timeout:g} s", retry=True) from None
        raise ReviewerError(f"cannot reach {url}: {reason}", retry=True) from None
    except TimeoutError:
        raise ReviewerError(f"timed out after {timeout:g} s", retry=True) from None
    except OSError as e:
        raise ReviewerError(f"cannot reach {url}: {e}", retry=True) from None
    try:
        return json.loads(raw)
    except ValueError:
        raise ReviewerError(f"{url} answered with something that is not JSON") from None


def _openai(url: str, key: str, model: str, prompt: str, timeout: float) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {
        "model": model,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": 400,
    }
    data = _post(url, headers, body, timeout)
    try:
        return str(data["choices"][0]["message"]["content"] or "")
    except (KeyError, IndexError, TypeError):
        raise ReviewerError("the answer has no choices[0].message.content") from None


def _anthropic(url: str, key: str, version: str, model: str, prompt: str, timeout: float) -> str:
    headers = {"x-api-key": key, "anthropic-version": version}
    body = {"model": model, "max_tokens": 400, "system": SYSTEM, "messages": [{"role": "user", "content": prompt}]}
    data = _post(url, headers, body, timeout)
    try:
        parts = [c.get("text", "") for c in data["content"] if c.get("type") == "text"]
    except (KeyError, TypeError, AttributeError):
        raise ReviewerError("the answer has no content[].text") from None
    return "\n".join(parts)


# ---- asking ------------------------------------------------------------------------------------


def ask_reviewer(
    cfg: ReviewerConfig,
    prompt: str,
    *,
    run_id: str,
    run_name: str,
    env: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> ReviewerAnswer:
    """Ask the configured reviewer, with `cfg.retries` retries on time-outs and transient errors. Blocks."""
    asked = clock()
    start = time.monotonic()
    transcript: list[str] = []

    def answer(
        decision: str | None, reason: str, error: str | None, raw: str, attempts: int, label: str
    ) -> ReviewerAnswer:
        return ReviewerAnswer(
            run_id, run_name, label, decision, reason, error, prompt, raw, tuple(transcript), asked,
            time.monotonic() - start, attempts,
        )  # fmt: skip

    try:
        backend = make_backend(cfg, env)
    except ReviewerError as e:
        transcript.append(f"not asked: {e.message}")
        return answer(None, "", e.message, "", 0, cfg.backend)
    attempts = 0
    last_error = ""
    for attempt in range(1 + max(0, cfg.retries)):
        attempts = attempt + 1
        if attempt:
            sleep(min(30.0, 2.0**attempt))
        t0 = time.monotonic()
        try:
            raw = backend.ask(prompt, cfg.timeout)
        except ReviewerError as e:
            last_error = e.message
            transcript.append(f"attempt {attempts}: {e.message} ({time.monotonic() - t0:.1f} s)")
            if e.retry:
                continue
            break
        parsed = parse_answer(raw)
        if parsed is None:
            transcript.append(f"attempt {attempts}: answer without STOP, CONTINUE or WAIT ({len(raw)} chars)")
            return answer(None, "", "the answer did not say STOP, CONTINUE or WAIT", raw, attempts, backend.label)
        transcript.append(f"attempt {attempts}: {parsed[0]} ({time.monotonic() - t0:.1f} s)")
        return answer(parsed[0], parsed[1], None, raw, attempts, backend.label)
    if attempts > 1:
        last_error = f"{last_error} (after {attempts} attempts)"
    return answer(None, "", last_error, "", attempts, backend.label)


async def ask_reviewer_async(cfg: ReviewerConfig, prompt: str, *, run_id: str, run_name: str) -> ReviewerAnswer:
    """`ask_reviewer` in a worker thread, so an event loop is never blocked."""
    return await asyncio.to_thread(ask_reviewer, cfg, prompt, run_id=run_id, run_name=run_name)
