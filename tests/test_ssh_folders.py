"""Remote folders (`HOST:/dir/`): every run inside, by the local folders' rules, over one SSH
connection, against the real OpenSSH sshd on 127.0.0.1 (`tests/sshd.py`)."""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pytest

from monitor import check as check_mod
from monitor.config import Config
from monitor.hub import Hub
from monitor.sources import folder
from monitor.sources.base import open_sources
from monitor.sources.ssh_folder import (
    Entry,
    is_remote_folder,
    list_command,
    listing_error,
    parse_listing,
    portable_list_command,
)
from tests.sshd import SSHHome, ssh_home, sshd  # noqa: F401  (fixtures)


def log_lines(n: int, nan_at: int | None = None, start: int = 0) -> str:
    out = []
    for i in range(start, n):
        loss = math.nan if nan_at is not None and i >= nan_at else 3 * math.exp(-i / 40) + 1
        out.append(f"step={i} loss={loss:.4f} lr=0.0003\n")
    return "".join(out)


def csv_lines(n: int) -> str:
    return "step,loss\n" + "".join(f"{i},{3 * math.exp(-i / 40) + 1:.4f}\n" for i in range(n))


async def until(pred: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def make_folder(root: Path) -> Path:
    runs = root / "runs"
    (runs / "sub").mkdir(parents=True)
    (runs / "healthy.log").write_text(log_lines(100))
    (runs / "nan.log").write_text(log_lines(100, nan_at=70))
    (runs / "sub" / "metrics.csv").write_text(csv_lines(60))
    (runs / "README.md").write_text("# notes, not a run\n")
    (runs / ".hidden").mkdir()
    (runs / ".hidden" / "x.log").write_text(log_lines(10))
    return runs


# ---- pure pieces: the same rules as local folders --------------------------------------------
def test_remote_paths_taken_as_folders() -> None:
    assert is_remote_folder("/runs/exp1/") and is_remote_folder("/runs/exp1") and is_remote_folder("~")
    assert not is_remote_folder("/runs/exp1/train.log")
    opened = open_sources("testhost:/runs/exp1/")
    assert opened.runs == [] and opened.discover is not None
    assert open_sources("testhost:/runs/train.log").discover is None


def test_listing_parse_and_errors() -> None:
    out = "12 1700000000.5 a/train.log\x0034 1700000001.0 b c.csv\x00junk\x00"
    assert parse_listing(out) == [Entry("a/train.log", 12, 1700000000.5), Entry("b c.csv", 34, 1700000001.0)]
    assert listing_error(0, "", "") is None
    assert listing_error(1, out, "find: 'x/private': Permission denied") is None  # partial: go on
    assert (
        listing_error(1, "", "find: '/nope': No such file or directory\n") == "find: '/nope': No such file or directory"
    )
    assert "-maxdepth 6" in list_command("/runs/") and "'%s %T@ %P\\0'" in list_command("/runs/")


def test_the_search_rules_are_the_local_ones() -> None:
    assert folder.in_search("runs", ("sub", "metrics.csv"))
    assert not folder.in_search("runs", ("wandb", "run-20240101_000000-abc", "files", "output.log"))
    assert folder.in_search("runs", ("wandb", "run-20240101_000000-abc", "run-abc.wandb"))
    assert not folder.in_search("runs", ("node_modules", "x.log"))
    assert not folder.in_search("runs", ("a", "b", "c", "d", "e", "f", "x.log"))  # six levels down
    assert folder.in_search("runs", ("a", "b", "c", "d", "e", "x.log"))
    assert folder.name_kind("README.md") == folder.NOT_RUN and folder.name_kind("out.txt") == folder.SNIFF
    assert folder.without_checkpoints(PurePosixPath("o/checkpoint-5/trainer_state.json")) == PurePosixPath("o")


def test_both_listing_commands_list_the_same_files(tmp_path: Path) -> None:
    runs = make_folder(tmp_path)
    gnu, portable = (
        parse_listing(subprocess.run(["sh", "-c", cmd(f"{runs}/")], capture_output=True, text=True).stdout)
        for cmd in (list_command, portable_list_command)
    )
    want = {"healthy.log", "nan.log", "sub/metrics.csv", "README.md"}  # the hidden folder is pruned
    assert {e.rel for e in gnu} == {e.rel for e in portable} == want
    assert all(e.size > 0 for e in gnu) and all(e.size == -1 for e in portable)
    log = runs / "nan.log"
    for cmd in (list_command, portable_list_command):  # a file named as a folder is its one run
        out = subprocess.run(["sh", "-c", cmd(str(log))], capture_output=True, text=True).stdout
        assert [e.rel for e in parse_listing(out)] == [""]


# ---- against the real sshd ----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_check_lists_a_remote_folder_and_reports_a_missing_one(ssh_home: SSHHome, tmp_path: Path) -> None:  # noqa: F811
    runs = make_folder(tmp_path)
    missing, empty = tmp_path / "nowhere", tmp_path / "empty"
    empty.mkdir()
    results = check_mod.check([f"testhost:{runs}/", f"testhost:{missing}/", f"testhost:{empty}"], Config())
    docs = check_mod.to_json(results)["runs"]
    by = {d["target"]: d for d in docs}
    want = {f"testhost:{runs}/{n}" for n in ("healthy.log", "nan.log", "sub/metrics.csv")}
    assert want <= set(by), docs
    assert by[f"testhost:{runs}/healthy.log"]["verdict"] == "healthy"
    assert by[f"testhost:{runs}/nan.log"]["verdict"] == "bad"
    assert by[f"testhost:{runs}/sub/metrics.csv"]["verdict"] == "healthy"
    assert by[f"testhost:{runs}/sub/metrics.csv"]["last_step"] == 59
    gone = by[f"testhost:{missing}/"]
    assert gone["state"] == "stale" and gone["verdict"] == "stale", gone
    assert any(f["kind"] == "source_error" and "No such file" in f["message"] for f in gone["findings"]), gone
    assert "no log, metrics file" in by[f"testhost:{empty}"]["error"]
    assert len(docs) == 5  # README.md and the hidden folder are not runs
    assert check_mod.exit_code(results) == 3


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_hub_follows_a_remote_folder_and_its_new_runs(ssh_home: SSHHome, tmp_path: Path) -> None:  # noqa: F811
    runs = make_folder(tmp_path)
    later = tmp_path / "later"

    async def main() -> None:
        targets = [f"testhost:{runs}/", f"ssh://testhost{later}/"]
        async with Hub(targets, gpu=False, poll=0.05, discover_poll=0.2) as hub:

            def by_id() -> dict[str, object]:
                return {r.id: r for r in hub.snapshot().runs}

            nan_id = f"testhost:{runs}/nan.log"
            await until(lambda: len(by_id()) == 4, timeout=40, what="three runs and the missing folder")
            await until(lambda: getattr(by_id()[nan_id], "last_step", None) == 99, timeout=40, what="rows")
            snap = {r.id: r for r in hub.snapshot().runs}
            assert snap[nan_id].shown_verdict == "bad"
            assert snap[f"testhost:{runs}/healthy.log"].shown_verdict == "healthy"
            missing = snap[f"ssh://testhost{later}/"]
            assert missing.stale and missing.source == "testhost" and "No such file" in str(missing.source_error)
            # A run created later appears; the folder that was missing comes into being with one.
            (runs / "sub" / "late.log").write_text(log_lines(30))
            later.mkdir()
            (later / "train.log").write_text(log_lines(20, nan_at=10))
            await until(lambda: f"testhost:{runs}/sub/late.log" in by_id(), timeout=20, what="a new run")
            await until(lambda: f"testhost:{later}/train.log" in by_id(), timeout=20, what="the folder's run")
            assert f"ssh://testhost{later}/" not in by_id()  # its stale row gave way to its run
            late = f"testhost:{later}/train.log"
            await until(lambda: getattr(by_id()[late], "shown_verdict", None) == "bad", timeout=20, what="bad")
            assert len(hub.ssh_pool.states()) == 1  # one connection for every run and listing

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_a_remote_folder_on_a_host_that_is_down_is_stale_with_the_reason() -> None:
    t0 = time.monotonic()
    results = check_mod.check(["no-such-host.invalid:/var/runs/"], Config())
    (doc,) = check_mod.to_json(results)["runs"]
    assert doc["state"] == "stale" and doc["verdict"] == "stale", doc
    assert any(f["kind"] == "source_error" and "no-such-host.invalid" in f["message"] for f in doc["findings"])
    assert check_mod.exit_code(results) == 3 and time.monotonic() - t0 < 20
