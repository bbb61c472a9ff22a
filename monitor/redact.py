"""Secrets out of everything runwatch shows, prints, writes or sends.

Rules find where secrets are (character spans), then each span becomes `[REDACTED]`:

- credentials recognisable by their shape wherever they appear: W&B (40 hex, `wandb_v1_…`), OpenAI,
  Anthropic, Hugging Face, AWS, GitHub, GitLab and Slack tokens, private-key blocks (with or without
  their END line), long random-looking base64;
- credentials recognisable by their place: passwords in URLs (whatever they hold), `Authorization:`
  and `Bearer` values, `curl -u user:password`, `mysql -pPASS`, `?token=` query parameters;
- values under names that say they are secret (`api_key`, `HF_TOKEN`, `db_password`): in structured
  config, in `key=value` / `key: value` text, and after `--password VALUE` / `--token=VALUE` flags,
  even where the previous flag would have taken `--password` as its own value.

Values found under secret names, and the values of secret-named environment variables, are also
remembered and scrubbed verbatim from every later text, so a password that appears in the config and
again on a logged command line goes both times. No-break spaces match as spaces (Textual draws
spaces as U+00A0 in its SVG screenshots). Over-redacting is the safe side: a colleague can live with
a `[REDACTED]` git hash. Every rule is linear in the text's length.
"""

from __future__ import annotations

import bisect
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


_SPACES = str.maketrans(
    {c: " " for c in "\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"}
)
"""No-break and other Unicode spaces, matched as spaces (Textual draws spaces as U+00A0 in SVG screenshots)."""

# Credentials recognisable by their shape: the whole match is the secret.
_TOKENS = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"sk-ant-[A-Za-z0-9_\-]{8,}"
    r"|sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}"
    r"|hf_[A-Za-z0-9]{16,}|api_org_[A-Za-z0-9]{16,}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|gl[a-z]{1,6}-[A-Za-z0-9_\-]{16,}"
    r"|xox[abposre]-[A-Za-z0-9\-]{10,}|xapp-[A-Za-z0-9\-]{10,}"
    r"|(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}(?![A-Za-z0-9])"
    r"|wandb_v\d+_[A-Za-z0-9_\-]{8,}"
    r"|(?:local-)?[0-9a-fA-F]{40}(?![A-Za-z0-9_])"
    r")"
)
_SLACK_HOOK = re.compile(r"hooks\.slack\.com/(?:services|workflows)/([A-Za-z0-9/_\-]+)")
# `scheme://user:password@host`: the password is everything up to the last `@` that a host follows,
# so a password holding `/`, `:` or `@` goes whole.
_URL_PASSWORD = re.compile(
    r"(?i)(?<![a-z0-9+.\-])[a-z][a-z0-9+.\-]{0,30}://[^\s/:@]{0,256}:(\S{1,512})"
    r"@(?=[A-Za-z0-9\[][A-Za-z0-9.\-\[\]:]{0,255}(?:[/?#\s\"'<>)\],;`]|$))"
)
# `Authorization: Bearer x`, `Proxy-Authorization: Basic x` (the scheme word stays visible).
_AUTH_HEADER = re.compile(
    r"(?i)(?<![A-Za-z0-9_\-])(?:proxy-)?authorization[\"']?\s{0,8}[:=]\s{0,8}[\"']?"
    r"(?:(?:bearer|basic|token|digest)\s{1,8})?([^\s\"',;]+)"
)
_BEARER = re.compile(r"(?i)(?<![A-Za-z0-9_\-])bearer\s{1,8}([A-Za-z0-9\-._~+/]{8,}=*)")
# `token abc123…` in prose is a secret only when it looks like one (not `token embeddings`).
_TOKEN_WORD = re.compile(r"(?i)(?<![A-Za-z0-9_\-])token\s{1,8}([A-Za-z0-9\-._~+/]{8,}=*)")
_API_KEY_HEADER = re.compile(r"(?i)(?<![A-Za-z0-9_\-])(?:x-api-key|api-key)[\"']?\s{0,8}[:=]\s{0,8}[\"']?([^\s\"',;]+)")
# `curl -u user:password`, `--user=user:password`, `-uuser:password`: the user stays visible.
_USER_PASS = re.compile(r"(?<![^\s\"'=])(?:-u[ \t]*|--user(?:=|[ \t]+))[\"']?[^\s:\"']{1,256}:([^\s\"']+)")
# `mysql -pPASS` (and mysqldump, mysqladmin, mariadb…): `-p` glued to its value, on the same line.
_MYSQL = re.compile(r"(?i)(?<![A-Za-z0-9_\-])(?:mysql|mariadb)[a-z\-]{0,12}(?![A-Za-z0-9_])")
_GLUED_P = re.compile(r"(?<=[ \t])-p([^\s\"']+)")
# Private keys: BEGIN up to END when there is one, else the key body that follows.
_PEM_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_BODY = re.compile(
    r"(?:[ \t]+[A-Za-z0-9+/]{16,}={0,2}(?![^\s\\])"
    r"|(?:[ \t]*(?:\r?\n|(?:\\r)?\\n))+[ \t]*(?:[A-Za-z0-9+/]{4,}={0,2}|(?:Proc-Type|DEK-Info|Comment):[^\n]{0,200})"
    r"(?=[ \t]*(?:\r?\n|(?:\\r)?\\n|[\"',]|$)))*"
)
_PEM_SPAN = 1 << 16
# Long random-looking base64 standing alone: an AWS secret key, a key body's line shown on its own.
_BLOB = re.compile(r"(?<![A-Za-z0-9/+=_\-])[A-Za-z0-9/+]{40,}={0,2}(?![A-Za-z0-9/+=_\-])")
# `?token=x` and `&sig=x` in URLs, judged by the parameter's name.
_QUERY = re.compile(r"([?&;])([A-Za-z0-9_.\-]{1,128})=(?=[^&\s#\"'<>])")
# `--name value`, `--name=value`, `-name value`; only the name and separator are consumed, so a flag
# whose value is another flag (`--lr --password x`) does not hide the next one.
_FLAG = re.compile(r"(?<![^\s\"'(\[{,;=])(-{1,2}[A-Za-z][A-Za-z0-9_.\-]{0,127})(?:=|[ \t]+)")
# `NAME=value`, `name: value`, `"name": "value"`.
_ASSIGN = re.compile(r"(?<![A-Za-z0-9_.\-])([A-Za-z_][A-Za-z0-9_.\-]{0,127})[\"']?[ \t]{0,8}[=:][ \t]{0,8}")
_VALUE = re.compile(r"\"([^\"\n]*)\"|'([^'\n]*)'|([^\s\"',;}<>)\]]+)")
_QUERY_VALUE = re.compile(r"[^&\s#\"'<>]+")
_AUTH_SCHEMES = frozenset({"bearer", "basic", "token", "digest"})
# A value under one of these names is secret even when it is a number (`--password 123456`).
_STRONG = frozenset({"password", "passwd", "pwd", "pass", "passphrase", "secret", "token", "apikey"})
_LOOKS_LIKE_FLAG = re.compile(r"-{1,2}[A-Za-z][A-Za-z0-9_\-]*")

_LOWER_RUN = re.compile(r"[a-z]{4,}")

Span = tuple[int, int]


def _looks_random(token: str) -> bool:
    """Mixed case and digits without runs of lowercase words: a key body, not a path or an identifier."""
    if not (any(c.islower() for c in token) and any(c.isupper() for c in token) and any(c.isdigit() for c in token)):
        return False
    in_words = sum(len(run) for run in _LOWER_RUN.findall(token))
    return in_words < 0.35 * len(token)


def _value_span(text: str, pos: int) -> Span | None:
    m = _VALUE.match(text, pos)
    if m is None:
        return None
    for g in (1, 2, 3):
        if m.group(g) is not None:
            return (m.start(g), m.end(g)) if m.end(g) > m.start(g) else None
    return None  # pragma: no cover - one group always matched


class Redactor:
    """Scrubs secrets from text and structured data; remembers secret values it has seen."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self._known: set[str] = set()
        self._cache: dict[str, str] = {}
        for value in known:
            self.remember(value)

    def remember(self, value: str) -> None:
        """Scrub `value` verbatim from every text from now on (ignored when too short to be a secret)."""
        value = value.strip()
        if len(value) >= 6 and value not in MASK and MASK not in value and value not in self._known:
            self._known.add(value)
            self._cache.clear()

    @property
    def known(self) -> tuple[str, ...]:
        """The secret values remembered so far (to hand on to another redactor)."""
        return tuple(sorted(self._known))

    def remember_env(self, env: Mapping[str, str]) -> None:
        """Remember the values of environment variables whose names say they are secret."""
        for name, value in env.items():
            # A path or a number under a secret-looking name (a socket, a key file) is not the secret.
            if not is_secret_key(name) or not isinstance(value, str):
                continue
            if not value.startswith(("/", "~", "./")) and not _is_plain_number(value):
                self.remember(value)

    def spans(self, text: str) -> list[Span]:
        """Where the secrets in `text` are: sorted, merged (start, end) character ranges."""
        norm = text.translate(_SPACES)
        found: list[Span] = []
        for value in self._known:
            start = norm.find(value)
            while start >= 0:
                found.append((start, start + len(value)))
                start = norm.find(value, start + len(value))
        for m in _TOKENS.finditer(norm):
            found.append(m.span())
        for pattern in (_SLACK_HOOK, _URL_PASSWORD, _AUTH_HEADER, _BEARER, _API_KEY_HEADER, _USER_PASS):
            for m in pattern.finditer(norm):
                found.append(m.span(1))
        for m in _TOKEN_WORD.finditer(norm):
            value = m.group(1)
            if len(value) >= 20 or (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
                found.append(m.span(1))
        found += _private_keys(norm)
        found += _mysql_passwords(norm)
        for m in _BLOB.finditer(norm):
            if _looks_random(m.group()):
                found.append(m.span())
        covered = -1
        for m in _QUERY.finditer(norm):
            if m.start() >= covered and is_secret_key(m[2]):
                found.append(_QUERY_VALUE.match(norm, m.end()).span())  # type: ignore[union-attr]
                covered = found[-1][1]
        found += _named_values(norm, _FLAG, flags=True)
        found += _named_values(norm, _ASSIGN, flags=False)
        return _merge(found, norm)

    def text(self, text: str) -> str:
        """`text` with every recognisable secret replaced by `[REDACTED]`."""
        if not text:
            return text
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        result = text
        # A mask can make a neighbour match a rule it did not match before (`?token=` + a masked key
        # + more): go again until nothing changes, so redacting redacted text changes nothing.
        for _ in range(8):
            spans = self.spans(result)
            if not spans:
                break
            masked = _apply(result, spans)
            if masked == result:
                break
            result = masked
        if len(text) <= 1024:  # log lines and names; bounded: at most ~8 MB held
            if len(self._cache) >= 4096:
                self._cache.clear()
            self._cache[text] = result
        return result

    def data(self, obj: Any, *, under_secret: bool = False) -> Any:
        """A copy of JSON-like data with values under secret-looking keys masked and strings scrubbed.

        Call this before `text()` on anything else from the same run: the secret values it finds
        are remembered and scrubbed from the log tail and the summary too.
        """
        if isinstance(obj, Mapping):
            out: dict[str, Any] = {}
            for k, v in obj.items():
                out[self.text(str(k))] = self.data(v, under_secret=under_secret or is_secret_key(str(k)))
            return out
        if isinstance(obj, list | tuple):
            return [self.data(v, under_secret=under_secret) for v in obj]
        if under_secret and isinstance(obj, str | bytes) and obj:
            self.remember(obj.decode(errors="replace") if isinstance(obj, bytes) else obj)
            return MASK
        if isinstance(obj, str):
            return self.text(obj)
        return obj


def _apply(text: str, spans: list[Span]) -> str:
    out: list[str] = []
    at = 0
    for start, end in spans:
        out.append(text[at:start])
        out.append(MASK)
        at = end
    out.append(text[at:])
    return "".join(out)


def _private_keys(text: str) -> list[Span]:
    if "PRIVATE KEY" not in text:
        return []
    ends = [m.end() for m in _PEM_END.finditer(text)]
    out: list[Span] = []
    covered = -1
    for m in _PEM_BEGIN.finditer(text):
        if m.start() < covered:
            continue
        i = bisect.bisect_left(ends, m.end())
        with_end = i < len(ends) and ends[i] - m.end() <= _PEM_SPAN
        stop = ends[i] if with_end else _PEM_BODY.match(text, m.end()).end()  # type: ignore[union-attr]
        out.append((m.start(), stop))
        covered = stop
    return out


def _mysql_passwords(text: str) -> list[Span]:
    """`-pPASS` on a line that runs a MySQL client (elsewhere `-pthread` is not a password)."""
    out: list[Span] = []
    line_end = -1
    for m in _MYSQL.finditer(text):
        if m.start() < line_end:
            continue
        line_end = text.find("\n", m.end())
        if line_end < 0:
            line_end = len(text)
        out += [g.span(1) for g in _GLUED_P.finditer(text, m.end(), line_end)]
    return out


def _named_values(text: str, pattern: re.Pattern[str], *, flags: bool) -> list[Span]:
    """Values that follow a secret-looking name (`--token x`, `password=x`, `"api_key": "x"`)."""
    out: list[Span] = []
    covered = -1
    for m in pattern.finditer(text):
        if m.start() < covered:
            continue  # inside a value already masked: no need to look again (keeps this linear)
        name = m.group(1).lstrip("-")
        if not is_secret_key(name):
            continue
        if not flags and text[m.start() - 1 : m.start()] in ("?", "&"):
            continue  # a URL's query parameter: `_QUERY` masks it up to the next `&`
        span = _value_span(text, m.end())
        if span is None:
            continue
        val = text[span[0] : span[1]]
        if val.startswith(MASK) or val.lower() in _AUTH_SCHEMES:
            continue  # already done, or `Authorization: Bearer x` (its own pattern masks x)
        if flags and val.startswith("-") and _LOOKS_LIKE_FLAG.fullmatch(val):
            continue  # `--password --lr 3`: this flag has no value here
        if flags and not m.group(1).startswith("--") and not name.islower():
            continue  # `-pS3cret` is a glued value (see `_MYSQL_P`), not a flag named `pS3cret`
        words = [w for w in _WORD_SPLIT.split(name) if w]
        strong = bool(words) and words[-1].lower() in _STRONG
        if _is_plain_number(val) and not (strong and val.strip("-").isdigit()):
            continue
        out.append(span)
        covered = span[1]
    return out


def _merge(spans: list[Span], text: str) -> list[Span]:
    """Sorted, non-overlapping spans; one that cuts into an existing `[REDACTED]` takes all of it."""
    if not spans:
        return []
    mask_starts = [m.start() for m in re.finditer(re.escape(MASK), text)] if MASK in text else []
    n = len(MASK)
    grown = []
    for s, e in spans:
        if s >= e:
            continue
        # Masks overlapping [s, e) start in (s - n, e): at most the first and the last of them stick out.
        i = bisect.bisect_right(mask_starts, s - n)
        j = bisect.bisect_left(mask_starts, e)
        if i < j:
            s, e = min(s, mask_starts[i]), max(e, mask_starts[j - 1] + n)
        grown.append((s, e))
    grown.sort()
    out: list[Span] = []
    for s, e in grown:
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _is_plain_number(val: str) -> bool:
    try:
        float(val)
    except ValueError:
        return val.lower() in ("true", "false", "none", "null")
    return True


def redact_text(text: str, known: Iterable[str] = ()) -> str:
    """One-off scrub of `text` (see `Redactor` to share remembered secrets across texts)."""
    return Redactor(known).text(text)
