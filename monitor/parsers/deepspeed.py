"""DeepSpeed engine logs (`[Rank 0] step=N, skipped=K, lr=[...]`, timer lines, overflow skips) and the
eval lines of DeepSpeedExamples scripts (DeepSpeed-Chat `ppl: X`, random-LTD `'step':N, 'ppl': X`)."""

from __future__ import annotations

import re
from typing import ClassVar

from monitor.model import Row
from monitor.parsers.base import Parser
from monitor.parsers.common import leading_float, to_float

_LOG_DIST = re.compile(r"\[Rank \d+\] step=(\d+), skipped=(\d+), lr=\[\s*([^\],\s]+)")
_TIMER_NEW = re.compile(r"epoch=(\d+)/micro_step=(\d+)/global_step=(\d+), (.*)")
_TIMER_OLD = re.compile(r"\[timer\.py:\d+:stop\] (\d+)/(\d+), (.*)")
_EVAL_DICT = re.compile(r"\s*'step':\s*(\d+),(.*)")
_DICT_PAIR = re.compile(r"'([^']+)':\s*([^,]+)")
_EVAL_HEADER = re.compile(r"Evaluating perplexity, Epoch (\d+)/(\d+)")
_PPL = re.compile(r"\s*ppl: ([^\s,]+)(?:, loss: ([^\s,]+))?")
_TRAIN_LOSS = re.compile(r"Epoch: (\d+), Step: (\d+), Rank: \d+, loss = ([^\s,]+)")
_FINAL = re.compile(r"Before cleaning, Epoch at (\d+) with Perplexity: (\S+)")
_OVERFLOW = re.compile(r"OVERFLOW! Rank \d+ Skipping step\. Attempted loss scale: ([-+]?(?:nan|inf|[0-9.eE+-]+))", re.I)
_BEGIN_EPOCH = re.compile(r"Beginning of Epoch (\d+)/(\d+), Total Micro Batches (\d+)")
_CONFIG = re.compile(r"\[config\.py:\d+:print\]\s+(\w+)(?: \.+ |\s{2,})(.*)")
_GAS = re.compile(r"""--gradient_accumulation_steps[ =](\d+)|"gradient_accumulation_steps":\s*(\d+)""")

_STRONG = (_LOG_DIST, _TIMER_NEW, _TIMER_OLD, _EVAL_HEADER, _OVERFLOW, _TRAIN_LOSS)
_WEAK = re.compile(r"\[(?:config\.py:\d+:print|logging\.py:\d+:log_dist)\]|DeepSpeedEngine configuration")


class DeepSpeedParser(Parser):
    """DeepSpeed engine and DeepSpeed-Chat / DeepSpeedExamples logs.

    Keys: `lr` (first param group), `skipped`, timer fields as printed (`RunningAvgSamplesPerSec`,
    `CurrSamplesPerSec`, `MemAllocated` and `MaxMemAllocated` in GB), `eval/ppl` (+ `eval/loss`
    when printed, `seq_len`, `consume layer-tokens` on random-LTD eval lines), `final/ppl`, `loss`
    from DeepSpeed-Chat `--print_loss` lines, and on fp16 overflow skips `overflow_skip` = 1 with
    the attempted `loss scale`.
    Step: micro steps, i.e. the engine's optimizer step × `gradient_accumulation_steps` (from the
    config dump or command line; 1 if not printed) - the axis the timer lines and the examples'
    `'step':N` eval lines use. Per-epoch eval (`ppl: X`) takes the latest step seen.
    """

    name: ClassVar[str] = "deepspeed"
    description: ClassVar[str] = "DeepSpeed engine / DeepSpeed-Chat logs"
    sample: ClassVar[str] = (
        "[2022-11-24 01:46:51,726] [INFO] [logging.py:68:log_dist] [Rank 0] step=520, skipped=0, "
        "lr=[5e-05, 5e-05], mom=[(0.9, 0.999), (0.9, 0.999)]"
    )

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "step"
        self._gas = 1.0
        self._step = 0.0
        self._epoch: float | None = None
        self._micro_batches: float | None = None
        self._steps_seen = False

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        strong = sum(1 for line in head if any(p.search(line) for p in _STRONG))
        strong += sum(1 for line in head if _EVAL_DICT.match(line) and "'ppl'" in line)
        if strong:
            return min(0.9, 0.82 + 0.02 * strong)
        return 0.6 if any(_WEAK.search(line) for line in head) else 0.0

    def feed(self, line: str) -> list[Row]:
        self.stats.lines += 1
        rows = self._read(line)
        if rows:
            self.stats.metric_lines += 1
            self._step = rows[-1].step
        return rows

    def _read(self, line: str) -> list[Row]:
        m = _LOG_DIST.search(line) if "step=" in line else None
        if m:
            values = {"skipped": float(m.group(2))}
            lr = to_float(m.group(3))
            if lr is not None:
                values["lr"] = lr
            return [Row(self._scaled(float(m.group(1))), values)]
        if "SamplesPerSec" in line:
            return self._timer(line)
        if line.lstrip().startswith("'step'"):
            return self._eval_dict(line)
        if "ppl: " in line and (m := _PPL.match(line)):
            loss = to_float(m.group(2) or "")
            return self._value_row(line, "eval/ppl", m.group(1), {} if loss is None else {"eval/loss": loss})
        if "loss = " in line and (m := _TRAIN_LOSS.search(line)):
            return self._train_loss(line, m)
        if "OVERFLOW!" in line and (m := _OVERFLOW.search(line)):
            scale = to_float(m.group(1))  # `-nan` from a broken scaler is a value too, `-` alone is not
            values = {"overflow_skip": 1.0} if scale is None else {"overflow_skip": 1.0, "loss scale": scale}
            return [Row(self._step, values)]
        if "Before cleaning" in line and (m := _FINAL.search(line)):
            self.finished = True  # the random-LTD example's evaluation after the last epoch
            return self._value_row(line, "final/ppl", m.group(2))
        self._context(line)
        self.stats.noise += 1
        return []

    def _timer(self, line: str) -> list[Row]:
        """`epoch=E/micro_step=M/global_step=G, Key=V, ...` (new) or `[timer.py] E/M, Key=V, ...` (old)."""
        m = _TIMER_NEW.search(line)
        if m:
            step, rest = self._scaled(float(m.group(3))), m.group(4)
        elif m := _TIMER_OLD.search(line):
            step, rest = float(m.group(2)), m.group(3)
        else:
            self.stats.count_malformed(line)
            return []
        values: dict[str, float] = {}
        for item in rest.split(","):
            key, eq, text = item.partition("=")
            x = leading_float(text) if eq else None
            if x is not None:
                values[key.strip()] = x
        return [Row(step, values)]

    def _eval_dict(self, line: str) -> list[Row]:
        """`'step':N, 'ppl': X, 'seq_len': L, ...` (a dict printed without braces)."""
        m = _EVAL_DICT.match(line)
        if not m:
            self.stats.count_malformed(line)
            return []
        values: dict[str, float] = {}
        for key, text in _DICT_PAIR.findall(m.group(2)):
            x = to_float(text)
            if x is not None:
                values["eval/ppl" if key == "ppl" else key] = x
        if not values:
            self.stats.count_malformed(line)
            return []
        return [Row(float(m.group(1)), values)]

    def _value_row(self, line: str, key: str, text: str, extra: dict[str, float] | None = None) -> list[Row]:
        """A row of one evaluation value at the latest step (with the epoch being evaluated)."""
        x = to_float(text)
        if x is None:
            self.stats.count_malformed(line)
            return []
        values = {key: x, **(extra or {})}
        if self._epoch is not None:
            values["epoch"] = self._epoch
        step = self._step
        if not self._steps_seen and self._epoch and self._micro_batches:
            step = self._epoch * self._micro_batches  # no step printed yet: epochs × micro batches
        return [Row(step, values)]

    def _train_loss(self, line: str, m: re.Match[str]) -> list[Row]:
        """DeepSpeed-Chat `--print_loss`: `Epoch: E, Step: S, Rank: R, loss = X` (S counts micro
        batches within the epoch)."""
        loss = to_float(m.group(3))
        if loss is None:
            self.stats.count_malformed(line)
            return []
        epoch, step = float(m.group(1)), float(m.group(2))
        self._steps_seen = True
        if self._micro_batches:
            step += epoch * self._micro_batches
        else:
            step = max(self._step, step)
        return [Row(step, {"loss": loss})]

    def _scaled(self, optimizer_step: float) -> float:
        """Optimizer step → micro step; the factor is fixed once training has taken a step."""
        if optimizer_step:
            self._steps_seen = True
        return optimizer_step * self._gas

    def _context(self, line: str) -> None:
        """Learn what later rows need: gradient accumulation, the epoch being evaluated, config."""
        if m := _EVAL_HEADER.search(line):
            self._epoch = float(m.group(1))
            # DeepSpeed-Chat (which prints "Total Micro Batches") evaluates once per epoch, so the
            # last epoch's evaluation ends the run; other scripts evaluate many times per epoch
            self.finished = self.finished or (m.group(1) == m.group(2) and self._micro_batches is not None)
        elif line.startswith("saving the final model"):
            self.finished = True
        elif m := _BEGIN_EPOCH.search(line):
            self._micro_batches = float(m.group(3))
            self.total_steps = float(m.group(2)) * self._micro_batches
        elif "[config.py" in line and (m := _CONFIG.search(line)):
            key, text = m.group(1), m.group(2).strip()
            x = to_float(text)
            if text not in ("{", "["):  # the start of a multi-line JSON dump, not a value
                self.config[key] = x if x is not None else text
            if key == "gradient_accumulation_steps" and x and not self._steps_seen:
                self._set_gas(x)
        elif "gradient_accumulation_steps" in line and (m := _GAS.search(line)) and not self._steps_seen:
            self._set_gas(float(m.group(1) or m.group(2)))

    def _set_gas(self, gas: float) -> None:
        self._gas = gas
        self.config["gradient_accumulation_steps"] = gas
        self.step_key = f"micro step (optimizer step × {gas:g})" if gas != 1 else "step"
