"""Parsers fed the verbatim sample lines of corpus/real/FORMATS.md, plus noise and step-axis rules."""

from __future__ import annotations

import math

import pytest

from monitor.errors import FormatError
from monitor.model import Row
from monitor.parsers import PARSERS, detect_format, feed_lines, make_parser, parse_lines
from monitor.parsers.golden import parse_document as parse_golden
from monitor.parsers.hfstate import parse_document as parse_state

# Expected rows: (step, values that must be there, keys that must not be there).
Expect = tuple[float, dict[str, float], tuple[str, ...]]

NAN = float("nan")

# ---- FORMATS.md block 1: Megatron-LM / Megatron-DeepSpeed ----
MEGATRON = [
    (
        " iteration    29020/  311541 | consumed samples:     10698064 | elapsed time per "
        "iteration (ms): 22306.6 | learning rate: 9.850E-05 | global batch size:  1024 | lm "
        "loss: 2.775923E+00 | loss scale: 32768.0 | grad norm: 0.000 | num zeros: 0.0 | number "
        "of skipped iterations:   0 | number of nan iterations:   0 |"
    ),
    (
        " iteration    29050/  311541 | consumed samples:     10728784 | elapsed time per "
        "iteration (ms): 22148.5 | learning rate: 9.849E-05 | global batch size:  1024 | lm "
        "loss: 7.343709E+00 | loss scale: 8192.0 | grad norm: 0.000 | num zeros: 0.0 | number "
        "of skipped iterations:   0 | number of nan iterations:   0 |"
    ),
    " validation loss at iteration 7000 | lm loss value: 7.174200E+00 | lm loss PPL: 1.305315E+03 |",
    (
        "[default7]: iteration    31219/  115311 | consumed samples:     47778736 | consumed "
        "tokens:  97850851328 | elapsed time per iteration (s): 106.36 | learning rate: "
        "5.279E-05 | global batch size:  2048 | lm loss: 5.098124E+00 | grad norm: 960.351 | "
        "num zeros: 0.0 | number of skipped iterations:   0 | number of nan iterations:   0 | "
        "samples per second: 19.256 | TFLOPs: 147.43 |"
    ),
]
MEGATRON_ROWS: list[Expect] = [
    (
        29020,
        {
            "consumed samples": 10698064,
            "elapsed time per iteration (ms)": 22306.6,
            "learning rate": 9.85e-05,
            "global batch size": 1024,
            "lm loss": 2.775923,
            "loss scale": 32768,
            "grad norm": 0.0,
            "num zeros": 0.0,
            "number of skipped iterations": 0,
            "number of nan iterations": 0,
        },
        ("iteration",),
    ),
    (29050, {"lm loss": 7.343709, "loss scale": 8192.0, "learning rate": 9.849e-05}, ()),
    (7000, {"val/lm loss": 7.1742, "val/lm loss PPL": 1305.315}, ("lm loss",)),
    (
        31219,
        {
            "consumed tokens": 97850851328,
            "elapsed time per iteration (s)": 106.36,
            "lm loss": 5.098124,
            "grad norm": 960.351,
            "samples per second": 19.256,
            "TFLOPs": 147.43,
        },
        ("loss scale",),
    ),
]

# ---- block 2: PyTorch examples word_language_model ----
WORDLM = [
    "| epoch   1 |   200/ 2983 batches | lr 20.0000 | ms/batch 11.77 | loss  9.09 | ppl  8835.03",
    "| end of epoch   1 | time: 36.35s | valid loss  5.61 | valid ppl   273.43",
    "| End of training | test loss  5.13 | test ppl   168.89",
    "| epoch   1 |   200/ 2983 batches | lr 20.0000 | ms/batch 11.61 | loss   nan | ppl      nan",
]
WORDLM_ROWS: list[Expect] = [
    (200, {"lr": 20.0, "ms/batch": 11.77, "loss": 9.09, "ppl": 8835.03}, ()),
    (2983, {"time": 36.35, "valid loss": 5.61, "valid ppl": 273.43}, ("loss",)),
    (2983, {"test loss": 5.13, "test ppl": 168.89}, ()),
    (200, {"lr": 20.0, "ms/batch": 11.61, "loss": NAN, "ppl": NAN}, ()),
]

# ---- block 3: llm.c main.log ----
LLMC = [
    "s:0 tel:11.0092",
    "s:0 trl:11.0091 lr:0.000001 norm:15.37",
    "s:1 trl:10.9598 lr:0.000002 norm:15.24",
    "s:19560 tel:3.2722",
]
LLMC_ROWS: list[Expect] = [
    (0, {"val_loss": 11.0092}, ("train_loss",)),
    (0, {"train_loss": 11.0091, "lr": 0.000001, "grad_norm": 15.37}, ()),
    (1, {"train_loss": 10.9598, "lr": 0.000002, "grad_norm": 15.24}, ()),
    (19560, {"val_loss": 3.2722}, ()),
]

# ---- block 4: modded-nanogpt ----
MODDED = [
    "step:0/6200 val_loss:10.9264 train_time:285ms step_avg:nanms",
    "step:1/6200 train_loss:10.9184 train_time:74701ms step_avg:nanms",
    "step:125/6200 train_loss:5.3717 train_time:24562ms step_avg:213.58ms",
    "step:125/6200 val_loss:5.2017 train_time:24564ms step_avg:213.60ms",
]
MODDED_ROWS: list[Expect] = [
    (0, {"val_loss": 10.9264, "train_time": 285.0}, ("step_avg",)),
    (1, {"train_loss": 10.9184, "train_time": 74701.0}, ("step_avg",)),
    (125, {"train_loss": 5.3717, "train_time": 24562.0, "step_avg": 213.58}, ()),
    (125, {"val_loss": 5.2017, "train_time": 24564.0, "step_avg": 213.60}, ()),
]

# ---- block 5: nanoGPT ----
NANOGPT = [
    "step 0: train loss 4.2367, val loss 4.2475",
    "iter 0: loss 4.2709, time 10268.08ms, mfu -100.00%",
    "iter 395: loss 3.5382, time 1447.95ms, mfu 0.01%",
    "step 400: train loss 3.3296, val loss 3.3687",
    "iter 425: loss nan, time 1440.31ms, mfu 0.01%",
]
NANOGPT_ROWS: list[Expect] = [
    (0, {"train loss": 4.2367, "val loss": 4.2475}, ()),
    (0, {"loss": 4.2709, "time": 10268.08}, ("mfu",)),
    (395, {"loss": 3.5382, "time": 1447.95, "mfu": 0.01}, ()),
    (400, {"train loss": 3.3296, "val loss": 3.3687}, ()),
    (425, {"loss": NAN, "time": 1440.31, "mfu": 0.01}, ()),
]

# ---- block 6: HF Trainer stdout dicts (no logging_steps printed: the epoch is the step) ----
HF = [
    "{'loss': 0.166, 'grad_norm': 0.5529286861419678, 'learning_rate': 0.0, 'epoch': 0.83}",
    (
        "{'eval_loss': 0.15505941212177277, 'eval_runtime': 36.07, 'eval_samples_per_second': "
        "1.691, 'eval_steps_per_second': 0.111, 'epoch': 5.0}"
    ),
    (
        "{'train_runtime': 41767.9694, 'train_samples_per_second': 0.433, "
        "'train_steps_per_second': 0.005, 'train_loss': 0.03962062540048009, 'epoch': 100.0}"
    ),
]
HF_ROWS: list[Expect] = [
    (0.83, {"loss": 0.166, "grad_norm": 0.5529286861419678, "learning_rate": 0.0, "epoch": 0.83}, ()),
    (5.0, {"eval_loss": 0.15505941212177277, "eval_runtime": 36.07, "epoch": 5.0}, ()),
    (
        100.0,
        {
            "summary/train_runtime": 41767.9694,
            "summary/train_samples_per_second": 0.433,
            "summary/train_steps_per_second": 0.005,
            "summary/train_loss": 0.03962062540048009,
            "epoch": 100.0,
        },
        ("train_loss", "train_runtime"),
    ),
]

# ---- block 9: DeepSpeed-Chat ----
DS_CHAT = [
    "***** Evaluating perplexity, Epoch 0/16 *****",
    "ppl: 4998.29638671875",
    "Beginning of Epoch 1/16, Total Micro Batches 460",
    (
        "[2023-04-18 01:46:52,554] [INFO] [loss_scaler.py:188:update_scale] [deepspeed] "
        "OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 65536, but hysteresis is 2. "
        "Reducing hysteresis to 1"
    ),
    (
        "[2023-04-18 01:46:59,171] [INFO] [timer.py:199:stop] "
        "epoch=0/micro_step=10/global_step=10, RunningAvgSamplesPerSec=173.4455644119137, "
        "CurrSamplesPerSec=171.97903593624417, MemAllocated=3.96GB, MaxMemAllocated=22.95GB"
    ),
]
DS_CHAT_ROWS: list[Expect] = [
    (0, {"eval/ppl": 4998.29638671875, "epoch": 0}, ()),
    (0, {"overflow_skip": 1.0, "loss scale": 65536.0}, ()),
    (
        10,
        {
            "RunningAvgSamplesPerSec": 173.4455644119137,
            "CurrSamplesPerSec": 171.97903593624417,
            "MemAllocated": 3.96,
            "MaxMemAllocated": 22.95,
        },
        (),
    ),
]

# ---- block 10: DeepSpeed engine log + random-LTD eval dict lines ----
DS_LTD = [
    "'step':0, 'ppl': 61.800734668415046, 'seq_len': 256, 'consume layer-tokens': 18432",
    "'step':10, 'ppl': 61.772465037680455, 'seq_len': 264, 'consume layer-tokens': 110912",
    (
        "[2022-11-24 01:46:51,726] [INFO] [logging.py:68:log_dist] [Rank 0] step=520, "
        "skipped=0, lr=[5e-05, 5e-05], mom=[(0.9, 0.999), (0.9, 0.999)]"
    ),
    "Before cleaning, Epoch at 2 with Perplexity: 23.9859276900444",
]
DS_LTD_ROWS: list[Expect] = [
    (0, {"eval/ppl": 61.800734668415046, "seq_len": 256, "consume layer-tokens": 18432}, ("ppl",)),
    (10, {"eval/ppl": 61.772465037680455, "seq_len": 264, "consume layer-tokens": 110912}, ()),
    (520, {"lr": 5e-05, "skipped": 0}, ("mom",)),
    (520, {"final/ppl": 23.9859276900444}, ()),
]

# ---- block 11: YOLOv5 results.csv ----
YOLO = [
    (
        "               epoch,      train/box_loss,      train/obj_loss,      "
        "train/cls_loss,   metrics/precision,      metrics/recall,     "
        "metrics/mAP_0.5,metrics/mAP_0.5:0.95,        val/box_loss,        "
        "val/obj_loss,        val/cls_loss,               x/lr0,               "
        "x/lr1,               x/lr2"
    ),
    (
        "                   0,             0.10684,            0.020594,            "
        "0.038418,           0.0067667,             0.14815,           0.0064055,            "
        "0.001654,            0.085069,            0.025153,            "
        "0.034711,                 0.1,               0.022,               0.022"
    ),
    (
        "                 167,                 nan,                 nan,            "
        "0.012463,             0.12563,             0.46296,             0.20401,             "
        "0.11531,             0.04649,             0.01552,            0.011767,              "
        "0.0502,              0.0502,              0.0502"
    ),
]
YOLO_ROWS: list[Expect] = [
    (0, {"train/box_loss": 0.10684, "metrics/mAP_0.5:0.95": 0.001654, "x/lr2": 0.022}, ("epoch",)),
    (167, {"train/box_loss": NAN, "train/obj_loss": NAN, "train/cls_loss": 0.012463, "x/lr0": 0.0502}, ()),
]

# ---- block 13: Lightning CSVLogger metrics.csv ----
LIGHTNING = [
    (
        "epoch,epoch_time,step,train_epoch_perplexity,train_loss_epoch,train_loss_step,"
        "train_perplexity_epoch,train_perplexity_step,val_epoch_perplexity,val_loss,val_perplexity"
    ),
    "0,,49,,,7.628580570220947,,2056.12939453125,,,",
    "0,2517.10107421875,14073,118.74422454833984,4.776971817016602,,169.75250244140625,,,,",
    "0,,14073,,,,,,62.33803176879883,4.132571697235107,63.93129348754883",
]
LIGHTNING_ROWS: list[Expect] = [
    (49, {"epoch": 0, "train_loss_step": 7.628580570220947, "train_perplexity_step": 2056.12939453125}, ()),
    (
        14073,
        {"epoch_time": 2517.10107421875, "train_loss_epoch": 4.776971817016602},
        ("train_loss_step", "val_loss", "step"),
    ),
    (14073, {"val_loss": 4.132571697235107, "val_perplexity": 63.93129348754883}, ("epoch_time",)),
]

CASES = {
    "megatron": ("megatron", MEGATRON, MEGATRON_ROWS),
    "wordlm": ("wordlm", WORDLM, WORDLM_ROWS),
    "llmc": ("llmc", LLMC, LLMC_ROWS),
    "modded-nanogpt": ("modded-nanogpt", MODDED, MODDED_ROWS),
    "nanogpt": ("nanogpt", NANOGPT, NANOGPT_ROWS),
    "hf-trainer": ("hf-trainer", HF, HF_ROWS),
    "deepspeed-chat": ("deepspeed", DS_CHAT, DS_CHAT_ROWS),
    "deepspeed-random-ltd": ("deepspeed", DS_LTD, DS_LTD_ROWS),
    "yolov5-csv": ("csv", YOLO, YOLO_ROWS),
    "lightning-csv": ("csv", LIGHTNING, LIGHTNING_ROWS),
}


def same(a: float, b: float) -> bool:
    """Equal, NaN equal to NaN."""
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=0)


def check_rows(rows: list[Row], expected: list[Expect]) -> None:
    assert len(rows) == len(expected), rows
    for row, (step, values, absent) in zip(rows, expected, strict=True):
        assert row.step == pytest.approx(step), row
        for key, value in values.items():
            assert key in row.values, (key, row)
            assert same(row.values[key], value), (key, row)
        for key in absent:
            assert key not in row.values, (key, row)
        assert all(isinstance(v, float) for v in row.values.values()), row


@pytest.mark.parametrize("case", list(CASES))
def test_verbatim_lines(case: str) -> None:
    fmt, lines, expected = CASES[case]
    parser = make_parser(fmt)
    rows = [row for line in lines for row in parser.feed(line)] + parser.finish()
    check_rows(rows, expected)
    st = parser.stats
    assert st.lines == len(lines)
    assert st.lines == st.metric_lines + st.noise + st.malformed
    assert st.malformed == 0


@pytest.mark.parametrize("case", list(CASES))
def test_verbatim_lines_are_detected(case: str) -> None:
    fmt, lines, _ = CASES[case]
    assert detect_format(lines) == fmt


def test_megatron_total_steps_and_key_names() -> None:
    parser = make_parser("megatron")
    parser.feed(MEGATRON[0])
    assert parser.total_steps == 311541
    assert parser.step_key == "iteration"


def test_wordlm_namespace_is_config() -> None:
    namespace = (
        "Namespace(annealing_loss_improvement_pct=1.0, batch_size=20, bptt=35, clip=0.25, cuda=True, "
        "data='./data/wikitext-2', device='', dropout=0.2, dry_run=False, emsize=200, epochs=5, "
        "log_interval=200, lr=20, model='RNN_RELU', nhead=2, nhid=200, nlayers=2, onnx_export='', "
        "save='model_RNN_RELU_epochs_5.pt', seed=1111, tied=False)"
    )
    parser = make_parser("wordlm")
    assert parser.feed(namespace) == []
    assert parser.config["epochs"] == 5
    assert parser.config["model"] == "RNN_RELU"
    assert parser.config["cuda"] is True
    assert parser.config["device"] == ""
    assert parser.config["clip"] == 0.25
    parser.feed(WORDLM[0])
    assert parser.total_steps == 5 * 2983
    rows = feed_lines(parser, ["-" * 89, "| epoch   4 |  1400/ 2983 batches | lr 20.00 | loss  5.94 | ppl 380.0"])
    assert rows[0].step == 10349  # the label's onset: (4-1)*2983 + 1400


def test_wordlm_end_of_training_finishes() -> None:
    parser = make_parser("wordlm")
    feed_lines(parser, WORDLM[:2])
    assert not parser.finished
    parser.feed(WORDLM[2])
    assert parser.finished


# ---- HF Trainer step derivation ----
HF_TRAIN = "{'loss': 2.5, 'grad_norm': 1.5, 'learning_rate': 5e-05, 'epoch': 0.1}"
HF_TRAIN2 = "{'loss': 2.25, 'grad_norm': 1.25, 'learning_rate': 4e-05, 'epoch': 0.2}"
HF_EVAL = "{'eval_loss': 2.4, 'eval_runtime': 3.5, 'epoch': 0.2}"


@pytest.mark.parametrize(
    "announce",
    [
        ["TrainingArguments(", "_n_gpu=1,", "logging_steps=50,", "logging_strategy=steps,", ")"],
        ['  "logging_steps": 50,'],
        ["python train.py --output_dir out --logging_steps 50 --do_eval"],
    ],
)
def test_hf_logging_steps_gives_the_step(announce: list[str]) -> None:
    parser, rows = parse_lines([*announce, HF_TRAIN, HF_TRAIN2, HF_EVAL])
    assert parser.name == "hf-trainer"
    assert [r.step for r in rows] == [50, 100, 100]
    assert parser.step_key == "logging_steps×n (50)"
    assert rows[2].values["eval_loss"] == 2.4


def test_hf_dict_valued_training_arguments_are_not_log_rows() -> None:
    # `lr_scheduler_kwargs={'num_cycles': 3},` in the printed TrainingArguments is no train log.
    lines = ["TrainingArguments(", "logging_steps=50,", "lr_scheduler_kwargs={'num_cycles': 3},", ")"]
    _, rows = parse_lines([*lines, HF_TRAIN, HF_TRAIN2, HF_EVAL])
    assert [r.step for r in rows] == [50, 100, 100]
    assert all("num_cycles" not in r.values for r in rows)


def test_hf_logging_first_step() -> None:
    lines = ["TrainingArguments(", "logging_first_step=True,", "logging_steps=50,", ")"]
    _, rows = parse_lines([*lines, HF_TRAIN, HF_TRAIN2, HF_TRAIN, HF_EVAL])
    assert [r.step for r in rows] == [1, 50, 100, 100]


def test_hf_without_logging_steps_uses_epoch() -> None:
    parser, rows = parse_lines([HF_TRAIN, HF_TRAIN2, HF_EVAL])
    assert [r.step for r in rows] == [0.1, 0.2, 0.2]
    assert parser.step_key == "epoch"


def test_hf_epoch_logging_strategy_ignores_the_default_logging_steps() -> None:
    lines = ["TrainingArguments(", "logging_steps=500,", "logging_strategy=IntervalStrategy.EPOCH,", ")"]
    _, rows = parse_lines([*lines, HF_TRAIN, HF_EVAL])
    assert [r.step for r in rows] == [0.1, 0.2]


def test_hf_summary_finishes_and_odd_values() -> None:
    parser = make_parser("hf-trainer")
    rows = feed_lines(
        parser,
        [
            "{'loss': nan, 'grad_norm': inf, 'learning_rate': 1e-05, 'epoch': 1.0}",
            "{'eval_loss': -inf, 'eval_accuracy': np.float64(0.5), 'eval_model': 'x, y', 'epoch': 1.0}",
            "[2025-12-06 14:57:05,119] [INFO] [launch.py:162:main] WORLD INFO DICT: {'localhost': [0, 1]}",
        ],
    )
    assert math.isnan(rows[0].values["loss"]) and rows[0].values["grad_norm"] == math.inf
    assert rows[1].values == {"eval_loss": -math.inf, "eval_accuracy": 0.5, "epoch": 1.0}
    assert len(rows) == 2 and parser.stats.noise == 1
    assert not parser.finished
    parser.feed(HF[2])
    assert parser.finished


# ---- cleaning and noise ----
def test_ansi_codes_and_tqdm_redraws_are_cleaned() -> None:
    lines = [
        "\x1b[32m" + MEGATRON[0] + "\x1b[0m\n",
        "  5%|▌         | 50/1000 [00:10<03:10,  5.00it/s]\r 10%|█         | 100/1000 [00:20<03:00]\r"
        + MEGATRON[1]
        + "\n",
        " 10%|█         | 100/1000 [00:20<03:00,  5.00it/s]\r\n",
    ]
    parser, rows = parse_lines(lines, "megatron")
    assert [r.step for r in rows] == [29020, 29050]
    assert parser.stats.noise == 1


def test_hf_dict_after_a_tqdm_redraw() -> None:
    line = " 10%|█         | 100/1000 [00:20<03:00,  5.00it/s]\r" + HF_TRAIN + "\r\n"
    _, rows = parse_lines([line], "hf-trainer")
    assert rows[0].values["loss"] == 2.5


def test_partial_last_line_is_noise() -> None:
    lines = [MEGATRON[0] + "\n", MEGATRON[1][:120]]
    parser, rows = parse_lines(lines)
    assert [r.step for r in rows] == [29020]
    assert parser.stats.noise == 1 and parser.stats.malformed == 0


def test_partial_hf_dict_is_not_read() -> None:
    parser = make_parser("hf-trainer")
    assert parser.feed("{'loss': 0.166, 'grad_norm': 0.55") == []
    assert parser.stats.malformed == 1


@pytest.mark.parametrize("fmt", [name for name in PARSERS if name not in ("hf-trainer-state", "megatron-golden")])
def test_garbage_is_noise_never_fatal(fmt: str) -> None:
    garbage = [
        "",
        "   ",
        "Traceback (most recent call last):",
        "WARNING: something happened",
        " [...]",
        "time (ms)",
        "=" * 80,
        "\x00\x01 binary \xff junk",
        "[2025-12-06 14:57:05,120] [INFO] [launch.py:180:main] dist_world_size=8",
        "(after 10 iterations) memory (MB) | allocated: 1234.5 | max allocated: 2345.6",
    ]
    parser = make_parser(fmt)
    rows = feed_lines(parser, garbage)
    for line in garbage:  # fed directly too: blank lines must not reach a CSV header
        rows += parser.feed(line)
    st = parser.stats
    assert st.lines == 2 * len(garbage)
    assert st.lines == st.metric_lines + st.noise + st.malformed
    # the generic fallback too: no field here has a metric-like name
    assert rows == [] and st.malformed == 0


def test_megatron_noise_lines() -> None:
    parser = make_parser("megatron")
    rows = feed_lines(parser, [" [...]", "time (ms)", "-" * 96, MEGATRON[0]])
    assert len(rows) == 1 and parser.stats.noise == 3


def test_megatron_nemo_line_uses_global_step() -> None:
    line = (
        "Training epoch 0, iteration 120/149 | lr: 3e-05 | consumed_samples: 121 | global_batch_size: 1 | "
        "global_step: 120 | reduced_train_loss: 1.233 | train_step_timing in s: 0.03146 | val_loss: 4.106"
    )
    (row,) = make_parser("megatron").feed(line)
    assert row.step == 120
    assert row.values == {
        "lr": 3e-05,
        "consumed_samples": 121,
        "global_batch_size": 1,
        "reduced_train_loss": 1.233,
        "train_step_timing in s": 0.03146,
        "val_loss": 4.106,
    }


def test_megatron_odd_field_falls_back_to_field_by_field() -> None:
    line = " iteration       10/     100 | lm loss: 2.5E+00 | note: warm-up | grad norm: nan |"
    (row,) = make_parser("megatron").feed(line)
    assert row.values["lm loss"] == 2.5 and math.isnan(row.values["grad norm"])
    assert "note" not in row.values


def test_modded_nanogpt_last_step_finishes() -> None:
    parser = make_parser("modded-nanogpt")
    parser.feed("step:6199/6200 train_loss:3.2344 train_time:1338853ms step_avg:216.33ms")
    assert not parser.finished
    parser.feed("step:6200/6200 val_loss:3.2785 train_time:1339067ms step_avg:216.33ms")
    assert parser.finished


def test_megatron_last_iteration_finishes() -> None:
    parser = make_parser("megatron")
    parser.feed(" iteration      100/     100 | lm loss: 2.5E+00 |")
    assert parser.finished


# ---- timing NaN and sentinels ----
def test_nan_in_timing_fields_is_dropped_but_nan_loss_kept() -> None:
    (row,) = make_parser("modded-nanogpt").feed("step:3/100 train_loss:nan train_time:300ms step_avg:nanms")
    assert math.isnan(row.values["train_loss"]) and "step_avg" not in row.values
    (row,) = make_parser("nanogpt").feed("iter 5: loss nan, time nanms, mfu -100.00%")
    assert math.isnan(row.values["loss"]) and set(row.values) == {"loss"}


# ---- documents ----
STATE_FRAGMENTS = [
    "    {",
    '      "epoch": 0.041237113402061855,',
    '      "grad_norm": NaN,',
    '      "learning_rate": 0.0,',
    '      "loss": 4.3097,',
    '      "step": 1',
]
STATE_EVAL_FRAGMENTS = [
    '      "eval_loss": 0.320997953414917,',
    '      "eval_runtime": 1728.016,',
    '      "eval_samples_per_second": 2.595,',
    '      "eval_steps_per_second": 0.163,',
    '      "eval_wer": 0.78878255063432,',
    '      "step": 1000',
]


def _state_document(summary: bool = True) -> list[str]:
    """A trainer_state.json built around the verbatim fragments of FORMATS.md block 7."""
    tail = ['    {"epoch": 5.0, "step": 1000, "train_loss": 0.7, "train_runtime": 2304.3}'] if summary else []
    return [
        "{",
        '  "best_metric": 0.74,',
        '  "global_step": 1000,',
        '  "log_history": [',
        *STATE_FRAGMENTS,
        "    },",
        "    {",
        *STATE_EVAL_FRAGMENTS,
        "    }" + ("," if summary else ""),
        *tail,
        "  ],",
        '  "max_steps": 1000',
        "}",
    ]


def test_trainer_state_document() -> None:
    parser, rows = parse_lines(_state_document(), filename="outputs/trainer_state.json")
    assert parser.name == "hf-trainer-state"
    check_rows(
        rows,
        [
            (1, {"grad_norm": NAN, "learning_rate": 0.0, "loss": 4.3097, "epoch": 0.041237113402061855}, ()),
            (1000, {"eval_loss": 0.320997953414917, "eval_wer": 0.78878255063432}, ("loss",)),
            (
                1000,
                {"summary/train_loss": 0.7, "summary/train_runtime": 2304.3, "epoch": 5.0},
                ("train_loss",),
            ),
        ],
    )
    assert parser.config["best_metric"] == 0.74
    assert parser.total_steps == 1000
    assert parser.finished
    assert parse_state("\n".join(_state_document())) == rows


def test_trainer_state_detected_by_content_and_incomplete_is_malformed() -> None:
    doc = _state_document(summary=False)
    assert detect_format(doc) == "hf-trainer-state"
    parser, rows = parse_lines(doc[:-3], "hf-trainer-state")
    assert rows == [] and parser.stats.malformed == 1 and not parser.finished
    with pytest.raises(ValueError):
        parse_state("\n".join(doc[:-3]))


GOLDEN_FRAGMENT = [
    '    "lm loss": {',
    '        "start_step": 1,',
    '        "end_step": 51000,',
    '        "step_interval": 5,',
    '        "values": {',
    '            "1": 12.95636,',
    '            "50860": 2.07335,',
    '            "50865": "nan",',
]


def test_megatron_golden_string_nan_is_missing_but_json_nan_is_nan() -> None:
    lines = [
        "{",
        *GOLDEN_FRAGMENT,
        '            "50870": NaN',
        "        }",
        "    },",
        '    "iteration-time": {"start_step": 1, "end_step": 51000, "step_interval": 5,',
        '        "values": {"1": "nan", "50860": 0.5}}',
        "}",
    ]
    parser, rows = parse_lines(lines, filename="golden_values_dev_dgx_h100.json")
    assert parser.name == "megatron-golden"
    assert [r.step for r in rows] == [1, 50860, 50870]
    assert rows[0].values == {"lm loss": 12.95636}
    assert rows[1].values == {"lm loss": 2.07335, "iteration-time": 0.5}
    assert math.isnan(rows[2].values["lm loss"])
    assert parser.total_steps == 51000
    assert parse_golden("\n".join(lines)) == rows
    assert detect_format(lines) == "megatron-golden"


# ---- DeepSpeed step axis ----
def test_deepspeed_gradient_accumulation_scales_to_micro_steps() -> None:
    lines = [
        "[2022-11-24 00:51:45,966] [INFO] [config.py:999:print]   gradient_accumulation_steps .. 2",
        "[2022-11-24 00:52:01,509] [INFO] [logging.py:68:log_dist] [Rank 0] step=2, skipped=0, "
        "lr=[1e-06, 1e-06], mom=[(0.9, 0.999), (0.9, 0.999)]",
        "[2022-11-24 00:52:01,509] [INFO] [timer.py:198:stop] 0/4, RunningAvgSamplesPerSec=16.1, "
        "CurrSamplesPerSec=15.7, MemAllocated=1.87GB, MaxMemAllocated=6.26GB",
        "'step':10, 'ppl': 61.772465037680455, 'seq_len': 264, 'consume layer-tokens': 110912",
    ]
    parser, rows = parse_lines(lines, "deepspeed")
    assert [r.step for r in rows] == [4, 4, 10]
    assert parser.config["gradient_accumulation_steps"] == 2
    assert parser.step_key == "micro step (optimizer step × 2)"


def test_deepspeed_chat_train_loss_and_eval_loss() -> None:
    lines = [
        "Beginning of Epoch 2/16, Total Micro Batches 460",
        "Epoch: 1, Step: 10, Rank: 0, loss = 2.3125",
        "***** Evaluating perplexity, Epoch 2/16 *****",
        "ppl: 2.0179834365844727, loss: 0.7021",
    ]
    parser, rows = parse_lines(lines, "deepspeed")
    assert rows[0] == Row(470.0, {"loss": 2.3125})
    assert rows[1] == Row(470.0, {"eval/ppl": 2.0179834365844727, "eval/loss": 0.7021, "epoch": 2.0})
    assert parser.total_steps == 16 * 460 and not parser.finished


# ---- generic formats ----
def test_csv_without_step_column_uses_row_number_and_quotes() -> None:
    parser, rows = parse_lines(["loss,acc,name\n", '0.5,0.9,"a, b"\n', "0.4,,x\n", "1,2\n", "bad\n"], "csv")
    assert [(r.step, r.values) for r in rows] == [(1, {"loss": 0.5, "acc": 0.9}), (2, {"loss": 0.4})]
    assert parser.step_key == "row" and parser.stats.malformed == 1 and parser.stats.noise == 2


def test_csv_step_column_priority() -> None:
    parser, rows = parse_lines(["epoch,global_step,loss", "1,100,0.5"], "csv")
    assert parser.step_key == "global_step"
    assert rows == [Row(100.0, {"epoch": 1.0, "loss": 0.5})]


def test_jsonl_flattens_and_reads_step_and_time() -> None:
    lines = [
        '{"global_step": 10, "_timestamp": 1700000000.5, "train": {"loss": 2.5, "tag": "x"}, "ok": true}',
        '{"eval": {"loss": NaN}}',
        "not json",
        '{"global_step": 20, "train": {"loss": 2.0}, "time": 3.5}',
    ]
    parser, rows = parse_lines(lines)
    assert parser.name == "jsonl" and parser.step_key == "global_step"
    assert rows[0] == Row(10.0, {"train/loss": 2.5}, 1700000000.5)
    assert rows[1].step == 10 and math.isnan(rows[1].values["eval/loss"])
    assert rows[2] == Row(20.0, {"train/loss": 2.0, "time": 3.5})
    assert parser.stats.noise == 1


def test_kv_lines() -> None:
    lines = ["step=10 loss=2.3 lr=1e-4", "step=20 loss=nan lr=1e-4 host=node3 version=1.2.3", "hello"]
    parser, rows = parse_lines(lines)
    assert parser.name == "generic" and parser.step_key == "step"
    assert rows[0] == Row(10.0, {"loss": 2.3, "lr": 1e-4})
    assert rows[1].step == 20 and math.isnan(rows[1].values["loss"]) and set(rows[1].values) == {"loss", "lr"}
    _, rows = parse_lines(["epoch: 1, loss: 0.5, time: 12ms", "loss: 0.25"], "kv")
    assert rows == [Row(1.0, {"loss": 0.5, "time": 12.0}), Row(1.0, {"loss": 0.25})]
    _, rows = parse_lines(["loss: 0.5", "loss: 0.25"], "kv")
    assert [r.step for r in rows] == [1, 2]
    parser, rows = parse_lines(["status=info mode=nano tag=inference", "loss=inf acc=-nan"], "kv")
    assert len(rows) == 1 and rows[0].values["loss"] == math.inf and math.isnan(rows[0].values["acc"])


# ---- registry ----
def test_unknown_format_is_a_format_error_listing_valid_names() -> None:
    with pytest.raises(FormatError) as info:
        make_parser("tensorboardx")
    message = info.value.one_line()
    assert "\n" not in message and "tensorboardx" in message
    for name in PARSERS:
        assert name in message


def test_aliases_and_fallback() -> None:
    assert make_parser("megatron-deepspeed-log").name == "megatron"
    assert make_parser("HF-Trainer").name == "hf-trainer"
    assert detect_format(["nothing to see here", "really"]) == "generic"
    assert detect_format([]) == "generic"
    assert detect_format(["a,b"], "metrics.csv") == "csv"


def test_hf_banner_is_a_hint_before_the_first_dict() -> None:
    head = ["[2025-12-06 14:57:05,120] [INFO] [launch.py:180:main] dist_world_size=8", "PeftModelForCausalLM("]
    assert detect_format(head) == "hf-trainer"


def test_metrics_found_late_in_a_long_launcher_banner() -> None:
    head = ["[2025-12-06 14:57:05,120] [INFO] [launch.py:180:main] dist_world_size=8"] + [
        "  (lora_A): ModuleDict("
    ] * 1500
    assert detect_format([*head, HF[0]]) == "hf-trainer"
