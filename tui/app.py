"""The Textual app: owns the latest hub snapshot, routes it to the visible screen, handles run actions.

The hub runs on Textual's own asyncio loop (started on mount, stopped on unmount); its listeners
only post messages, so every state change happens in a handler here or on a screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from monitor.config import Config
from monitor.hub import Hub, HubSnapshot
from monitor.model import Verdict
from themes import THEMES, next_name, short_name, textual_name
from tui import actions
from tui.hubapi import HubLike
from tui.messages import (
    EscalationRequested,
    EventArrived,
    EvidenceRequested,
    RunActionRequested,
    SnapshotArrived,
    StopRequested,
)
from tui.screens.base import RunwatchScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen

_STOP_TIMEOUT = 5.0


class RunwatchApp(App[int]):
    """runwatch's terminal UI over one hub."""

    TITLE = "runwatch"
    # Every command is a key in the action registry (footer and `?`); the palette would be a second list.
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        *actions.bindings(actions.APP),
        # Ctrl-C quits like q (the demo must clean up on it), rather than Textual's hint to press Ctrl-Q.
        Binding("ctrl+c", "quit", show=False, priority=True),
    ]

    def __init__(
        self,
        hub: HubLike,
        config: Config | None = None,
        *,
        theme: str | None = None,
        clock: Callable[[], float] = time.time,
        banner: str | None = None,
        redraw_interval: float = 0.5,
    ) -> None:
        super().__init__()
        self.hub = hub
        self.redraw_interval = redraw_interval
        """Seconds between redraws of live data (tables, plots); verdict changes draw at once."""
        self.config = config or Config()
        self.clock = clock
        self.banner = banner
        self.keymap = dict(self.config.keys)
        self.snapshot: HubSnapshot | None = None
        """The latest snapshot the hub published."""
        self._stale_notified: set[str] = set()
        self._hub_stopped = False
        for t in THEMES:
            self.register_theme(t)
        self.theme = textual_name(theme or self.config.theme)

    async def on_mount(self) -> None:
        self.set_keymap(self.keymap)
        self.push_screen(MainScreen())
        self.hub.add_snapshot_listener(lambda snap: self.post_message(SnapshotArrived(snap)))
        self.hub.add_event_listener(lambda ev: self.post_message(EventArrived(ev)))
        if not self.is_headless:
            # SIGTERM / SIGHUP (a closed tmux pane) quit like `q`, so sources and simulators are cleaned up.
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self.exit, 128 + sig)
        await self.hub.start()
        self.set_interval(1.0, self._tick)
        if self.banner:
            self.notify(self.banner, title="runwatch", timeout=10)

    async def on_unmount(self) -> None:
        await self.stop_hub()

    async def stop_hub(self) -> None:
        """Stop the hub's sources (idempotent, bounded in time)."""
        if self._hub_stopped:
            return
        self._hub_stopped = True
        try:
            await asyncio.wait_for(self.hub.stop(), _STOP_TIMEOUT)
        except TimeoutError:
            self.log.warning("hub did not stop in time")

    # ---- hub messages --------------------------------------------------------------------
    def on_snapshot_arrived(self, message: SnapshotArrived) -> None:
        self.snapshot = message.snapshot
        screen = self.screen
        if isinstance(screen, RunwatchScreen):
            with self.batch_update():  # one frame per snapshot, however many widgets change
                screen.show_snapshot(message.snapshot)

    def on_event_arrived(self, message: EventArrived) -> None:
        ev = message.event
        errored = any(f.kind == "source_error" for f in ev.findings)
        if ev.kind == "state":
            if errored and ev.run_id not in self._stale_notified:
                self._stale_notified.add(ev.run_id)
                self.notify(f"{ev.name}: {ev.detail}", title="~ Source unreachable, retrying", severity="warning")
            elif not errored and ev.run_id in self._stale_notified:
                self._stale_notified.discard(ev.run_id)
                self.notify(f"{ev.name}: {ev.state}", title="Source back")
        elif ev.kind == "verdict" and ev.verdict is Verdict.BAD:
            self.notify(f"{ev.name}: {ev.reason}", title="✗ Bad run: stop advised", severity="error", timeout=8)

    def _tick(self) -> None:
        screen = self.screen
        if isinstance(screen, RunwatchScreen):
            with self.batch_update():
                screen.tick(self.clock())

    # ---- run actions: the one place `s`, `e` and `b` land ----------------------------------
    def on_stop_requested(self, message: StopRequested) -> None:
        self._not_available(message)

    def on_escalation_requested(self, message: EscalationRequested) -> None:
        self._not_available(message)

    def on_evidence_requested(self, message: EvidenceRequested) -> None:
        self._not_available(message)

    def _not_available(self, message: RunActionRequested) -> None:
        self.notify(
            f"{message.verb} is not available yet in this version (run: {message.run_name}). Nothing was done.",
            title="Not available yet",
            severity="warning",
        )

    # ---- app-wide actions ----------------------------------------------------------------
    async def action_quit(self) -> None:
        await self.stop_hub()
        self.exit(0)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_theme(self) -> None:
        self.theme = textual_name(next_name(self.theme))
        self.notify(f"Theme: {short_name(self.theme)}", timeout=2)

    def action_refresh(self) -> None:
        self.hub.refresh()


def make_app(
    config: Config,
    targets: Sequence[str] = (),
    *,
    hub: HubLike | None = None,
    theme: str | None = None,
    fmt: str | None = None,
    clock: Callable[[], float] = time.time,
    banner: str | None = None,
    redraw_interval: float = 0.5,
) -> RunwatchApp:
    """The app over a hub of `targets` (or the given hub); used by the CLI, the demo and the tests."""
    if hub is None:
        hub = Hub(list(targets), config, fmt=fmt, clock=clock)
    return RunwatchApp(hub, config, theme=theme, clock=clock, banner=banner, redraw_interval=redraw_interval)
