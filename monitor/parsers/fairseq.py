"""fairseq training logs, in its `simple`/`tqdm` text format and its `json` format.

2025-10-15 11:33:32 | INFO | train_inner | epoch 001:    100 / 487 loss=4.655, ..., num_updates=100, ...
2021-03-08 12:43:15 | INFO | train | {"epoch": 1, "train_loss": "19.351", ..., "train_num_updates": "10", ...}
| epoch 001 | valid on 'valid' subset | loss 8.1 | ... | num_updates 1000     (fairseq before 0.10)
"""

from __future__ import annotations

import json
import re
from typing import ClassVar

from monitor.model import Row
from monitor.parsers.base import Parser
from monitor.parsers.common import to_float

# The tag fairseq's progress bar prints (`| INFO | train_inner |`), or an old log's leading `| epoch 001`.
_TAG = re.compile(r"\| (train_inner|train|valid|test|dev)\s*\| |^\| (?=epoch \d{3}\b)|^(?=epoch \d{3}[:\s])")
_EPOCH = re.compile(r"epoch (\d+)")
_INNER_PAIR = re.compile(r"(?<![\w.])([A-Za-z_]\w*+)=([-+]?(?:nan|inf|\d[\d.]*+(?:[eE][-+]?\d++)?))(?![\w.])", re.I)
_SNIFF = re.compile(
    r"\| epoch \d{3}\b|\| (?:train_inner|train|valid) \| (?:\{\"epoch\"|epoch \d)|^epoch \d{3}(?: \| |:\s+\d+ / \d+ )"
)
_PHASE_OF_OLD = re.compile(r"valid on '([^']+)' subset")


class FairseqParser(Parser):
    """fairseq logs: `train_inner` lines (every `log_interval` updates), the per-epoch `train` summary
    and the `valid` results, as text or as JSON (whose numbers are JSON strings).

    Keys: inner lines as printed (`loss`, `nll_loss`, `ppl`, `lr`, `gnorm`, `wps`, `ups`, `wpb`,
    `bsz`, `train_wall`, `gb_free`, `wall`); epoch summaries prefixed by their phase (`train_loss`,
    `valid_loss`, `valid_ppl`, `valid_best_loss`, `test_loss`), as fairseq's JSON already writes them.
    Step: `num_updates` (optimizer updates); `epoch` is kept as a metric.
    """

    name: ClassVar[str] = "fairseq"
    description: ClassVar[str] = "fairseq train_inner / train / valid lines (text or json log format)"
    sample: ClassVar[str] = (
        '2021-03-08 12:43:15 | INFO | train | {"epoch": 1, "train_loss": "19.351", "train_ppl": "668509", '
        '"train_wps": "210.9", "train_ups": "0.01", "train_wpb": "16384", "train_bsz": "8", '
        '"train_num_updates": "10", "train_lr": "0", "train_gnorm": "36.26", "train_loss_scale": "1", '
        '"train_train_wall": "667", "train_gb_free": "9.3", "train_wall": "804"}'
    )

    def __init__(self) -> None:
        super().__init__()
        self.step_key = "num_updates"
        self._last = 0.0

    @classmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        n = sum(1 for line in head if ("| " in line or line.startswith("epoch ")) and _SNIFF.search(line))
        return 0.0 if not n else min(0.97, 0.9 + 0.01 * n)

    def feed(self, line: str) -> list[Row]:
        stats = self.stats
        stats.lines += 1
        m = _TAG.search(line) if "| " in line or line.startswith("epoch ") else None
        if m is None:
            if "done training" in line:
                self.finished = True
            stats.noise += 1
            return []
        rest = line[m.end() :]
        tag = m.group(1)
        if rest.lstrip().startswith("{"):
            values = self._json(rest, tag)
        elif tag == "train_inner" or (tag is None and ":" in rest.split("|", 1)[0]):
            values = self._inner(rest)
        else:
            values = self._summary(rest, tag)
        if values is None:
            stats.count_malformed(line)
            return []
        step = None
        for key in ("num_updates", "train_num_updates", "valid_num_updates", "test_num_updates"):
            if key in values:
                step = values.pop(key)
                break
        if not values:
            stats.noise += 1
            return []
        if step is None:
            step = self._last
        self._last = step
        stats.metric_lines += 1
        return [Row(step, values)]

    def _json(self, text: str, tag: str | None) -> dict[str, float] | None:
        """Numeric fields of a JSON record (fairseq writes most numbers as strings)."""
        try:
            obj = json.loads(text)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        values: dict[str, float] = {}
        for key, raw in obj.items():
            value = to_float(raw) if isinstance(raw, str) else raw
            if isinstance(value, int | float) and not isinstance(value, bool):
                values[str(key)] = float(value)
        return values

    def _inner(self, text: str) -> dict[str, float] | None:
        """`epoch 001:    100 / 487 loss=4.655, nll_loss=..., num_updates=100, ...`."""
        values = {k: float(v) for k, v in _INNER_PAIR.findall(text)}
        e = _EPOCH.search(text)
        if e:
            values["epoch"] = float(e.group(1))
        return values or None

    def _summary(self, text: str, tag: str | None) -> dict[str, float] | None:
        """`epoch 001 | loss 3.663 | ... | num_updates 487` (with `valid on 'valid' subset` on eval lines)."""
        fields = [f.strip() for f in text.split("|")]
        phase = tag or "train"
        values: dict[str, float] = {}
        for field in fields:
            old = _PHASE_OF_OLD.match(field)
            if old:
                phase = "valid" if tag is None else phase
                continue
            key, _, num = field.rpartition(" ")
            x = to_float(num)
            if not key or x is None:
                continue
            key = key.strip()
            if key == "epoch":
                values["epoch"] = x
            elif key == "num_updates":
                values[f"{phase}_num_updates"] = x
            else:
                values[f"{phase}_{key}"] = x
        return values or None
