"""Crashes are findings: a log's last lines (after its last metric line) and exit codes, read as a person would."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from detectors.crash import find_crash
from detectors.run import RunDetectors
from monitor.check import check_target
from monitor.config import Config
from monitor.model import Row, Severity, Verdict
from monitor.roles import RoleMap

_DATALOADER = """Traceback (most recent call last):
  File "train.py", line 212, in <module>
    main()
  File "/opt/conda/lib/python3.10/site-packages/torch/utils/data/dataloader.py", line 1133, in _get_data
    raise RuntimeError(f'DataLoader timed out after {self._timeout} seconds')
RuntimeError: DataLoader timed out after 1800 seconds"""

_OOM = """[rank1]: Traceback (most recent call last):
[rank1]:   File "/workspace/train.py", line 88, in train_step
[rank1]:     loss.backward()
[rank1]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 1 has 79.10 GiB"""

_NCCL = (
    "[E ProcessGroupNCCL.cpp:475] [Rank 3] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=5233, "
    "OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=1800000) ran for 1800294 milliseconds before timing out.\n"
    """terminate called after throwing an instance of 'std::runtime_error'
  what():  [Rank 3] NCCL watchdog thread terminated with exception"""
)

_TORCHRUN = """torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
train.py FAILED
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2024-03-01_12:00:00
  host      : node-1
  rank      : 0 (local_rank: 0)
  exitcode  : -9 (pid: 4242)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 4242
============================================================"""

_CASES = [
    (_DATALOADER, Severity.BAD, "DataLoader timed out", "Traceback", "RuntimeError: DataLoader timed out"),
    (_OOM, Severity.BAD, "CUDA out of memory", "[rank1]: Traceback", "torch.OutOfMemoryError"),
    (_NCCL, Severity.BAD, "NCCL collective timeout", "[E ProcessGroupNCCL", "terminate called"),
    (_TORCHRUN, Severity.BAD, "ChildFailedError", "torch.distributed", "Signal 9"),
    ("Killed", Severity.BAD, "killed", "Killed", "Killed"),
    ("/var/spool/slurmd/job77/slurm_script: line 9: 4242 Killed    python train.py", Severity.BAD, "killed", "", ""),
    ("Segmentation fault (core dumped)", Severity.BAD, "segmentation fault", "Segmentation", "Segmentation"),
    (
        "slurmstepd: error: *** JOB 881 ON gpu-12 CANCELLED AT 2024-05-01T10:00:00 DUE TO TIME LIMIT ***",
        Severity.BAD,
        "time limit",
        "",
        "",
    ),
    (
        "slurmstepd: error: *** JOB 881 ON gpu-12 CANCELLED AT 2024-05-01T10:00:00 ***",
        Severity.BAD,
        "cancelled",
        "",
        "",
    ),
    (
        "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=881.0. Some of your processes may have been "
        "killed by the cgroup out-of-memory handler.\nsrun: error: gpu-12: task 0: Out Of Memory",
        Severity.BAD,
        "out of host memory",
        "",
        "",
    ),
    ("slurmstepd: error: OUT_OF_MEMORY", Severity.BAD, "out of host memory", "", ""),
    (
        "slurmstepd: error: *** JOB 881 ON gpu-12 CANCELLED AT 2024-05-01T10:00:00 DUE TO PREEMPTION ***\n"
        "slurmstepd: error: job 881 requeued",
        Severity.INFO,
        "preempted",
        "",
        "",
    ),
    (
        'Traceback (most recent call last):\n  File "train.py", line 3, in <module>\nKeyboardInterrupt',
        Severity.WARN,
        "KeyboardInterrupt",
        "",
        "",
    ),
]


def _message_for(text: str) -> tuple[Severity, str, dict[str, object]]:
    rd = RunDetectors(RoleMap())
    rd.ingest_many([Row(float(i), {"loss": 3.0 - i * 0.01}) for i in range(120)], 0.0)
    rd.set_crash(find_crash(text.splitlines()))
    f = next(f for f in rd.findings() if f.kind == "crashed")
    return f.severity, f.message, f.evidence


@pytest.mark.parametrize(("text", "severity", "says", "first", "last"), _CASES)
def test_crash_tails_are_recognised(text: str, severity: Severity, says: str, first: str, last: str) -> None:
    sev, message, evidence = _message_for(text)
    assert sev is severity
    assert says.lower() in message.lower() and "at step 119" in message
    assert str(evidence["first_line"]).startswith(first)
    assert last in str(evidence["last_line"])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ValueError: one bad sample, skipped",
        "wandb: Synced 5 W&B file(s), 0 media file(s)",
        "Epoch 3: 100%|██████████| 781/781 [01:02<00:00, 12.5it/s]",
        _DATALOADER + "\nTraining completed. Do not forget to share your model on huggingface.co/models =)",
    ],
)
def test_ordinary_endings_are_not_crashes(text: str) -> None:
    assert find_crash(text.splitlines()) is None


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def _training(n: int, start: int = 0) -> list[str]:
    return [f"iter {i}: loss {3 * math.exp(-i / 300) + 1:.4f}, time 150.00ms, mfu 41.20%" for i in range(start, n)]


def test_a_log_ending_in_a_traceback_is_crashed_at_its_last_step(tmp_path: Path) -> None:
    p = _write(tmp_path, "train.log", _training(1000) + _DATALOADER.splitlines())
    a = check_target(str(p), Config())
    j = a.judgement()
    assert j.verdict is Verdict.BAD and j.worst is not None and j.worst.kind == "crashed"
    assert "DataLoader timed out" in j.reason and j.worst.step == 999


def test_a_caught_traceback_followed_by_training_is_not_a_crash(tmp_path: Path) -> None:
    p = _write(tmp_path, "train.log", _training(500) + _DATALOADER.splitlines() + _training(1000, 500))
    a = check_target(str(p), Config())
    assert a.judgement().verdict is Verdict.HEALTHY
    assert "crashed" not in {f.kind for f in a.findings()}


def test_torchrun_summary_lines_are_not_read_as_training(tmp_path: Path) -> None:
    # `exitcode  : -9` looks like a key-value metric to a generic reader; it is not training.
    lines = [f"step={i} loss={2.0 - i * 0.001:.4f}" for i in range(300)] + _TORCHRUN.splitlines()
    a = check_target(str(_write(tmp_path, "job.out", lines)), Config())
    assert a.judgement().verdict is Verdict.BAD and "ChildFailedError" in a.judgement().reason


def test_exit_codes_and_failed_states() -> None:
    rd = RunDetectors(RoleMap())
    rd.ingest(Row(5.0, {"loss": 1.0}), 0.0)
    assert not rd.exited(0) and rd.judgement().verdict is Verdict.HEALTHY
    assert rd.exited(137)
    f = rd.judgement().worst
    assert f is not None and f.kind == "crashed" and "137" in f.message and f.step == 5.0


def test_a_crashed_run_is_over_not_stalled(tmp_path: Path) -> None:
    lines = [f"{{'loss': {2.0 - i / 1000:.4f}, 'epoch': {i / 100:.2f}}}" for i in range(300)]
    p = _write(tmp_path, "train.log", lines + _DATALOADER.splitlines())
    a = check_target(str(p), Config(), now=p.stat().st_mtime + 7 * 86400)
    live = {f.kind for f in a.judgement().findings if f.active}
    assert "crashed" in live and "stalled" not in live
