"""What every runwatch screen shares: access to the app's hub and latest snapshot, and redraw hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen

from monitor.analysis import RunAnalysis
from monitor.hub import HubSnapshot, RunSnapshot
from tui.plotdata import X_AXES, PlotOptions

if TYPE_CHECKING:
    from monitor.actions import ReviewerAnswer
    from tui.app import RunwatchApp


class RunwatchScreen(Screen[None]):
    """A screen that draws hub snapshots; only the visible screen draws (others catch up on resume)."""

    @property
    def rw(self) -> RunwatchApp:
        return cast("RunwatchApp", self.app)

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.restyle())

    def on_screen_resume(self) -> None:
        if self.rw.snapshot is not None:
            with self.app.batch_update():
                self.show_snapshot(self.rw.snapshot)

    def show_snapshot(self, snap: HubSnapshot) -> None:
        """Draw a new snapshot."""

    def show_review(self, answer: ReviewerAnswer) -> None:
        """The reviewer answered about a run (or failed to): redraw what shows answers."""

    def tick(self, now: float) -> None:
        """Once a second: redraw what depends on the clock."""

    def restyle(self) -> None:
        """The theme changed: redraw text whose colours were baked in."""
        if self.rw.snapshot is not None:
            self.show_snapshot(self.rw.snapshot)

    def run(self, run_id: str) -> RunSnapshot | None:
        """A run in the latest snapshot."""
        snap = self.rw.snapshot
        if snap is None:
            return None
        return next((r for r in snap.runs if r.id == run_id), None)

    def analysis(self, run_id: str) -> RunAnalysis | None:
        """A run's live analysis, None when the hub has none (yet)."""
        try:
            return self.rw.hub.analysis(run_id)
        except KeyError:
            return None


class PlottingScreen(RunwatchScreen):
    """A screen with plots: the log-scale, smoothing, x-axis and window toggles, then a redraw."""

    options: PlotOptions
    X_AXES: tuple[str, ...] = X_AXES
    """What `x` cycles through here."""

    def _redraw(self) -> None:
        """Redraw the plots with the current options."""

    def action_log_scale(self) -> None:
        self.options = self.options.toggled_log()
        self._redraw()

    def action_smoothing(self) -> None:
        self.options = self.options.next_ema()
        self._redraw()

    def action_ema_up(self) -> None:
        self.options = self.options.ema_step(1)
        self._redraw()

    def action_ema_down(self) -> None:
        self.options = self.options.ema_step(-1)
        self._redraw()

    def action_x_axis(self) -> None:
        self.options = self.options.toggled_x(self.X_AXES)
        self._redraw()

    def action_window(self) -> None:
        self.options = self.options.next_window()
        self._redraw()
