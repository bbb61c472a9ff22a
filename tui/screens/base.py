"""What every runwatch screen shares: access to the app's hub and latest snapshot, and redraw hooks."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen

from monitor.analysis import RunAnalysis
from monitor.hub import HubSnapshot, RunSnapshot
from tui.plotdata import X_AXES, PlotOptions
from tui.widgets.plot import PlotView

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
        self.refresh_bindings()
        self._redraw()

    def action_window(self) -> None:
        self.options = self.options.next_window()
        self.refresh_bindings()
        self._redraw()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`z` only while the wheel has zoomed the plots; `x` only with a second axis to offer."""
        if action == "unzoom":
            return self.options.x_range is not None
        if action == "x_axis":
            return len(self.X_AXES) > 1
        return True

    def _set_zoom(self, x_range: tuple[float, float] | None) -> None:
        was = self.options.x_range is not None
        self.options = self.options.zoomed(x_range)
        if was != (x_range is not None):
            self.refresh_bindings()
        self._redraw()

    def on_plot_view_zoom_requested(self, event: PlotView.ZoomRequested) -> None:
        """The wheel over a plot: every plot of the screen shows the new x range (they share the axis)."""
        event.stop()
        self._set_zoom(event.x_range)

    def action_unzoom(self) -> None:
        self._set_zoom(None)
