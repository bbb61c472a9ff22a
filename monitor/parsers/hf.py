"""HF Trainer stdout: the `{'loss': ..., 'learning_rate': ..., 'epoch': ...}` dicts it prints per log."""

from __future__ import annotations

import re
from typing import ClassVar

import numpy as np

from monitor.columns import Columns, keyed_columns
from monitor.model import Row
from monitor.parsers.base import Parser

# TRL trainers print through the same logger: PPO/RLOO dicts may open with `eps` or `objective/kl`,
# GRPO/online-DPO ones with `num_tokens`, `completions/...`, `reward` or `kl`.
_SNIFF = re.compile(
    r"\{'(?:loss|eval_\w+|train_runtime|learning_rate|grad_norm|eps|objective/\w+|num_tokens|completions?[/_]\w+|"
    r"rewards?(?:/\w+)?|kl|episode)': '?[-\d.naif]"
)
_HINT = re.compile(
    r"TrainingArguments\(|\*{5} Running training \*{5}|^\s+Total optimization steps = |"
    r"^trainable params: [\d,]+ \|\| all params|^\w+For(?:CausalLM|SequenceClassification)\(|^PeftModel"
)
_LOGGING_STEPS = re.compile(r"""logging_steps['"]?\s*(?:[=:]\s*|\s+)([0-9][0-9.eE+-]*)""")
_LOGGING_STRATEGY = re.compile(r"""logging_strategy['"]?\s*[=:]\s*['"]?(?:IntervalStrategy\.)?(\w+)""", re.I)
# Building the NamedTuple through tuple.__new__ skips its Python-level __new__: half the cost, per line.
_new_row = tuple.__new__
_LOGGING_FIRST_STEP = re.compile(r"""logging_first_step['"]?\s*[=:]\s*['"]?true""", re.I)
_WRAPPED = re.compile(r"^\w+(?:\.\w+)*\(([^,()]+)")
# One `'key': value` pair where the fast split cannot go: values quoted as strings (axolotl prints
# `'loss': '1.325'`), uneven spacing, `np.float64(...)` wrappers.
_DICT_PAIR = re.compile(r"'([^']*)':\s*(?:'([^']*)'|([^,]+))")


class HFTrainerParser(Parser):
    """HF Trainer log dicts inside launcher noise; the step is derived, since the dicts carry none.

    Train dicts give `loss`, `grad_norm`, `learning_rate`, `epoch`; eval dicts `eval_*`; the final
    `{'train_runtime': ...}` summary is emitted with keys prefixed `summary/` (`epoch` unprefixed).
    Step: when `logging_steps=N` was printed before the first dict (TrainingArguments, a JSON config
    or `--logging_steps N`), train row n gets step N×n (1, N, 2N, ... with `logging_first_step`) and
    eval/summary rows the latest train step; otherwise the dict's `epoch` (HF's own x-axis for such
    logs); failing both, the train-row count.
    """

    name: ClassVar[str] = "hf-trainer"
    description: ClassVar[str] = "HF Trainer stdout log dicts"
    sample: ClassVar[str] = "{'loss': 0.166, 'grad_norm': 0.5529286861419678, 'learning_rate': 0.0, 'epoch': 0.83}"

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "epoch"
        self.axis = "epoch"
        self.logging_steps: float | None = None
        self._epoch_strategy = False
        self._first_step = 0
        self._n_train = 0
        self._last_step = 0.0

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        n = sum(1 for line in head if "{'" in line and _SNIFF.search(line))
        if n:
            return min(0.98, 0.93 + 0.01 * n)
        # the dicts may start a thousand lines in; an HF/PEFT banner is a hint meanwhile
        return 0.55 if any(_HINT.search(line) for line in head) else 0.0

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        i = line.find("{'")
        if i < 0 or line[:i].rstrip().endswith("="):
            # (`lr_scheduler_kwargs={'num_cycles': 3},` in the printed TrainingArguments is an
            # argument, not a log dict: taken for one it shifted every later step by one interval.)
            if "logging_" in line:
                self._learn(line)
            stats.noise += 1
            return []
        j = line.rfind("}")
        if j < i:  # cut short (a partial line): the last number may be cut too
            if "': " in line:
                stats.count_malformed(line)
            else:
                stats.noise += 1
            return []
        values = _scan(line[i + 2 : j])
        if not values:
            stats.noise += 1
            return []
        stats.metric_lines += 1
        epoch = values.get("epoch")
        if "train_runtime" in values:
            values = {k if k == "epoch" else "summary/" + k: v for k, v in values.items()}
            train = False
            self.finished = True
        else:
            train = "'eval_" not in line and "'test_" not in line
        if train:
            self._n_train += 1
            if self.logging_steps is not None:
                # with logging_first_step the first log is at step 1, then N, 2N, ...
                n = self._n_train - self._first_step
                step = self.logging_steps * n if n else 1.0
            elif epoch is not None:
                step = epoch
            else:
                self.step_key = "train log count"
                self.axis = "step"
                step = float(self._n_train)
            self._last_step = step
        elif self.logging_steps is None and epoch is not None:
            step = epoch
        else:
            step = self._last_step
        return [_new_row(Row, (step, values, None))]

    def feed_text(self, text: str) -> list[Columns] | None:
        """Whole lines of text parsed column-wise when every one is a plain train dict with the first
        line's keys in its order (what a long training log mostly is); else None, to go line by line.

        The dicts are joined into one `'key': value` sequence and split once; the keys are checked
        with C-level list counts and each column converted in one `map`. Eval and summary dicts,
        launcher prefixes, progress bars, colour codes and non-numbers all go line by line.
        """
        n = text.count("\n")
        if (
            n < 2
            or not text.startswith("{'")
            or not text.endswith("}\n")
            or text.count("\n{'") != n - 1
            or text.count("}\n") != n
            or "\r" in text
            or "\x1b" in text
            or "'eval_" in text
            or "'test_" in text
            or "'train_runtime'" in text
        ):
            return None
        first = text[2 : text.index("}\n")].replace(", '", "': ").split("': ")
        keys = tuple(first[0::2])
        k = len(keys)
        parts = text[2:-2].replace("}\n{'", "': ").replace(", '", "': ").split("': ")
        if len(first) != 2 * k or len(parts) != 2 * k * n:
            return None
        stride = 2 * k
        try:
            cols = keyed_columns(parts, keys, 0, stride, n)
        except ValueError:
            return None
        if cols is None:
            return None
        # The steps `feed` gives train rows n+1 .. n+len.
        count = np.arange(self._n_train + 1, self._n_train + n + 1, dtype=float)
        if self.logging_steps is not None:
            since = count - self._first_step
            steps = np.where(since > 0, self.logging_steps * since, 1.0)
        elif "epoch" in keys:
            steps = cols[keys.index("epoch")].copy()
        else:
            self.step_key = "train log count"
            self.axis = "step"
            steps = count
        self._n_train += n
        self._last_step = float(steps[-1])
        st = self.stats
        st.lines += n
        st.metric_lines += n
        return [Columns(keys, steps, np.column_stack(cols), None)]

    def _learn(self, line: str) -> None:
        """Pick up `logging_steps`, `logging_strategy` and `logging_first_step` from printed arguments."""
        if self._n_train:
            return  # the step axis is fixed once the first train row went out
        if _LOGGING_FIRST_STEP.search(line):
            self._first_step = 1
        strategy = _LOGGING_STRATEGY.search(line)
        if strategy:
            # with per-epoch (or no) logging the printed logging_steps is a default that means nothing
            self._epoch_strategy = strategy.group(1).lower() in ("epoch", "no")
            if self._epoch_strategy:
                self.logging_steps = None
                self.step_key = "epoch"
                self.axis = "epoch"
        m = _LOGGING_STEPS.search(line)
        if m and not self._epoch_strategy:
            try:
                n = float(m.group(1).rstrip(",.eE+-"))
            except ValueError:
                return
            if n >= 1:  # a ratio below 1 is a fraction of max_steps, which the log may not say
                self.logging_steps = n
                self.config["logging_steps"] = n
                self.step_key = f"logging_steps×n ({n:g})"
                self.axis = "step"


def _scan(body: str) -> dict[str, float]:
    """Numeric `'key': value` pairs of a Python dict repr (without its opening `{'` and closing `}`).

    Fast path: turning `, '` into `': ` makes one split yield alternating keys and values, and
    `dict(zip(...))` converts them in C. Anything else (strings, lists, `np.float64(...)`) is read
    pair by pair.
    """
    parts = body.replace(", '", "': ").split("': ")
    if not len(parts) & 1:
        try:
            pairs = iter(parts)  # zip takes a key, map the value after it: no slicing
            return dict(zip(pairs, map(float, pairs)))  # noqa: B905 - the length was checked
        except ValueError:
            pass
    values: dict[str, float] = {}
    for key, quoted, raw in _DICT_PAIR.findall("'" + body):
        text = quoted if quoted else raw.strip()
        try:
            values[key] = float(text)
        except ValueError:
            m = _WRAPPED.match(text)  # np.float64(0.5), tensor(0.5, device='cuda:0')
            if m:
                try:
                    values[key] = float(m.group(1))
                except ValueError:
                    pass
    return values
