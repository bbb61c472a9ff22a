"""`writer_counts`: which local files a process holds open for writing, from one pass over real `/proc`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.sources.writers import writer_counts, writers_of

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")

_HOLD = """
import sys, time
w1 = open(sys.argv[1], "a"); w2 = open(sys.argv[1], "a")  # two fds of one process count once
r = open(sys.argv[2])
rw = open(sys.argv[3], "r+")
print("ready", flush=True)
time.sleep(30)
"""


def test_one_scan_counts_the_writers_of_many_files(tmp_path: Path) -> None:
    written, read, both, closed = (tmp_path / n for n in ("w.log", "r.log", "rw.log", "closed.log"))
    for p in (written, read, both, closed):
        p.write_text("x\n")
    link = tmp_path / "latest.log"
    link.symlink_to(written)
    missing = tmp_path / "missing.log"
    procs = [
        subprocess.Popen([sys.executable, "-c", _HOLD, str(written), str(read), str(both)], stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
        counts = writer_counts([written, read, both, closed, link, missing])
        assert counts == {written: 2, read: 0, both: 2, closed: 0, link: 2, missing: None}
        assert writers_of(written) == 2
    finally:
        for p in procs:
            p.kill()
            p.wait()
    deadline = time.monotonic() + 5
    while writers_of(written) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer_counts([written, both]) == {written: 0, both: 0}


def test_a_file_replaced_at_its_path_is_not_the_one_held_open(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("old\n")
    with log.open("a"):
        log.unlink()
        log.write_text("new\n")  # same name, another inode: the old file's writer is not this one's
        assert writer_counts([log]) == {log: 0}
        with log.open("a"):
            assert writer_counts([log]) == {log: 1}
