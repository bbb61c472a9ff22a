"""What every log-format parser is: lines (or a whole document) in, `Row`s out, noise counted."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from monitor.columns import Columns
from monitor.model import Row


@dataclass(slots=True)
class ParseStats:
    """Counts of what a parser saw. Noise and malformed lines are skipped, never fatal."""

    lines: int = 0
    """Lines (or document entries) fed in."""
    metric_lines: int = 0
    """Lines that produced at least one row."""
    noise: int = 0
    """Lines that are not metrics at all: tqdm bars, warnings, banners, blank lines."""
    malformed: int = 0
    """Lines that looked like metrics of this format but could not be read."""
    cut: int = 0
    """Lines longer than `MAX_LINE` characters, cut to that length before parsing."""
    examples: list[str] = field(default_factory=list)
    """The first few malformed lines, for a one-line error message."""

    def count_malformed(self, line: str) -> None:
        self.malformed += 1
        if len(self.examples) < 3:
            self.examples.append(line[:200])


class Parser(ABC):
    """A streaming parser for one log format.

    Feed it one line at a time (without the trailing newline; a partial last line must not be fed
    until its newline arrives). Stateful where the format needs it (a CSV header, HF Trainer's
    `logging_steps` printed before the metrics, the batches-per-epoch of a word-LM log).
    """

    name: ClassVar[str]
    """Format name as used by `--format`."""
    description: ClassVar[str] = ""
    sample: ClassVar[str] = ""
    """One real line (or the first lines) of the format, shown by `runwatch formats`."""

    def __init__(self) -> None:
        self.stats = ParseStats()
        self.step_key: str = "line"
        """Which key or rule gives the step axis, shown to the person ("iteration", "epoch", ...)."""
        self.axis: str = "step"
        """What the step axis counts: `step` (optimizer steps, iterations, batches), `epoch`, `sample`
        or `token`; an epoch axis is labelled "epoch" wherever steps are shown."""
        self.roles: dict[str, str] = {}
        """Role hints (a `monitor.model.Role` value by key) for keys the format itself says are not
        what their name suggests, e.g. Detectron2's per-class AP fields (`NaN` = class absent)."""
        self.config: dict[str, Any] = {}
        """Run configuration found in the log (argparse Namespace, TrainingArguments, CSV hparams)."""
        self.total_steps: float | None = None
        """Planned length of the run when the log says it (`iteration N/TOTAL`)."""
        self.finished: bool = False
        """The log says training ended (a final summary line)."""

    @classmethod
    @abstractmethod
    def sniff(cls, head: list[str], filename: str = "") -> float:
        """Confidence in 0..1 that `head` (the first lines of a file) is in this format."""

    @abstractmethod
    def feed(self, line: str) -> list[Row]:
        """Parse one complete line; return the rows it carries (often none)."""

    def finish(self) -> list[Row]:
        """Flush anything held back at end of input."""
        return []

    def feed_columns(self, lines: list[str]) -> list[Columns] | None:
        """A batch of lines (without their newlines) as column blocks through `feed_text`, or None to
        go line by line; parsers without that fast path do not join the batch. A batch the fast path
        cannot take (whatever it raises) goes line by line, where each odd line is counted alone."""
        if len(lines) < 2 or type(self).feed_text is Parser.feed_text:
            return None
        try:
            return self.feed_text("\n".join(lines) + "\n")
        except Exception:
            return None

    def feed_text(self, text: str) -> list[Columns] | None:
        """Optional fast path: whole lines of text (ending in a newline) as column blocks, or None."""
        return None


class DocumentParser(Parser):
    """A format that is one whole document (JSON): fed line by line like any parser, parsed in `finish()`.

    A partial last line is still part of the document, and a live source re-reads a rewritten file
    whole (see each module's `parse_document`).
    """

    document: ClassVar[bool] = True
    what: ClassVar[str] = "document"
    """How errors name the document ("trainer_state.json")."""

    def __init__(self) -> None:
        super().__init__()
        self._lines: list[str] = []

    def feed(self, line: str) -> list[Row]:
        self.stats.lines += 1
        self._lines.append(line)
        return []

    @abstractmethod
    def read(self, text: str) -> tuple[list[Row], dict[str, Any], int]:
        """Rows, run configuration and the count of skipped entries; ValueError when not such a document."""

    def learned(self, rows: list[Row], config: dict[str, Any]) -> None:
        """What the document says about the run besides its rows (planned length, whether it ended)."""

    def finish(self) -> list[Row]:
        text = "\n".join(self._lines)
        self._lines = []
        if not text.strip():
            return []
        try:
            rows, config, skipped = self.read(text)
            self.learned(rows, config)
        except (ValueError, OverflowError, RecursionError, TypeError) as err:
            # a huge integer or absurd nesting is a broken document, never a crash
            self.stats.count_malformed(f"{self.what}: {type(err).__name__}: {err}"[:200])
            return []
        self.config.update(config)
        self.stats.metric_lines += len(rows)
        self.stats.noise += skipped
        return rows
