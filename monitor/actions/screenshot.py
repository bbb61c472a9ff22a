"""An SVG screenshot of the terminal UI with the secrets on screen masked before it is saved.

Textual's `export_screenshot()` writes one `<text>` element per styled run of a screen row, with
spaces as `&#160;`. A secret can straddle runs (`api_key:` bold, the value plain), so each row is put
back together, redacted as one line, and the masked characters are overwritten in place with the
same number of characters: the layout stays as it was, the secret does not.
"""

from __future__ import annotations

import html
import re

from monitor.outward import env_redactor
from monitor.redact import MASK, Redactor
from monitor.textsafe import safe_text

_TEXT = re.compile(r"(<text\b[^>]*?clip-path=\"url\(#([^)\"]+)\)\"[^>]*>)([^<]*)(</text>)")
_ANY_TEXT = re.compile(r"(<text\b[^>]*>)([^<]*)(</text>)")


def redact_screenshot(svg: str, redactor: Redactor | None = None) -> str:
    """`svg` with every secret the redactor finds on a screen row masked, and no control characters."""
    red = redactor or env_redactor()
    rows: dict[str, list[re.Match[str]]] = {}
    for m in _TEXT.finditer(svg):
        rows.setdefault(m.group(2), []).append(m)
    new: dict[int, str] = {}
    for parts in rows.values():
        texts = [html.unescape(m.group(3)) for m in parts]
        line = "".join(texts)
        spans = red.spans(line)
        if not spans:
            continue
        masked = list(line)
        for start, end in spans:
            fill = MASK if end - start >= len(MASK) else "*" * (end - start)
            masked[start:end] = fill.ljust(end - start, "*")
        at = 0
        for m, t in zip(parts, texts, strict=True):
            piece = "".join(masked[at : at + len(t)])
            at += len(t)
            if piece != t:
                new[m.start()] = m.group(1) + _escape(piece) + m.group(4)
    out: list[str] = []
    at = 0
    for m in _TEXT.finditer(svg):
        if m.start() in new:
            out.append(svg[at : m.start()])
            out.append(new[m.start()])
            at = m.end()
    out.append(svg[at:])
    # A second pass over whatever text is left (titles, elements without a row): the plain redactor.
    result = _ANY_TEXT.sub(lambda m: m.group(1) + _rescrub(m.group(2), red) + m.group(3), "".join(out))
    return safe_text(result, keep_newlines=True)


def _rescrub(escaped: str, red: Redactor) -> str:
    text = html.unescape(escaped)
    scrubbed = red.text(text)
    return escaped if scrubbed == text else _escape(scrubbed)


def _escape(text: str) -> str:
    return html.escape(text, quote=False).replace(" ", "&#160;").replace("\u00a0", "&#160;")
