"""The Textual app: owns the latest hub snapshot, routes it to the visible screen, handles run actions.

The hub runs on Textual's own asyncio loop (started on mount, stopped on unmount); its listeners
only post messages, so every state change happens in a handler here or on a screen. The run
actions (`s`, `e`, `b`) go through one `monitor.actions.Actions`: a request starts a worker
(`tui.action_workers`) on the same loop, and what came of it returns as a message handled here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel

from monitor.aiotime import wait_for
from monitor.config import Config
from monitor.hub import Hub, HubSnapshot
from monitor.model import Verdict
from monitor.outward import outward
from themes import THEMES, next_name, short_name, textual_name
from tui import actions
from tui.hubapi import HubLike
from tui.messages import (
    EscalationRequested,
    EventArrived,
    EvidenceFailed,
    EvidenceRequested,
    EvidenceSaved,
    ReviewerAnswered,
    ReviewerFailed,
    SnapshotArrived,
    StopCancelled,
    StopConfirmed,
    StopFailed,
    StopPlanned,
    StopRequested,
    StopSent,
)
from tui.screens.base import RunwatchScreen
from tui.screens.confirm_stop import ConfirmStopScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.widgets.notice_bar import NoticeBar

if TYPE_CHECKING:
    from monitor.actions import Actions, ReviewerAnswer

_STOP_TIMEOUT = 5.0
#: Verdict changes arriving within this many seconds share one toast ("3 runs turned bad").
COALESCE_SECONDS = 0.3
NOTICES_KEPT = 500


@dataclass(frozen=True, slots=True)
class Notice:
    """A toast as shown, kept for the notification log (`n`)."""

    time: float
    severity: str
    title: str
    message: str


def _workers() -> ModuleType:
    """The action workers, imported when a run action is first asked for (they pull in the actions' stack)."""
    from tui import action_workers

    return action_workers


SIGNAL_GRACE = 5.0
"""Seconds a quit on SIGTERM/SIGHUP may take before the process ends without restoring the terminal."""


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
        self._actions: Actions | None = None
        self.reviews: dict[str, ReviewerAnswer] = {}
        """The reviewer's latest answer (or failed exchange) per run, for the detail view."""
        self._stopping: set[str] = set()
        self._stale_notified: set[str] = set()
        self._hub_stopped = False
        self.reading: set[str] = set()
        """Runs whose source is still being caught up (the hub said `run`, not yet `caught_up`)."""
        self.notices: list[Notice] = []
        """Every toast shown this session, oldest first (bounded)."""
        self._turned_bad: list[tuple[str, str]] = []
        self.exit_hooks: list[Callable[[], object]] = []
        """Run before a forced exit on SIGTERM/SIGHUP (the demo stops its simulators)."""
        for t in THEMES:
            self.register_theme(t)
        self.theme = textual_name(theme or self.config.theme)

    @property
    def actions(self) -> Actions:
        """Stop, escalate and evidence for the hub's runs (built on first use: the first frame needs none of it).

        One for the session, sharing the hub's SSH connections (one per host); a scripted hub in
        tests has none, and then stops over SSH open their own.
        """
        if self._actions is None:
            from monitor.actions import Actions

            self._actions = Actions(
                self.config, hub=self.hub, ssh_pool=getattr(self.hub, "ssh_pool", None), clock=self.clock
            )
        return self._actions

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
                    loop.add_signal_handler(sig, self._signalled, 128 + sig)
        # The first frame (the table's frame, "waiting for the first snapshot") is drawn before the
        # hub starts reading: catching up a big file must not keep the screen blank.
        self.call_after_refresh(self._start_hub)
        self.set_interval(1.0, self._tick)
        if self.banner:
            self.notify(self.banner, title="runwatch", timeout=10)

    async def _start_hub(self) -> None:
        if not self._hub_stopped:
            await self.hub.start()

    async def on_unmount(self) -> None:
        await self.stop_hub()

    async def stop_hub(self) -> None:
        """Stop the hub's sources and close the actions' connections (idempotent, bounded in time)."""
        if self._hub_stopped:
            return
        self._hub_stopped = True
        closers = [("hub", self.hub.stop)] + ([("actions", self._actions.aclose)] if self._actions is not None else [])
        for what, closing in closers:
            try:
                await wait_for(closing(), _STOP_TIMEOUT)
            except TimeoutError:
                self.log.warning(f"{what} did not stop in time")

    # ---- hub messages --------------------------------------------------------------------
    def on_snapshot_arrived(self, message: SnapshotArrived) -> None:
        self.snapshot = message.snapshot
        screen = self._drawing_screen()
        if screen is not None:
            with self.batch_update():  # one frame per snapshot, however many widgets change
                screen.show_snapshot(message.snapshot)

    def on_event_arrived(self, message: EventArrived) -> None:
        ev = message.event
        errored = any(f.kind == "source_error" for f in ev.findings)
        if ev.kind == "run":
            self.reading.add(ev.run_id)
        elif ev.kind == "caught_up":
            self.reading.discard(ev.run_id)
            screen = self._drawing_screen()
            if not self.reading and isinstance(screen, MainScreen):
                screen.all_caught_up()
        elif ev.kind == "state":
            if errored and ev.run_id not in self._stale_notified:
                self._stale_notified.add(ev.run_id)
                self.notify(f"{ev.name}: {ev.detail}", title="~ Source unreachable, retrying", severity="warning")
            elif not errored and ev.run_id in self._stale_notified:
                self._stale_notified.discard(ev.run_id)
                self.notify(f"{ev.name}: {ev.state}", title="Source back")
        elif ev.kind == "verdict" and ev.verdict is Verdict.BAD:
            if not self._turned_bad:
                self.set_timer(COALESCE_SECONDS, self._flush_bad)
            if all(name != ev.name for name, _ in self._turned_bad):
                self._turned_bad.append((ev.name, ev.reason))
        elif ev.kind == "verdict" and ev.verdict is Verdict.UNSURE and self.config.reviewer.auto:
            # Actions rate-limits per run and re-checks the verdict; an answer comes back as a message.
            self.run_worker(
                _workers().escalate(self.actions, self.post_message, ev.run_id, ev.name, auto=True),
                group="reviewer",
            )

    def _flush_bad(self) -> None:
        """One toast for the runs that turned bad since the first of them."""
        bad, self._turned_bad = self._turned_bad, []
        if len(bad) == 1:
            name, reason = bad[0]
            self.notify(f"{name}: {reason}", title="✗ Bad run: stop advised", severity="error", timeout=8)
        elif bad:
            names = ", ".join(name for name, _ in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            self.notify(names, title=f"✗ {len(bad)} runs turned bad: stop advised", severity="error", timeout=8)

    def _drawing_screen(self) -> RunwatchScreen | None:
        """The visible runwatch screen if it can draw now.

        Not one just pushed (no widgets until it is mounted; its resume draws the latest snapshot),
        nor while the app shuts down (screens lose their widgets before the hub stops publishing).
        """
        if not self.is_running:
            return None
        screen = self.screen
        if isinstance(screen, RunwatchScreen) and screen.is_mounted and screen.is_attached:
            return screen
        return None

    def _tick(self) -> None:
        screen = self._drawing_screen()
        if screen is not None:
            with self.batch_update():
                screen.tick(self.clock())

    # ---- run actions: the one place `s`, `e` and `b` land, and what came of them ---------------
    def _bundle_screenshot(self) -> str:
        """The screen as SVG for a bundle, secrets redacted (hostile wall: none in the bundle's screen)."""
        from monitor.actions.screenshot import redact_screenshot

        return redact_screenshot(self.export_screenshot())

    def on_evidence_requested(self, message: EvidenceRequested) -> None:
        svg = self._bundle_screenshot()
        self.run_worker(
            _workers().save_evidence(self.actions, self.post_message, message.run_id, message.run_name, svg),
            group="evidence",
        )

    def on_evidence_saved(self, message: EvidenceSaved) -> None:
        self.notify(f"{message.run_name}: {message.bundle.path.absolute()}", title="Evidence saved", timeout=10)

    def on_evidence_failed(self, message: EvidenceFailed) -> None:
        self.notify(f"{message.run_name}: {message.error}", title="Evidence not saved", severity="error", timeout=10)

    def on_stop_requested(self, message: StopRequested) -> None:
        if message.run_id in self._stopping:
            self.notify(f"{message.run_name}: a stop is already being planned or carried out", severity="warning")
            return
        self._stopping.add(message.run_id)
        # The screen as the person saw it when asking; it goes into the bundle saved before the stop.
        svg = self._bundle_screenshot()
        self.run_worker(
            _workers().plan_stop(
                self.actions, self.post_message, message.run_id, message.run_name, svg, confirm=message.confirm
            ),
            group="stop",
        )

    def on_stop_planned(self, message: StopPlanned) -> None:
        plan, svg = message.plan, message.screenshot_svg
        if plan.ok and not message.confirm:
            self.post_message(StopConfirmed(plan, svg))
            return

        def decided(confirmed: bool | None) -> None:
            if confirmed and plan.ok:
                self.post_message(StopConfirmed(plan, svg))
            else:
                why = "cancelled in the dialog" if plan.ok else (plan.problem or "cannot be stopped")
                self.post_message(StopCancelled(plan.run_id, plan.run_name, why))

        self.push_screen(ConfirmStopScreen(plan), callback=decided)

    def on_stop_confirmed(self, message: StopConfirmed) -> None:
        self.notify(f"{message.run_name}: saving evidence, then: {message.plan.summary}", title="Stopping")
        self.run_worker(
            _workers().execute_stop(self.actions, self.post_message, message.plan, message.screenshot_svg),
            group="stop",
        )

    def on_stop_cancelled(self, message: StopCancelled) -> None:
        self._stopping.discard(message.run_id)
        self.notify(f"{message.run_name}: {message.why}. Nothing was done.", title="Not stopped", timeout=4)

    def on_stop_sent(self, message: StopSent) -> None:
        self._stopping.discard(message.run_id)
        out = message.outcome
        evidence = f"\nEvidence: {out.evidence.path.absolute()}" if out.evidence is not None else ""
        self.notify(out.one_line() + evidence, title="■ Stop sent", severity="warning", timeout=15)

    def on_stop_failed(self, message: StopFailed) -> None:
        self._stopping.discard(message.run_id)
        self.notify(message.error, title="Stop not carried out", severity="error", timeout=15)

    def on_escalation_requested(self, message: EscalationRequested) -> None:
        self.notify(f"{message.run_name}: asking the reviewer…", title="Reviewer", timeout=3)
        self.run_worker(
            _workers().escalate(self.actions, self.post_message, message.run_id, message.run_name),
            group="reviewer",
        )

    def on_reviewer_answered(self, message: ReviewerAnswered) -> None:
        answer = message.answer
        self._show_review(answer)
        asked = "asked by itself: the run is unsure" if message.auto else "asked"
        self.notify(
            f"{message.run_name}: {answer.one_line()}",
            title=f"Reviewer ({asked})",
            severity="warning" if answer.decision == "STOP" else "information",
            timeout=15,
        )
        if answer.decision == "STOP":
            # A STOP answer asks the person in the stop dialog, unless the config lets it stop the run.
            from monitor.actions.escalation import answer_stops_run

            confirm = not answer_stops_run(self.config.reviewer, answer)
            self.post_message(StopRequested(message.run_id, message.run_name, confirm=confirm))

    def on_reviewer_failed(self, message: ReviewerFailed) -> None:
        if message.answer is not None:
            self._show_review(message.answer)
        self.notify(
            f"{message.run_name}: {message.error}. The verdict is unchanged.",
            title="Reviewer gave no answer",
            severity="warning",
            timeout=10,
        )

    def _show_review(self, answer: ReviewerAnswer) -> None:
        self.reviews[answer.run_id] = answer
        if not self.is_running:
            return
        for screen in self.screen_stack:
            if isinstance(screen, RunwatchScreen) and screen.is_mounted and screen.is_attached:
                screen.show_review(answer)

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """A notice on the screen's notice line (never a toast over the plots), kept for the log (`n`).

        Always literal text: run names, paths and errors hold `[…]` that markup would eat.
        """
        message, title = outward(message, keep_newlines=True), outward(title)  # hostile wall: no secrets, no escapes
        self.notices.append(Notice(self.clock(), severity, title, message))
        del self.notices[:-NOTICES_KEPT]
        del markup  # never markup: kept for Textual's signature
        if not self.is_running:
            return
        # The top screen with a notice line (a dialog over it leaves the line in sight).
        for screen in reversed(self.screen_stack):
            bars = list(screen.query(NoticeBar))
            if bars:
                bars[0].show_notice(title, message, severity, timeout)
                return

    # ---- app-wide actions ----------------------------------------------------------------
    async def action_quit(self) -> None:
        await self.stop_hub()
        self.exit(0)

    # ---- SIGTERM / SIGHUP --------------------------------------------------------------------
    def _signalled(self, code: int) -> None:
        """Quit like `q`. A closed terminal (a killed tmux pane) can block Textual's output thread while
        it restores the screen, and the process would live on: after SIGNAL_GRACE s it ends anyway."""
        watchdog = threading.Timer(SIGNAL_GRACE, self._exit_now, (code,))
        watchdog.daemon = True
        watchdog.start()
        self.run_worker(self._quit_with(code), name="quit-on-signal")

    async def _quit_with(self, code: int) -> None:
        await self.stop_hub()
        self.exit(code)

    def _exit_now(self, code: int) -> None:
        for hook in self.exit_hooks:
            try:
                hook()
            except Exception as e:  # one failed cleanup must not keep the others (or the exit) from running
                with contextlib.suppress(OSError, ValueError):  # stderr may be the closed terminal
                    print(f"runwatch: cleanup on exit failed: {e}", file=sys.stderr)
        os._exit(code)

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
