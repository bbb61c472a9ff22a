"""Evidence bundles: one directory per save, written atomically, secrets redacted, hashes in a manifest.

Layout (ARCHITECTURE.md "Evidence bundle")::

    runwatch-evidence/20260505-101502-gpt-small/
        summary.md        what run, where, when, verdict and decision, findings with steps and numbers
        findings.json     the judgement as data
        metrics.csv       every point the store holds: metric,step,value
        plot_loss.txt     text plots (loss, learning rate, grad norm; those the run logs)
        plot_lr.txt
        plot_grad_norm.txt
        screenshot.svg    the screen, when saved from the TUI
        log_tail.txt      the last log lines
        config.json       the run's config entry and what the source reported, secrets redacted
        reviewer.md       the reviewer's prompt and answer, when one was asked
        action.json       the stop about to be made, when saved before a stop
        manifest.json     every other file with its size and sha256

Use `collect_evidence()` on the event loop's thread (it copies what it needs off the live run),
then `write_bundle()` in a worker thread; `save_evidence()` does both. The bundle is written into
a hidden temporary directory next to its final place and renamed into place at the end, so a crash
or an error mid-write never leaves a half bundle under the final name.
"""

from __future__ import annotations

import asyncio
import csv
import errno
import hashlib
import io
import json
import math
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from monitor.actions.audit import whoami
from monitor.actions.reviewer import ReviewerAnswer
from monitor.actions.runref import RunRef
from monitor.actions.screenshot import redact_screenshot
from monitor.actions.summary import render_summary
from monitor.actions.textplot import text_plot
from monitor.diagnosis import Hypothesis, diagnose, facts_of
from monitor.errors import RunwatchError
from monitor.model import Judgement, Role
from monitor.redact import Redactor
from monitor.textsafe import safe_text

FORMAT = "runwatch-evidence/1"
DEFAULT_DIR = Path("runwatch-evidence")
_TMP_PREFIX = ".partial-"
_STALE_TMP_S = 3600.0
LOG_TAIL_LINES = 500
_ORDER = ("summary.md", "findings.json", "metrics.csv")
_PLOTS = (("loss", (Role.TRAIN_LOSS, Role.EVAL_LOSS)), ("lr", (Role.LR,)), ("grad_norm", (Role.GRAD_NORM,)))


class EvidenceError(RunwatchError):
    """A bundle that could not be written (nothing is left behind under its name)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, title="Evidence not saved")


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything a bundle holds, copied off the live run: safe to hand to another thread."""

    run_id: str
    name: str
    target: str
    where: str
    url: str | None
    state: str
    format: str
    step_key: str
    last_step: float | None
    total_steps: float | None
    judgement: Judgement
    headline: tuple[tuple[str, float], ...]
    series: tuple[tuple[str, np.ndarray, np.ndarray], ...]
    """Every metric held: (key, steps, values), copies."""
    plot_keys: tuple[tuple[str, tuple[str, ...]], ...]
    """(plot name, metric keys) for the text plots."""
    log_tail: tuple[str, ...]
    run_config: dict[str, Any]
    source_config: dict[str, Any]
    saved_at: float
    saved_by: str
    why: str = ""
    review: ReviewerAnswer | None = None
    screenshot_svg: str | None = None
    action: dict[str, Any] | None = None
    """The stop plan, when the bundle is saved right before a stop."""
    diagnosis: tuple[Hypothesis, ...] = ()
    """Root-cause hypotheses (monitor/diagnosis), surest first."""
    overview_svg: str | None = None
    """The run's overview picture (loss/eval, LR, grad norm with finding markers), as in `runwatch report`."""


@dataclass(frozen=True, slots=True)
class SavedBundle:
    """A bundle on disk: its directory, the `.tar.gz` when one was asked for, and its files."""

    path: Path
    archive: Path | None = None
    files: tuple[str, ...] = field(default=())


def collect_evidence(
    ref: RunRef,
    *,
    now: float,
    why: str = "",
    review: ReviewerAnswer | None = None,
    screenshot_svg: str | None = None,
    action: dict[str, Any] | None = None,
    saved_by: str | None = None,
) -> Evidence:
    """Copy a run's state for a bundle. Call on the thread that owns the run (the event loop)."""
    a = ref.analysis
    info = a.info
    series = tuple((key, *s.series()) for key, s in a.store.metrics.items())
    plots = []
    for name, roles in _PLOTS:
        keys = tuple(k for k in (a.key_for(r) for r in roles) if k is not None)
        if keys:
            plots.append((name, keys))
    rc = ref.run_config
    run_config: dict[str, Any] = {}
    if rc is not None:
        run_config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(rc).items()}
    from monitor.report.pictures import overview_svg

    facts = facts_of(a)
    judgement = a.judgement()
    return Evidence(
        run_id=ref.run_id,
        name=info.name,
        target=info.target,
        where=ref.where,
        url=info.url,
        state=info.state,
        format=info.format,
        step_key=info.step_key,
        last_step=a.detectors.last_step,
        total_steps=info.total_steps,
        judgement=judgement,
        headline=tuple(a.headline().items()),
        series=series,
        plot_keys=tuple(plots),
        log_tail=tuple(list(a.store.log_tail)[-LOG_TAIL_LINES:]),
        run_config=run_config,
        source_config=json.loads(json.dumps(info.config, default=str)),
        saved_at=now,
        saved_by=saved_by or whoami(),
        why=why,
        review=review,
        screenshot_svg=screenshot_svg,
        action=action,
        diagnosis=diagnose(facts),
        overview_svg=overview_svg(info.name, facts, judgement.findings, info.step_key),
    )


def bundle_redactor(ev: Evidence, env: Mapping[str, str] | None = None) -> Redactor:
    """A redactor that knows the environment's and the run config's secret values."""
    red = Redactor()
    red.remember_env(os.environ if env is None else env)
    # Structured config first: the secret values found there are then scrubbed from every text.
    red.data({"run_config": ev.run_config, "source_config": ev.source_config})
    return red


def render_files(ev: Evidence, env: Mapping[str, str] | None = None, red: Redactor | None = None) -> dict[str, bytes]:
    """The bundle's files (all but the manifest), redacted and free of terminal escapes, in write order."""
    red = red or bundle_redactor(ev, env)
    config = red.data({"run_config": ev.run_config, "source_config": ev.source_config})
    review = ev.review
    files: dict[str, str] = {}
    files["summary.md"] = render_summary(ev)
    files["findings.json"] = _json(
        {
            "run": ev.run_id,
            "name": ev.name,
            "verdict": str(ev.judgement.verdict),
            "decision": str(ev.judgement.decision),
            "reason": ev.judgement.reason,
            "last_step": _jnum(ev.last_step),
            "step_key": ev.step_key,
            "findings": [f.to_json() for f in ev.judgement.findings],
            "diagnosis": [h.to_json() for h in ev.diagnosis],
        }
    )
    # Only numbers and metric names (redacted one by one): a text pass over millions of rows would
    # cost seconds and find nothing.
    csv_text = _metrics_csv(ev, red)
    by_key = {k: (s, v) for k, s, v in ev.series}
    for name, keys in ev.plot_keys:
        series = [(k, *by_key[k]) for k in keys if k in by_key]
        if series:
            files[f"plot_{name}.txt"] = text_plot(series, title=f"{name}: {', '.join(keys)} over {ev.step_key}")
    files["log_tail.txt"] = "\n".join(ev.log_tail) + ("\n" if ev.log_tail else "")
    files["config.json"] = _json(config)
    if review is not None:
        files["reviewer.md"] = review.to_markdown()
        files["reviewer.json"] = _json(review.to_json())
    if ev.action is not None:
        files["action.json"] = _json(red.data(ev.action))
    # Every text is redacted and made safe to `cat`: a log line's escapes must not fire in a terminal.
    out = {name: safe_text(red.text(text), keep_newlines=True).encode() for name, text in files.items()}
    if ev.screenshot_svg:
        out["screenshot.svg"] = redact_screenshot(ev.screenshot_svg, red).encode()
    if ev.overview_svg:
        out["overview.svg"] = redact_screenshot(ev.overview_svg, red).encode()
    out["metrics.csv"] = csv_text.encode()
    return {name: out[name] for name in _ORDER if name in out} | out


def write_bundle(
    ev: Evidence,
    directory: Path = DEFAULT_DIR,
    *,
    archive: bool = False,
    env: Mapping[str, str] | None = None,
) -> SavedBundle:
    """Write a bundle under `directory` atomically (blocking: call it in a worker thread)."""
    try:
        make_private_dir(directory)
        _clean_stale(directory)
        tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=directory))  # 0700
    except OSError as e:
        raise EvidenceError(f"cannot create {directory}: {e.strerror or e}") from None
    try:
        red = bundle_redactor(ev, env)
        files = render_files(ev, env, red)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "run": _shown(ev.run_id, red),
            "name": _shown(ev.name, red),
            "saved_at": _iso(ev.saved_at),
            "saved_by": _shown(ev.saved_by, red),
            "files": {},
        }
        for name, data in files.items():
            _write_file(tmp / name, data)
            manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        _write_file(tmp / "manifest.json", _json(manifest).encode())
        final = _rename_into_place(tmp, directory, _bundle_name(ev, red))
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, RunwatchError):
            raise
        if isinstance(e, Exception):
            why = _shown(f"{type(e).__name__}: {e}", None)
            raise EvidenceError(f"writing the bundle for {_shown(ev.name, None)} failed: {why}") from e
        raise
    names = (*files, "manifest.json")
    tar = _write_archive(final) if archive else None
    return SavedBundle(final, tar, names)


async def save_evidence(
    ref: RunRef,
    directory: Path = DEFAULT_DIR,
    *,
    now: float | None = None,
    why: str = "",
    review: ReviewerAnswer | None = None,
    screenshot_svg: str | None = None,
    action: dict[str, Any] | None = None,
    archive: bool = False,
) -> SavedBundle:
    """Copy the run's state here (on the loop) and write the bundle in a worker thread."""
    ev = collect_evidence(
        ref,
        now=time.time() if now is None else now,
        why=why,
        review=review,
        screenshot_svg=screenshot_svg,
        action=action,
    )
    return await asyncio.to_thread(write_bundle, ev, directory, archive=archive)


def verify_bundle(path: Path) -> list[str]:
    """Problems with a bundle on disk (missing files, hash mismatches); empty when it is intact."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return [f"manifest.json: {e}"]
    problems = []
    for name, meta in manifest.get("files", {}).items():
        try:
            data = (path / name).read_bytes()
        except OSError as e:
            problems.append(f"{name}: {e.strerror or e}")
            continue
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            problems.append(f"{name}: sha256 differs from the manifest")
    return problems


# ---- helpers -----------------------------------------------------------------------------------


def make_private_dir(directory: Path) -> None:
    """Create `directory` (and its parents) readable by its owner only; tighten it if it is ours.

    Bundles hold logs, configs and screens: even redacted, they are for the person who saved them.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = directory.stat()
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        directory.chmod(0o700)


def _shown(text: str, red: Redactor | None) -> str:
    """A name or message for the manifest or an error: redacted, one line, no escapes."""
    return safe_text((red or Redactor()).text(text))


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _rename_into_place(tmp: Path, directory: Path, name: str) -> Path:
    for n in range(1, 1000):
        final = directory / (name if n == 1 else f"{name}-{n}")
        if final.exists():
            continue
        try:
            os.rename(tmp, final)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                continue  # another save took the name between the check and the rename
            raise
        _fsync_dir(directory)
        return final
    raise EvidenceError(f"{directory}: too many bundles named {name}")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_archive(bundle: Path) -> Path:
    target = bundle.with_name(bundle.name + ".tar.gz")
    fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".tar.gz", dir=bundle.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp_name, "w:gz") as tar:
            tar.add(bundle, arcname=bundle.name)
        os.chmod(tmp_name, 0o600)
        os.replace(tmp_name, target)
    except BaseException as e:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(e, OSError | tarfile.TarError):
            raise EvidenceError(f"the bundle is saved at {bundle}, but its archive failed: {e}") from None
        raise
    return target


def _clean_stale(directory: Path) -> None:
    """Remove temporary bundles left by a process that died mid-write (older than an hour)."""
    cutoff = time.time() - _STALE_TMP_S
    for p in directory.glob(_TMP_PREFIX + "*"):
        try:
            if p.stat().st_mtime < cutoff:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        except OSError:
            continue


def _bundle_name(ev: Evidence, red: Redactor) -> str:
    stamp = datetime.fromtimestamp(ev.saved_at).strftime("%Y%m%d-%H%M%S")
    # Redacted before it is cut to a slug: a secret in a run name must not become a directory name.
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", red.text(ev.name)).strip("-.")[:60] or "run"
    return f"{stamp}-{slug}"


def _metrics_csv(ev: Evidence, red: Redactor) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["metric", "step", "value"])
    for key, steps, values in ev.series:
        name = safe_text(red.text(key))
        for s, v in zip(steps.tolist(), values.tolist(), strict=True):
            w.writerow([name, _csv_num(s), _csv_num(v)])
    return buf.getvalue()


def _csv_num(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    if float(x).is_integer() and abs(x) < 2**53:
        return str(int(x))
    return repr(x)


def _jnum(x: float | None) -> float | int | str | None:
    if x is None:
        return None
    if not math.isfinite(x):
        return str(x)
    return int(x) if float(x).is_integer() else x


def _json(obj: Any) -> str:
    return json.dumps(_finite(obj), indent=2, ensure_ascii=False, default=str) + "\n"


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")
