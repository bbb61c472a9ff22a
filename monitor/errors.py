"""The one error type runwatch raises for expected failures."""

from __future__ import annotations

from monitor.outward import outward


class RunwatchError(Exception):
    """An expected failure with a human title and a one-line message.

    `title` names the kind of trouble ("Cannot read target", "Bad config"); `str(err)` is the
    one line shown to the person (on stderr before the UI starts, as a notification after).
    """

    def __init__(self, message: str, *, title: str = "Error") -> None:
        super().__init__(message)
        self.title = title

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def one_line(self) -> str:
        """`title: message` on a single line, safe for a terminal (messages quote paths, names and URLs)."""
        return outward(f"{self.title}: {self.message}".replace("\n", " "))


class FormatError(RunwatchError):
    """Input that is not in the expected format (a bad `.wandb` header, an unknown `--format`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, title="Unreadable input")


class TargetError(RunwatchError):
    """A target that cannot be understood or opened."""

    def __init__(self, message: str) -> None:
        super().__init__(message, title="Cannot read target")


class ConfigError(RunwatchError):
    """A config file with an unknown key or a bad value (file, line and key named)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, title="Bad config")
