"""The reviewer: OpenAI-compatible and Anthropic-style HTTP servers on 127.0.0.1, and a command script."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from monitor import demo
from monitor.actions.api import Actions
from monitor.actions.escalation import EscalationLimiter, answer_stops_run, wants_auto_escalation
from monitor.actions.evidence import collect_evidence, write_bundle
from monitor.actions.prompt import build_prompt
from monitor.actions.reviewer import ReviewerAnswer, ask_reviewer, parse_answer
from monitor.actions.runref import make_ref
from monitor.check import check_target
from monitor.config import Config, ReviewerConfig, RunConfig
from monitor.model import Verdict

pytestmark = pytest.mark.timeout(60)  # every test here is bounded; slower ones say so

PROMPT = "Run: x\nAnswer with exactly one word on the first line: STOP, CONTINUE or WAIT.\n"


@dataclass
class Reply:
    """One canned answer: the text, or an HTTP status, after an optional delay."""

    text: str = "WAIT\nit is too early to tell"
    status: int = 200
    delay: float = 0.0


@dataclass
class LLMServer:
    """A local chat server: OpenAI `/v1/chat/completions` and Anthropic `/v1/messages` shapes."""

    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def next_reply(self) -> Reply:
        return self.replies.pop(0) if self.replies else Reply()


@pytest.fixture
def llm() -> Iterator[LLMServer]:
    state = LLMServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(
                {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
            )
            reply = state.next_reply()
            if reply.delay:
                time.sleep(reply.delay)
            if reply.status != 200:
                payload = json.dumps({"error": {"message": "overloaded"}}).encode()
            elif self.path.endswith("/messages"):
                payload = json.dumps({"content": [{"type": "text", "text": reply.text}], "role": "assistant"}).encode()
            else:
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply.text}}]}).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the client gave up (the time-out test)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _no_sleep(_: float) -> None:
    pass


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("text", "decision", "reason"),
    [
        ("STOP\nthe loss is NaN", "STOP", "the loss is NaN"),
        ("CONTINUE - loss still falling", "CONTINUE", "loss still falling"),
        ("**WAIT**\n\nToo early to tell.", "WAIT", "Too early to tell"),
    ],
)
def test_openai_compatible_server(llm: LLMServer, text: str, decision: str, reason: str) -> None:
    llm.replies.append(Reply(text))
    cfg = ReviewerConfig(backend="openai", model="local-model", timeout=5)
    env = {"OPENAI_API_KEY": "sk-test-0000000000000000000000", "OPENAI_BASE_URL": llm.url + "/v1"}
    answer = ask_reviewer(cfg, PROMPT, run_id="r1", run_name="run one", env=env)
    assert (answer.decision, answer.reason, answer.error) == (decision, reason, None)
    assert answer.attempts == 1 and answer.raw == text
    (req,) = llm.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["authorization"] == "Bearer sk-test-0000000000000000000000"
    assert req["body"]["model"] == "local-model"
    assert [m["role"] for m in req["body"]["messages"]] == ["system", "user"]
    assert req["body"]["messages"][1]["content"] == PROMPT


@pytest.mark.timeout(30)
def test_anthropic_server_with_configured_version(llm: LLMServer) -> None:
    llm.replies.append(Reply("STOP\nloss diverged"))
    cfg = ReviewerConfig(backend="anthropic", model="claude-x", base_url=llm.url, anthropic_version="2024-10-22")
    answer = ask_reviewer(cfg, PROMPT, run_id="r1", run_name="r", env={"ANTHROPIC_API_KEY": "ak-test"})
    assert answer.decision == "STOP" and answer.reason == "loss diverged"
    (req,) = llm.requests
    assert req["path"] == "/v1/messages"
    assert req["headers"]["x-api-key"] == "ak-test"
    assert req["headers"]["anthropic-version"] == "2024-10-22"
    assert req["body"]["model"] == "claude-x" and req["body"]["messages"] == [{"role": "user", "content": PROMPT}]
    assert "STOP, CONTINUE or WAIT" in req["body"]["system"]
    assert "anthropic claude-x" in answer.backend


@pytest.mark.timeout(30)
def test_garbage_answer_is_shown_and_decides_nothing(llm: LLMServer) -> None:
    llm.replies.append(Reply("I am not sure, it could go either way. STOP or WAIT?"))
    cfg = ReviewerConfig(backend="openai", model="m", base_url=llm.url, retries=2)
    answer = ask_reviewer(cfg, PROMPT, run_id="r", run_name="r", env={}, sleep=_no_sleep)
    assert answer.decision is None and not answer.ok
    assert answer.error == "the answer did not say STOP, CONTINUE or WAIT"
    assert answer.raw.startswith("I am not sure") and answer.one_line().startswith("no answer:")
    assert len(llm.requests) == 1  # garbage is not retried
    assert "authorization" not in llm.requests[0]["headers"]  # no key, no header (local vLLM, Ollama)


@pytest.mark.timeout(30)
def test_hanging_http_reviewer_times_out_then_retries(llm: LLMServer) -> None:
    llm.replies += [Reply(delay=3.0), Reply(delay=3.0)]
    cfg = ReviewerConfig(backend="openai", model="m", base_url=llm.url, timeout=0.3, retries=1)
    t0 = time.monotonic()
    answer = ask_reviewer(cfg, PROMPT, run_id="r", run_name="r", env={}, sleep=_no_sleep)
    assert time.monotonic() - t0 < 2.5
    assert answer.decision is None
    assert answer.error == "timed out after 0.3 s (after 2 attempts)"
    assert answer.attempts == 2 and len(answer.transcript) == 2


@pytest.mark.timeout(30)
def test_transient_http_error_is_retried(llm: LLMServer) -> None:
    llm.replies += [Reply(status=503), Reply("CONTINUE\nfine")]
    cfg = ReviewerConfig(backend="openai", model="m", base_url=llm.url, retries=1)
    answer = ask_reviewer(cfg, PROMPT, run_id="r", run_name="r", env={}, sleep=_no_sleep)
    assert answer.decision == "CONTINUE" and answer.attempts == 2
    assert answer.transcript[0].startswith("attempt 1: HTTP 503")


@pytest.mark.timeout(30)
def test_unreachable_and_unconfigured_reviewers_say_why() -> None:
    cfg = ReviewerConfig(backend="openai", model="m", base_url="http://127.0.0.1:9", retries=0)
    answer = ask_reviewer(cfg, PROMPT, run_id="r", run_name="r", env={})
    assert answer.decision is None and "cannot reach http://127.0.0.1:9" in (answer.error or "")
    answer = ask_reviewer(ReviewerConfig(), PROMPT, run_id="r", run_name="r", env={})
    assert answer.attempts == 0 and "no reviewer configured" in (answer.error or "")
    answer = ask_reviewer(ReviewerConfig(backend="anthropic", model="m"), PROMPT, run_id="r", run_name="r", env={})
    assert answer.error == "ANTHROPIC_API_KEY is not set"


REVIEWER_SCRIPT = """\
import os, subprocess, sys, time
mode = sys.argv[1]
prompt = sys.stdin.read()
with open(os.environ["PROMPT_LOG"], "a") as f:
    f.write(prompt + "\\n=====\\n")
if mode == "hang":
    child = subprocess.Popen(["sleep", "30"])  # holds stdout open: the whole tree must be killed
    open(os.environ["PROMPT_LOG"] + ".child", "w").write(str(child.pid))
    time.sleep(30)
elif mode == "fail":
    print("quota exceeded", file=sys.stderr)
    sys.exit(3)
elif mode == "garbage":
    print("Hmm. Hard to say.")
else:
    print(mode.upper())
    print("because the numbers say so")
"""


@pytest.fixture
def reviewer_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "reviewer.py"
    script.write_text(REVIEWER_SCRIPT)
    monkeypatch.setenv("PROMPT_LOG", str(tmp_path / "prompts.txt"))
    return script


def _command(script: Path, mode: str, **kw: Any) -> ReviewerConfig:
    return ReviewerConfig(backend="command", command=(sys.executable, str(script), "{model}"), model=mode, **kw)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["stop", "continue", "wait"])
def test_command_reviewer_answers(reviewer_script: Path, tmp_path: Path, mode: str) -> None:
    answer = ask_reviewer(_command(reviewer_script, mode), PROMPT, run_id="r", run_name="r")
    assert answer.decision == mode.upper() and answer.reason == "because the numbers say so"
    assert answer.backend == f"command: {sys.executable} {reviewer_script} {mode}"
    assert (tmp_path / "prompts.txt").read_text().startswith(PROMPT)


@pytest.mark.timeout(30)
def test_command_reviewer_garbage_and_failure(reviewer_script: Path) -> None:
    garbage = ask_reviewer(_command(reviewer_script, "garbage"), PROMPT, run_id="r", run_name="r")
    assert garbage.decision is None and garbage.raw.strip() == "Hmm. Hard to say."
    failed = ask_reviewer(_command(reviewer_script, "fail", retries=0), PROMPT, run_id="r", run_name="r")
    assert failed.decision is None
    assert failed.error is not None and "exited with status 3: quota exceeded" in failed.error


@pytest.mark.timeout(30)
def test_hanging_command_reviewer_times_out_and_its_children_die(reviewer_script: Path, tmp_path: Path) -> None:
    t0 = time.monotonic()
    answer = ask_reviewer(_command(reviewer_script, "hang", timeout=1.0, retries=0), PROMPT, run_id="r", run_name="r")
    assert time.monotonic() - t0 < 5
    assert answer.decision is None and answer.error == "timed out after 1 s"
    child = int((tmp_path / "prompts.txt.child").read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("STOP", ("STOP", "")),
        ("stop: the loss is NaN", ("STOP", "the loss is NaN")),
        ("Decision: WAIT\nReason: still warming up", ("WAIT", "still warming up")),
        ('{"decision": "continue", "reason": "fine"}', ("CONTINUE", "fine")),
        ("<think>STOP? WAIT?</think>\nCONTINUE\nloss falls", ("CONTINUE", "loss falls")),
        ("The loss is flat. I would WAIT for the next eval.", ("WAIT", "The loss is flat. I would for the next eval")),
        ("STOP or WAIT", None),
        ("maybe", None),
        ("", None),
        ('{"decision": "pause"}', None),
    ],
)
def test_parse_answer(text: str, want: tuple[str, str] | None) -> None:
    assert parse_answer(text) == want


def test_prompt_holds_the_numbers_the_baseline_and_what_is_uncertain(tmp_path: Path) -> None:
    path = demo.write_all(tmp_path)["plateau"]
    a = check_target(str(path), Config())
    assert a.judgement().verdict is Verdict.UNSURE
    ref = make_ref(str(path), a, RunConfig(target=str(path), baseline={"val/loss": 2.1}))
    prompt = build_prompt(ref)
    assert "Run: " + a.info.name in prompt and str(path) in prompt
    assert "step 599 (total steps unknown)" in prompt
    assert "Last 10 values of train_loss" in prompt
    assert prompt.count("\n  5") >= 9  # ten steps 590..599
    assert "val/loss = 2.1" in prompt
    assert "plateau [warn]" in prompt
    assert "What is uncertain: the loss is flat but not diverging" in prompt
    assert "STOP" in prompt and "CONTINUE" in prompt and "WAIT" in prompt


def test_escalation_limiter_and_auto_stop_rules() -> None:
    lim = EscalationLimiter(interval_s=1800)
    assert lim.take("a", 1000.0) and not lim.take("a", 1000.0 + 1799) and lim.take("b", 1001.0)
    assert lim.next_at("a") == 2800.0 and lim.take("a", 2800.0)
    cfg = ReviewerConfig(auto=True)
    assert wants_auto_escalation(cfg, Verdict.UNSURE)
    assert not wants_auto_escalation(cfg, Verdict.BAD) and not wants_auto_escalation(ReviewerConfig(), Verdict.UNSURE)
    stop = ReviewerAnswer("r", "r", "b", "STOP", "broken", None, "p")
    assert not answer_stops_run(ReviewerConfig(), stop)
    assert answer_stops_run(ReviewerConfig(auto_stop=True), stop)
    assert not answer_stops_run(ReviewerConfig(auto_stop=True), ReviewerAnswer("r", "r", "b", "WAIT", "", None, "p"))


@pytest.mark.timeout(30)
def test_actions_escalate_auto_once_per_interval_and_answer_goes_into_the_next_bundle(
    reviewer_script: Path, tmp_path: Path
) -> None:
    path = str(demo.write_all(tmp_path / "runs")["plateau"])
    a = check_target(path, Config())
    now = [10_000.0]
    cfg = Config(evidence_dir=tmp_path / "ev", reviewer=_command(reviewer_script, "wait", auto=True))
    actions = Actions(cfg, clock=lambda: now[0])
    actions.add_run(path, a)

    async def go() -> tuple[ReviewerAnswer | None, ReviewerAnswer | None, ReviewerAnswer | None]:
        first = await actions.auto_escalate(path)
        second = await actions.auto_escalate(path)
        now[0] += 30 * 60
        third = await actions.auto_escalate(path)
        return first, second, third

    first, second, third = asyncio.run(go())
    assert first is not None and first.decision == "WAIT"
    assert second is None and third is not None
    assert actions.last_answer(path) is third
    bundle = asyncio.run(actions.save_evidence(path))
    assert "WAIT: because the numbers say so" in (bundle.path / "summary.md").read_text()
    exchange = (bundle.path / "reviewer.md").read_text()
    assert "Last 10 values of train_loss" in exchange and "because the numbers say so" in exchange
    assert json.loads((bundle.path / "reviewer.json").read_text())["decision"] == "WAIT"


def test_no_answer_still_goes_into_the_bundle(tmp_path: Path) -> None:
    path = str(demo.write_all(tmp_path / "runs")["plateau"])
    a = check_target(path, Config())
    answer = ask_reviewer(ReviewerConfig(), "p", run_id=path, run_name="x", env=os.environ)
    ev = collect_evidence(make_ref(path, a), now=time.time(), review=answer)
    bundle = write_bundle(ev, tmp_path / "ev")
    assert "no answer: no reviewer configured" in (bundle.path / "summary.md").read_text()
