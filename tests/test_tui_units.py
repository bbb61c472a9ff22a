"""Pure parts of the UI: badges and numbers, plot data, the action registry, themes, the CLI default, demo cleanup."""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

from monitor.errors import ConfigError
from monitor.model import Severity, Verdict
from themes import NAMES, THEMES, VERDICT_VARIABLES, next_name, textual_name
from tui import actions
from tui import format as fmt
from tui.cli import _default_to_ui
from tui.plotdata import PlotOptions, downsample, ema, last_window, prepare, rank_stats, wall_time
from tui.scripted import finding, run_snapshot


@pytest.mark.parametrize(
    ("fields", "text", "kind"),
    [
        ({}, "✓ healthy", "healthy"),
        ({"verdict": Verdict.UNSURE}, "? unsure", "unsure"),
        ({"verdict": Verdict.BAD}, "✗ bad", "bad"),
        ({"stale": True, "state": "retrying in 5 s"}, "~ stale", "stale"),
        ({"stale": True, "verdict": Verdict.BAD}, "✗ bad", "bad"),  # unreachable never hides bad
        ({"state": "auth failed", "stale": True}, "! error", "error"),
    ],
)
def test_badge_is_glyph_and_word(fields: dict[str, object], text: str, kind: str) -> None:
    run = run_snapshot("r", **fields)
    assert fmt.badge_text(run) == text
    assert fmt.badge_kind(run) == kind
    assert fmt.theme_variable(kind) in VERDICT_VARIABLES


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "—"), (math.nan, "NaN"), (math.inf, "Inf"), (2.31456, "2.315"), (3e-4, "3.00e-04"), (123456.0, "1.23e+05")],
)
def test_num(value: float | None, text: str) -> None:
    assert fmt.num(value) == text


def test_ages_rates_steps_and_sparklines() -> None:
    assert [fmt.age_text(s) for s in (None, 3, 240, 7200, 86400 * 3)] == ["—", "3s", "4m", "2.0h", "3d"]
    assert fmt.rate_text(None) == "—" and fmt.rate_text(12.34) == "12.3/s" and fmt.rate_text(0.5) == "30.0/m"
    assert fmt.step_text(1234.0, 10000.0) == "1,234/10,000"
    assert fmt.sparkline([1, 2, 3, 4], 4) == "▁▃▆█"
    assert fmt.sparkline([1, math.nan], 4) == "▄!"
    assert len(fmt.sparkline(list(range(100)), 12)) == 12
    assert fmt.pct_text(None) == "N/A"


def test_finding_line_and_worst_finding() -> None:
    f = finding("spike", Severity.WARN, 240, "loss spiked", active=False)
    assert fmt.finding_line(f) == "○ spike from step 240 (cleared): loss spiked"
    from monitor.hub import HubSnapshot

    bad = finding("nan", Severity.BAD, 260, "loss is NaN")
    runs = (
        run_snapshot("a", findings=(f,)),
        run_snapshot("b", verdict=Verdict.BAD, findings=(bad,)),
    )
    worst = fmt.worst_finding(HubSnapshot(0.0, runs, (), ()))
    assert worst is not None and worst[0].id == "b" and worst[1].kind == "nan"


def test_ema_debiased_and_passes_nan() -> None:
    y = np.array([1.0, 1.0, math.nan, 1.0])
    out = ema(y, 0.9)
    assert out[0] == pytest.approx(1.0) and math.isnan(out[2]) and out[3] == pytest.approx(1.0)
    assert ema(np.array([0.0, 10.0]), 0.5)[1] == pytest.approx(10 * 0.5 / 0.75)


def test_window_wall_time_and_downsample_keep_spikes() -> None:
    x = np.arange(10_000, dtype=float)
    y = np.ones_like(x)
    y[5_000] = 50.0
    wx, _ = last_window(x, y, 200)
    assert wx[0] == 9_799 and len(wx) == 201
    dx, dy = downsample(x, y, 100)
    assert len(dx) <= 202 and dy.max() == 50.0 and dx[-1] == 9_999  # a flat end still reaches the last step
    t, unit = wall_time(np.array([0.0, 50.0, 100.0]), [(0.0, 1000.0), (100.0, 1100.0)])
    assert unit == "s" and t.tolist() == [0.0, 50.0, 100.0]
    px, py, _ = prepare(np.array([1.0, 2.0, 3.0]), np.array([1.0, -1.0, math.nan]), PlotOptions(log_y=True), 80)
    assert px.tolist() == [1.0] and py.tolist() == [1.0]


def test_plot_options_cycle_and_describe() -> None:
    o = PlotOptions()
    assert o.next_ema().ema == 0.9 and o.next_ema().next_ema().ema == 0.0
    assert o.ema_step(1).ema == 0.95 and o.ema_step(-1).ema_step(-1).ema == 0.7 and o.ema_step(-9).ema == 0.5
    assert (
        o.next_window().window == 1000 and o.toggled_x().x_axis == "wall" and o.toggled_x().toggled_x().x_axis == "time"
    )
    assert o.toggled_log().describe() == "x: step · y: log · EMA off · all steps"


def test_rank_stats() -> None:
    x = np.arange(200, dtype=float)
    falling = 3.0 * np.exp(-x / 1000)
    st = rank_stats(x, falling, 100)
    assert st.last == pytest.approx(falling[-1]) and st.best == pytest.approx(falling[-1])
    assert st.slope_pct == pytest.approx((math.exp(-1) - 1) * 100, rel=1e-3)
    assert st.noise_pct is not None and st.noise_pct < 0.2
    nan_last = rank_stats(x, np.append(falling[:-1], math.nan))
    assert nan_last.last is not None and math.isnan(nan_last.last) and nan_last.best is not None
    assert rank_stats(np.empty(0), np.empty(0)).last is None


def test_action_registry_one_id_per_action_and_keymap_checks() -> None:
    ids = [a.id for a in actions.ACTIONS]
    assert len(ids) == len(set(ids))
    for required in ("stop", "escalate", "evidence", "log_scale", "smoothing", "x_axis", "filter", "theme", "quit"):
        assert required in actions.BY_ID
    keys = {a.id: a.key for a in actions.ACTIONS}
    assert (keys["stop"], keys["escalate"], keys["evidence"], keys["quit"]) == ("s", "e", "b", "q")
    for scope in (actions.MAIN, actions.DETAIL, actions.COMPARE):
        bound = [b.key for b in actions.bindings(scope)]  # type: ignore[union-attr]
        assert len(bound) == len(set(bound)), scope
    actions.check_keymap({"stop": "ctrl+s"})
    with pytest.raises(ConfigError, match=r"keys\.stopp: unknown action"):
        actions.check_keymap({"stopp": "x"})
    rows = actions.help_rows({"stop": "ctrl+s"})
    assert ("Run table", "ctrl+s", "stop the selected run (saves evidence first)") in rows


def test_themes_are_data_with_verdict_variables() -> None:
    assert NAMES == ("dark", "light", "high-contrast")
    for t in THEMES:
        assert all(v in t.variables for v in VERDICT_VARIABLES)
        assert len({t.variables[v] for v in VERDICT_VARIABLES[:3]}) == 3
    assert next_name("runwatch-high-contrast") == "dark" and textual_name("light") == "runwatch-light"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["ui"]),
        (["train.log"], ["ui", "train.log"]),
        (["--theme", "light", "a.log", "b.log"], ["--theme", "light", "ui", "a.log", "b.log"]),
        (["--config", "x.toml"], ["--config", "x.toml", "ui"]),
        (["check", "a.log"], ["check", "a.log"]),
        (["demo"], ["demo"]),
        (["-"], ["ui", "-"]),
        (["--help"], ["--help"]),
    ],
)
def test_bare_targets_mean_the_ui(argv: list[str], expected: list[str]) -> None:
    assert _default_to_ui(argv, {"check", "watch", "demo", "ui", "formats"}) == expected


def test_cli_without_targets_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    from tui.cli import main

    assert main(["--config", os.devnull]) in (2, 3)
    err = capsys.readouterr().err
    assert err.startswith("runwatch: ")


@pytest.mark.timeout(60)
def test_demo_runs_start_write_and_clean_up() -> None:
    from monitor.config import Config
    from tui.demo import DemoRuns

    demo = DemoRuns(rate=50.0, wandb=False, scenarios=("healthy", "stall"))
    try:
        targets = demo.start()
        assert len(targets) == 2 and demo.dir is not None
        tmp = demo.dir
        cfg = demo.config(Config())
        assert cfg.thresholds.stall_min_seconds == 20 and [r.name for r in cfg.runs] == [
            "healthy (hf-trainer)",
            "stall (jsonl)",
        ]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and os.path.getsize(targets[1]) < 200:
            time.sleep(0.1)
        assert os.path.getsize(targets[1]) >= 200
        pids = [p.pid for p in demo.procs.values()]
    finally:
        demo.stop()
    assert not tmp.exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
    demo.stop()  # idempotent
