"""Outside text made harmless for a terminal: control characters, escape sequences and bidi overrides shown visibly.

Log lines, file and directory names, metric keys, W&B run names and command lines come from whoever
wrote them. Printed raw, `ESC ] 52 ; c ; …` writes the clipboard, `ESC ] 0 ; …` retitles the pane,
`ESC [ 2 J` wipes the screen, and U+202E makes `gnp.exe` read as `exe.png`. `safe_text()` is the one
place that decides what is safe:

- C0 controls (except tab) become their Control Pictures glyphs (`\\x1b` → `␛`, `\\x07` → `␇`), DEL
  becomes `␡`, so an escape sequence shows as text (`␛]0;title␇`) and does nothing;
- C1 controls (U+0080–U+009F, which some terminals obey like `ESC` + a letter) show as `␛` and the
  7-bit letter (`\\x9b` → `␛[`);
- bidi embeddings, overrides and isolates and the Unicode line/paragraph separators show as
  `<U+202E>`;
- lone surrogates (undecodable bytes kept by `surrogateescape`) become U+FFFD, so printing never raises;
- a complete colour sequence (`ESC [ 1 ; 31 m`) is dropped: it is the common harmless case in logs and
  showing it would only be noise.

The result is idempotent (`safe_text(safe_text(x)) == safe_text(x)`), linear in the input and keeps
every other character, so a sanitised name still reads as the name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SGR = re.compile("\x1b\\[[0-9;:]{0,64}m")
_BIDI = (0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))


def _visible(c: int) -> str:
    if c < 0x20:
        return chr(0x2400 + c)  # ␀ … ␟
    if c == 0x7F:
        return "\u2421"  # ␡
    if c <= 0x9F:
        return "\u241b" + chr(c - 0x40)  # C1 as its 7-bit ESC form: \x9b -> ␛[
    if 0xD800 <= c <= 0xDFFF:
        return "\ufffd"
    return f"<U+{c:04X}>"


_TABLE = {c: _visible(c) for c in (*range(0x00, 0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0), *_BIDI)}
_TABLE.update({c: "\ufffd" for c in range(0xD800, 0xE000)})
_TABLE_KEEP_NL = {c: v for c, v in _TABLE.items() if c != 0x0A}
_UNSAFE = re.compile("[" + "".join(re.escape(chr(c)) for c in _TABLE) + "]")
_UNSAFE_KEEP_NL = re.compile("[" + "".join(re.escape(chr(c)) for c in _TABLE_KEEP_NL) + "]")


def safe_text(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with nothing a terminal would act on; newlines are kept only with `keep_newlines`.

    A `\\r` before a kept `\\n` (CRLF) is dropped; any other `\\r` is shown as `␍`.
    """
    if text.isprintable():
        return text  # the common case, checked in C
    if "\x1b[" in text:
        text = _SGR.sub("", text)
    if keep_newlines:
        return text.replace("\r\n", "\n").translate(_TABLE_KEEP_NL)
    return text.translate(_TABLE)


def safe_lines(lines: Iterable[str]) -> list[str]:
    """`safe_text` of each line (a line's own newline characters are shown, not kept)."""
    return [safe_text(line) for line in lines]


def is_safe(text: str, *, keep_newlines: bool = False) -> bool:
    """Whether `text` holds nothing `safe_text` would change (used by tests and assertions)."""
    return (_UNSAFE_KEEP_NL if keep_newlines else _UNSAFE).search(text) is None
