"""Secrets on the screen: the log tail never shows them, and a saved SVG screenshot holds none."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Static

from monitor.actions.screenshot import redact_screenshot
from tui.widgets.log_tail import LogTail

WANDB_V1 = "wandb_v1_" + "Q7xLp2Rk9ZtB4mWc8NvD3hYs6GfJ1aKe" * 2
PEM = "MIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi8XzKqR2zqjBQhqc3o9Lg3QqF5"
SVG_SECRET = "svgsecret-12345"
LINES = [
    "step 10 loss 2.31",
    "-----BEGIN RSA PRIVATE KEY-----",
    PEM,
    f"export WANDB_API_KEY={WANDB_V1}",
    "curl -u alice:Pa55word-991 https://api",
    "osc \x1b]52;c;cHduZWQ=\x07 and clear \x1b[2J",
]


class _Screen(App[None]):
    def compose(self) -> ComposeResult:
        # The secret's name bold and its value plain: two SVG text runs on one row.
        yield Static(f"[b]api_key:[/b] {SVG_SECRET} and more", id="top")
        yield LogTail(id="tail")

    def on_mount(self) -> None:
        self.query_one(LogTail).show(LINES, version=1)


def _svg(app_size: tuple[int, int] = (100, 12)) -> str:
    async def go() -> str:
        app = _Screen()
        async with app.run_test(size=app_size) as pilot:
            await pilot.pause()
            return app.export_screenshot()

    return asyncio.run(go())


@pytest.mark.timeout(60)
def test_log_tail_shows_no_secret_and_no_raw_escape() -> None:
    svg = _svg()
    for secret in (PEM[:20], WANDB_V1[12:40], "Pa55word-991"):
        assert secret not in svg
    assert "step&#160;10&#160;loss&#160;2.31" in svg
    assert "␛]52;c;cHduZWQ=␇" in svg and "\x1b" not in svg


@pytest.mark.timeout(60)
def test_screenshot_rows_are_redacted_in_place_and_stay_valid_svg() -> None:
    raw = _svg()
    assert SVG_SECRET in raw  # the Static shows it: only the screenshot wall can catch it
    clean = redact_screenshot(raw)
    assert SVG_SECRET not in clean
    assert "api_key:" in clean and "[REDACTED]" in clean
    ET.fromstring(clean)  # still well-formed
    assert clean.count("<text") == raw.count("<text")  # layout untouched: same runs, same lengths
