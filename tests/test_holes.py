"""A log with a hole of NUL bytes (truncated in place by logrotate's copytruncate while its writer
kept its offset, or preallocated) is still a text log; random bytes are still refused; and
`runwatch check … | head` ends quietly when the reader goes away."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from monitor.check import check_target
from monitor.config import Config
from monitor.parsers.sniff import drop_holes, sniff_binary
from monitor.sources.local import LineSplitter


def _log(n: int, nan_at: int | None = None) -> bytes:
    rows = []
    for i in range(n):
        loss = float("nan") if nan_at is not None and i >= nan_at else 3.0 / (1 + 0.01 * i)
        rows.append(json.dumps({"step": i, "loss": loss}) + "\n")
    return "".join(rows).encode()


def test_holes_are_dropped_and_single_nuls_kept() -> None:
    assert drop_holes(b"\x00" * 40 + b"abc\n") == b"abc\n"
    assert drop_holes(b"a\x00b") == b"a\x00b"
    assert sniff_binary(b"\x00" * 4096) is None  # only a hole so far: nothing to read yet, not binary
    assert sniff_binary(b"\x00" * 2000 + _log(50)) is None
    rnd = random.Random(0)
    assert sniff_binary(bytes(rnd.getrandbits(8) for _ in range(4096))) is not None


def test_splitter_cuts_a_hole_out_of_a_line_however_the_bytes_arrive() -> None:
    data = b"\x00" * 11000 + _log(5)
    for size in (1, 7, 4096, len(data)):
        sp = LineSplitter()
        lines = [line for i in range(0, len(data), size) for line in sp.feed(data[i : i + size])]
        assert lines == _log(5).decode().splitlines()


def test_check_reads_a_log_behind_a_hole_and_finds_its_nan(tmp_path: Path) -> None:
    log = tmp_path / "train.jsonl"
    log.write_bytes(b"\x00" * 11000 + _log(300, nan_at=250))
    a = check_target(str(log), Config())
    assert a.store.rows >= 250
    assert any(f.kind == "nan" for f in a.findings())


def test_check_piped_into_a_reader_that_leaves_ends_quietly(tmp_path: Path) -> None:
    logs = []
    for i in range(200):
        p = tmp_path / f"r{i:03d}.jsonl"
        p.write_bytes(_log(20))
        logs.append(str(p))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    check = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "check", *logs], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert check.stdout is not None
    check.stdout.readline()
    check.stdout.close()  # what `| head -1` does
    _, err = check.communicate(timeout=120)
    assert b"Traceback" not in err, err.decode()
    assert check.returncode in (141, 0)
