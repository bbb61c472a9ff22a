"""The tokens x axis: real runs that log or state their tokens get it, in the detail view and compare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.analysis import RunAnalysis, RunInfo
from monitor.check import check_target
from monitor.config import Config
from monitor.hub import Hub
from monitor.model import Role, Row
from tests.test_tui_app import run_async
from tui.app import make_app
from tui.plotdata import COMPARE_X_AXES, PCT, TOKENS, X_AXES, PlotOptions, axes_with, map_x
from tui.runplots import compare_spec, pane_spec, run_panes
from tui.screens.compare import CompareScreen
from tui.screens.detail import DetailScreen
from tui.tokenaxis import is_token_counter, token_key, tokens_of
from tui.widgets.plot_grid import PlotGrid

REAL = Path(__file__).resolve().parents[1] / "bench" / "corpus" / "real"
HF_TOKENS = REAL / "hf-trainer-state-cognidet-lora-epoch-drop-healthy" / "trainer_state.json"
TRL_TOKENS = REAL / "trl-grpo-trainer-state-sparse-reward-no-signal-plateau" / "trainer_state.json"
NO_TOKENS = REAL / "hf-trainer-state-mt5-az-summarize-healthy" / "trainer_state.json"
needs_corpus = pytest.mark.skipif(not HF_TOKENS.exists() or not TRL_TOKENS.exists(), reason="real corpus absent")


@pytest.mark.parametrize(
    ("keys", "found"),
    [
        (["loss", "num_input_tokens_seen"], "num_input_tokens_seen"),
        (["train/loss", "train/num_input_tokens_seen", "train/tokens_per_second"], "train/num_input_tokens_seen"),
        (["reward", "num_tokens"], "num_tokens"),
        (["throughput/total_tokens", "train/CrossEntropyLoss"], "throughput/total_tokens"),
        (["loss", "tok/s", "tokens_per_second"], None),  # rates are not counters
        (["loss", "lr"], None),
    ],
)
def test_token_counter_keys(keys: list[str], found: str | None) -> None:
    assert token_key(keys) == found
    assert is_token_counter("num_input_tokens_seen") and is_token_counter("consumed samples")
    assert not is_token_counter("tokens_per_second") and not is_token_counter("tok/s")


def test_tokens_extrapolate_at_their_own_rate_beyond_the_counted_steps() -> None:
    pairs = (np.array([10.0, 20.0]), np.array([1000.0, 2000.0]))
    x, unit = map_x(np.array([5.0, 15.0, 30.0]), TOKENS, pairs=pairs)
    assert unit == TOKENS and x.tolist() == [500.0, 1500.0, 3000.0]
    assert map_x(np.array([5.0]), TOKENS)[1] == "step"  # no pairs: stays in steps
    assert axes_with(X_AXES, tokens=True) == ("step", "tokens", "wall", "time")
    assert axes_with(COMPARE_X_AXES, epoch=True, tokens=True)[:4] == ("step", "pct", "epoch", "tokens")


def _megatron(config: dict[str, Any], samples: bool) -> RunAnalysis:
    """A Megatron-shaped run: its `consumed samples` counter, or only its config."""
    a = RunAnalysis(RunInfo("t", "t", "megatron", "iteration", config=config))
    rows = []
    for i in range(1, 11):
        values = {"lm loss": 5.0 - i * 0.1}
        if samples:
            values["consumed samples"] = 256.0 * i
        rows.append(Row(float(i), values, 100.0 + i))
    a.add_rows(rows, 200.0)
    return a


def test_megatron_tokens_from_samples_and_config() -> None:
    a = _megatron({"seq_length": 2048}, samples=True)
    p = tokens_of(a)
    assert p is not None and p[1][-1] == 256 * 10 * 2048
    b = _megatron({"global_batch_size": 512, "seq_length": 1024}, samples=False)
    p = tokens_of(b)
    assert p is not None and p[1][-1] == 10 * 512 * 1024
    assert tokens_of(_megatron({"seq_length": 1024}, samples=False)) is None  # batch unknown: no tokens


@needs_corpus
def test_real_hf_and_trl_runs_have_a_tokens_axis_and_their_counters_are_not_panes() -> None:
    hf = check_target(str(HF_TOKENS), Config())
    p = tokens_of(hf)
    assert p is not None and p[1][-1] > 1e7 and np.all(np.diff(p[1]) >= 0)
    assert not [pn for pn in run_panes(hf) if "tokens" in pn.title]
    spec = pane_spec(hf, run_panes(hf)[0], (), PlotOptions(x_axis=TOKENS))
    assert spec.xlabel == "tokens seen" and spec.series[0].x[-1] > 1e7
    trl = check_target(str(TRL_TOKENS), Config())
    assert tokens_of(trl) is not None
    if NO_TOKENS.exists():
        assert tokens_of(check_target(str(NO_TOKENS), Config())) is None
    both = compare_spec([("hf", hf), ("trl", trl)], Role.TRAIN_LOSS, PlotOptions(x_axis=TOKENS))
    assert both.xlabel == "tokens seen" and len(both.series) == 2


async def _until(pilot: Any, ok: Any, tries: int = 200) -> None:
    for _ in range(tries):
        if ok():
            return
        await pilot.pause(0.05)
    raise AssertionError("timed out")


@needs_corpus
@pytest.mark.timeout(60)
@run_async
async def test_x_offers_tokens_in_the_detail_view_and_compare_starts_on_tokens() -> None:
    config = Config()
    hub = Hub([str(HF_TOKENS), str(TRL_TOKENS)], config, gpu=False)
    app = make_app(config, hub=hub, redraw_interval=0.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, lambda: app.snapshot is not None and len(app.snapshot.runs) == 2)
        await _until(pilot, lambda: all(r.last_step for r in app.snapshot.runs))  # type: ignore[union-attr]
        await pilot.press("enter")
        await _until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.query_one(PlotGrid).views)
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        assert screen.X_AXES[:3] == ("step", "epoch", TOKENS)  # the run logs both
        await pilot.press("x", "x")
        await pilot.pause()
        assert screen.options.x_axis == TOKENS
        assert "x: tokens" in str(screen.query_one("#detail-head").render())
        await pilot.press("escape", "c")
        await _until(pilot, lambda: isinstance(app.screen, CompareScreen))
        await pilot.pause()
        cmp = app.screen
        assert isinstance(cmp, CompareScreen)
        # A 600-step HF run and a 100-step TRL run: both count tokens, so tokens line them up (not %).
        assert cmp.options.x_axis == TOKENS and PCT in cmp.X_AXES
        assert "tokens seen" in cmp.query_one("#compare-plot").render().plain  # type: ignore[attr-defined]


def test_a_nanogpt_log_states_its_tokens_per_iteration_in_its_header(tmp_path: Path) -> None:
    # nanoGPT's train.py prints "tokens per iteration will be: N" first; its iterations then map to tokens.
    log = tmp_path / "train.log"
    log.write_text(
        "tokens per iteration will be: 491,520\n"
        "step 0: train loss 10.9, val loss 10.9\n"
        + "".join(f"iter {i}: loss {10.9 - i * 0.01:.4f}, time 300.00ms, mfu 40.00%\n" for i in range(0, 200, 10))
    )
    a = check_target(str(log), Config())
    assert a.info.format == "nanogpt" and a.info.config["tokens_per_iter"] == 491520
    found = tokens_of(a)
    assert found is not None
    steps, tokens = found
    assert tokens[-1] == steps[-1] * 491520 and steps[-1] == 190
