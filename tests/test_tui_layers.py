"""The layer heat-map pane: per-layer gradients of a real `.wandb` run (histograms written by the SDK
offline, as `wandb.watch` logs them) drawn as layers × time with dead layers marked."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from monitor.analysis import RunAnalysis
from monitor.check import check_target
from monitor.config import Config
from monitor.hub import HubSnapshot
from monitor.model import Finding, Role, Severity
from tests.test_layers import WATCH_HIST
from tests.test_tui_app import NOW, run_async
from tests.test_wandb_log import write_offline_run
from tui.app import RunwatchApp, make_app
from tui.layermap import BAD, DEAD, VALUE, ZERO, depth_order, layer_map
from tui.runplots import run_panes
from tui.screens.detail import DetailScreen
from tui.scripted import ScriptedHub, run_snapshot, yolo_scene
from tui.widgets.plot import PlotView
from tui.widgets.plot_grid import PlotGrid

# `wandb.watch(model, log="gradients")`'s histograms for a 6-layer net (written with the SDK, no torch):
# an embedding, four numbered blocks and a head; block 2 stops getting gradients at step 40 (dead),
# and the input side's gradients shrink by orders of magnitude as the run goes on (vanishing with depth).
WATCH = (
    """
import numpy as np, wandb
rng = np.random.default_rng(0)
run = wandb.init(mode="offline", project="runwatch-test", id="heatmap01", name="watched-mlp")
"""
    + WATCH_HIST
    + """
names = ["head.weight", "blocks.3.weight", "blocks.2.weight", "blocks.1.weight", "blocks.0.weight", "embed.weight"]
for i in range(120):
    row = {"train/loss": 2.0 / (1 + i / 10) * (1 + 0.02 * rng.standard_normal())}
    for depth, name in enumerate(names):  # the backward pass: output side first
        scale = 10.0 ** (-depth * (0.3 + i / 60))
        g = rng.standard_normal(256) * scale
        if name == "blocks.2.weight" and i >= 40:
            g = np.zeros(256)
        row["gradients/" + name] = hist(g)
    run.log(row)
run.finish()
"""
)


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> RunAnalysis:
    path = write_offline_run(tmp_path_factory.mktemp("wandb-heatmap"), WATCH)
    return check_target(str(path), Config())


def _scene(a: RunAnalysis) -> ScriptedHub:
    j = a.judgement()
    run = run_snapshot(
        "watched",
        name="watched-mlp",
        target="wandb/offline-run/run-heatmap01.wandb",
        source="wandb",
        format="wandb",
        last_step=float(a.store.last_step or 0),
        verdict=j.verdict,
        reason="a layer gets no gradient",
        findings=tuple(a.findings()),
        loss=1.0,
        steps_per_s=0.0,
        state="finished",
    )
    return ScriptedHub({"watched": a}, {}, initial=HubSnapshot(NOW, (run,), (), ()))


def _app(a: RunAnalysis) -> RunwatchApp:
    return make_app(Config(), hub=_scene(a), clock=lambda: NOW + 5, redraw_interval=0.0)


def test_layers_go_from_input_to_output() -> None:
    keys = ["gradients/head.weight", "gradients/layers.10.w", "gradients/layers.2.w", "gradients/embed.weight"]
    assert depth_order(keys) == [
        "gradients/embed.weight",
        "gradients/layers.2.w",
        "gradients/layers.10.w",
        "gradients/head.weight",
    ]


def test_layer_map_cells_and_merged_rows() -> None:
    steps = np.arange(10, dtype=float)
    data = {
        "gradients/l.0.weight": (steps, np.full(10, 1e-3)),
        "gradients/l.1.weight": (steps, np.where(steps >= 5, 0.0, 1e-1)),
        "gradients/l.2.weight": (steps, np.where(steps == 9, np.nan, 10.0)),
    }
    dead = Finding("grad_vanishing", Severity.WARN, "gradients/l.1.weight", 9, 5, "dead", {"dead_layer": True})
    m = layer_map(list(data), lambda k: data[k], [dead], columns=10, max_rows=10)
    assert m is not None and [r.name for r in m.rows] == ["l.0.weight", "l.1.weight", "l.2.weight"]
    assert m.lo == pytest.approx(-3) and m.hi == pytest.approx(1)
    assert m.rows[1].kind.tolist() == [VALUE] * 5 + [ZERO] * 5 and m.rows[1].mark == DEAD
    assert m.rows[2].kind[-1] == BAD and m.rows[0].mark == ""
    # Too many layers for the rows: neighbours merge and a zero cell or a mark of any of them stays seen.
    m2 = layer_map(list(data), lambda k: data[k], [dead], columns=5, max_rows=2)
    assert m2 is not None and len(m2.rows) == 2 and m2.layers == 3
    assert any(r.mark == DEAD and ZERO in r.kind.tolist() for r in m2.rows)
    assert layer_map(list(data), lambda k: (np.empty(0), np.empty(0)), [], 10, 10) is None
    # A layer logged every 4th step holds its value between points: no gaps inside its logged span.
    sparse = {"gradients/l.0.weight": (np.arange(0, 40, 4, dtype=float), np.full(10, 1.0))}
    m3 = layer_map(list(sparse), lambda k: sparse[k], [], columns=36, max_rows=5)
    assert m3 is not None and m3.rows[0].kind.tolist() == [VALUE] * 36


def test_a_run_without_per_layer_gradients_gets_no_heat_map_pane() -> None:
    hub, _ = yolo_scene(NOW)
    assert not [p for p in run_panes(hub.analysis("yolo")) if p.layers]


def test_per_layer_keys_make_one_heat_map_pane_after_the_losses(watched: RunAnalysis) -> None:
    ps = run_panes(watched)
    layers = [p for p in ps if p.layers]
    assert len(layers) == 1 and len(layers[0].keys) == 6 and layers[0].role is Role.GRAD_NORM
    assert ps[0].headline and ps.index(layers[0]) == len(ps) - 1
    assert not [p for p in ps if not p.layers and p.keys[0].startswith("gradients/")]


def _heat(app: RunwatchApp) -> PlotView:
    grid = app.screen.query_one(PlotGrid)
    (view,) = [v for v in grid.views if "layer gradients" in str(v.border_title)]
    return view


@pytest.mark.timeout(60)
@run_async
async def test_detail_view_draws_the_real_runs_layers_with_the_dead_one_marked(watched: RunAnalysis) -> None:
    dead = [f for f in watched.findings() if f.evidence.get("dead_layer")]
    assert [f.metric for f in dead] == ["gradients/blocks.2.weight"]
    app = _app(watched)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        lines = _heat(app).render().plain.splitlines()  # type: ignore[attr-defined]
        rows = [ln for ln in lines if "weight" in ln]
        names = [ln.split()[0].lstrip("…") for ln in rows]
        assert names == [f"{n}.weight" for n in ("embed", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "head")]
        cells = [r[r.index("weight") + 6 :] for r in rows]  # the mark, then a cell per time bucket
        dead_row = cells[3].strip()
        # Dead from step 40 of 120: marked, gradients in the first third of its cells, zeros after.
        assert dead_row.startswith("∅") and dead_row.endswith("0")
        body = dead_row[1:].strip()
        assert set(body[: len(body) // 4]) == {"█"} and set(body[len(body) // 2 :]) == {"0"}
        # Vanishing towards the input: the first numbered block carries the mark.
        assert cells[1].strip().startswith("↓")
        assert all(set(c.strip()) == {"█"} for c in cells[4:])  # the output side: healthy, unmarked
        assert all(c.strip().lstrip("↓").strip() == "█" * len(c.strip().lstrip("↓").strip()) for c in cells[:3])
        legend = lines[-1]
        assert "log10‖g‖" in legend and "dead" in legend and "all zero" in legend
        assert "6 layers" in lines[-2] and "step" in lines[-2]
        # The wheel over the heat map pages the grid (it has no x axis to zoom); `/` narrows its layers.
        await pilot.press("slash", *"blocks", "enter")
        await pilot.pause()
        rows = [ln for ln in _heat(app).render().plain.splitlines() if "weight" in ln]  # type: ignore[attr-defined]
        assert len(rows) == 4


def _open(*keys: str) -> Any:
    async def run(pilot: Any) -> None:
        for _ in range(3):
            await pilot.pause()
        for k in keys:
            await pilot.press(k)
            await pilot.pause()

    return run


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_heat_map_snapshot(snap_compare: Any, watched: RunAnalysis, size: tuple[int, int]) -> None:
    assert snap_compare(_app(watched), terminal_size=size, run_before=_open("enter"))


@pytest.mark.timeout(60)
def test_without_colour_the_levels_are_shades_and_the_marks_stay(
    watched: RunAnalysis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")

    @run_async
    async def go() -> None:
        app = _app(watched)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await pilot.press("enter")
            await pilot.pause()
            assert app.no_color
            text = _heat(app).render().plain  # type: ignore[attr-defined]
            cells = "".join(ln[ln.index("weight") + 8 :] for ln in text.splitlines() if "weight" in ln)
            # Small and large norms read as different shades; dead cells still read 0, the dead layer ∅.
            assert len(set(cells) & set("░▒▓█")) >= 3 and "0" in cells and "∅" in text

    go()


@pytest.mark.timeout(60)
@run_async
async def test_the_heat_map_follows_a_wheel_zoom_of_the_steps(watched: RunAnalysis) -> None:
    from textual import events

    app = _app(watched)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        loss = app.screen.query_one(PlotGrid).views[0]
        r = loss.region
        x, y = r.x + r.width - 4, r.y + r.height // 2
        for _ in range(3):  # three notches in at the right end: the last steps
            app.post_message(events.MouseScrollUp(None, x, y, 0, -1, 0, False, False, False, screen_x=x, screen_y=y))
            await pilot.pause()
        await pilot.pause()
        lo, hi = app.screen.options.x_range  # type: ignore[attr-defined]
        assert lo > 60
        lines = _heat(app).render().plain.splitlines()  # type: ignore[attr-defined]
        axis = next(ln for ln in lines if "layers" in ln and "step" in ln)
        assert axis.split()[-1].endswith(str(int(hi))) or str(round(hi)) in axis
        dead_row = next(ln for ln in lines if "blocks.2.weight" in ln)
        assert "█" not in dead_row  # after step 40 the dead layer has only zero cells
