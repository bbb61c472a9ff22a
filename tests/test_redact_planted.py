"""Every form of secret, planted everywhere a run can carry one, appears nowhere runwatch writes or sends.

Planted in: the log, the config (run name, stop command, stop table), the environment, a real `.wandb`
run's config, name and console, and the command line of the process writing a log. Searched in: every
file of every bundle (and the bundle directories' names), the audit log, `watch` output (text and
JSON lines) and the requests the reviewer received. Expected hits: 0.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.actions.api import Actions
from monitor.actions.audit import AUDIT_FILE
from monitor.check import check_target
from monitor.config import Config, ReviewerConfig, RunConfig
from monitor.watch import watch
from tests.test_actions_reviewer import LLMServer, llm  # noqa: F401  (fixture)
from tests.test_wandb_log import write_offline_run

pytestmark = pytest.mark.timeout(240)

WANDB_V1 = "wandb_v1_" + "Q7xLp2Rk9ZtB4mWc8NvD3hYs6GfJ1aKe" + "Hy5Tq8Wd1Zm4Nc7Vb0Ls3Pk6Rj9Fg2Xa"
WANDB_OLD = "9c1e4b7a2d5f8a0b3c6e9d2f5a8b1c4e7f0a3d6b"
OPENAI = "sk-proj-Pq7Rs2Tu9Vw4Xy1Za8Bc3De6Fg"
ANTHROPIC = "sk-ant-api03-Mn4Bv7Cx1Zl8Kj5Hg2Fd-Sa9Qw_6Er3"
HF = "hf_Tg5Yh8Uj1Ik4Ol7Pa0Sd3Fg6Hj9Kl2Zx"
AWS_ID = "AKIAZ7X3C9V1B5N2M8Q4"
AWS_SECRET = "Rk8/Lp3Mq7Nw2Xv9+Bz4Cj6Df1Gh5Hk0Jm3Pn8Qs"
GITHUB = "ghp_Wq3Er6Ty9Ui2Op5As8Df1Gh4Jk7Lz0Xc3Vb"
GITLAB = "glpat-Nm5Bv8Cx2Zl7Kj4Hg1Fd"
SLACK = "xoxb-918273645012-Qa7Ws3Ed9Rf"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyIjoicGxhbnRlZCJ9.Zm9vYmFy"
URL_PW = "Url/Pa55@w0rd-7"
CURL_PW = "CurlPw-3814-zz"
FLAG_PW = "FlagPw-5521-qq"
FLAG_EQ = "ApiKeyEq-6630-rr"
MYSQL_PW = "MyS9lPw4417"
PEM = "MIIEpAIBAAKCAQEAw7Zq9Xk2Lm5Np8Qr1St4Uv7Wx0Yz3Ab6Cd9Ef2Gh5Ij8Kl1Mn"
CONFIG_SECRET = "cfg-Secret-Value-8812"
ENV_SECRET = "env-only-Token-4471"
WANDB_CFG = "wandb-cfg-Passw0rd-1199"

SECRETS = {
    "wandb_v1": WANDB_V1, "wandb": WANDB_OLD, "openai": OPENAI, "anthropic": ANTHROPIC, "hf": HF,
    "aws_id": AWS_ID, "aws_secret": AWS_SECRET, "github": GITHUB, "gitlab": GITLAB, "slack": SLACK,
    "bearer": BEARER, "url_password": URL_PW, "curl_password": CURL_PW, "flag_password": FLAG_PW,
    "flag_equals": FLAG_EQ, "mysql": MYSQL_PW, "private_key": PEM, "config_value": CONFIG_SECRET,
    "env_value": ENV_SECRET, "wandb_config": WANDB_CFG,
}  # fmt: skip

LOG_SECRETS = [
    f"export WANDB_API_KEY={WANDB_V1}",
    f"wandb login {WANDB_OLD}",
    f"openai client with {OPENAI}",
    f"anthropic={ANTHROPIC}",
    f"hub login {HF}",
    f"aws {AWS_ID} {AWS_SECRET}",
    f"git clone https://{GITHUB}@github.com/acme/m.git",
    f"gitlab {GITLAB} slack {SLACK}",
    f"curl -H 'Authorization: Bearer {BEARER}' https://api",
    f"db at postgres://trainer:{URL_PW}@db.internal:5432/x",
    f"curl -u alice:{CURL_PW} https://ctl",
    f"launch: python train.py --lr --password {FLAG_PW} --api-key={FLAG_EQ}",
    f"mysql -h db -u root -p{MYSQL_PW} runs",
    "-----BEGIN RSA PRIVATE KEY-----",
    PEM,
    f"service token {ENV_SECRET} in use",
    f"config echo {CONFIG_SECRET}",
]

WANDB_WRITER = """
import math, sys, wandb
name, secret, hf, launch, echo = sys.argv[1:6]
run = wandb.init(project="p", name=name, config={"db_password": secret, "hf_token": hf, "launch": launch})
for s in range(1, 80):
    run.log({"loss": 3.0 * math.exp(-s / 30) + 1.0 if s < 70 else float("nan")}, step=s)
print(echo)
run.finish()
"""

HOLDER = "import sys, time\nf = open(sys.argv[1], 'a')\ntime.sleep(float(sys.argv[2]))\n"


def _jsonl(path: Path, start: int, stop: int, *, nan_from: int | None = None) -> None:
    with path.open("a") as f:
        for s in range(start, stop):
            loss = math.nan if nan_from is not None and s >= nan_from else 3.0 * math.exp(-s / 60) + 1.0
            f.write(json.dumps({"step": s, "loss": loss, "lr": 3e-4}) + "\n")


def _leaks(text: str) -> list[str]:
    return [kind for kind, secret in SECRETS.items() if secret in text]


async def _wait_for(cond: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], Config, subprocess.Popen[bytes]]:
    monkeypatch.setenv("MY_SERVICE_TOKEN", ENV_SECRET)
    root = tmp_path / "runs"
    root.mkdir()
    write_offline_run(
        root, WANDB_WRITER, f"exp-{GITHUB}", WANDB_CFG, HF, f"train.py --lr --password {FLAG_PW}", f"Bearer {BEARER}"
    )
    log_a = root / "a.log"
    _jsonl(log_a, 1, 100)
    log_a.write_text(log_a.read_text() + "\n".join(LOG_SECRETS) + "\n")
    _jsonl(log_a, 100, 130, nan_from=120)
    log_b = root / "b.log"
    _jsonl(log_b, 1, 130, nan_from=125)
    # The process "writing" log b: its command line carries secrets the stop plan would show.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(log_b), "200", "--lr", "3e-4", "--password", FLAG_PW,
         f"--api-key={FLAG_EQ}", "mysql", f"-p{MYSQL_PW}", f"https://u:{URL_PW}@h.example/x"],
    )  # fmt: skip
    stop_a = {
        # The table's own secret goes into the command where no pattern would know it: only the config does.
        "command": f"curl -H 'Authorization: Bearer {BEARER}' -u alice:{CURL_PW} https://ctl/{{job_id}} {{api_token}}",
        "job_id": "42",
        "api_token": CONFIG_SECRET,
    }
    config = Config(
        evidence_dir=tmp_path / "ev",
        runs=(
            RunConfig(target=str(log_a), name=f"gpt-{HF}", stop=stop_a),
            RunConfig(target=str(log_b), name=f"b-{GITLAB}"),
        ),
    )
    time.sleep(0.5)  # the holder has the log open
    yield [str(log_a), str(log_b), str(root / "wandb")], config, holder
    holder.kill()
    holder.wait()


def _run_watch(targets: list[str], config: Config, *, jsonl: bool) -> str:
    out = io.StringIO()

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(watch(targets, config, out=out, stop=stop, on_bad="stop", jsonl=jsonl))
        marker = '"event": "stop"' if jsonl else " ! stop "
        await _wait_for(lambda: out.getvalue().count(marker) >= len(targets))
        stop.set()
        await task

    asyncio.run(go())
    return out.getvalue()


@pytest.mark.slow
def test_planted_secrets_appear_nowhere(
    planted: tuple[list[str], Config, subprocess.Popen[bytes]],
    llm: LLMServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    targets, config, holder = planted
    watched_text = _run_watch(targets, config, jsonl=False)
    watched_json = _run_watch(targets, config, jsonl=True)
    assert holder.poll() is None  # rehearsed, never signalled
    stops = [json.loads(line) for line in watched_json.splitlines() if '"event": "stop"' in line]
    assert len(stops) >= 3 and all(s["plan"] for s in stops)

    # The reviewer over HTTP, evidence and a rehearsed stop through the same API the TUI uses.
    reviewer = ReviewerConfig(backend="openai", model="m", base_url=llm.url, retries=0)
    cfg = Config(evidence_dir=config.evidence_dir, runs=config.runs, reviewer=reviewer)

    async def act() -> None:
        actions = Actions(cfg, settle=0.0)
        for t in targets:
            actions.add_run(t, check_target(t, cfg))
            await actions.escalate(t)
            await actions.save_evidence(
                t, screenshot_svg=f"<svg><text>{t}&#160;api_key:&#160;{ENV_SECRET}</text></svg>"
            )
            await actions.execute_stop(await actions.plan_stop(t), dry_run=True)
        await actions.aclose()

    asyncio.run(act())
    assert len(llm.requests) == len(targets)

    ev = config.evidence_dir
    bundles = [p for p in ev.iterdir() if p.is_dir()]
    assert len(bundles) >= 3 * len(targets)
    leaks: dict[str, list[str]] = {}
    for path in [ev, *ev.rglob("*")]:
        leaks[f"name of {path.name}"] = _leaks(path.name)
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"
        if path.is_file():
            leaks[str(path.relative_to(ev))] = _leaks(path.read_text(encoding="utf-8"))
    assert (ev / AUDIT_FILE).exists()
    leaks["watch text"] = _leaks(watched_text)
    leaks["watch jsonl"] = _leaks(watched_json)
    for i, req in enumerate(llm.requests):
        assert "Run:" in req["body"]["messages"][1]["content"]
        leaks[f"reviewer request {i}"] = _leaks(json.dumps(req["body"]) + req["path"])
    assert {k: v for k, v in leaks.items() if v} == {}
    # And every secret was really there to be found.
    (wandb_file,) = (tmp_path / "runs" / "wandb").glob("offline-run-*/run-*.wandb")
    raw = [Path(t).read_text() for t in targets[:2]] + [repr(config.runs), ENV_SECRET, " ".join(map(str, holder.args))]
    raw.append(wandb_file.read_bytes().decode(errors="replace"))
    assert set(_leaks("\n".join(raw))) == set(SECRETS)
