"""`runwatch check` shows one progress line on a terminal's stderr while it reads a big input, and
nothing on a file or pipe or with `--json`; what it prints on stdout is the same either way."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from monitor import progressline
from monitor.backfill import PARALLEL_BYTES
from monitor.progressline import ProgressLine, line_text, size_text
from tests.test_wandb_log import write_offline_run
from tui import cli


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def write_log(path: Path, steps: int) -> Path:
    with path.open("w") as f:
        f.writelines(f"step={i} loss={2.0 + 8.0 * 0.999**i:.5f} lr=0.0003\n" for i in range(steps))
    return path


def run_check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], err: io.StringIO, *args: str) -> str:
    monkeypatch.setattr("sys.stderr", err)
    code = cli.main(["check", *args])
    assert code in (0, 1, 2)
    return capsys.readouterr().out


@pytest.fixture
def no_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Draw from the first byte on (the real line waits a second), every update."""
    monkeypatch.setattr(progressline, "DELAY", 0.0)
    monkeypatch.setattr(progressline, "EVERY", 0.0)


@pytest.mark.parametrize("steps", [40_000, 600_000])  # a small log; one big enough for the parse worker
def test_a_terminal_sees_one_progress_line_then_it_is_erased(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_delay: None, steps: int
) -> None:
    log = write_log(tmp_path / "run.log", steps)
    assert (log.stat().st_size >= PARALLEL_BYTES) == (steps > 100_000)
    tty = Tty()
    out = run_check(monkeypatch, capsys, tty, str(log))
    err = tty.getvalue()
    assert "\n" not in err  # one line, rewritten in place
    draws = [d for d in err.split("\r") if d.startswith("reading")]
    assert draws, err
    size = size_text(log.stat().st_size)
    assert all(re.search(r"\d+%  [\d.]+ [kMG]?B of " + re.escape(size) + r"  [\d.]+ [kMG]?B/s", d) for d in draws)
    assert err.endswith("\r\x1b[K")  # erased before the report
    piped = io.StringIO()
    assert run_check(monkeypatch, capsys, piped, str(log)) == out
    assert piped.getvalue() == ""


def test_no_progress_line_with_json_or_off_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_delay: None
) -> None:
    log = write_log(tmp_path / "run.log", 40_000)
    tty = Tty()
    out = run_check(monkeypatch, capsys, tty, "--json", str(log))
    assert tty.getvalue() == "" and out.startswith("{")


def test_a_wandb_file_reports_its_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_delay: None
) -> None:
    script = (
        "import wandb\nrun = wandb.init()\nfor i in range(300):\n    run.log({'loss': 1.0 / (i + 1)})\nrun.finish()\n"
    )
    f = write_offline_run(tmp_path, script)
    tty = Tty()
    run_check(monkeypatch, capsys, tty, str(f))
    assert "reading" in tty.getvalue() and "100%" in tty.getvalue()


def test_the_line_waits_a_second_and_redraws_at_most_ten_times_a_second() -> None:
    t = [0.0]
    s = Tty()
    line = ProgressLine(s, 80, clock=lambda: t[0])
    line.update("a.log", 0, 1000)
    for i in range(1, 30):
        t[0] = i * 0.05
        line.update("a.log", i * 10, 1000)
    draws = s.getvalue().split("\r")[1:]
    assert len(draws) == 5  # from 1.0 s to 1.45 s, one per 0.1 s
    assert draws[0].startswith("reading a.log   20%  200 B of 1000 B  200 B/s")
    line.clear()
    assert s.getvalue().endswith("\r\x1b[K")
    quiet = Tty()
    short = ProgressLine(quiet, 80, clock=lambda: t[0])
    short.update("b.log", 0, 10)
    short.update("b.log", 10, 10)
    short.clear()
    assert quiet.getvalue() == ""  # done within a second: never drawn, nothing to erase


def test_line_text_without_a_total() -> None:
    assert line_text("stdin", 3 << 20, 0, 2.0) == "reading stdin  3.0 MB  1.5 MB/s"
