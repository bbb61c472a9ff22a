"""A forked parse worker whose parent dies (killed mid catch-up) ends too, instead of blocking forever
on a pipe nobody reads."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_CATCHUP = """
import multiprocessing, os, sys
from pathlib import Path
from monitor.catchup import parse_rest
from monitor.parsers import make_parser
from monitor.sources.local import LineSplitter
path = Path(sys.argv[1])
pieces = parse_rest(path, 0, path.stat().st_size, LineSplitter(), make_parser("generic"), 1 << 20, 4096, 200)
next(pieces)
print(multiprocessing.active_children()[0].pid, flush=True)
os._exit(0)
"""

_BACKFILL = """
import multiprocessing, os, sys
from pathlib import Path
from monitor.backfill import parse_in_worker

def die(blocks, total):
    print(multiprocessing.active_children()[0].pid, flush=True)
    os._exit(0)

parse_in_worker(Path(sys.argv[1]), "generic", die)
"""


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    log = tmp_path_factory.mktemp("orphans") / "run.log"
    with log.open("w") as f:
        f.writelines(f"step={i} loss={2 + 1 / (i + 1):.6f} lr=0.0003 grad_norm={1 + i % 7}\n" for i in range(400_000))
    return log


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("script", [_CATCHUP, _BACKFILL], ids=["live catch-up", "check backfill"])
def test_a_worker_ends_when_its_parent_is_gone(big_log: Path, script: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", script, str(big_log)], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
    )
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 20
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):  # (do not leave it behind)
        os.kill(pid, 9)
        pytest.fail("the orphaned worker was still running 20 s after its parent died")
