"""The fallback format: a step-like counter and metric-like numeric fields anywhere on a line.

Reads what no specific parser claims: `step=10 loss=2.3`, `epoch: 1, loss: 0.5`,
`iter    180 | loss 7.0931 | lr 1.448e-04`, `Step 1 | loss:0.98 lr:2e-05`,
`Epoch [3][120/500] loss: 0.41`. Fields whose names look like no metric (`pid=`, `port:`,
`dist_world_size=`) do not make a line a metric line, so a config dump or a binary read as text
yields "no metrics found" rather than thousands of rows.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import ClassVar

import numpy as np

from monitor.columns import Columns, float_column
from monitor.model import Row
from monitor.parsers.base import Parser
from monitor.parsers.common import STEP_KEYS
from monitor.parsers.wordlm import parse_namespace

# A key starts where no key character precedes it (so a run of letters is scanned once, not once per
# position: the search stays linear) and takes its characters possessively. A number may carry a
# short unit (`12ms`, `45%`); a following letter, digit or dot means it was part of a word or a
# version string, and a following colon a `file.py:123:` location. `nan`/`inf` take no unit (`info`, `nano` are words).
_PAIR = re.compile(
    r"(?<![\w./\-])([A-Za-z_][\w./\-]*+)\s*+[=:]\s*+"
    r"(?:([-+]?(?:\d++\.?\d*+|\.\d++)(?:[eE][-+]?\d++)?)(?:%|[A-Za-z]{1,3})?"
    r"|([-+]?(?:nan|inf(?:inity)?)))(?![\w.:])",
    re.IGNORECASE,
)
# `| loss 7.0931 |`, `Train Loss: 4.05,`: a name of up to four words and a number alone in a field
# separated by `|`, `,`, `;` or ` - `.
_FIELD = re.compile(
    r"\s*+([A-Za-z_][\w./@\-]*+(?: [A-Za-z_][\w./@\-]*+){0,3}?)(?:\s*:\s*|\s++)"
    r"([-+]?(?:\d++\.?\d*+|\.\d++)(?:[eE][-+]?\d++)?|[-+]?(?:nan|inf))(?:%|[A-Za-z]{1,3}(?:/\w+)?)?\s*+$",
    re.IGNORECASE,
)
# Counters written without `=`/`:` (`iter 180`, `Step 1 |`, `step 1/300`, `it 5`).
_COUNTER = re.compile(
    r"(?<![\w/])(global_step|iteration|step|iter|it)\b[ \t]*+[=:]?[ \t]*+(\d++)(?:[ \t]*+/[ \t]*+\d++)?",
    re.I,
)
# `Epoch [3][120/500]`, `Epoch: [3][120/500]`, `Epoch(train) [3][120/500]`.
_EPOCH_BATCH = re.compile(r"Epoch\W{0,12}\[\s*(\d+)\s*\]\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]", re.I)
# `Epoch 3/100 - Train Loss: ...`: an epoch counter (the axis is then epochs).
_EPOCH_OF = re.compile(r"\bEpoch\s*:?\s*(\d+)\s*/\s*(\d+)", re.I)
_FIELD_SPLIT = re.compile(r"\||,|;|\s-\s")
# `Epoch 3: ...`, `Epoch 3 - ...`: an epoch counter without a total (lowest priority of the counters).
_EPOCH_N = re.compile(r"\bEpoch\s*:?\s*(\d+)\b(?!\s*/)", re.I)
# `Average Training Loss = 0.69`, `Validation Accuracy: 0.5`: a Title-Case name of up to four words.
_TITLE_PAIR = re.compile(
    r"(?<![\w./\-])((?:[A-Z][a-z]++ ){1,3}[A-Z][\w@/.\-]*+)\s*+[=:]\s*+"
    r"([-+]?(?:\d++\.?\d*+|\.\d++)(?:[eE][-+]?\d++)?|[-+]?(?:nan|inf))(?![\w.:])",
)
# Words before the first field that make the line an evaluation's (`Evaluation Epoch 0 - Average Loss: ...`).
_EVAL_WORDS = re.compile(r"\b(?:eval(?:uation|uating)?|validat(?:e|ion|ing)|valid|val|test(?:ing)?)\b", re.I)
# A line of a YAML or config dump: one indented `key: value` and nothing else.
# (or one `key=value,` line of a printed dataclass such as `TrainingArguments(`).
_CONFIG_LINE = re.compile(r"^\s+[\w.\-/]+(?::\s*\S+|\s*=\s*\S+,)\s*$")
#: A key that names a source file (`train.py:147` in a log prefix) is no metric.
_SOURCE_FILE = (".py", ".cc", ".cpp", ".c", ".h", ".cu", ".rs", ".go", ".java", ".js", ".ts")
# A leading `e/n` counter (`12/100 ...`, `[ 12/100]`).
_E_OF_N = re.compile(r"^\W{0,3}(\d+)\s*/\s*(\d+)\b")
_METRIC = re.compile(
    r"loss|acc|(?:^|\W|_)lr|learning.?rate|ppl|perplex|reward|(?:^|\W|_)kl(?:$|\W|_)|entropy|grad|norm|"
    r"map|(?:^|\W|_)ap\d*(?:$|\W|_)|f1|bleu|rouge|wer|cer|auc|score|err|precision|recall|iou|dice|mse|mae|"
    r"psnr|ssim|nll|top.?[15]|mfu|throughput|tok|return|objective|metric|(?:^|\W|_)(?:eval|val|valid|train|test)",
    re.I,
)
#: Pseudo keys naming the pattern-based step rules (shown as the step key).
_EPOCH_RULE = "Epoch [e][i/n] (e×n + i)"
_COUNTER_RULE = "e/n counter"
_EPOCH_OF_RULE = "Epoch e/n"
_EPOCH_N_RULE = "Epoch e"


class KeyValueParser(Parser):
    """Generic lines: numeric `key=value`, `key: value` and `| name value |` fields; other tokens are
    ignored, and a line counts only when a field's name looks like a metric (loss, acc, lr, ppl,
    reward, grad norm, mAP, F1, ...).

    Step: the first step-like field seen (`step`, `global_step`, `iteration`, `iter`, `it`, ...),
    an `Epoch [e][i/n]` counter, a leading `e/n`, or `epoch` (then the axis is epochs); once chosen
    it stays the axis and lines without it keep the latest step; with none, a running count of
    metric lines. `step_key` names what was chosen.
    """

    name: ClassVar[str] = "generic"
    description: ClassVar[str] = (
        "generic fallback: a step counter and metric-like key=value / key: value / | name value | fields"
    )
    sample: ClassVar[str] = "step=120 loss=2.31 lr=3e-4 grad_norm=0.92"

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "line"
        self._key: str | None = None
        self._last = 0.0
        self._count = 0
        self._seen: set[str] = set()
        self._metrics: set[str] = set()
        self._upper: set[str] = set()
        self._plain: set[str] = set()
        self._previous: set[str] = set()
        """The keys of the latest metric line (before its step field was taken out)."""
        """Keys seen so far; those whose names look like metrics; the capitalised ones and the others."""

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        lines = [line for line in head if line.strip()]
        if not lines:
            return 0.0
        rich = sum(1 for line in lines if len(_PAIR.findall(line)) >= 2)
        return 0.4 * rich / len(lines)

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        pairs = _PAIR.findall(line)
        values: dict[str, float] = {}
        for key, number, special in pairs:
            if key not in values:  # the first of repeated keys wins
                values[key] = float(number or special)
        # The common line (`step=10 loss=2.3 lr=1e-4`: the keys of the previous metric line, the first
        # at the start, none repeated) needs none of the slower readings below.
        if not (
            pairs
            and values.keys() == self._previous
            and len(values) == len(pairs)
            and line.startswith(pairs[0][0])
            and "|" not in line
        ):
            if not (
                1 < len(values) == len(pairs)
                and self._plain.issuperset(values)
                and line.startswith(pairs[0][0])
                and "|" not in line
            ):
                read = self._slow(line, pairs, values)
                if read is None:
                    stats.noise += 1
                    return []
                values = read
            if self._metrics.isdisjoint(values) and not self._learn(values):
                stats.noise += 1  # (before the step: a line without metrics must not choose the axis)
                return []
            self._previous = set(values)
        chosen = self._key
        # the chosen step field is usually on the line
        step = values.pop(chosen) if chosen is not None and chosen in values else self._step(line, values)
        stats.metric_lines += 1
        self._last = step
        return [_new_row(Row, (step, values, None))]

    def feed_text(self, text: str) -> list[Columns] | None:
        """Whole lines of text (ending in a newline) as one column block, or None to go line by line.

        Backfilling a long log is dominated by per-line work. The common log repeats one layout
        (`step=10 loss=2.3 lr=1e-4`): the same keys in the same order with the same text between
        them. When the first line has such a plain layout (it starts with its first key, its fields
        are separated only by blanks, `,` or `;`, its numbers carry no unit) and every line of the
        text matches it, one compiled pattern reads the text, and each line is then exactly the
        common line of `feed` (the keys of the previous metric line with the step field on it): the
        rows and the parser's state are those of feeding the lines one by one. Anything else
        returns None before any state changes.
        """
        n = text.count("\n")
        chosen = self._key
        if n < 2 or chosen is None or not self._previous or "\r" in text:
            return None
        layout = _layout(text[: text.index("\n")])
        if layout is None:
            return None
        keys, literals = layout
        if set(keys) != self._previous or chosen not in keys:
            return None
        fields = _layout_pattern(literals).findall(text)
        if len(fields) != n:  # a line that is not of the layout (each match is one whole line)
            return None
        cols = list(zip(*fields, strict=True))
        from monitor.parsers import MAX_LINE  # (the package imports this module)

        if sum(map(len, literals)) + sum(max(map(len, c)) for c in cols) > MAX_LINE:
            return None  # a line `feed_lines` would cut
        j = keys.index(chosen)
        steps = float_column(list(cols[j]))
        values = np.column_stack([float_column(list(c)) for i, c in enumerate(cols) if i != j])
        stats = self.stats
        stats.lines += n
        stats.metric_lines += n
        self._last = float(steps[-1])
        return [Columns(keys[:j] + keys[j + 1 :], steps, values, None)]

    def _slow(self, line: str, pairs: list[tuple[str, str, str]], values: dict[str, float]) -> dict[str, float] | None:
        """The rest of a line's reading: argument dumps and config lines (None: not metrics), fields
        with multi-word names, Title-Case names, and the `eval/` prefix of an evaluation's line."""
        if line[:1] == "N" and line.startswith("Namespace("):
            self.config.update(parse_namespace(line))  # a script's arguments, not metrics
            return None
        if len(pairs) == 1 and line[:1] in (" ", "\t") and _CONFIG_LINE.match(line):
            return None  # `  loss_weight: 1.0` in a printed config is not a metric
        # multi-word names (`Train Loss: 4.05, Val Loss: 3.25`) show as a repeated or lone pair key
        if (len(values) < 2 or len(values) != len(pairs) or "|" in line) and (
            "|" in line or "," in line or " - " in line or ";" in line
        ):
            self._fields(line, values)
        self._learn(values)
        if not self._upper.isdisjoint(values):  # Title-Case names may have more words before them
            self._titles(line, values)
        if pairs:
            at = line.find(pairs[0][0])
            if at > 0 and _EVAL_WORDS.search(line, 0, at):
                values = {k if _EVAL_WORDS.search(k) else "eval/" + k: v for k, v in values.items()}
        self._learn(values)
        return values

    def _learn(self, values: dict[str, float]) -> bool:
        """Classify the keys not seen before; whether one of them looks like a metric."""
        found = False
        for key in values.keys() - self._seen:
            self._seen.add(key)
            if key[:1].isupper():
                self._upper.add(key)
            else:
                self._plain.add(key)
            if _METRIC.search(key.removeprefix("eval/")) is not None and not key.endswith(_SOURCE_FILE):
                self._metrics.add(key)
                found = True
        return found

    @staticmethod
    def _titles(line: str, values: dict[str, float]) -> None:
        """Replace a one-word key by its whole Title-Case name (`Average Training Loss` for `Loss`)."""
        for name, number in _TITLE_PAIR.findall(line):
            if name in values:
                continue
            x = float(number)
            last = name.rpartition(" ")[2]
            if values.get(last) == x or (last in values and x != x):
                del values[last]
            values[name] = x

    @staticmethod
    def _fields(line: str, values: dict[str, float]) -> None:
        """Add the `name value` / `Multi Word Name: value` fields of a separated line to `values`; a
        one-word key the pair pattern took from such a name (`Loss` of `Train Loss: 4.05`) goes."""
        for field in _FIELD_SPLIT.split(line):
            m = _FIELD.match(field)
            if m is None or m.group(1) in values:
                continue
            name, x = m.group(1), float(m.group(2))
            values[name] = x
            if " " in name:
                last = name.rpartition(" ")[2]
                if values.get(last) == x:
                    del values[last]

    def _step(self, line: str, values: dict[str, float]) -> float:
        """The step of one line on the chosen axis, removing a step field from `values`."""
        key = self._key
        if key is None:
            key = self._choose(line, values)
        if key is _EPOCH_RULE:
            m = _EPOCH_BATCH.search(line)
            return float(m.group(1)) * float(m.group(3)) + float(m.group(2)) if m else self._last
        if key is _COUNTER_RULE:
            m = _E_OF_N.match(line)
            return float(m.group(1)) if m else self._last
        if key is _EPOCH_OF_RULE:
            m = _EPOCH_OF.search(line)
            return float(m.group(1)) if m else self._last
        if key is _EPOCH_N_RULE:
            m = _EPOCH_N.search(line)
            return float(m.group(1)) if m else self._last
        if key is not None:
            v = values.pop(key, None)
            if v is not None:
                return v
            if key in _WORD_COUNTERS:
                m = _COUNTER.search(line)
                if m and m.group(1).lower() == key:
                    return float(m.group(2))
            return self._last
        self._count += 1
        return float(self._count)

    def _choose(self, line: str, values: dict[str, float]) -> str | None:
        """Pick the step rule from the first line that shows one; None while no line has."""
        key: str | None = next((k for k in STEP_KEYS if k in values and k != "epoch"), None)
        if key is None:
            key = next((k for k in values if k.lower() in _WORD_COUNTERS), None)
        if key is None and _EPOCH_BATCH.search(line):
            key = _EPOCH_RULE
        if key is None:
            m = _COUNTER.search(line)
            if m:
                key = m.group(1).lower()
        if key is None and _EPOCH_OF.search(line):
            key = _EPOCH_OF_RULE
        if key is None and "epoch" in values:
            key = "epoch"
        if key is None and _E_OF_N.match(line):
            key = _COUNTER_RULE
        if key is None and _EPOCH_N.search(line):
            key = _EPOCH_N_RULE
        if key is not None:
            self._key = key
            self.step_key = key
            self.axis = "epoch" if key in ("epoch", _EPOCH_OF_RULE, _EPOCH_N_RULE) else "step"
        return key


# The text a plain layout allows between one field's number and the next key, and after the last.
_BETWEEN = re.compile(r"[ \t,;]+")
_END = re.compile(r"[ \t]*")
# A field's number as `_PAIR` reads it when no unit follows (the text after it is `_BETWEEN` or `_END`).
_VALUE = r"([-+]?(?:\d++\.?\d*+|\.\d++)(?:[eE][-+]?\d++)?|[-+]?(?i:nan|inf(?:inity)?))(?![\w.:])"


def _layout(line: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """A plain line's keys and the literal texts around its numbers (`step=`, ` loss=`, ` lr=`, ``),
    or None when the line is not plain (see `KeyValueParser.feed_text`).

    On any line made of these literals with numbers between them, `_PAIR` finds exactly these keys
    with these numbers: every literal after a number starts with a blank, `,` or `;` (so no unit
    and no lookahead stops the number) and holds no `=` or `:` (so no other key can start there).
    """
    if "|" in line:
        return None
    keys: list[str] = []
    literals: list[str] = []
    pos = 0
    for m in _PAIR.finditer(line):
        number_end = m.end(2) if m.group(2) is not None else m.end(3)
        if number_end != m.end():  # a unit (`12ms`)
            return None
        if pos and _BETWEEN.fullmatch(line, pos, m.start()) is None:
            return None
        if not pos and m.start() != 0:
            return None
        keys.append(m.group(1))
        literals.append(line[pos : m.start(2) if m.group(2) is not None else m.start(3)])
        pos = m.end()
    if len(keys) < 2 or len(set(keys)) != len(keys) or _END.fullmatch(line, pos) is None:
        return None
    literals.append(line[pos:])
    return tuple(keys), tuple(literals)


@lru_cache(maxsize=32)
def _layout_pattern(literals: tuple[str, ...]) -> re.Pattern[str]:
    """One whole line of a layout, from its start to its newline, its numbers in groups."""
    return re.compile("^" + _VALUE.join(map(re.escape, literals[:-1])) + _VALUE + re.escape(literals[-1]) + "\n", re.M)


_WORD_COUNTERS = ("global_step", "iteration", "step", "iter", "it")
# Building the NamedTuple through tuple.__new__ skips its Python-level __new__ (as hf.py does).
_new_row = tuple.__new__
