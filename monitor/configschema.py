"""Config validation derived from one typed schema: the config dataclasses themselves.

Each dataclass field is a key (its type hint says what the value must be, its default what an
absent key means, its docstring what it does); `field(metadata=...)` adds what a type cannot say:
`key` (the TOML name, None for fields the file cannot set), `choices`, `split` (a string that may
stand for a list of words), `check` (a function that returns an error or None). An error names the
file, the line of the key in the right table (the N-th `[[run]]` for `run[N-1]`), the key and why,
with a "did you mean" for a misspelt key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any

from monitor.errors import ConfigError

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"-]+)\s*\]\]?")
_WHAT = {str: "a string", bool: "true or false", int: "a whole number", float: "a number", Path: "a path"}


class Locator:
    """Finds the line of a key in the config text, table by table."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.sections: list[tuple[str, int, int]] = []  # (table, index of [[table]], first line)
        counts: dict[str, int] = {}
        for i, line in enumerate(text.splitlines()):
            m = _HEADER.match(line)
            if m is None:
                continue
            name = m.group(2).strip('"')
            top = name.split(".")[0]
            if m.group(1) == "[[":
                counts[name] = counts.get(name, -1) + 1
            self.sections.append((top if top in counts else name, counts.get(top, 0), i))
        self.lines = text.splitlines()

    def _span(self, table: str, index: int) -> tuple[int, int] | None:
        starts = [(t, n, i) for t, n, i in self.sections]
        for k, (t, n, i) in enumerate(starts):
            if t == table and n == index:
                end = len(self.lines)
                for t2, n2, j in starts[k + 1 :]:
                    if (t2, n2) != (t, n):
                        end = j
                        break
                return i, end
        return None

    def line(self, key: str) -> int | None:
        """The 1-based line where `key` (`theme`, `thresholds.spike_z`, `run[2].baseline.x`) is set."""
        parts = key.split(".")
        m = re.fullmatch(r"(\w+)\[(\d+)\]", parts[0])
        if m:
            span, rest = self._span(m.group(1), int(m.group(2))), parts[1:]
        elif len(parts) > 1:
            span, rest = self._span(parts[0], 0), parts[1:]
        else:
            first = self.sections[0][2] if self.sections else len(self.lines)
            span, rest = (0, first), parts
        if span is None:
            return None
        lo, hi = span
        for leaf in reversed(rest or parts):
            leaf = leaf.split("[")[0]
            pat = re.compile(rf"(^|[{{,\s])\"?{re.escape(leaf)}\"?\s*=")
            for i in range(lo, hi):
                if pat.search(self.lines[i]):
                    return i + 1
        return lo + 1 if m or len(parts) > 1 else None

    def error(self, key: str, why: str) -> ConfigError:
        line = self.line(key)
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"{where}: {key}: {why}")


def toml_keys(cls: type) -> dict[str, dataclasses.Field[Any]]:
    """The keys a dataclass takes in the file, by TOML name."""
    out = {}
    for f in dataclasses.fields(cls):
        name = f.metadata.get("key", f.name)
        if name is not None:
            out[name] = f
    return out


def build(cls: type, table: Any, prefix: str, loc: Locator) -> Any:
    """An instance of dataclass `cls` from a TOML table, every key checked against the schema."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(table, dict):
        raise loc.error(where, f"expected a table, got {table!r}")
    keys = toml_keys(cls)
    for k in table:
        if k not in keys:
            raise loc.error(prefix + k, unknown(k, keys))
    hints = typing.get_type_hints(cls)
    for name, f in keys.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in table:
            raise loc.error(where, f"missing {name!r}")
    values: dict[str, Any] = {}
    for name, f in keys.items():
        if name not in table:
            continue
        key = prefix + name
        value = convert(table[name], hints[f.name], key, loc, f.metadata)
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise loc.error(key, f"unknown value {value!r} (expected one of: {', '.join(choices)})")
        check = f.metadata.get("check")
        if check is not None and (why := check(value)) is not None:
            raise loc.error(key, why)
        values[f.name] = value
    return cls(**values)


def unknown(key: str, allowed: Any) -> str:
    """`unknown key (did you mean 'x'?)` or the list of known keys."""
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (expected one of: {', '.join(sorted(allowed))})"


def convert(value: Any, hint: Any, key: str, loc: Locator, meta: Any = None) -> Any:
    """`value` as type `hint`, or a ConfigError naming `key`."""
    meta = meta or {}
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        return convert(value, inner[0], key, loc, meta)
    if dataclasses.is_dataclass(hint):
        if "overrides" in meta:
            return meta["overrides"](value, key, loc)
        return build(hint, value, key + ".", loc)  # type: ignore[arg-type]
    if origin is tuple:
        if meta.get("split") and isinstance(value, str):
            value = value.split()
        if not isinstance(value, list):
            raise loc.error(key, f"expected a list, got {value!r}")
        item = args[0]
        if dataclasses.is_dataclass(item):
            return tuple(build(item, v, f"{key}[{i}].", loc) for i, v in enumerate(value))  # type: ignore[arg-type]
        return tuple(convert(v, item, key, loc) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise loc.error(key, f"expected a table, got {value!r}")
        vt = args[1]
        out = {}
        for k, v in value.items():
            if typing.get_origin(vt) is tuple and isinstance(v, str):
                v = [v]  # one metric name stands for a list of one
            out[k] = convert(v, vt, f"{key}.{k}", loc, {"coerce_str": meta.get("coerce_str")})
        return out
    return _scalar(value, hint, key, loc, meta)


def _scalar(value: Any, hint: Any, key: str, loc: Locator, meta: Any) -> Any:
    what = _WHAT.get(hint, str(hint))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif isinstance(value, bool):
        pass  # true/false is not a number or a string here
    elif hint is str:
        if isinstance(value, str):
            return value
        if meta.get("coerce_str") and isinstance(value, int):
            return str(value)
    elif hint is int:
        if isinstance(value, int):
            return value
    elif hint is float:
        if isinstance(value, int | float):
            return float(value)
    elif hint is Path and isinstance(value, str):
        return Path(value)
    raise loc.error(key, f"expected {what}, got {value!r}")


def finite_values(values: dict[str, float]) -> str | None:
    """A check: every value is a finite number."""
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    return f"{bad[0]} must be finite" if bad else None
