"""The backfill fast paths give exactly what the line-by-line path gives."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import numpy as np
import pytest

from monitor import backfill
from monitor.check import check_target
from monitor.columns import to_columns
from monitor.config import Config
from monitor.parsers import feed_lines, make_parser
from tests.test_wandb_log import write_offline_run

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "real"


def megatron_line(i: int, loss: float, scale: bool = True) -> str:
    extra = " loss scale: 65536.0 |" if scale else ""
    return (
        f" iteration {i:8d}/    5000 | consumed samples: {i * 512:12d} | elapsed time per iteration (ms): 412.3 |"
        f" learning rate: {3e-4 * min(1, i / 100):.3E} | global batch size:   512 | lm loss: {loss:.6E} |{extra}"
        f" grad norm: {1.0 + 0.01 * (i % 7):.3f} | number of skipped iterations:   0 | number of nan iterations:   0 |"
    )


def test_megatron_column_path_matches_line_by_line() -> None:
    rnd = random.Random(1)
    lines = [megatron_line(i, 3 * math.exp(-i / 500) * (1 + rnd.gauss(0, 0.01))) for i in range(1, 3000)]
    fast = make_parser("megatron").feed_columns(lines)
    slow_parser = make_parser("megatron")
    slow = to_columns(feed_lines(slow_parser, lines))
    assert fast is not None and len(fast) == 1 == len(slow)
    assert fast[0].keys == slow[0].keys
    assert np.array_equal(fast[0].steps, slow[0].steps) and np.array_equal(fast[0].values, slow[0].values)


@pytest.mark.parametrize(
    "lines",
    [
        ["[default7]:" + megatron_line(i, 2.0) for i in range(1, 10)],  # rank prefix
        [megatron_line(i, 2.0, scale=i != 5) for i in range(1, 10)],  # layout changes mid-batch
        [megatron_line(1, 2.0), " validation loss at iteration 1 | lm loss value: 2.1 |", megatron_line(2, 2.0)],
        [megatron_line(1, 2.0), " [...]", megatron_line(2, 2.0)],  # elision line
        [megatron_line(i, 2.0).replace("2.000000E+00", "oops") for i in range(1, 5)],
    ],
)
def test_megatron_column_path_declines_anything_unusual(lines: list[str]) -> None:
    assert make_parser("megatron").feed_columns(lines) is None


def hf_line(i: int, loss: float, epoch: bool = True) -> str:
    end = f", 'epoch': {i / 1000:.2f}}}" if epoch else "}"
    return f"{{'loss': {loss!r}, 'grad_norm': {1.0 + 0.01 * (i % 7)!r}, 'learning_rate': {3e-4 * i / 3000!r}{end}"


@pytest.mark.parametrize(
    ("preamble", "epoch"),
    [
        (["TrainingArguments(logging_steps=10)"], True),
        (["TrainingArguments(logging_steps=10, logging_first_step=True)"], True),
        ([], True),  # the epoch is the step
        ([], False),  # the train-row count is
    ],
    ids=["logging-steps", "first-step", "epoch", "count"],
)
def test_hf_column_path_matches_line_by_line(preamble: list[str], epoch: bool) -> None:
    rnd = random.Random(2)
    lines = [hf_line(i, 3 * math.exp(-i / 500) * (1 + rnd.gauss(0, 0.01)), epoch) for i in range(1, 3000)]
    fast_parser, slow_parser = make_parser("hf-trainer"), make_parser("hf-trainer")
    feed_lines(fast_parser, preamble)
    # Two batches, so that the second goes on counting from the first.
    fast = (fast_parser.feed_columns(lines[:1000]) or []) + (fast_parser.feed_columns(lines[1000:]) or [])
    slow = to_columns(feed_lines(slow_parser, preamble + lines))
    assert len(fast) == 2 and len(slow) == 1
    assert fast[0].keys == fast[1].keys == slow[0].keys
    assert np.array_equal(np.concatenate([b.steps for b in fast]), slow[0].steps)
    assert np.array_equal(np.concatenate([b.values for b in fast]), slow[0].values)
    assert fast_parser.step_key == slow_parser.step_key
    assert fast_parser.stats.metric_lines == slow_parser.stats.metric_lines == len(lines)


@pytest.mark.parametrize(
    "lines",
    [
        ["[rank0]: " + hf_line(i, 2.0) for i in range(1, 10)],  # a launcher prefix
        [hf_line(i, 2.0, epoch=i != 5) for i in range(1, 10)],  # layout changes mid-batch
        [hf_line(1, 2.0), "{'eval_loss': 2.1, 'epoch': 0.01}", hf_line(2, 2.0)],
        [hf_line(1, 2.0), " 10%|█         | 100/1000 [00:10<01:30]", hf_line(2, 2.0)],
        [hf_line(1, 2.0), hf_line(2, 2.0).replace("'loss': 2.0", "'loss': np.float64(2.0)")],
        [hf_line(1, 2.0), "{'train_runtime': 10.0, 'train_loss': 2.0, 'epoch': 1.0}"],
        [hf_line(1, 2.0) + "\r", hf_line(2, 2.0)],
    ],
)
def test_hf_column_path_declines_anything_unusual(lines: list[str]) -> None:
    assert make_parser("hf-trainer").feed_columns(lines) is None


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
def test_corpus_megatron_files_agree_either_way() -> None:
    for f in sorted(CORPUS.glob("*/*.log")):
        lines = f.read_text().splitlines()
        if make_parser("megatron").sniff(lines[:200]) < 0.8:
            continue
        fast = make_parser("megatron").feed_columns(lines)
        if fast is not None:
            slow = to_columns(feed_lines(make_parser("megatron"), lines))
            assert np.array_equal(fast[0].values, slow[0].values), f


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fmt", ["megatron", "hf-trainer", "nanogpt"])
def test_worker_process_backfill_judges_like_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    log = tmp_path / f"{fmt}.log"
    out = []
    if fmt == "hf-trainer":
        out.append("TrainingArguments(output_dir=o, logging_steps=10)")
    for i in range(1, 30_000):
        loss = 3 * math.exp(-i / 3000) + 0.5 if i < 25_000 else math.nan
        if fmt == "megatron":
            out.append(megatron_line(i, loss))
        elif fmt == "hf-trainer":
            out.append(f"{{'loss': {loss}, 'grad_norm': 1.0, 'learning_rate': 0.0003, 'epoch': {i / 1000:.2f}}}")
        else:
            out.append(f"iter {i}: loss {loss:.4f}, time 10.00ms, mfu 1.00%")
    log.write_text("\n".join(out) + "\n")
    now = time.time()
    one = check_target(str(log), Config(), now=now)
    monkeypatch.setattr(backfill, "PARALLEL_BYTES", 0)
    assert backfill.worth_parallel(log)
    two = check_target(str(log), Config(), now=now)
    assert two.info.format == one.info.format == fmt
    assert (two.info.lines, two.info.noise, two.info.malformed) == (one.info.lines, one.info.noise, one.info.malformed)
    assert two.detectors.last_step == one.detectors.last_step
    assert two.store.rows == one.store.rows
    j1, j2 = one.judgement(), two.judgement()
    assert j2.verdict == j1.verdict and j2.reason == j1.reason
    nan1 = [f.onset_step for f in j1.findings if f.kind == "nan"]
    assert nan1 and nan1 == [f.onset_step for f in j2.findings if f.kind == "nan"]


def test_a_failing_worker_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "x.log"
    log.write_text("step=1 loss=2\n")
    with pytest.raises(OSError, match="parse worker failed"):
        backfill.parse_in_worker(log, "no-such-format", lambda blocks, total: None)


_WRITER = """
import math, sys, wandb
run = wandb.init(mode="offline", project="split", config={"note": "x" * 5000})
for i in range(int(sys.argv[1])):
    run.log({"train/loss": 3 * math.exp(-i / 3000) + 0.5, "lr": 3e-4, "grad_norm": 1.0, "text_len": i % 97})
run.finish()
"""


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_big_wandb_file_read_in_a_worker_judges_like_reading_it_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = write_offline_run(tmp_path, _WRITER, "6000", timeout=200)
    now = time.time()
    here = check_target(str(file), Config(), now=now)  # small: read record by record in this process
    monkeypatch.setattr(backfill, "PARALLEL_BYTES", file.stat().st_size // 4)  # now "big": bulk, in a worker
    worker = check_target(str(file), Config(), now=now)
    assert here.store.rows == worker.store.rows == 6000
    for key in here.store.metrics:
        s1, v1 = here.store.metrics[key].series()
        s2, v2 = worker.store.metrics[key].series()
        assert np.array_equal(s1, s2) and np.array_equal(v1, v2, equal_nan=True), key
    assert worker.info.state == here.info.state == "finished"
    assert worker.info.step_key == here.info.step_key and worker.info.lines == here.info.lines
