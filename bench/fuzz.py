"""Mutated-line campaign: every registered parser, then the detectors, against damaged and hostile lines.

    python bench/fuzz.py                    # >= 100,000 mutated lines per parser (minutes)
    python bench/fuzz.py --quick            # 3,000 per parser (seconds), for a smoke run
    python bench/fuzz.py --parsers jsonl,kv --lines 20000 --save /tmp/repro

Each parser runs in a fresh process (so its peak memory is its own). Lines are seeded from verbatim
lines of each format (and, one time in ten, of another format), then mutated: bit flips,
truncation, huge numbers (400 digits, 1e999, -nan), deeply nested JSON, 1 MB lines, NUL bytes,
invalid UTF-8, CRLF and lone CR, quotes, terminal escapes. Each line goes through `feed_lines()`
exactly as a source feeds it; the rows go on into a `RunAnalysis` (store, detectors, judge).
Document formats (`trainer_state.json`, Megatron golden values) get whole documents with one
mutated line each.

Printed per parser: lines tried, crashes (exception type, where it was raised, how many times, one
reproducer), hangs (a line that took longer than `--hang` seconds; a line still running after
`--kill` seconds is interrupted), the slowest line, and peak RSS. `--save DIR` writes each
reproducer's full text to a file. Exit status 0 whatever was found: this reports, it does not judge.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import random
import resource
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Verbatim lines of each format (as in tests/test_parsers.py, from the frameworks' own output); a
# format not listed here is seeded from its parser's own `sample`.
SEEDS: dict[str, list[str]] = {
    "megatron": [
        " iteration    29020/  311541 | consumed samples:     10698064 | elapsed time per iteration (ms): 22306.6 |"
        " learning rate: 9.850E-05 | global batch size:  1024 | lm loss: 2.775923E+00 | loss scale: 32768.0 |"
        " grad norm: 0.000 | num zeros: 0.0 | number of skipped iterations:   0 | number of nan iterations:   0 |",
        " validation loss at iteration 7000 | lm loss value: 7.174200E+00 | lm loss PPL: 1.305315E+03 |",
        "[default7]: iteration    31219/  115311 | consumed samples:     47778736 | elapsed time per iteration (s):"
        " 106.36 | learning rate: 5.279E-05 | global batch size:  2048 | lm loss: 5.098124E+00 | grad norm: 960.351 |",
    ],
    "hf-trainer": [
        "{'loss': 0.166, 'grad_norm': 0.5529286861419678, 'learning_rate': 0.0, 'epoch': 0.83}",
        "{'eval_loss': 0.15505941212177277, 'eval_runtime': 36.07, 'eval_samples_per_second': 1.691, 'epoch': 5.0}",
    ],
    "modded-nanogpt": [
        "step:125/6200 train_loss:5.3717 train_time:24562ms step_avg:213.58ms",
        "step:125/6200 val_loss:5.2017 train_time:24564ms step_avg:213.60ms",
    ],
    "nanogpt": ["step 0: train loss 4.2367, val loss 4.2475", "iter 395: loss 3.5382, time 1447.95ms, mfu 0.01%"],
    "llmc": ["s:0 tel:11.0092", "s:1 trl:10.9598 lr:0.000002 norm:15.24"],
    "wordlm": [
        "| epoch   1 |   200/ 2983 batches | lr 20.0000 | ms/batch 11.77 | loss  9.09 | ppl  8835.03",
        "| end of epoch   1 | time: 36.35s | valid loss  5.61 | valid ppl   273.43",
    ],
    "deepspeed": [
        "[2023-04-18 01:46:52,554] [INFO] [loss_scaler.py:188:update_scale] [deepspeed] OVERFLOW! Rank 0 Skipping"
        " step. Attempted loss scale: 65536, but hysteresis is 2. Reducing hysteresis to 1",
        "[2022-11-24 01:46:51,726] [INFO] [logging.py:68:log_dist] [Rank 0] step=520, skipped=0, lr=[5e-05, 5e-05],"
        " mom=[(0.9, 0.999), (0.9, 0.999)]",
        "'step':10, 'ppl': 61.772465037680455, 'seq_len': 264, 'consume layer-tokens': 110912",
        "ppl: 4998.29638671875",
    ],
    "csv": ["epoch,step,train_loss,val_loss,lr", "0,49,7.628580570220947,,0.001", "1,98,5.25,4.9,0.0009"],
    "jsonl": ['{"step": 12, "loss": 2.345, "lr": 0.0003, "grad_norm": 1.25}', '{"_step": 3, "val/loss": 2.9}'],
    "generic": ["step=100 loss=2.345 lr=3e-4 grad_norm=1.2", "iter 200: loss: 2.10 | lr: 0.0003 | tokens/s: 12345"],
    "hf-trainer-state": [
        "{",
        '  "global_step": 1000,',
        '  "log_history": [',
        '    {"epoch": 0.04, "grad_norm": 1.5, "learning_rate": 0.0001, "loss": 4.3097, "step": 1},',
        '    {"eval_loss": 0.32, "eval_runtime": 1728.016, "step": 1000}',
        "  ],",
        '  "max_steps": 1000',
        "}",
    ],
    "megatron-golden": [
        "{",
        '    "lm loss": {"start_step": 1, "end_step": 51000, "step_interval": 5,',
        '        "values": {"1": 12.95636, "50860": 2.07335, "50865": "nan"}},',
        '    "iteration-time": {"start_step": 1, "end_step": 51000, "step_interval": 5, "values": {"1": 0.5}}',
        "}",
    ],
}

_NUMBERS = ["9" * 400, "-" + "9" * 400, "1e999", "-1e308", "nan", "-nan", "inf", "-inf", "NaN", "1e-400",
            "0x7fffffff", "1_000", "１２３", "1" * 5000, "-0", "4.2e+", "."]  # fmt: skip
_ESCAPES = ["\x1b]52;c;cHduZWQ=\x07", "\x1b]0;title\x1b\\", "\x1b[2J", "\u202e", "\x9b31m"]
MUTATIONS = ("bitflip", "truncate", "number", "deep_json", "mega_line", "nul", "bad_utf8", "crlf", "quotes",
             "escape", "splice", "repeat_token", "empty")  # fmt: skip
_WEIGHTS = (20, 12, 16, 2, 0.05, 6, 8, 6, 6, 4, 8, 6, 2)


def seeds_for(name: str, cls: Any) -> list[str]:
    """The lines a format's campaign mutates: the curated ones, else the lines of the parser's sample."""
    return SEEDS.get(name) or [x for x in str(getattr(cls, "sample", "")).splitlines() if x.strip()] or ["step=1"]


def mutate(line: str, kind: str, rnd: random.Random) -> str:
    """One mutation of `line`."""
    if kind == "bitflip":
        data = bytearray(line.encode("utf-8", "surrogateescape") or b" ")
        for _ in range(rnd.randint(1, 4)):
            data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
        return data.decode("utf-8", rnd.choice(("replace", "surrogateescape")))
    if kind == "truncate":
        return line[: rnd.randrange(len(line) + 1)]
    if kind == "number":
        tokens = line.split(" ")
        idx = [i for i, t in enumerate(tokens) if any(c.isdigit() for c in t)] or [len(tokens) - 1]
        i = rnd.choice(idx)
        tokens[i] = "".join(rnd.choice(_NUMBERS) if c.isdigit() and rnd.random() < 0.2 else c for c in tokens[i])
        if not any(n in tokens[i] for n in _NUMBERS):
            tokens[i] = rnd.choice(_NUMBERS)
        return " ".join(tokens)
    if kind == "deep_json":
        depth = rnd.choice((100, 1000, 10_000, 100_000))
        inner = rnd.choice(("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth))
        return rnd.choice((inner, '{"step": 1, "loss": ' + inner + "}", line[: len(line) // 2] + inner))
    if kind == "mega_line":
        unit = rnd.choice((line, "a", "x=", '"', "loss=1 ", "9", "{'a': ", "| ")) or "a"
        return (unit * (1_000_000 // len(unit) + 1))[: rnd.choice((70_000, 200_000, 1_000_000))]
    if kind == "nul":
        at = rnd.randrange(len(line) + 1)
        return line[:at] + "\x00" * rnd.randint(1, 8) + line[at:]
    if kind == "bad_utf8":
        data = line.encode("utf-8", "surrogateescape")
        at = rnd.randrange(len(data) + 1)
        data = data[:at] + rnd.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xfe\xff")) + data[at:]
        return data.decode("utf-8", rnd.choice(("replace", "surrogateescape")))
    if kind == "crlf":
        return rnd.choice((line + "\r", line + "\r\n", line.replace(" ", "\r", 1), "\r" + line, line + "\r\r"))
    if kind == "quotes":
        at = rnd.randrange(len(line) + 1)
        return line[:at] + rnd.choice(('"', "'", '"""', "\\", '",', "'\"'")) * rnd.randint(1, 3) + line[at:]
    if kind == "escape":
        at = rnd.randrange(len(line) + 1)
        return line[:at] + rnd.choice(_ESCAPES) + line[at:]
    if kind == "splice":
        other = rnd.choice([x for lines in SEEDS.values() for x in lines])
        return line[: rnd.randrange(len(line) + 1)] + other[rnd.randrange(len(other) + 1) :]
    if kind == "repeat_token":
        tokens = line.split() or [line]
        t = rnd.choice(tokens)
        return line + (" " + t) * rnd.randint(2, 2000)
    return rnd.choice(("", " ", "\t", "|", "{}", "[]", ",", ":", "=", "nan"))


@dataclass
class Report:
    """What one parser's campaign found."""

    parser: str
    lines: int = 0
    seconds: float = 0.0
    crashes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Exceptions that escaped `feed_lines()` / `finish()` or the detectors: they would end a source."""
    caught: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Exceptions a parser raised that the malformed-line guard caught (the line was counted and skipped)."""
    hangs: list[dict[str, Any]] = field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")
    base_rss_mb: float = 0.0
    peak_rss_mb: float = 0.0


class _Interrupted(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Interrupted


def _describe(line: str) -> str:
    if len(line) <= 240:
        return repr(line)
    return f"{len(line)} chars: {line[:120]!r} … {line[-40:]!r}"


def _where(exc: BaseException) -> str:
    """The innermost frame in runwatch's own code (not the stdlib's) where `exc` was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if "/monitor/" in f.filename or "/detectors/" in f.filename] or frames
    if not mine:
        return "?"
    f = mine[-1]
    where = Path(f.filename).relative_to(ROOT) if f.filename.startswith(str(ROOT)) else f.filename
    return f"{where}:{f.lineno}"


def campaign(name: str, n_lines: int, seed: int, hang_s: float, kill_s: float, save: str | None) -> Report:
    """Run `n_lines` mutated lines through parser `name` and the detectors (in this process)."""
    from monitor.analysis import RunAnalysis, RunInfo
    from monitor.parsers import PARSERS, feed_lines, make_parser

    rep = Report(name, base_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    rnd = random.Random(seed)
    document = getattr(PARSERS[name], "document", False)
    every = {fmt: seeds_for(fmt, cls) for fmt, cls in PARSERS.items()}
    seeds, others = every[name], [x for k, v in every.items() if k != name for x in v]
    hung_kinds: dict[str, int] = {}
    signal.signal(signal.SIGALRM, _on_alarm)

    def record(stage: str, exc: BaseException, line: str, kind: str, into: dict[str, dict[str, Any]]) -> None:
        key = f"{stage}: {type(exc).__name__} at {_where(exc)}"
        entry = into.setdefault(key, {"count": 0, "kind": kind, "message": str(exc)[:200], "line": line})
        entry["count"] += 1
        if len(line) < len(entry["line"]):
            entry["line"], entry["kind"] = line, kind  # keep the shortest reproducer

    raised: list[BaseException] = []  # what the parser raised during the current line

    def make(fmt: str) -> Any:
        """A parser whose own exceptions are recorded before whatever guards it sees them."""
        parser = make_parser(fmt)
        for method in ("feed", "read"):
            inner = getattr(parser, method, None)
            if inner is None:
                continue

            def watched(*args: Any, _inner: Any = inner, _method: str = method) -> Any:
                try:
                    return _inner(*args)
                except ValueError as e:
                    if _method != "read":  # a document's read() says "not such a document" this way
                        raised.append(e)
                    raise
                except Exception as e:
                    raised.append(e)
                    raise

            setattr(parser, method, watched)
        return parser

    fresh = make(name)
    analysis = RunAnalysis(RunInfo(target="fuzz", name=name))
    pending: list[Any] = []
    start = time.perf_counter()
    for i in range(n_lines):
        if i % 500 == 0:
            fresh, analysis = make(name), RunAnalysis(RunInfo(target="fuzz", name=name))
            if name == "csv":
                feed_lines(fresh, [seeds[0]])
        base = rnd.choice(others if rnd.random() < 0.1 else seeds)
        kind = rnd.choices(MUTATIONS, _WEIGHTS)[0]
        if hung_kinds.get(kind, 0) >= 3:
            kind = "bitflip"  # three hangs of a kind are enough to report: spend the time elsewhere
        line = mutate(base, kind, rnd)
        raised.clear()
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, kill_s)
        try:
            if document:
                parser = make(name)
                at = seeds.index(base) if base in seeds else rnd.randrange(len(seeds))
                doc = [*seeds[:at], line, *seeds[at + (base in seeds) :]]
                feed_lines(parser, doc)
                rows = parser.finish()
            else:
                rows = feed_lines(fresh, [line])
            pending.extend(rows)
            for e in raised:  # raised by the parser, yet feed_lines or finish went on: caught
                record("parser", e, line, kind, rep.caught)
        except _Interrupted:
            rep.hangs.append({"kind": kind, "seconds": f"> {kill_s:g} s (interrupted)", "line": line})
            hung_kinds[kind] = hung_kinds.get(kind, 0) + 1
            fresh = make(name)
            rep.lines += 1
            continue
        except Exception as e:
            record("parser", e, line, kind, rep.crashes)
            fresh = make(name)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        dt = time.perf_counter() - t0
        if dt > hang_s:
            rep.hangs.append({"kind": kind, "seconds": f"{dt:.2f} s", "line": line})
            hung_kinds[kind] = hung_kinds.get(kind, 0) + 1
        if dt > rep.slowest[0]:
            rep.slowest = (dt, f"{kind}: {_describe(line)}")
        if pending and (len(pending) >= 64 or i % 50 == 0):
            batch, pending = pending, []
            try:
                analysis.add_rows(batch, now=1_700_000_000.0 + i)
                analysis.tick(1_700_000_000.0 + i)
                analysis.judgement()
            except Exception as e:
                # The detectors' state matters, not one line: the reproducer is the batch's last rows.
                shown = "; ".join(f"step {r.step!r}: {r.values!r}" for r in batch[-6:])
                record("detectors", e, f"after {len(batch)} rows, the last: {shown}", kind, rep.crashes)
                analysis = RunAnalysis(RunInfo(target="fuzz", name=name))
        rep.lines += 1
    rep.seconds = time.perf_counter() - start
    rep.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if save:
        _save(Path(save), rep)
    for c in (*rep.crashes.values(), *rep.caught.values()):
        c["line"] = _describe(c["line"])
    for h in rep.hangs:
        h["line"] = _describe(h["line"])
    return rep


def _save(directory: Path, rep: Report) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for n, (key, c) in enumerate(rep.crashes.items()):
        (directory / f"{rep.parser}-crash-{n}.txt").write_text(f"# {key}\n", encoding="utf-8")
        with (directory / f"{rep.parser}-crash-{n}.line").open("w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(c["line"])
    for n, c in enumerate(rep.caught.values()):
        with (directory / f"{rep.parser}-caught-{n}.line").open("w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(c["line"])
    for n, h in enumerate(rep.hangs):
        with (directory / f"{rep.parser}-hang-{n}.line").open("w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(h["line"])


def print_report(rep: Report, out: Any = sys.stdout) -> None:
    """One block per parser, readable in a terminal (escapes in reproducers are shown by repr)."""
    rate = rep.lines / rep.seconds if rep.seconds else 0.0
    print(f"\n== {rep.parser}: {rep.lines} lines in {rep.seconds:.1f} s ({rate:,.0f}/s); "
          f"peak RSS {rep.peak_rss_mb:.0f} MB (process start {rep.base_rss_mb:.0f} MB)", file=out)  # fmt: skip
    if not rep.crashes and not rep.hangs:
        print("   no crashes, no hangs", file=out)
    for label, found in (("CRASH", rep.crashes), ("CAUGHT", rep.caught)):
        for key, c in sorted(found.items(), key=lambda kv: -kv[1]["count"]):
            print(f"   {label:6} {key} x{c['count']}: {c['message']}", file=out)
            print(f"          reproducer ({c['kind']}): {c['line']}", file=out)
    for h in rep.hangs[:10]:
        print(f"   HANG  {h['seconds']} ({h['kind']}): {h['line']}", file=out)
    if len(rep.hangs) > 10:
        print(f"   … {len(rep.hangs) - 10} more hangs", file=out)
    print(f"   slowest line {rep.slowest[0] * 1000:.1f} ms ({rep.slowest[1][:200]})", file=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3,000 lines per parser")
    ap.add_argument("--lines", type=int, default=100_000, help="mutated lines per parser (default 100,000)")
    ap.add_argument("--parsers", help="comma-separated parser names (default: every registered parser)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hang", type=float, default=1.0, help="a line slower than this many seconds is a hang")
    ap.add_argument("--kill", type=float, default=10.0, help="interrupt a line after this many seconds")
    ap.add_argument("--save", help="write every reproducer's full text under this directory")
    ap.add_argument("--json", action="store_true", help="print the reports as one JSON document")
    a = ap.parse_args(argv)
    from monitor.parsers import PARSERS

    names = a.parsers.split(",") if a.parsers else list(PARSERS)
    unknown = [n for n in names if n not in PARSERS]
    if unknown:
        ap.error(f"unknown parsers: {', '.join(unknown)} (registered: {', '.join(PARSERS)})")
    n = 3_000 if a.quick else a.lines
    reports = []
    ctx = multiprocessing.get_context("spawn")
    # One parser at a time, each in a fresh process: its peak RSS is its own, and a parser that
    # eats the memory or the interpreter takes only its own campaign down.
    for name in names:
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            fut = pool.submit(campaign, name, n, a.seed, a.hang, a.kill, a.save)
            try:
                rep = fut.result()
            except Exception as e:  # the worker died (killed for memory, a segfault)
                rep = Report(name)
                rep.crashes[f"process: {type(e).__name__}"] = {"count": 1, "kind": "?", "message": str(e), "line": ""}
        reports.append(rep)
        if not a.json:
            print_report(rep)
            sys.stdout.flush()
    crashes = sum(len(r.crashes) for r in reports)
    caught = sum(len(r.caught) for r in reports)
    hangs = sum(len(r.hangs) for r in reports)
    if a.json:
        print(json.dumps([r.__dict__ for r in reports], indent=1, default=str))
    else:
        print(f"\n{len(reports)} parsers, {sum(r.lines for r in reports)} lines: {crashes} distinct crashes, "
              f"{caught} distinct parser errors caught as malformed lines, {hangs} hangs (> {a.hang:g} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
