"""A pure reader for W&B's `.wandb` transaction log: bytes in, run events out.

The file is a 7-byte header (`:W&B`, uint16 LE 0xBEE1, version 0 or 1) then leveldb log framing in
32 KiB blocks; each logical record is a serialized `wandb_internal_pb2.Record`.

Events: `Row` for history (`_step` and `_timestamp` become its step and time and leave the values;
`_runtime` is dropped: it is `time - RunMeta.start_time`), `RunMeta`, `ConfigUpdate`, `Summary`,
`SystemStats`, `ConsoleOutput` and `Exit`. Other records are ignored.

Records are decoded here by protobuf field number, not with wandb's generated classes: importing
those loads all of wandb (~0.5 s, as long as reading 50k rows). History records, nearly the whole
file, are matched by a byte pattern that checks the record's full shape and pulls the
`(key, value_json)` pairs out in C (~1.3x faster than parsing them with wandb's classes); any other
shape goes through the field decoder. Summary records, one before every history row, are kept
undecoded until someone reads `Summary.values`.
"""

from __future__ import annotations

import functools
import json
import math
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.errors import FormatError, TargetError
from monitor.model import Row
from monitor.protowire import Fields, last, message, signed, timestamp, varint
from monitor.stepaxis import StepAxis
from monitor.wandb.resume import ResumeState

MAGIC = b":W&B\xe1\xbe"
VERSIONS = (0, 1)
HEADER_SIZE = 7
BLOCK_SIZE = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
# Record field numbers in wandb_internal.proto (wire-stable: old files must stay readable).
_HISTORY, _SUMMARY, _OUTPUT, _CONFIG, _STATS, _OUTPUT_RAW, _RUN, _EXIT = 2, 3, 4, 5, 7, 13, 17, 18
_KINDS = frozenset((_HISTORY, _SUMMARY, _OUTPUT, _CONFIG, _STATS, _OUTPUT_RAW, _RUN, _EXIT))

_CHUNK = struct.Struct("<IHB").unpack_from
_CRC_SEEDS = [zlib.crc32(bytes([t])) for t in range(256)]

# Byte patterns for items {key | nested_key+ (fields 1, 2), value_json (16)}. Their strings hold no
# ASCII control byte (JSON has none raw; a key with one falls back), so a string ends at the next tag.
_V = rb"(?:[\x80-\xff]{0,9}[\x00-\x7f])"  # a varint
_T = rb"[^\x00-\x1f]*"
_STEP = rb"(?:\x12[\x00-\x7f](?:\x08" + _V + rb")?)?"  # HistoryRecord.step
# The common case: one short key and value (single-byte lengths), at most _MAX_SHORT items a row.
_SHORT_ITEM = rb"\n[\x00-\x7f]([\n\x12][\x00-\x7f]" + _T + rb")\x82\x01[\x00-\x7f](" + _T + rb")"
_MAX_SHORT = 16  # each one more costs every row a little (the groups tuple); longer rows fall back
_SHORT_HISTORY = re.compile(_V + b"".join([rb"(?:" + _SHORT_ITEM] * _MAX_SHORT) + rb")?" * _MAX_SHORT + _STEP)
# Any length, nested keys.
_KEYS = rb"(?:[\n\x12]" + _V + _T + rb")+"
_ITEM = re.compile(rb"\n" + _V + rb"(" + _KEYS + rb")\x82\x01" + _V + rb"(" + _T + rb")")
_ITEMS = rb"((?:\n" + _V + _KEYS + rb"\x82\x01" + _V + _T + rb")*)"
_HISTORY_BODY = re.compile(_ITEMS + _STEP)
_SUMMARY_BODY = re.compile(_ITEMS)

_new_row = tuple.__new__  # Row(...) runs a Python-level __new__; this is 3x cheaper per row


@dataclass(frozen=True, slots=True)
class RunMeta:
    """Who the run is, from its `run` record."""

    run_id: str
    entity: str
    project: str
    display_name: str
    config: dict[str, Any]
    start_time: float | None
    host: str


@dataclass(frozen=True, slots=True)
class ConfigUpdate:
    """Config keys set after the run started (`run.config.update`)."""

    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Exit:
    """The run ended with this exit code."""

    exit_code: int


@dataclass(frozen=True, slots=True)
class SystemStats:
    """One sample of system metrics (`gpu.0.gpu`, `gpu.0.memoryAllocated`, `cpu`, ...)."""

    values: dict[str, float]
    time: float | None


@dataclass(frozen=True, slots=True)
class ConsoleOutput:
    """Complete console lines of one stream; a carriage return keeps what follows it, as a terminal does."""

    lines: tuple[str, ...]
    stream: str
    time: float | None


@dataclass(frozen=True)
class Summary:
    """One `feed`'s summary updates (serialized records, in order), decoded when `values` is first read.

    wandb-core writes a summary record before every history row, repeating the row, so decoding
    them eagerly would double the reader's cost for numbers the rows already carry.
    """

    records: tuple[bytes, ...]

    @functools.cached_property
    def values(self) -> dict[str, Any]:
        """Key → JSON value, later updates winning; keys removed in this feed are absent."""
        # Newest first, keeping the first value seen per key: an older copy of a record seen already
        # can then be skipped (wandb-core repeats its `_wandb.runtime` record verbatim).
        raw: dict[str, bytes] = {}
        gone: set[str] = set()
        seen: set[bytes] = set()
        for rec in reversed(self.records):
            body = _field_body(rec, _SUMMARY)
            if body in seen:
                continue
            if len(body) < 128:  # only short ones repeat; remembering long ones would cost memory
                seen.add(body)
            updates = _fast_items(body, _SUMMARY_BODY)
            if updates is None:
                fields = message(body)
                updates = _items(fields.get(1, ()))
                gone.update(k for k in _items(fields.get(2, ())) if k not in raw)
            for key in updates.keys() - raw.keys() - gone:
                raw[key] = updates[key]
        return {key: _json_value(value) for key, value in raw.items()}


WandbEvent = Row | RunMeta | ConfigUpdate | Summary | SystemStats | ConsoleOutput | Exit


class WandbLogReader:
    """Incremental `.wandb` reader: feed the file's bytes in any pieces, get the events of whole records."""

    @classmethod
    def resume(cls, state: ResumeState) -> WandbLogReader:
        """A reader that goes on at `state.offset` as if it had read what came before."""
        reader = cls(start_offset=state.offset)
        reader._axis = state.axis
        reader._last_step = state.last_step
        reader._console = dict(state.console)
        reader.records = state.records
        reader.bad_records = state.bad_records
        reader.skipped_bytes = state.skipped_bytes
        return reader

    def __init__(self, start_offset: int = 0) -> None:
        """`start_offset` 0 expects the header; N > 0 resumes at a record boundary (a `resume_offset`)."""
        self._header_ok = start_offset > 0
        self._pos = start_offset  # absolute offset of _buf[0], the next unread whole record
        self._fed = start_offset  # absolute offset just past the bytes fed so far
        self._buf = b""
        self._axis = StepAxis("_step")
        self._last_step = -1.0
        self._console: dict[str, str] = {}
        self.records = 0
        """Logical records read."""
        self.skipped_bytes = 0
        """Bytes dropped for a bad checksum or chunk header (the rest of their block)."""
        self.bad_records = 0
        """Records with a good checksum that still did not decode (skipped)."""

    @property
    def resume_offset(self) -> int:
        """Absolute offset of the next unread whole record: reopen the file there after a reconnect."""
        return self._pos

    @property
    def step_key(self) -> str:
        """The key the rows' step comes from (`train/global_step`, ..., or `_step`)."""
        return self._axis.key

    def feed(self, data: bytes) -> list[WandbEvent]:
        """Read the next bytes of the file; return the events of every record now complete."""
        events: list[WandbEvent] = []
        start = self._fed
        self._fed += len(data)
        if self._pos > start:  # the rest of a block's padding had not arrived before
            data = data[self._pos - start :]
        buf = self._buf + data if self._buf else bytes(data)
        if not self._header_ok:
            if len(buf) < HEADER_SIZE:
                self._buf = buf
                return events
            _check_header(buf)
            self._header_ok = True
            buf = buf[HEADER_SIZE:]
            self._pos += HEADER_SIZE
        base, n = self._pos, len(buf)
        off = rec_start = nrec = summary_at = 0
        blk_end = BLOCK_SIZE - base % BLOCK_SIZE
        lim = blk_end - CHUNK_HEADER
        parts: list[bytes] | None = None
        summaries: list[bytes] = []
        # Locals: this loop runs once per record, and attribute lookups would be a third of its cost.
        unpack, crc32, seeds, short, names = _CHUNK, zlib.crc32, _CRC_SEEDS, _SHORT_HISTORY.fullmatch, _KEY_NAMES
        append, other, axis = events.append, self._other, self._axis
        axis_key = axis.key
        while True:
            if off > lim:  # a block tail too short for a chunk header is padding
                off = blk_end
                blk_end += BLOCK_SIZE
                lim = blk_end - CHUNK_HEADER
                if parts is None:
                    rec_start = off
                continue
            if off + CHUNK_HEADER > n:
                break
            crc, ln, ty = unpack(buf, off)
            s = off + CHUNK_HEADER
            end = s + ln
            if end > n and end <= blk_end:
                break  # torn: the writer has not finished this chunk
            rec = buf[s:end]
            if ty != FULL or parts is not None or end > blk_end or crc32(rec, seeds[ty]) != crc:
                if end > blk_end or crc32(rec, seeds[ty]) != crc:
                    # A bad checksum or chunk header: skip the rest of the block and the record it was
                    # part of (what wandb-core's own reader does). Zero fill is padding, as in leveldb.
                    lost = s - CHUNK_HEADER if ty == 0 and ln == 0 and crc == 0 else blk_end
                    self.skipped_bytes += lost - (s - CHUNK_HEADER if parts is None else rec_start)
                    parts = None
                    off = lim + 1  # the top of the loop moves on to the next block
                    continue
                off = end
                if ty in (FULL, FIRST) and parts is not None:  # the record before never ended: drop it
                    self.skipped_bytes += s - CHUNK_HEADER - rec_start
                    parts = None
                if ty == FIRST:
                    parts = [rec]
                    rec_start = s - CHUNK_HEADER
                    continue
                if ty in (MIDDLE, LAST) and parts is not None:
                    parts.append(rec)
                    if ty == MIDDLE:
                        continue
                    rec = b"".join(parts)
                    parts = None
                elif ty != FULL:  # a fragment whose start was lost, or an unknown type: drop the chunk
                    self.skipped_bytes += end - (s - CHUNK_HEADER)
                    if parts is None:
                        rec_start = end
                    continue
            off = rec_start = end
            nrec += 1
            # Record.num (field 1) comes first; the tag after it says what the record is.
            try:
                i = 2 if rec[1] < 128 else 3 if rec[2] < 128 else 4 if rec[3] < 128 else 5
                tag = rec[i] if rec[0] == 0x08 else 0
            except IndexError:
                tag = 0
            if tag == 0x1A:  # a summary: kept undecoded
                summaries.append(rec)
                summary_at = len(events)
                continue
            if tag == 0x12 and (m := short(rec, i + 1)) is not None and (li := m.lastindex):
                g = m.groups()
                try:
                    values = dict(zip(map(names.__getitem__, g[0:li:2]), map(float, g[1:li:2]), strict=True))
                except ValueError:  # not all plain numbers: sort them out one by one
                    values = _numbers(zip(map(names.__getitem__, g[0:li:2]), g[1:li:2], strict=True))
                step = values.pop("_step", None)
                if step is not None and _BAD_KEY not in values:  # else the field decoder decides
                    self._last_step = step
                    t = values.pop("_timestamp", None)
                    values.pop("_runtime", None)
                    v = values.get(axis_key)
                    if v is not None and v == v:
                        axis.last = step = v
                    else:
                        step = axis.step(values, step)
                        axis_key = axis.key
                    append(_new_row(Row, (step, values, t)))
                    continue
            if other(rec, events):
                summaries.append(rec)
                summary_at = len(events)
            axis_key = axis.key
        if summaries:
            events.insert(summary_at, Summary(tuple(summaries)))
        self.records += nrec
        self._pos = base + rec_start
        self._buf = buf[rec_start:] if rec_start < n else b""
        return events

    def _other(self, rec: bytes, events: list[WandbEvent]) -> bool:
        """Decode a record the fast path did not take and append its event; True for a summary.

        Summaries are left to the caller, which gathers a feed's into one `Summary`, in order.
        """
        try:
            fields = message(rec)
            kind = next((k for k in fields if k in _KINDS), 0)
            if kind == _SUMMARY:
                return True
            if kind:
                self._decode(kind, fields[kind][-1], events)
        except (ValueError, IndexError, UnicodeDecodeError):
            self.bad_records += 1
        return False

    def _decode(self, kind: int, body: bytes, events: list[WandbEvent]) -> None:
        """Append the event of one record's body (`kind` is its Record field number)."""
        f = message(body)
        if kind == _HISTORY:
            values, step, t = history_values(body, f)
            if step is None:
                step = self._last_step + 1
            self._last_step = step
            events.append(Row(self._axis.step(values, step), values, t))
        elif kind == _RUN:
            config = _json_items(message(last(f, 4, b"")).get(1, ()))
            start = timestamp(f[17][-1]) if 17 in f else None
            run_id, entity, project, name, host = (last(f, k, b"").decode() for k in (1, 2, 3, 8, 13))
            events.append(RunMeta(run_id, entity, project, name, config, start, host))
        elif kind == _CONFIG and (values := _json_items(f.get(1, ()))):
            events.append(ConfigUpdate(values))
        elif kind == _EXIT:
            events.append(Exit(signed(last(f, 1))))
        elif kind == _STATS:
            stats = _numbers(_items(f.get(3, ())).items())
            events.append(SystemStats(stats, timestamp(f[2][-1]) if 2 in f else None))
        elif kind in (_OUTPUT_RAW, _OUTPUT):
            stream = "stderr" if last(f, 1) == 0 else "stdout"
            if lines := self._console_lines(stream, last(f, 3, b"").decode("utf-8", "replace")):
                events.append(ConsoleOutput(lines, stream, timestamp(f[2][-1]) if 2 in f else None))

    def _console_lines(self, stream: str, text: str) -> tuple[str, ...]:
        """The lines of `stream` that `text` completes; an unfinished last line waits for its newline."""
        pieces = (self._console.pop(stream, "") + text).replace("\r\n", "\n").split("\n")
        if pieces[-1]:
            self._console[stream] = pieces[-1]
        return tuple(p.rpartition("\r")[2] for p in pieces[:-1])


def history_values(body: bytes, fields: Fields | None = None) -> tuple[dict[str, float], float | None, float | None]:
    """A history record body's numeric values, its own step (None if it has none) and `_timestamp`.

    `_step` and `_timestamp` leave the values, and `_runtime` is dropped; `fields` is the body
    already decoded, if the caller has it.
    """
    f = message(body) if fields is None else fields
    items = _fast_items(body, _HISTORY_BODY)
    values = _numbers((items if items is not None else _items(f.get(1, ()))).items())
    step = values.pop("_step", None)
    if step is None and 2 in f:
        step = float(last(message(f[2][-1]), 1))
    t = values.pop("_timestamp", None)
    values.pop("_runtime", None)
    return values, step, t


def _check_header(buf: bytes) -> None:
    """Raise FormatError unless `buf` starts with a `.wandb` header of a version this reader knows."""
    if buf[:6] != MAGIC:
        raise FormatError(f"not a W&B transaction log (header {buf[:7]!r})")
    if buf[6] not in VERSIONS:
        raise FormatError(f"unsupported .wandb format version {buf[6]} (runwatch reads 0 and 1)")


def _field_body(rec: bytes, num: int) -> bytes:
    """The body of field `num` of a record, found by its position after `num` when it is there."""
    try:
        i = varint(rec, 1)[1] if rec[0] == 0x08 else 0
        if rec[i] == (num << 3 | 2):
            size, i = varint(rec, i + 1)
            if i + size <= len(rec):
                return rec[i : i + size]
    except IndexError:
        pass
    return last(message(rec), num, b"")


def _items(encoded: Any) -> dict[str, bytes]:
    """Encoded items → `{key or "/".join(nested_key): value_json}`."""
    out: dict[str, bytes] = {}
    for buf in encoded:
        f = message(buf)
        key = "/".join(p.decode() for p in f[2]) if 2 in f else last(f, 1, b"").decode()
        out[key] = last(f, 16, b"")
    return out


def _json_items(encoded: Any) -> dict[str, Any]:
    """Config items decoded, without wandb's own `_wandb` entry."""
    values = {k: _json_value(v) for k, v in _items(encoded).items()}
    values.pop("_wandb", None)
    return values


def _fast_items(body: bytes, shape: re.Pattern[bytes]) -> dict[str, bytes] | None:
    """`_items` by byte pattern for a body of plain items; None when it is not that shape."""
    m = shape.fullmatch(body)
    if m is None:
        return None
    out: dict[str, bytes] = {}
    for ks, raw in _ITEM.findall(body, *m.span(1)):
        if (key := _KEY_NAMES[ks]) == _BAD_KEY:
            return None
        out[key] = raw
    return out


_BAD_KEY = "\x00malformed"


class _KeyNames(dict[bytes, str]):
    """Encoded key fields (tags, lengths and text) → the key, decoded once per key, not once per row."""

    def __missing__(self, ks: bytes) -> str:
        if len(self) > 100_000:  # a run with this many distinct keys: forget the old ones
            self.clear()
        try:
            f = message(ks)
            parts = [p.decode() for p in f.get(2) or f.get(1, [])]
            ok = len(f) == 1 and parts and (2 in f or len(parts) == 1)  # one `key` or `nested_key`s
            name = "/".join(parts) if ok else _BAD_KEY
        except (ValueError, IndexError, UnicodeDecodeError):
            name = _BAD_KEY  # the byte pattern misread the item: the caller falls back
        self[ks] = name
        return name


_KEY_NAMES = _KeyNames()


def _numbers(pairs: Any) -> dict[str, float]:
    """The numeric items of `(key, value_json)` pairs (a repeated key: the last one counts)."""
    values: dict[str, float] = {}
    items = dict(pairs)
    for key, raw in items.items():
        if (v := _number(raw)) is not None:
            values[key] = v
        elif key == _BAD_KEY:
            values[key] = 0.0  # kept so that the caller sees the byte patterns misread an item
        elif key.endswith("/_type") and raw.strip() == b'"histogram"':
            # A histogram logged as nested items `K/_type`, `K/values`, `K/bins`: K as the norm it stands
            # for (per-layer gradients, detectors/layers.py).
            k = key[:-6]
            doc = {"_type": "histogram", **{p: _json_value(items.get(f"{k}/{p}", b"null")) for p in _HIST_PARTS}}
            if (v := histogram_norm(doc)) is not None:
                values[k] = v
    return values


_HIST_PARTS = ("values", "bins", "packedBins")


def _number(raw: bytes) -> float | None:
    """A JSON scalar as a float (NaN and Infinity included, booleans as 0/1), else None."""
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        v = json.loads(raw)
    except ValueError:
        return None
    if isinstance(v, dict):
        return histogram_norm(v)  # per-layer gradients (detectors/layers.py)
    return float(v) if isinstance(v, bool | int | float) else None


def histogram_norm(v: dict[str, Any]) -> float | None:
    """The L2 norm a W&B histogram (`wandb.watch`'s `gradients/*`, `parameters/*`) stands for, from its bin
    centres and counts: a per-layer gradient norm, 0.0 for a layer whose gradients are all zero.
    None for anything else."""
    if v.get("_type") != "histogram":
        return None
    counts, bins = v.get("values"), v.get("bins")
    packed = v.get("packedBins")
    if isinstance(packed, dict) and isinstance(counts, list):
        try:
            lo, size = float(packed["min"]), float(packed["size"])
        except (KeyError, TypeError, ValueError):
            return None
        bins = [lo + i * size for i in range(len(counts) + 1)]
    if not isinstance(counts, list) or not isinstance(bins, list) or len(bins) != len(counts) + 1 or not counts:
        return None
    try:
        full = [i for i, c in enumerate(counts) if float(c) > 0]
        if len(full) == 1 and float(bins[full[0]]) <= 0.0 <= float(bins[full[0] + 1]):
            return 0.0  # every value in the one bin around 0: the histogram of an all-zero tensor
        total = 0.0
        for i, c in enumerate(counts):
            mid = 0.5 * (float(bins[i]) + float(bins[i + 1]))
            total += float(c) * mid * mid
    except (TypeError, ValueError):
        return None
    return math.sqrt(total) if total == total else None


def _json_value(raw: bytes) -> Any:
    """A `value_json` decoded (NaN and Infinity included); text that is not JSON stays text."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def read_wandb_file(path: str | Path) -> tuple[list[WandbEvent], WandbLogReader]:
    """Read a whole `.wandb` file as it is now (a torn last record is left for later)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise TargetError(f"{p}: cannot read ({e.strerror or e})") from None
    reader = WandbLogReader()
    return reader.feed(data), reader


def find_wandb_file(path: str | Path) -> Path:
    """The `.wandb` file of a file, run directory, `wandb/` folder or `latest-run` link (newest run)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise TargetError(f"{p}: no such file or directory")
    if p.is_file():
        return p
    if not _run_files(p) and (p / "wandb").is_dir():  # a project folder holding `wandb/`
        p = p / "wandb"
    files = _run_files(p)
    if not files:
        latest = p / "latest-run"
        # Run folders are `[offline-]run-YYYYMMDD_HHMMSS-ID`: by that time, the last is the newest.
        runs = sorted((d for d in p.glob("*run-*") if d.is_dir()), key=lambda d: d.name.partition("run-")[2])
        for d in [latest] if latest.is_dir() else reversed(runs):
            if files := _run_files(d):
                break
    if not files:
        raise TargetError(f"{path}: no .wandb run file there")
    return max(files, key=lambda f: f.stat().st_mtime)


def _run_files(d: Path) -> list[Path]:
    """The `.wandb` files directly in `d`."""
    return [f for f in d.glob("*.wandb") if f.is_file()]
