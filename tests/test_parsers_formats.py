"""Framework formats read from verbatim real lines (tests/data/formats, sources in SOURCES.md):
detection from the first lines, the step axis and its name, and the values of the first rows."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from monitor.model import Role, Row
from monitor.parsers import PARSERS, detect, detect_format, format_samples, make_parser, no_metrics, parse_lines
from monitor.roles import classify

DATA = Path(__file__).parent / "data" / "formats"


def _read(name: str, filename: str | None = None) -> tuple[str, list[Row], object]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines(keepends=True)
    parser, rows = parse_lines(lines, filename=filename or name)
    return parser.name, rows, parser


# file, name it is read under, format, step key, axis, rows, (step, some values) of the first row
CASES = [
    (
        "llamafactory-trainer_log.jsonl",
        "trainer_log.jsonl",
        "llamafactory",
        "current_steps",
        "step",
        3,
        (1.0, {"loss": 0.6491, "lr": 9.803921568627451e-10, "epoch": 0.0019588638589618022}),
    ),
    ("ultralytics-results.csv", "results.csv", "csv", "epoch", "epoch", 3, (1.0, {"train/box_loss": 1.49295})),
    (
        "ultralytics-padded-results.csv",
        "results.csv",
        "csv",
        "epoch",
        "epoch",
        3,
        (0.0, {"train/box_loss": 1.3118, "metrics/mAP50(B)": 0.50932, "lr/pg2": 0.0033227}),
    ),
    ("timm-summary.csv", "summary.csv", "csv", "epoch", "epoch", 4, (0.0, {"train_loss": 1.5266704335171952})),
    ("keras-csvlogger.log", "training.log", "csv", "epoch", "epoch", 4, (0.0, {"val_loss": 0.10217399864746257})),
    ("keras-stdout.log", None, "keras", "epoch", "epoch", 3, (1.0, {"loss": 0.585, "val_accuracy": 0.8377})),
    ("keras-progbar.log", None, "keras", "epoch", "epoch", 2, (1.0, {"loss": 0.675, "val_acc": 0.6762})),
    (
        "fairseq-json.log",
        "train.log",
        "fairseq",
        "num_updates",
        "step",
        2,
        (1.0, {"loss": 16.475, "lr": 2e-05, "gnorm": 20.751, "epoch": 1.0}),
    ),
    ("fairseq-json-2.log", None, "fairseq", "num_updates", "step", 1, (104.0, {"train_loss": 1.603})),
    (
        "fairseq-text.log",
        "train.log",
        "fairseq",
        "num_updates",
        "step",
        2,
        (40200.0, {"loss": 3.153, "ppl": 8.89, "lr": 0.00015772, "gnorm": 0.483, "epoch": 143.0}),
    ),
    ("fairseq-old.log", None, "fairseq", "num_updates", "step", 2, (27301.0, {"train_loss": 0.158, "train_lr": 1e-05})),
    ("fairseq-tqdm.log", None, "fairseq", "num_updates", "step", 2, (2.0, {"train_loss": 2.313, "train_F1-score": 0})),
    (
        "mmengine.log",
        "20250415_164957.log",
        "mmengine",
        "iteration",
        "step",
        2,
        (50.0, {"loss": 1.4919, "lr": 1.982e-03, "acc": 88.8672, "epoch": 1.0}),
    ),
    ("mmcv.log.json", None, "mmengine-json", "iteration", "step", 2, (78700.0, {"loss": 0.08722, "lr": 3e-05})),
    (
        "mmengine-scalars.json",
        "scalars.json",
        "mmengine-json",
        "epoch",
        "epoch",
        1,
        (40.0, {"val/coco/bbox_mAP": 0.714}),
    ),
    (
        "detectron2-metrics.json",
        "metrics.json",
        "detectron2",
        "iteration",
        "step",
        1,
        (19.0, {"loss": 1.9228371381759644, "data_time": 0.008433341979980469}),
    ),
    (
        "olmo.log",
        None,
        "olmo",
        "step",
        "step",
        9,
        (1.0, {"train/CrossEntropyLoss": 11.25}),
    ),
    ("composer.log", None, "composer", "batch", "step", 6, (1.0, {"LanguageCrossEntropy": 10.9736})),
    (
        "imagenet-meters.log",
        None,
        "meters",
        "iteration (epoch × iterations_per_epoch + batch)",
        "step",
        2,
        (0.0, {"Loss": 3.2172, "Acc@1": 0.0, "Acc@5": 25.0, "Time": 49.345}),
    ),
    ("nemo.log", None, "nemo", "global_step", "step", 2, (5.0, {"reduced_train_loss": 11.5})),
    (
        "nemo-dpo.log",
        None,
        "nemo",
        "global_step",
        "step",
        1,
        (1.0, {"reduced_train_loss": 6.93, "lr": 2.73e-05, "gradient_norm": 8.6}),
    ),
    ("torchtune.log", None, "torchtune", "step", "step", 1, (52.0, {"loss": 2.3697006702423096})),
    ("torchtune-bars.log", None, "torchtune", "step", "step", 5, (1.0, {"loss": 2.629014253616333})),
    (
        "model-card-README.md",
        "README.md",
        "hf-model-card",
        "Step",
        "step",
        2,
        (3.0, {"Validation Loss": 0.756, "eval/Accuracy": 0.826, "epoch": 1.0}),
    ),
    (
        "model-card-wer.md",
        "README.md",
        "hf-model-card",
        "Step",
        "step",
        5,
        (1000.0, {"Training Loss": 0.0602, "Validation Loss": 0.7324, "eval/Wer": 43.6957}),
    ),
    ("trl-dpo.log", None, "hf-trainer", "epoch", "epoch", 1, (0.0, {"loss": 0.6931, "rewards/chosen": 0.0})),
    ("axolotl.log", "train.log", "hf-trainer", "epoch", "epoch", 3, (0.1111, {"loss": 1.325, "grad_norm": 99.88})),
    ("build-nanogpt-log.txt", "log.txt", "build-nanogpt", "step", "step", 5, (0.0, {"val_loss": 10.9522})),
    (
        "llmc-gpt2cu-stdout.log",
        "gpt2_train.11685414.log",
        "llmc-stdout",
        "step",
        "step",
        4,
        (0.0, {"val_loss": 11.007921}),
    ),
    (
        "detectron2-log.txt",
        "log.txt",
        "detectron2-log",
        "iter",
        "step",
        3,
        (19.0, {"total_loss": 0.4109, "lr": 0.00019981, "max_mem": 11810.0}),
    ),
    (
        "epoch-summary.log",
        "train.log",
        "generic",
        "Epoch e/n",
        "epoch",
        3,
        (1.0, {"Train Loss": 4.052, "Val Loss": 3.2508}),
    ),
    (
        "epoch-title-case.log",
        "train-lr25.out",
        "generic",
        "Epoch e",
        "epoch",
        5,
        (1.0, {"Average Training Loss": 0.6956538477751214}),
    ),
    (
        "python-logging-epochs.log",
        "train.log",
        "generic",
        "Epoch e",
        "epoch",
        2,
        (0.0, {"Average Loss": 4.1224, "Average Accuracy": 0.0474}),
    ),
    ("swin-style.log", "output.log", "meters", "epoch", "epoch", 2, (0.0, {"loss": 2.3636, "lr": 0.0003})),
    ("basicsr-config-and-iter.log", "nohup.out", "generic", "iter", "step", 1, (100.0, {"l_mos": 2.6487e-03})),
    (
        "timm-train.log",
        "train.log",
        "meters",
        "iteration (epoch × iterations_per_epoch + batch)",
        "step",
        4,
        (0.0, {"Loss": 12.49, "LR": 1e-04}),
    ),
]


@pytest.mark.parametrize(
    ("file", "filename", "fmt", "step_key", "axis", "n", "first"), CASES, ids=[c[0] for c in CASES]
)
def test_real_lines_are_detected_and_read(
    file: str, filename: str | None, fmt: str, step_key: str, axis: str, n: int, first: tuple[float, dict[str, float]]
) -> None:
    name, rows, parser = _read(file, filename)
    assert name == fmt
    assert parser.step_key == step_key and parser.axis == axis  # type: ignore[attr-defined]
    assert len(rows) == n
    step, values = first
    assert rows[0].step == step
    for key, value in values.items():
        assert rows[0].values[key] == pytest.approx(value), key
    st = parser.stats  # type: ignore[attr-defined]
    assert st.lines == st.metric_lines + st.noise + st.malformed and st.malformed == 0
    assert no_metrics(parser) is None  # type: ignore[arg-type]


def test_each_format_forced_reads_its_own_file() -> None:
    for file, filename, fmt, *_ in CASES:
        lines = (DATA / file).read_text(encoding="utf-8").splitlines(keepends=True)
        _, rows = parse_lines(lines, fmt, filename or file)
        assert rows, (file, fmt)


def test_olmo_numbers_with_thousands_separators_and_header_totals() -> None:
    _, rows, parser = _read("olmo.log")
    by_key = {k: (r.step, v) for r in rows for k, v in r.values.items()}
    assert by_key["train/Perplexity"] == (2.0, 45773.0)
    assert by_key["throughput/total_tokens"] == (2.0, 8388608.0)
    assert by_key["System/Peak GPU Memory (MB)"] == (1.0, 42133.0)
    assert parser.total_steps == 739328  # type: ignore[attr-defined]


def test_olmo_header_with_epoch_keeps_epoch_as_a_metric() -> None:
    # the header form of issue 10, with the metric line shape of olmo.log
    _parser, rows = parse_lines(["[step=120/739328,epoch=0]", "    train/CrossEntropyLoss=7.41"], "olmo")
    assert rows == [Row(120.0, {"epoch": 0.0}), Row(120.0, {"train/CrossEntropyLoss": 7.41})]


def test_meters_take_the_value_not_the_running_average() -> None:
    _, rows, _ = _read("imagenet-meters.log")
    assert rows[1].step == 10.0
    assert rows[1].values["Loss"] == pytest.approx(23.915)  # not the average 15.221
    assert rows[1].values["Acc@1"] == 0.0 and rows[1].values["Data"] == 0.0


def test_meters_eval_summary_lands_at_the_latest_train_step() -> None:
    lines = [
        *(DATA / "imagenet-meters.log").read_text().splitlines(),
        *(DATA / "meters-eval.log").read_text().splitlines(),
    ]
    parser, rows = parse_lines(lines)
    assert parser.name == "meters"
    assert rows[-1] == Row(10.0, {"val/Acc@1": 0.0})
    assert parser.stats.noise == 3  # the Test: progress lines


def test_mmengine_nan_grad_norm_is_a_value_and_eta_is_not() -> None:
    _, rows, _ = _read("mmengine-nan.log")
    (row,) = rows
    assert row.step == 50.0 and math.isnan(row.values["grad_norm"]) and row.values["loss"] == 859.5978
    assert "eta" not in row.values and row.values["layer_-1_loss_cls"] == 10.1055


def test_mmengine_val_lines_take_the_last_train_iteration_with_eval_prefixed_keys() -> None:
    train = (DATA / "mmengine.log").read_text().splitlines()
    scalars = (DATA / "mmengine-scalars.json").read_text().splitlines()
    parser = make_parser("mmengine-json")
    # the train line shape MMEngine writes beside its val lines (keys of mmengine.log's line 2)
    rows = parser.feed('{"lr": 0.003984, "loss": 0.9037, "epoch": 1, "iter": 100, "step": 100}')
    rows += parser.feed(scalars[0])
    assert rows[-1].step == 100.0 and rows[-1].values["val/coco/bbox_mAP"] == 0.714
    assert classify("val/coco/bbox_mAP") is Role.EVAL_UP
    assert train  # the text log of the same run family is read by `mmengine`


def test_detectron2_per_class_nan_ap_is_marked_other_not_a_training_nan() -> None:
    # the evaluation record of SOURCES.md (index file 184110534), one key per line there
    record = (
        '{"bbox/AP": 31.025621141959515, "bbox/AP-panel": 23.276776283859615, "bbox/AP-roof": 38.77446600005941, '
        '"bbox/AP-roof-panel": NaN, "bbox/AP50": 52.37187493136375, "bbox/AP75": 31.544120151896593, '
        '"bbox/APl": 38.266933272018974, "bbox/APm": 27.348813899395747, "bbox/APs": 7.722103522445104, '
        '"iteration": 500}'
    )
    parser = make_parser("detectron2")
    rows = parser.feed(record)
    assert rows[0].step == 500 and math.isnan(rows[0].values["bbox/AP-roof-panel"])
    assert parser.roles == {"bbox/AP-roof-panel": "other"}
    assert classify("bbox/AP-roof-panel") is Role.OTHER
    nan_ap = '{"bbox/AP": NaN, "iteration": 600}'  # the overall AP being NaN is not a missing class
    parser.feed(nan_ap)
    assert "bbox/AP" not in parser.roles


def test_llamafactory_eval_lines_without_loss_and_total_steps() -> None:
    lines = (DATA / "llamafactory-trainer_log.jsonl").read_text().splitlines()
    parser = make_parser("llamafactory")
    for line in lines:
        parser.feed(line)
    assert parser.total_steps == 5100 and parser.step_key == "current_steps"
    # an eval entry has the same progress fields and `eval_loss` instead of `loss`
    eval_line = lines[2].replace('"loss": 1.1105, "accuracy": 0.25', '"eval_loss": 0.9, "eval_accuracy": 0.5')
    rows = parser.feed(eval_line)
    assert rows == [
        Row(
            3.0, {"eval_loss": 0.9, "eval_accuracy": 0.5, "lr": 2.941176470588235e-09, "epoch": rows[0].values["epoch"]}
        )
    ]


def test_model_card_no_log_cells_are_left_out() -> None:
    _, rows, _ = _read("model-card-README.md", "README.md")
    assert all("Training Loss" not in r.values for r in rows)
    assert classify("Validation Loss") is Role.EVAL_LOSS and classify("Training Loss") is Role.TRAIN_LOSS
    assert classify("eval/Wer") is Role.EVAL_DOWN and classify("eval/Accuracy") is Role.EVAL_UP


def test_keras_progress_lines_part_way_are_fractional_epochs() -> None:
    head = (DATA / "keras-stdout.log").read_text().splitlines()[:1]
    # a Keras 2 progress line part-way through an epoch, in the shape of keras-progbar.log's lines
    mid = "11821/23642 [==============>...............] - ETA: 12s - loss: nan - acc: 0.5000"
    _parser, rows = parse_lines([*head, mid], "keras")
    assert rows[0].step == pytest.approx(0.5) and math.isnan(rows[0].values["loss"])


def test_every_format_lists_a_sample_line_it_reads_itself() -> None:
    samples = {name: sample for name, _, sample in format_samples()}
    assert set(samples) == set(PARSERS)
    for name, sample in samples.items():
        assert sample, name
        if name in ("hf-trainer-state", "megatron-golden", "csv", "hf-model-card"):
            continue  # documents and table headers: their sample alone holds no metric
        parser = make_parser(name)
        lines = PARSERS[name].sample.splitlines()
        rows = [row for line in lines for row in parser.feed(line)]
        assert rows, name


def test_detect_refuses_binary_before_parsing() -> None:
    elf = b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 16
    assert detect([], "libfoo.so", elf).refused == "binary data: an ELF executable or shared library"
    junk = bytes((i * 37 + 11) % 256 for i in range(4096))
    assert detect([], "blob.bin", junk).refused is not None
    text = (DATA / "olmo.log").read_bytes()
    found = detect(text.decode().splitlines(), "olmo.log", text)
    assert found.refused is None and found.format == "olmo"
    # decoded with replacement, as sources read text
    assert detect([junk.decode("utf-8", "replace")]).refused is not None


def test_no_metrics_found_for_empty_and_metric_free_inputs() -> None:
    parser, _ = parse_lines([])
    assert no_metrics(parser) == "no metrics found (empty input)"
    parser, _ = parse_lines(["Loading checkpoint shards: 100%", "pid=4242 port=29500 dist_world_size=8\n"])
    assert no_metrics(parser) is not None and no_metrics(parser).startswith("no metrics found in 2 lines")  # type: ignore[union-attr]


def test_llmc_stdout_step_lines_spell_out_llmc_keys() -> None:
    _, rows, parser = _read("llmc-gpt2cu-stdout.log")
    assert rows[1] == Row(
        1.0,
        {
            "train_loss": 11.009662,
            "grad_norm": 15.0789,
            "lr": 8.57e-07,
            "step_ms": 4230.95,
            "mfu": 31.9,
            "tok/s": 123917.0,
        },
    )
    assert parser.total_steps == 19560  # type: ignore[attr-defined]
    assert classify("train_loss") is Role.TRAIN_LOSS and classify("grad_norm") is Role.GRAD_NORM


def test_detectron2_copypaste_results_land_at_the_latest_iteration() -> None:
    _, rows, _ = _read("detectron2-log.txt")
    assert rows[-1].step == 39.0
    assert rows[-1].values == {
        "bbox/AP": 3.0706,
        "bbox/AP50": 6.8876,
        "bbox/AP75": 2.243,
        "bbox/APs": 0.3698,
        "bbox/APm": 1.2776,
        "bbox/APl": 3.5768,
    }
    assert "eta" not in rows[0].values


def test_timm_last_test_batch_gives_the_evaluation_averages() -> None:
    _, rows, _ = _read("timm-train.log")
    assert [r.step for r in rows] == [0.0, 200.0, 389.0, 389.0]
    assert rows[-1].values == {"val/Loss": 4.5743, "val/Acc@1": 1.97, "val/Acc@5": 8.05}


def test_generic_epoch_summary_keeps_multi_word_names() -> None:
    _, rows, _ = _read("epoch-summary.log", "train.log")
    assert rows[2] == Row(2.0, {"Train Loss": 3.1246, "Val Loss": 2.8442})
    assert classify("Train Loss") is Role.TRAIN_LOSS and classify("Val Loss") is Role.EVAL_LOSS


def test_runwatch_formats_prints_every_format_with_its_sample(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from tui.cli import cmd_formats

    assert cmd_formats(argparse.Namespace()) == 0
    out = capsys.readouterr().out
    for name, _, sample in format_samples():
        assert f"\n{name} " in "\n" + out and sample in out


def test_metric_logger_lines_dino_deit_torchvision() -> None:
    _, rows, parser = _read("metriclogger.log")
    assert parser.name == "meters"  # type: ignore[attr-defined]
    assert [r.step for r in rows] == [0.0, 83.0]
    assert rows[1].values["loss"] == 1.654 and rows[1].values["lr"] == 0.001 and rows[1].values["max mem"] == 1548
    assert "eta" not in rows[1].values
    # DeiT's evaluation: the last `Test:  [N-1/N]` line's averages are its results
    test = (DATA / "metriclogger-test.log").read_text().splitlines()[2]
    last = test.replace("[0/7]", "[6/7]")  # the same line shape at the last batch
    more = parser.feed(last)  # type: ignore[attr-defined]
    assert more == [Row(83.0, {"val/loss": 0.3814, "val/acc1": 90.2344, "val/acc5": 99.4792})]


def test_fairseq_valid_lines_are_prefixed_and_training_ends() -> None:
    _, rows, _ = _read("fairseq-text.log")
    assert rows[1].step == 40297.0
    assert rows[1].values["valid_loss"] == 12.677 and rows[1].values["valid_bleu"] == 29.52
    assert classify("valid_loss") is Role.EVAL_LOSS and classify("valid_bleu") is Role.EVAL_UP
    _, rows, parser = _read("fairseq-old.log")
    assert rows[1].values["valid_accuracy"] == 0.833231 and parser.finished  # type: ignore[attr-defined]


def test_generic_title_case_names_and_evaluation_lines() -> None:
    _, rows, _ = _read("epoch-title-case.log", "train-lr25.out")
    assert rows[-1] == Row(4.0, {"Validation Accuracy": 0.5435296434902501})
    assert classify("Average Training Loss") is Role.TRAIN_LOSS
    assert classify("Validation Accuracy") is Role.EVAL_UP
    _, rows, _ = _read("python-logging-epochs.log", "train.log")
    assert rows[1] == Row(0.0, {"eval/Average Loss": 3.9494, "eval/Average Accuracy": 0.2038, "eval/Samples": 211.0})
    assert classify("eval/Average Loss") is Role.EVAL_LOSS


def test_generic_skips_printed_configs_and_source_locations() -> None:
    _, rows, parser = _read("basicsr-config-and-iter.log", "nohup.out")
    assert all("loss_weight" not in r.values for r in rows)  # the YAML dump above the metrics
    assert parser.step_key == "iter"  # type: ignore[attr-defined]
    # a line of bench/corpus/real/oumi-trl-sft-llama32-1b-oom-step0-crashed/train.out
    oumi = (
        "[2025-02-13 15:01:09,965][oumi][rank0][pid:1122761][MainThread][INFO]][train.py:147] "
        "Oumi version: 0.1.5.dev41+g957dae1"
    )
    _, rows = parse_lines([oumi])
    assert rows == []


def test_swin_style_validate_lines_give_the_epoch_averages() -> None:
    _, rows, _ = _read("swin-style.log", "output.log")
    assert rows[1] == Row(0.0, {"val/Loss": 2.3866, "val/Acc@1": 10.01})


def test_a_hand_written_epoch_summary_is_not_taken_for_an_mmengine_log() -> None:
    # the shape of a PaiNN training job's stdout (bench/corpus/real/painn-lsf-markdown-...): a single
    # `Epoch [e/N],` bracket with multi-word keys is a custom loop, read by the generic parser
    lines = [
        "Epoch [1/1000], Train Loss: 5396073623079684061681189650432.0000, Train L1 Loss: 98952196952614.6094",
        "Epoch [1/1000], Validation Loss: 27356305369322391008657369202688.0000, Validation L1: 310916769360191.3125",
        "Epoch [2/1000], Train Loss: 31940022260972882852298342006784.0000, Train L1 Loss: 189592370729324.0625",
    ]
    assert detect_format(lines) != "mmengine"
    _, rows = parse_lines(lines)
    assert any(r.values.get("Train Loss") == pytest.approx(5.396073623079684e30) for r in rows)
    # MMCV's epoch+iteration pair and iteration counter, and MMEngine's phase, still are
    for line in (
        "Epoch [1][50/7330]\tlr: 1.000e-02, eta: 1 day, 0:11:50, time: 0.396, loss_cls: 0.6614, loss: 1.4919",
        "Iter [50/80000]\tlr: 9.998e-03, eta: 9:14:33, time: 0.416, decode.loss_ce: 2.1549, loss: 2.1549",
        "04/15 16:50:26 - mmengine - INFO - Epoch(train) [1][ 50/100]  lr: 1.9820e-03  loss: 1.4919",
    ):
        assert detect_format([line, line]) == "mmengine"
