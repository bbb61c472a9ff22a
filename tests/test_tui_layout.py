"""Pure parts of the issue-14 screens: which panes a run gets, how they fit, and how numbers read."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.analysis import RunAnalysis, RunInfo
from monitor.model import Finding, Row, Severity, Verdict
from monitor.roles import classify
from tui import format as fmt
from tui.metricgrid import grid_shape, matches, panes, stem
from tui.plotdata import PlotOptions, bucket_means, nice_ticks, prepare_series
from tui.runinfo import info_sections
from tui.scripted import run_snapshot

YOLO = [
    "epoch",
    "train/box_loss",
    "train/obj_loss",
    "train/cls_loss",
    "metrics/precision",
    "metrics/recall",
    "metrics/mAP_0.5",
    "metrics/mAP_0.5:0.95",
    "val/box_loss",
    "val/obj_loss",
    "val/cls_loss",
    "x/lr0",
    "x/lr1",
    "x/lr2",
]
HF = ["loss", "grad_norm", "learning_rate", "epoch", "eval_loss", "eval_accuracy", "train/global_step"]
RL = ["loss", "objective/kl", "objective/entropy", "rewards/mean", "tokens_per_second", "_step", "_runtime"]


@pytest.mark.parametrize(
    ("keys", "step_key", "primary", "eval_key", "want"),
    [
        (
            YOLO,
            "epoch",
            "train/box_loss",
            "val/box_loss",
            [
                ("box_loss", ("train/box_loss", "val/box_loss")),
                ("cls_loss", ("train/cls_loss", "val/cls_loss")),
                ("obj_loss", ("train/obj_loss", "val/obj_loss")),
                ("metrics/mAP_0.5", ("metrics/mAP_0.5",)),
                ("metrics/mAP_0.5:0.95", ("metrics/mAP_0.5:0.95",)),
                ("metrics/precision", ("metrics/precision",)),
                ("metrics/recall", ("metrics/recall",)),
                ("learning rate", ("x/lr0", "x/lr1", "x/lr2")),
            ],
        ),
        (
            HF,
            "train/global_step",
            "loss",
            "eval_loss",
            [
                ("loss", ("loss", "eval_loss")),
                ("eval_accuracy", ("eval_accuracy",)),
                ("learning rate", ("learning_rate",)),
                ("grad norm", ("grad_norm",)),
            ],
        ),
        (["loss"], "step", "loss", None, [("loss", ("loss",))]),
        (
            RL,
            "_step",
            "loss",
            None,
            [
                ("loss", ("loss",)),
                ("objective/entropy", ("objective/entropy",)),
                ("objective/kl", ("objective/kl",)),
                ("rewards/mean", ("rewards/mean",)),
                ("tokens_per_second", ("tokens_per_second",)),
            ],
        ),
    ],
    ids=["yolo", "hf", "loss-only", "rl"],
)
def test_panes_group_what_a_run_logs_most_important_first(
    keys: list[str], step_key: str, primary: str, eval_key: str | None, want: list[tuple[str, tuple[str, ...]]]
) -> None:
    got = panes(keys, classify, step_key=step_key, primary_loss=primary, primary_eval=eval_key)
    assert [(p.title, p.keys) for p in got] == want
    assert got[0].headline


def test_picker_takes_a_glob_or_words_and_legends_drop_the_shared_stem() -> None:
    assert matches("metrics/mAP_0.5", "map") and matches("val/box_loss", "val/*") and not matches("x/lr0", "val/*")
    assert matches("train/box_loss", "box train") and not matches("train/box_loss", "box val")
    got = panes(YOLO, classify, step_key="epoch", primary_loss="train/box_loss", pattern="*loss")
    assert [p.title for p in got] == ["box_loss", "cls_loss", "obj_loss"]
    assert [got[0].short(k) for k in got[0].keys] == ["train", "val"]
    assert stem("eval_loss") == "loss" and stem("val/box_loss") == "box_loss"


@pytest.mark.parametrize(
    ("n", "size", "want"),
    [
        (1, (118, 25), (1, 1, 1, 1)),  # a loss-only run: one pane fills the grid
        (8, (118, 25), (3, 2, 6, 1)),  # YOLO at 120x40: six panes, the rest a page away
        (2, (118, 25), (1, 2, 2, 1)),  # two panes stack, full width
        (3, (78, 14), (2, 1, 2, 1)),  # 80x24: two side by side
        (5, (198, 45), (2, 3, 5, 2)),  # 200x60: the first pane spans the gap the odd count leaves
    ],
)
def test_grid_shape_fits_readable_panes(n: int, size: tuple[int, int], want: tuple[int, int, int, int]) -> None:
    s = grid_shape(n, *size)
    assert (s.columns, s.rows, s.shown, s.first_span) == want


def test_numbers_read_as_si_and_ticks_are_round() -> None:
    assert [fmt.si(v) for v in (0, 0.25, 150, 1200, 1_000_000, 3e-4, 5113058951168.0, math.nan)] == [
        "0",
        "0.25",
        "150",
        "1.2k",
        "1M",
        "3e-4",
        "5.1e12",
        "NaN",
    ]
    assert nice_ticks(0, 150, 4) == [0.0, 50.0, 100.0, 150.0]
    assert fmt.tick_labels([1000, 1100, 1200]) == ["1k", "1.1k", "1.2k"]
    assert fmt.step_text(1_000_000) == "1,000,000"


def test_trend_is_the_whole_run_and_rates_and_stalls_move_with_the_clock() -> None:
    falling = np.linspace(10, 2, 10_000) + 0.3 * np.sin(np.arange(10_000))  # noisy, but falling
    spark = fmt.sparkline(bucket_means(falling, 12), 12)
    assert spark[0] == "█" and spark[-1] == "▁" and list(spark) == sorted(spark, reverse=True)
    assert fmt.sparkline([1.0, math.nan, 2.0], 3) == "▁!█"
    assert fmt.live_rate(2.7, 1.0) == 2.7 and fmt.live_rate(2.7, 30.0) == pytest.approx(2.7 * 5 / 30)
    assert fmt.live_rate(2.7, 120.0) == 0.0 and fmt.rate_text(0.0) == "0/s"
    # A run logging a row every 10 s at 10 steps/s is not slowing down 15 s after its last row.
    assert fmt.live_rate(10.0, 15.0, interval=10.0) == 10.0 and fmt.live_rate(10.0, 60.0, interval=10.0) == 5.0
    assert fmt.live_rate(10.0, 250.0, interval=10.0) == 0.0
    stall = Finding("stalled", Severity.WARN, "step", 5, 5, "no new step for 21s after step 5 (usual interval 2s)", {})
    assert fmt.live_message(stall, 1000.0, 1080.0).startswith("no new step for 1m after step 5")
    # The detector writes durations as `21 s`, `40 min`, `1.2 h`: the unit goes with the number.
    for written in ("21 s", "40 min", "1.2 h"):
        f = Finding("stalled", Severity.WARN, "step", 5, 5, f"no new step for {written} after step 5", {})
        assert fmt.live_message(f, 1000.0, 1000.0 + 7200).startswith("no new step for 2.0h after step 5")


def test_nan_points_are_kept_as_marks_on_the_curve() -> None:
    x = np.arange(10, dtype=float)
    y = np.array([5, 4, 3, math.nan, 2, 1, math.inf, 1, 1, 1], dtype=float)
    p = prepare_series(x, y, PlotOptions(), 80)
    assert p.bad_x.tolist() == [3.0, 6.0] and p.bad_y.tolist() == [3.0, 1.0]
    assert np.isfinite(p.y).all() and p.x[-1] == 9.0


def test_sort_keys_put_a_nan_loss_last_and_the_largest_step_first() -> None:
    runs = [run_snapshot("a", loss=math.nan, last_step=5.0), run_snapshot("b", loss=1.0, last_step=1e6)]
    assert sorted(runs, key=lambda r: fmt.column_sort_key(r, "loss", 0))[0].id == "b"
    assert sorted(runs, key=lambda r: fmt.column_sort_key(r, "step", 0))[0].id == "b"


def test_info_pane_redacts_secrets_from_config_and_command_line() -> None:
    a = RunAnalysis(RunInfo(target="/runs/x.log", name="x"))
    a.info.config = {
        "optim": {"lr": 3e-4},
        "wandb_api_key": "s3cretvalue99",
        "command": "train.py --token s3cretvalue99",
    }
    a.add_rows([Row(1.0, {"loss": 2.0})], 0.0)
    sections = dict(info_sections(run_snapshot("x"), a))
    text = repr(sections)
    assert "s3cretvalue99" not in text and "[REDACTED]" in text
    assert ("optim.lr", "0.0003") in sections["config"]
    assert ("loss", "2") in sections["summary (latest values)"]


@pytest.mark.parametrize(
    ("fields", "badge"),
    [
        ({"shown_verdict": "unreadable", "state": "unreadable"}, "! unreadable"),
        ({"shown_verdict": "waiting", "state": "connecting"}, "… waiting"),
        ({"shown_verdict": "stale", "state": "stale"}, "~ stale"),
        ({"shown_verdict": "bad", "verdict": Verdict.BAD, "stale": True}, "✗ bad"),
        ({"shown_verdict": "healthy", "state": "finished"}, "✓ healthy"),
    ],
)
def test_badges_follow_the_verdict_the_snapshot_says_to_show(fields: dict[str, object], badge: str) -> None:
    assert fmt.badge_text(run_snapshot("r", **fields)) == badge


def test_progress_bar_fits_its_width_and_says_the_percentage() -> None:
    assert fmt.progress_bar(43, 100, 12) == "▕███░░░░▏43%"
    assert fmt.progress_bar(0, 10, 8) == "▕░░░░▏0%" and fmt.progress_bar(10, 10, 9) == "▕███▏100%"
    assert all(len(fmt.progress_bar(d, 100, 10)) == 10 for d in (0, 5, 50, 99))


def test_run_names_keep_both_ends_when_clipped() -> None:
    from tui.widgets.run_table import clip_middle

    a, b = clip_middle("llmc-gpt2-124m-healthy/main.log", 17), clip_middle("llmc-gpt2-124m-healthy/eval.log", 17)
    assert a != b and len(a) == 17 and a.startswith("llmc-gpt") and a.endswith(".log")
    assert clip_middle("short", 17) == "short"


def test_a_pane_of_many_metrics_draws_a_few_and_says_how_to_pick_the_rest() -> None:
    from monitor.roles import classify as role_of
    from tui.runplots import PANE_SERIES_MAX, pane_spec, run_panes

    a = RunAnalysis(RunInfo(target="/runs/w", name="w"))
    keys = [f"layer{i}/grad_norm" for i in range(40)]
    a.add_rows([Row(float(s), dict.fromkeys(keys, 1.0 + s)) for s in range(5)], 0.0)
    (pane,) = run_panes(a)
    assert pane.title == "grad norm" and len(pane.keys) == 40 and role_of(keys[0]).name == "GRAD_NORM"
    spec = pane_spec(a, pane, (), PlotOptions())
    assert len(spec.series) == PANE_SERIES_MAX and spec.title == f"grad norm ({PANE_SERIES_MAX} of 40: / picks)"
