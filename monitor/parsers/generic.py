"""The fallback format: a step-like counter and metric-like numeric fields anywhere on a line.

Reads what no specific parser claims: `step=10 loss=2.3`, `epoch: 1, loss: 0.5`,
`iter    180 | loss 7.0931 | lr 1.448e-04`, `Step 1 | loss:0.98 lr:2e-05`,
`Epoch [3][120/500] loss: 0.41`. Fields whose names look like no metric (`pid=`, `port:`,
`dist_world_size=`) do not make a line a metric line, so a config dump or a binary read as text
yields "no metrics found" rather than thousands of rows.
"""

from __future__ import annotations

import re
from typing import ClassVar

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
        """Keys seen so far, and those among them whose names look like metrics."""

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
        # reversed, so that the first of repeated keys wins
        values = {k: float(number or special) for k, number, special in reversed(pairs)}
        if line[:1] == "N" and line.startswith("Namespace("):
            self.config.update(parse_namespace(line))  # a script's arguments, not metrics
            stats.noise += 1
            return []
        # multi-word names (`Train Loss: 4.05, Val Loss: 3.25`) show as a repeated or lone pair key
        if (len(values) < 2 or len(values) != len(pairs) or "|" in line) and (
            "|" in line or "," in line or " - " in line or ";" in line
        ):
            self._fields(line, values)
        key = self._key
        # the common case first: the chosen step field is on the line
        step = values.pop(key) if key is not None and key in values else self._step(line, values)
        if self._metrics.isdisjoint(values) and not self._learn(values):
            stats.noise += 1
            return []
        stats.metric_lines += 1
        self._last = step
        return [_new_row(Row, (step, values, None))]

    def _learn(self, values: dict[str, float]) -> bool:
        """Classify the keys not seen before; whether one of them looks like a metric."""
        found = False
        for key in values.keys() - self._seen:
            self._seen.add(key)
            if _METRIC.search(key) is not None:
                self._metrics.add(key)
                found = True
        return found

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
        if key is not None:
            self._key = key
            self.step_key = key
            self.axis = "epoch" if key in ("epoch", _EPOCH_OF_RULE) else "step"
        return key


_WORD_COUNTERS = ("global_step", "iteration", "step", "iter", "it")
# Building the NamedTuple through tuple.__new__ skips its Python-level __new__ (as hf.py does).
_new_row = tuple.__new__
