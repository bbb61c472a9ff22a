"""The report's HTML opened in a real headless Chromium: it renders (a non-empty screenshot) with no console errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from monitor.config import Config
from monitor.report import build, write

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "bench" / "corpus" / "real" / "hf-whisper-lora-lrwarmup-divergence" / "trainer_state.json"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium found: `apt-get install -y chromium` as root (scripts/test.sh does it) to run this test")


def test_report_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = _chromium()
    if not RUN.exists():
        pytest.skip(f"corpus file absent: {RUN}")
    files = write(build([str(RUN)], Config()), tmp_path / "report")
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1000,1600",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            files.html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 20_000  # a blank page is a few KB
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    # Nothing was fetched: a page that tried would log a failed load with no network here.
    assert "net::ERR_" not in proc.stderr
