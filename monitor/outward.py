"""Text on its way out of runwatch: secrets redacted, then made safe for a terminal.

The last wall before a person's terminal, a file or a reviewer: `check` and `watch` print through
`outward()`, the TUI's log tail and toasts show `outward_lines()` / `outward()`, and JSON output
goes through `outward_data()` (JSON escapes control characters by itself; the secrets it does not).
The redactor here knows the secret-named variables of this process's environment; where a run's
own config is at hand, `run_redactor()` knows its secret values too.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from monitor.redact import Redactor
from monitor.textsafe import safe_text

if TYPE_CHECKING:
    from monitor.actions.runref import RunRef

_env_cache: tuple[int, Redactor] | None = None


def env_redactor(env: Mapping[str, str] | None = None) -> Redactor:
    """A redactor that knows the secret-named environment variables (rebuilt when they change)."""
    global _env_cache
    if env is not None:
        red = Redactor()
        red.remember_env(env)
        return red
    stamp = hash(frozenset(os.environ.items()))
    if _env_cache is None or _env_cache[0] != stamp:
        red = Redactor()
        red.remember_env(os.environ)
        _env_cache = (stamp, red)
    return _env_cache[1]


def run_redactor(*configs: Mapping[str, Any] | None, env: Mapping[str, str] | None = None) -> Redactor:
    """A redactor that also knows the secret values in a run's config (its entry, what its source said)."""
    red = Redactor()
    red.remember_env(os.environ if env is None else env)
    for cfg in configs:
        if cfg:
            red.data(dict(cfg))
    return red


def known_redactor(values: Iterable[str]) -> Redactor:
    """The environment's redactor that also scrubs `values` (secrets remembered from a run's config)."""
    return Redactor((*env_redactor().known, *values))


def ref_redactor(ref: RunRef, env: Mapping[str, str] | None = None) -> Redactor:
    """`run_redactor` for a run an action applies to: its config entry and what its source reported."""
    rc = ref.run_config
    entry = dataclasses.asdict(rc) if rc is not None and dataclasses.is_dataclass(rc) else None
    return run_redactor(entry, ref.analysis.info.config, env=env)


def outward(text: str, *, keep_newlines: bool = False, redactor: Redactor | None = None) -> str:
    """`text` redacted and sanitised: fit for a terminal, a file or a reviewer."""
    return safe_text((redactor or env_redactor()).text(text), keep_newlines=keep_newlines)


def outward_lines(lines: Iterable[str], redactor: Redactor | None = None) -> list[str]:
    """`outward()` of each line (the redactor remembers lines it has seen, so a redraw is cheap)."""
    red = redactor or env_redactor()
    return [safe_text(red.text(line)) for line in lines]


def outward_data(obj: Any, redactor: Redactor | None = None) -> Any:
    """JSON-like data with every string redacted and values under secret-looking keys masked."""
    return (redactor or env_redactor()).data(obj)
