"""`runwatch check` as a user runs it: exit codes, JSON, --now replay, --format, stdin, errors, config."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.config import load
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "real"


def runwatch(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args], cwd=cwd, capture_output=True, text=True, input=stdin, timeout=120
    )


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def healthy_lines(n: int = 200) -> list[str]:
    return [f"step={i} loss={2 + 3 * math.exp(-i / 40):.4f} lr=0.0003" for i in range(n)]


def test_exit_codes_healthy_unsure_bad_unreadable(tmp_path: Path) -> None:
    ok = write(tmp_path / "ok.log", healthy_lines())
    flat = write(tmp_path / "flat.log", [*healthy_lines(60), *[f"step={i} loss=2.0 lr=0.0003" for i in range(60, 200)]])
    nan = write(tmp_path / "nan.log", [*healthy_lines(100), "step=100 loss=nan lr=0.0003"])
    now = str(time.time())
    assert runwatch("check", str(ok), "--now", now).returncode == 0
    assert runwatch("check", str(flat), "--now", now).returncode == 1
    assert runwatch("check", str(ok), str(nan), "--now", now).returncode == 2
    missing = runwatch("check", str(ok), str(tmp_path / "nope.log"))
    assert missing.returncode == 3
    assert missing.stderr.strip().count("\n") == 0 and "nope.log" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_json_document_shape(tmp_path: Path) -> None:
    nan = write(tmp_path / "nan.log", [*healthy_lines(100), "step=100 loss=nan lr=0.0003"])
    out = runwatch("check", "--json", str(nan), str(tmp_path / "gone.log"))
    assert out.returncode == 3
    doc = json.loads(out.stdout)
    run, gone = doc["runs"]
    assert {"target", "name", "verdict", "decision", "last_step", "findings"} <= set(run)
    assert run["verdict"] == "bad" and run["decision"] == "stop" and run["last_step"] == 100
    f = run["findings"][0]
    assert f["kind"] == "nan" and f["severity"] == "bad" and f["onset_step"] == 100 and f["metric"] == "loss"
    assert {"message", "evidence", "step"} <= set(f)
    assert gone["verdict"] == "error" and "gone.log" in gone["error"]


def test_now_replays_a_finished_log_for_stall_and_idle(tmp_path: Path) -> None:
    log = write(tmp_path / "old.log", healthy_lines())
    written = time.time() - 3 * 3600
    os.utime(log, (written, written))
    # A minute after its last write the run is fine; half an hour later it has stalled (warning);
    # hours later, with no end marker, it is idle: information, not a problem (exit 0).
    soon = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(written + 60))
    assert runwatch("check", str(log), "--now", soon).returncode == 0
    stalled = runwatch("check", "--json", str(log), "--now", str(written + 1800))
    assert stalled.returncode == 1
    assert json.loads(stalled.stdout)["runs"][0]["findings"][0]["kind"] == "stalled"
    late = runwatch("check", "--json", str(log))
    assert late.returncode == 0, late.stdout
    run = json.loads(late.stdout)["runs"][0]
    assert run["state"] == "idle" and run["state_detail"].startswith("idle since ")
    idle = [f for f in run["findings"] if f["active"]]
    assert [f["kind"] for f in idle] == ["idle"] and idle[0]["severity"] == "info"
    assert "not updated since" in idle[0]["message"]


def test_format_forced_and_unknown_format(tmp_path: Path) -> None:
    log = write(tmp_path / "x.txt", [f"iter {i}: loss {3 - i / 100:.4f}, time 10.00ms, mfu 1.00%" for i in range(50)])
    out = runwatch("check", "--json", "--format", "nanogpt", str(log), "--now", str(time.time()))
    assert json.loads(out.stdout)["runs"][0]["format"] == "nanogpt"
    bad = runwatch("check", "--format", "nope", str(log))
    assert bad.returncode == 3 and "valid formats" in bad.stderr and "Traceback" not in bad.stderr


def test_stdin_and_noise_is_counted_not_fatal() -> None:
    text = "\n".join(["\x1b[32mwarming up\x1b[0m", "garbage ::: !!!", *healthy_lines(80), ""])
    out = runwatch("check", "--json", "-", "--now", str(time.time()), stdin=text)
    run = json.loads(out.stdout)["runs"][0]
    assert out.returncode == 0 and run["last_step"] == 79 and run["noise_lines"] >= 2


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
def test_corpus_cases_through_the_cli() -> None:
    nan = CORPUS / "nanogpt-shakespeare-char-nan" / "train.log"
    out = runwatch("check", "--json", str(nan), "--now", str(nan.stat().st_mtime))
    run = json.loads(out.stdout)["runs"][0]
    assert out.returncode == 2 and run["findings"][0]["onset_step"] == 425
    state_dir = CORPUS / "hf-trainer-kgllm-fp16-overflow-healthy"
    out = runwatch("check", str(state_dir), "--now", str((state_dir / "trainer_state.json").stat().st_mtime))
    assert out.returncode == 0, out.stdout


_WRITER = """
import math, wandb
run = wandb.init(mode="offline", project="checktest", config={"lr": 1e-3})
for i in range(60):
    run.log({"train/loss": 3 * math.exp(-i / 30) if i < 50 else float("nan"), "train/global_step": 10 * i})
run.finish()
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_wandb_run_directory_written_by_the_sdk(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", _WRITER], env=env, check=True, timeout=150)
    out = runwatch("check", "--json", str(tmp_path / "wandb" / "latest-run"))
    run = json.loads(out.stdout)["runs"][0]
    assert out.returncode == 2, out.stderr
    assert run["format"] == "wandb" and run["step_key"] == "train/global_step" and run["last_step"] == 590
    assert run["findings"][0]["kind"] == "nan" and run["findings"][0]["onset_step"] == 500


def test_config_errors_name_file_line_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "runwatch.toml"
    cfg.write_text('theme = "dark"\n\n[[run]]\ntarget = "a.log"\nbaselin = { val_loss = 2.0 }\n')
    with pytest.raises(ConfigError) as e:
        load(cfg)
    assert f"{cfg}:5" in str(e.value) and "baselin" in str(e.value)
    cfg.write_text('[thresholds]\nspike_z = "high"\n')
    with pytest.raises(ConfigError, match=r":2: thresholds.spike_z: expected a number"):
        load(cfg)
    out = runwatch("--config", str(cfg), "check", "x.log")
    assert out.returncode == 3 and "Bad config" in out.stderr and "Traceback" not in out.stderr


def test_config_runs_baselines_and_metric_roles(tmp_path: Path) -> None:
    log = write(
        tmp_path / "r.log", [f"step={i} my_objective={3 - i / 100:.3f} heldout={2.5 - i / 200:.3f}" for i in range(50)]
    )
    cfg = tmp_path / "runwatch.toml"
    cfg.write_text(
        f'[[run]]\ntarget = "{log}"\nname = "custom"\n'
        'metrics = { train_loss = "my_objective", eval_loss = "heldout" }\nbaseline = { heldout = 1.0 }\n'
    )
    out = runwatch("--config", str(cfg), "check", "--json", "--now", str(time.time()))
    run = json.loads(out.stdout)["runs"][0]
    assert run["name"] == "custom" and out.returncode == 2
    assert any(f["kind"] == "eval_degradation" and "baseline" in f["message"] for f in run["findings"])


def test_idle_after_is_a_threshold(tmp_path: Path) -> None:
    log = write(tmp_path / "old.log", healthy_lines())
    written = time.time() - 3 * 3600
    os.utime(log, (written, written))
    cfg = tmp_path / "runwatch.toml"
    cfg.write_text("[thresholds]\nidle_after_seconds = 36000\n")
    out = runwatch("--config", str(cfg), "check", "--json", str(log))
    assert out.returncode == 1 and json.loads(out.stdout)["runs"][0]["state"] == "live"


def test_a_bad_config_is_the_same_line_and_exit_code_everywhere(tmp_path: Path) -> None:
    cfg = tmp_path / "runwatch.toml"
    cfg.write_text('[[run]]\ntarget = "a.log"\n\n[[run]]\ntarget = "b.log"\nformt = "kv"\n')
    outs = [runwatch("--config", str(cfg), *cmd) for cmd in (["check", "x.log"], ["watch", "x.log"], ["x.log"])]
    assert [o.returncode for o in outs] == [3, 3, 3]
    assert len({o.stderr for o in outs}) == 1
    assert f"{cfg}:6: run[1].formt: unknown key (did you mean 'format'?)" in outs[0].stderr


def test_binary_and_empty_files_are_refused_unreadable_never_healthy(tmp_path: Path) -> None:
    elf = tmp_path / "libjunk.log"
    elf.write_bytes(Path(sys.executable).resolve().read_bytes()[:65536])
    empty = tmp_path / "empty.log"
    empty.write_text("")
    old = time.time() - 3 * 3600
    for p in (elf, empty):
        os.utime(p, (old, old))
    for p, why in ((elf, "binary data"), (empty, "empty file")):
        r = runwatch("check", str(p), "--json")
        assert r.returncode == 3, r.stdout + r.stderr
        run = json.loads(r.stdout)["runs"][0]
        assert run["verdict"] == "unreadable" and run["decision"] == "wait"
        assert why in run["reason"]
        kinds = {f["kind"] for f in run["findings"]}
        assert kinds == {"source_error"}, kinds  # an unread file is not a stalled or idle run
        text = runwatch("check", str(p))
        assert text.returncode == 3 and "-> WAIT" in text.stdout and "inf" not in text.stdout.lower()


def test_a_junk_wandb_file_with_a_good_header_is_unreadable_in_check_and_watch(tmp_path: Path) -> None:
    junk = tmp_path / "run-junk.wandb"
    junk.write_bytes(b":W&B\xe1\xbe\x00" + bytes(range(7, 256)) * 40)  # a valid header, then no good record
    r = runwatch("check", str(junk), "--json")
    assert r.returncode == 3, r.stdout + r.stderr
    run = json.loads(r.stdout)["runs"][0]
    assert run["verdict"] == "unreadable" and run["decision"] == "wait"
    assert [f["kind"] for f in run["findings"]] == ["source_error"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "watch", "--jsonl", str(junk)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        seen: list[dict[str, object]] = []
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(e.get("event") == "caught_up" for e in seen):
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(json.loads(line))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    last = seen[-1]
    assert last["event"] == "caught_up" and last["verdict"] == "unreadable" and last["decision"] == "wait", seen
    assert all(e["verdict"] != "healthy" for e in seen)
