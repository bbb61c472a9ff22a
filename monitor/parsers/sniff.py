"""Is this a text log at all? A look at the first bytes (or characters) before any parser runs.

An executable, an archive or a model checkpoint handed to runwatch by mistake must be refused in one
line, not read as thousands of `key=value` pairs nor reported healthy.
"""

from __future__ import annotations

import re

#: How much of the start of a file the sniff looks at.
SNIFF_BYTES = 4096

#: Signatures of common binary files people might point runwatch at by mistake.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x7fELF", "an ELF executable or shared library"),
    (b"MZ", "a Windows executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "a Mach-O or Java class file"),
    (b"PK\x03\x04", "a zip archive (or a PyTorch checkpoint)"),
    (b"\x1f\x8b", "a gzip file"),
    (b"BZh", "a bzip2 file"),
    (b"\xfd7zXZ\x00", "an xz file"),
    (b"(\xb5/\xfd", "a zstd file"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF", "a PDF document"),
    (b"\x93NUMPY", "a NumPy array"),
    (b"\x89HDF", "an HDF5 file"),
    (b"SQLite format 3", "an SQLite database"),
    (b"\x80\x02", "a Python pickle"),
    (b"\x80\x04", "a Python pickle"),
    (b"\x80\x05", "a Python pickle"),
)

# C0 controls other than tab, newline, carriage return, form feed, backspace (Keras redraws) and ESC.
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (8, 9, 10, 12, 13, 27)) + b"\x7f"
_CONTROL_CHARS = {chr(b) for b in _CONTROL_BYTES}
#: Above this share of control bytes and undecodable sequences, the data is not text.
_MAX_ODD = 0.05
#: A run of NUL bytes this long inside text is a hole, not data: a log truncated in place
#: (logrotate's copytruncate) while its writer kept its offset, or a preallocated file, reads back
#: as NULs up to where the writer went on. Such a log is still text; its holes are dropped.
_HOLE = b"\x00" * 16
_HOLES = re.compile(rb"\x00{16,}")


def drop_holes(data: bytes) -> bytes:
    """`data` without its runs of 16 or more NUL bytes (holes); single NULs stay (they may be binary)."""
    return _HOLES.sub(b"", data) if _HOLE in data else data


def log_text(data: bytes) -> str:
    """A log's bytes as its text: holes dropped, bytes that are not UTF-8 replaced (never fatal)."""
    return drop_holes(data).decode("utf-8", "replace")


def sniff_binary(data: bytes) -> str | None:
    """Why the first bytes of a file show it is not a text log ("binary data: an ELF executable..."),
    or None when it may be one. Empty data is not binary: it holds no metrics (yet)."""
    if not data:
        return None
    for magic, what in _MAGIC:
        # two-letter signatures are also words: they count only beside a NUL byte
        if data.startswith(magic) and (len(magic) > 3 or b"\x00" in data[:64] or magic[0] >= 0x80):
            return f"binary data: {what}"
    head = drop_holes(data[:SNIFF_BYTES])
    if not head:
        return None  # nothing but a hole so far: no metrics (yet), and not binary
    odd = sum(head.count(b) for b in _CONTROL_BYTES)
    if odd > _MAX_ODD * len(head):
        return "binary data: control bytes"
    # a multi-byte character cut at the end of the window is not a decoding error
    text = head.decode("utf-8", "replace") if len(head) < SNIFF_BYTES else head[:-4].decode("utf-8", "replace")
    bad = text.count("\ufffd")
    if bad > _MAX_ODD * max(1, len(text)):
        return "binary data: not UTF-8 text"
    return None


def sniff_binary_text(head: list[str]) -> str | None:
    """`sniff_binary` for a source that only has decoded lines (invalid UTF-8 already replaced by U+FFFD)."""
    text = "".join(head)[:SNIFF_BYTES]
    if not text:
        return None
    odd = sum(1 for c in text if c in _CONTROL_CHARS) + text.count("\ufffd")
    if odd > _MAX_ODD * len(text):
        return "binary data: control bytes or text that is not UTF-8"
    return None
