"""Secrets out of everything an evidence bundle or the audit log holds.

Two layers: patterns for credentials that look like credentials wherever they appear (W&B, OpenAI,
Anthropic, Hugging Face, AWS, GitHub, passwords in URLs, bearer tokens), and names that say a
value is secret (`api_key`, `HF_TOKEN`, `db_password`) in structured config and in `key=value`
text. Values found under secret names are also remembered and scrubbed verbatim from every later
text, so a password that appears in the config and again on a logged command line goes both times.
Over-redacting is the safe side: a colleague can live with a `[REDACTED]` git hash.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "[REDACTED]"

# Words that make a key name secret, and words that, as the last word, say it names something else
# (`hf_token_file` is a path, `pad_token` a vocabulary entry, `api_key_env` a variable name).
_SECRET_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "credential",
        "credentials",
        "auth",
        "authorization",
        "cookie",
        "signature",
        "sig",
        "dsn",
        "privatekey",
    }
)
_NOT_SECRET_LAST = frozenset(
    {"id", "ids", "len", "length", "size", "count", "dim", "dims", "type", "name", "names", "file", "path"}
    | {"dir", "env", "var", "url", "host", "user", "username", "index", "idx", "kind", "format", "num"}
    | {"sock", "socket", "pid", "port"}
)
# Whole names that only look secret: the shell's working directories.
_NOT_SECRET_NAMES = frozenset({"pwd", "oldpwd"})
_NOT_SECRET_WITH = frozenset({"pad", "bos", "eos", "unk", "mask", "sep", "cls", "step", "metric", "sort", "primary"})
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def is_secret_key(name: str) -> bool:
    """Whether a config key or variable name says its value is a secret."""
    words = [w.lower() for w in _WORD_SPLIT.split(name) if w]
    if not words or name.lower() in _NOT_SECRET_NAMES:
        return False
    if not any(w in _SECRET_WORDS for w in words):
        return False
    if words[-1] in _NOT_SECRET_LAST or any(w in _NOT_SECRET_WITH for w in words):
        return False
    return not (len(words) == 1 and words[0] in ("key", "pass", "sig"))


# Credentials recognisable by their shape. Order matters: the specific ones come first.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # `https://user:password@host` keeps the user, drops the password.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/:@]+:)([^\s/@]+)(@)"), rf"\1{MASK}\3"),
    # `Authorization: Bearer x`, `Authorization: Basic x`, `x-api-key: x` headers.
    (
        re.compile(r"(?i)\b((?:proxy-)?authorization\"?\s*[:=]\s*\"?)((?:bearer|basic|token|digest)\s+)?[^\s\"',;]+"),
        rf"\1\2{MASK}",
    ),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]{8,}=*"), rf"\1 {MASK}"),
    (re.compile(r"(?i)\b(x-api-key|api-key)(\"?\s*[:=]\s*\"?)[^\s\"',;]+"), rf"\1\2{MASK}"),
    # Provider keys.
    (re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{8,}"), MASK),
    (re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}"), MASK),
    (re.compile(r"\bhf_[A-Za-z0-9]{16,}"), MASK),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"), MASK),
    (re.compile(r"\b(?:glpat|xox[abprs])-[A-Za-z0-9\-]{10,}"), MASK),
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"), MASK),
    # W&B API keys (40 hex, optionally behind a `local-` prefix for self-hosted servers).
    (re.compile(r"(?i)\b(?:local-)?[0-9a-f]{40}\b"), MASK),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), MASK),
)
# AWS secret access keys: 40 characters of base64 with mixed case and a digit, standing alone.
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
# `?token=x` and `&sig=x` in URLs, judged by the parameter's name.
_QUERY = re.compile(r"([?&;])([A-Za-z0-9_.\-]+)=([^&\s#\"'<>]+)")
# `NAME=value`, `name: value`, `"name": "value"`, `--name value`, `--name=value` in free text.
_ASSIGN = re.compile(
    r"(?P<key>(?<![A-Za-z0-9_.\-])-{0,2}[A-Za-z_][A-Za-z0-9_.\-]*)"
    r"(?P<sep>\"?'?\s*(?:=|:)\s*|\"\s*:\s*|\s+(?=[\"'A-Za-z0-9/+_\-]))"
    r"(?:(?P<q>[\"'])(?P<qval>[^\"'\n]*)(?P=q)|(?P<val>[^\s\"',;}<]+))"
)
_AUTH_SCHEMES = frozenset({"bearer", "basic", "token", "digest"})


def _looks_like_aws_secret(token: str) -> bool:
    return any(c.islower() for c in token) and any(c.isupper() for c in token) and any(c.isdigit() for c in token)


class Redactor:
    """Scrubs secrets from text and structured data; remembers secret values it has seen."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self._known: set[str] = set()
        for value in known:
            self.remember(value)

    def remember(self, value: str) -> None:
        """Scrub `value` verbatim from every text from now on (ignored when too short to be a secret)."""
        value = value.strip()
        if len(value) >= 6 and value != MASK:
            self._known.add(value)

    def remember_env(self, env: Mapping[str, str]) -> None:
        """Remember the values of environment variables whose names say they are secret."""
        for name, value in env.items():
            # A path or a number under a secret-looking name (a socket, a key file) is not the secret.
            if not is_secret_key(name) or not isinstance(value, str):
                continue
            if not value.startswith(("/", "~", "./")) and not _is_plain_number(value):
                self.remember(value)

    def text(self, text: str) -> str:
        """`text` with every recognisable secret replaced by `[REDACTED]`."""
        if not text:
            return text
        # Longest first, so a value that contains another is not left half-masked.
        for value in sorted(self._known, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        for pattern, repl in _PATTERNS:
            text = pattern.sub(repl, text)
        text = _AWS_SECRET.sub(lambda m: MASK if _looks_like_aws_secret(m.group()) else m.group(), text)
        text = _QUERY.sub(lambda m: f"{m[1]}{m[2]}={MASK}" if is_secret_key(m[2]) else m.group(), text)
        return _ASSIGN.sub(self._assignment, text)

    def _assignment(self, m: re.Match[str]) -> str:
        key = m["key"].lstrip("-")
        quote = m["q"] or ""
        val = m["qval"] if quote else m["val"]
        if not is_secret_key(key) or not val or val.startswith(MASK) or _is_plain_number(val):
            return m.group()
        if val.lower() in _AUTH_SCHEMES:
            return m.group()  # `Authorization: Bearer [REDACTED]` is already done
        if m["sep"].strip() == "" and not m["key"].startswith("-"):
            # `name value` without `=`, `:` or a leading `--` is prose, not an assignment.
            return m.group()
        return f"{m['key']}{m['sep']}{quote}{MASK}{quote}"

    def data(self, obj: Any, *, under_secret: bool = False) -> Any:
        """A copy of JSON-like data with values under secret-looking keys masked and strings scrubbed.

        Call this before `text()` on anything else from the same run: the secret values it finds
        are remembered and scrubbed from the log tail and the summary too.
        """
        if isinstance(obj, Mapping):
            out: dict[str, Any] = {}
            for k, v in obj.items():
                out[str(k)] = self.data(v, under_secret=under_secret or is_secret_key(str(k)))
            return out
        if isinstance(obj, list | tuple):
            return [self.data(v, under_secret=under_secret) for v in obj]
        if under_secret and isinstance(obj, str | bytes) and obj:
            self.remember(obj.decode(errors="replace") if isinstance(obj, bytes) else obj)
            return MASK
        if isinstance(obj, str):
            return self.text(obj)
        return obj


def _is_plain_number(val: str) -> bool:
    try:
        float(val)
    except ValueError:
        return val.lower() in ("true", "false", "none", "null")
    return True


def redact_text(text: str, known: Iterable[str] = ()) -> str:
    """One-off scrub of `text` (see `Redactor` to share remembered secrets across texts)."""
    return Redactor(known).text(text)
