"""Stopping a run: a plan that says exactly what will happen where, then evidence, the act, the record.

Ways to stop, per run (the run's `stop` table in the config, else from its source):

- `method = "command"` (the default when `command` is set): a template such as `scancel {job_id}`,
  `kill -INT {pid}` or `tmux send-keys -t {session} C-c`, filled from the stop table with every
  value shell-quoted, run on the run's host over SSH (or `host = "login1"`), or on this machine.
  `{path}` is the log's path; a `{pid}` not given in the table is the process found writing the log,
  checked again right before the command runs.
- `method = "process"` (SSH and local files): the process that has the log open for writing, found
  through /proc, shown with its command line; `signal = "INT"` (default) or TERM, HUP, KILL… It is
  signalled only if its PID still has the same start time and command line (see `procs`).
- `method = "wandb"` (W&B runs): the `StopRun` mutation, what the web UI's Stop button sends.

`plan()` looks (it may run a read-only script on the host) and changes nothing; `execute()` saves
evidence, acts, and appends the outcome to the audit log; `dry_run=True` records the plan only.
"""

from __future__ import annotations

import asyncio
import shlex
import string
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from monitor.actions import procs
from monitor.actions.audit import AuditLog
from monitor.actions.evidence import SavedBundle
from monitor.actions.runref import RunRef
from monitor.actions.shell import Shell
from monitor.errors import RunwatchError
from monitor.outward import known_redactor, outward, ref_redactor
from monitor.sources.ssh import SSHEndpoint, parse_ssh_endpoint
from monitor.sources.wandb_api import WandbTarget
from monitor.targets import SSH, STDIN, WANDB_API, WANDB_LOCAL

WANDB, COMMAND, PROCESS, NONE = "wandb", "command", "process", "none"
#: Stop-table keys that configure the stop rather than fill the template.
_SETTINGS = frozenset({"command", "method", "signal", "host"})
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "fish", "tcsh", "csh", "busybox"})
WANDB_NOTE = (
    "The training process sees the request on its next upload and gets SIGINT about 15-30 s later; "
    "its state turns killed or finished on a later poll. A loop that catches KeyboardInterrupt does not "
    "stop this way: give such runs a stop command (scancel, kill) in the config."
)


@dataclass(frozen=True, slots=True)
class StopPlan:
    """What stopping a run will do, and where; shown for confirmation before anything happens."""

    run_id: str
    run_name: str
    target: str
    method: str
    """wandb, command, process, or none (cannot be stopped: see `problem`)."""
    where: str
    """The machine the command runs on, or the W&B backend."""
    summary: str
    """One line: `send SIGINT to pid 4242 on gpu1`, `scancel 123456 on login1`."""
    command: str | None = None
    """The exact shell script that will run (command and process methods)."""
    host: SSHEndpoint | None = None
    """Where `command` runs; None for this machine."""
    processes: tuple[procs.ProcessInfo, ...] = ()
    signal: str | None = None
    wandb_target: WandbTarget | None = None
    notes: tuple[str, ...] = ()
    problem: str | None = None
    evidence_dir: str = ""
    made_at: float = 0.0
    secrets: tuple[str, ...] = field(default=(), repr=False, compare=False)
    """Secret values from the run's config: scrubbed from what is shown and audited, never from `command`."""

    @property
    def ok(self) -> bool:
        """True when the plan can be carried out."""
        return self.problem is None

    def describe(self) -> str:
        """The confirmation text: what will happen, where, to which process, and what comes first."""
        lines = [f"Stop run {self.run_name!r} ({self.target})"]
        if self.problem:
            return "\n".join([*lines, f"Cannot stop it: {self.problem}"])
        lines.append(f"  {self.summary}")
        for p in self.processes:
            lines.append(f"    {p.pid}: {procs.short_cmdline(p.cmdline) or '[' + p.comm + ']'}")
            if p.started_at is not None:
                lines.append(f"      started {datetime.fromtimestamp(p.started_at).strftime('%Y-%m-%d %H:%M:%S')}")
        if self.method != WANDB and self.command and not self.processes:
            lines.append(f"  command: {self.command.strip()}")
        lines += [f"  {n}" for n in self.notes]
        if self.evidence_dir:
            lines.append(f"  Evidence is saved first, under {self.evidence_dir}; the outcome goes to the audit log.")
        # Shown and printed, never run: command lines carry tokens and passwords (`curl -u`, Bearer).
        return outward("\n".join(lines), keep_newlines=True, redactor=known_redactor(self.secrets))

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "name": self.run_name,
            "target": self.target,
            "method": self.method,
            "where": self.where,
            "summary": self.summary,
            "command": self.command,
            "processes": [
                {"pid": p.pid, "cmdline": p.cmdline, "start_ticks": p.start_ticks, "started_at": p.started_at}
                for p in self.processes
            ],
            "signal": self.signal,
            "wandb_run": self.wandb_target.path if self.wandb_target else None,
            "notes": list(self.notes),
            "problem": self.problem,
            "description": self.describe(),
        }


@dataclass(frozen=True, slots=True)
class StopOutcome:
    """What came of a stop: `status` is sent, dry-run, refused, gone, failed or impossible."""

    plan: StopPlan
    status: str
    detail: str
    exit_status: int | None = None
    output: str = ""
    evidence: SavedBundle | None = None
    at: float = 0.0
    audit: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the stop was sent (not when it was only rehearsed, refused or failed)."""
        return self.status == "sent"

    def one_line(self) -> str:
        return outward(f"{self.plan.run_name}: {self.status}: {self.detail}")


WandbStop = Callable[[WandbTarget], Awaitable[str]]
"""Sends StopRun for a run; returns a one-line result, raises `RunwatchError` when it failed."""
ShellFor = Callable[[SSHEndpoint | None], Shell]


class Stopper:
    """Plans and carries out stops; where commands run and how W&B is reached are injected."""

    def __init__(
        self,
        shell_for: ShellFor,
        wandb_stop: WandbStop,
        *,
        audit: AuditLog | None = None,
        evidence_dir: str = "",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.shell_for = shell_for
        self.wandb_stop = wandb_stop
        self.audit = audit
        self.evidence_dir = evidence_dir
        self.clock = clock
        self.sleep = sleep

    # ---- planning ------------------------------------------------------------------------------
    async def plan(self, ref: RunRef) -> StopPlan:
        """Work out how to stop a run. Reads the host's /proc when needed; changes nothing."""
        table = dict(ref.run_config.stop) if ref.run_config else {}
        base: dict[str, Any] = {
            "run_id": ref.run_id,
            "run_name": ref.name,
            "target": ref.analysis.info.target,
            "evidence_dir": self.evidence_dir,
            "made_at": self.clock(),
            "secrets": ref_redactor(ref).known,
        }
        method = table.get("method") or (COMMAND if table.get("command") else None)
        t = ref.target.kind
        if method is None:
            method = WANDB if t == WANDB_API else NONE if t == STDIN else PROCESS
        try:
            if method == WANDB:
                return self._plan_wandb(ref, base)
            if method == COMMAND:
                return await self._plan_command(ref, table, base)
            if method == PROCESS:
                return await self._plan_process(ref, table, base)
            if method == NONE:
                return StopPlan(method=NONE, where="", summary="", problem=_NO_WAY, **base)
            raise RunwatchError(f"unknown stop method {method!r} (expected command, process or wandb)")
        except RunwatchError as e:
            return StopPlan(method=method, where="", summary="", problem=e.message, **base)

    def _plan_wandb(self, ref: RunRef, base: dict[str, Any]) -> StopPlan:
        wt = ref.target.wandb
        if wt is None or wt.run_id is None:
            raise RunwatchError("this run has no W&B run id to stop; give it a stop command in the config")
        backend = wt.base_url or "the W&B server of WANDB_BASE_URL / wandb login"
        return StopPlan(
            method=WANDB,
            where=backend,
            summary=f"ask W&B to stop run {wt.path} (the StopRun mutation, as the web UI's Stop button)",
            wandb_target=wt,
            notes=(WANDB_NOTE,),
            **base,
        )

    def _host(self, ref: RunRef, table: Mapping[str, str]) -> SSHEndpoint | None:
        if table.get("host"):
            host = table["host"]
            return None if host in ("local", "localhost") else parse_ssh_endpoint(host)
        if ref.target.kind == SSH and ref.target.ssh is not None:
            return ref.target.ssh.endpoint
        return None

    def _log_path(self, ref: RunRef) -> str:
        t = ref.target
        if t.kind == SSH and t.ssh is not None:
            return t.ssh.path
        if t.kind == WANDB_LOCAL:
            f = ref.wandb_file
            if f is None:
                raise RunwatchError("no .wandb file found for this run")
            return str(f.resolve())
        if t.path is not None:
            return str(t.path.resolve())
        raise RunwatchError(_NO_WAY)

    async def _plan_command(self, ref: RunRef, table: Mapping[str, str], base: dict[str, Any]) -> StopPlan:
        template = table.get("command", "")
        if not template.strip():
            raise RunwatchError("the stop method is command but the run's stop table has no command")
        host = self._host(ref, table)
        shell = self.shell_for(host)
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        values = {k: v for k, v in table.items() if k not in _SETTINGS}
        notes: list[str] = []
        found: tuple[procs.ProcessInfo, ...] = ()
        if "path" in fields and "path" not in values:
            values["path"] = self._log_path(ref)
        if "host" in fields:
            values["host"] = str(host) if host is not None else "localhost"
        if "pid" in fields and "pid" not in values:
            found = await self._find_writers(ref, shell)
            if len(found) != 1:
                pids = ", ".join(str(p.pid) for p in found)
                raise RunwatchError(
                    f"the stop command needs one {{pid}}, but {len(found)} processes write the log: {pids}"
                )
            values["pid"] = str(found[0].pid)
            notes.append("{pid} is the process writing the log; checked again right before the command runs.")
        missing = sorted(fields - values.keys())
        if missing:
            need = ", ".join(f'{m} = "…"' for m in missing)
            raise RunwatchError(f"the stop command {template!r} needs {need} in this run's stop table")
        try:
            rendered = template.format_map({k: shlex.quote(v) for k, v in values.items()})
        except (ValueError, IndexError, KeyError) as e:
            raise RunwatchError(f"the stop command {template!r} is not a valid template: {e}") from None
        script = rendered + "\n"
        if found:
            script = procs.guard_script(found) + script
        return StopPlan(
            method=COMMAND,
            where=shell.where,
            summary=f"run `{rendered}` on {shell.where}",
            command=script,
            host=host,
            processes=found,
            notes=tuple(notes),
            **base,
        )

    async def _find_writers(self, ref: RunRef, shell: Shell) -> tuple[procs.ProcessInfo, ...]:
        path = self._log_path(ref)
        result = await shell.run(procs.find_script(path))
        if result.exit_status == procs.EXIT_NO_FILE:
            raise RunwatchError(f"{path} does not exist on {shell.where}: the run may have moved or ended")
        if result.exit_status == procs.EXIT_NO_PROC:
            raise RunwatchError(f"{shell.where} has no /proc: give this run a stop command in the config")
        if result.exit_status != 0:
            raise RunwatchError(f"looking for the process on {shell.where} failed: {_one_line(result.stderr)}")
        listing = procs.parse_listing(result.stdout)
        chosen = procs.choose_targets(listing)
        if not chosen:
            raise RunwatchError(
                f"no process on {shell.where} has {listing.path or path} open for writing (the run may have "
                "ended, or it runs as another user or in a container); give this run a stop command in the "
                'config, e.g. stop = { command = "scancel {job_id}", job_id = "…" }'
            )
        out: list[procs.ProcessInfo] = []
        for p in chosen:
            out += await self._behind(p, shell)
        return tuple(dict.fromkeys(out))

    async def _behind(self, p: procs.ProcessInfo, shell: Shell) -> list[procs.ProcessInfo]:
        """The training process behind a writer that only forwards output (tee) or is wandb-core."""
        if p.comm.startswith("wandb-core") or "wandb-core" in p.cmdline.split(" ", 1)[0]:
            parent = procs.parse_listing((await shell.run(procs.describe_script([p.ppid]))).stdout)
            if p.ppid in parent.processes and p.ppid > 1:
                return [parent.processes[p.ppid]]
            raise RunwatchError(f"the log is written by wandb-core (pid {p.pid}) whose training process is gone")
        if p.comm not in procs.PIPE_HELPERS:
            return [p]
        group = procs.parse_listing((await shell.run(procs.group_script(p.pgid))).stdout).processes
        members = {q.pid: q for q in group.values() if q.comm not in procs.PIPE_HELPERS and q.comm not in _SHELLS}
        roots = [q for q in members.values() if q.ppid not in members]
        if not roots:
            raise RunwatchError(
                f"the log is written by {p.comm} (pid {p.pid}) and no training process shares its process group; "
                "give this run a stop command in the config"
            )
        return sorted(roots, key=lambda q: q.pid)

    async def _plan_process(self, ref: RunRef, table: Mapping[str, str], base: dict[str, Any]) -> StopPlan:
        if ref.target.kind not in (SSH, WANDB_LOCAL) and ref.target.path is None:
            raise RunwatchError(_NO_WAY)
        host = self._host(ref, table)
        shell = self.shell_for(host)
        found = await self._find_writers(ref, shell)
        signal = (table.get("signal") or "INT").upper().removeprefix("SIG")
        if signal not in procs.SIGNALS:
            raise RunwatchError(f"unknown signal {signal!r} in the stop table (expected {', '.join(procs.SIGNALS)})")
        notes = [f"Found as the process that has {self._log_path(ref)} open for writing on {shell.where}."]
        ignoring = [p.pid for p in found if p.ignores(signal)]
        if ignoring and "signal" not in table:
            notes.append(
                f"pid {', '.join(map(str, ignoring))} ignores SIGINT (started in the background by a script), "
                "so SIGTERM is sent instead."
            )
            signal = "TERM"
        elif ignoring:
            notes.append(f"Warning: pid {', '.join(map(str, ignoring))} ignores SIG{signal}; it may not stop.")
        notes.append("Right before signalling, each PID is checked to still have this start time and command line.")
        pids = ", ".join(str(p.pid) for p in found)
        return StopPlan(
            method=PROCESS,
            where=shell.where,
            summary=f"send SIG{signal} to pid {pids} on {shell.where}",
            command=procs.stop_script(found, signal),
            host=host,
            processes=found,
            signal=signal,
            notes=tuple(notes),
            **base,
        )

    # ---- acting --------------------------------------------------------------------------------
    async def execute(
        self,
        plan: StopPlan,
        *,
        save_evidence: Callable[[StopPlan], Awaitable[SavedBundle]] | None = None,
        dry_run: bool = False,
        require_evidence: bool = True,
        settle: float = 0.0,
    ) -> StopOutcome:
        """Save evidence, act on the plan, and audit the outcome. Never raises for the run's trouble."""
        evidence: SavedBundle | None = None
        if not plan.ok:
            return self._done(plan, "impossible", plan.problem or "", dry_run=dry_run)
        if dry_run:
            what = plan.command.strip() if plan.command else plan.summary
            return self._done(plan, "dry-run", f"nothing done; would {plan.summary}: {what}", dry_run=True)
        if save_evidence is not None:
            try:
                evidence = await save_evidence(plan)
            except RunwatchError as e:
                if require_evidence:
                    return self._done(plan, "failed", f"not stopped: the evidence could not be saved: {e.message}")
        try:
            if plan.method == WANDB:
                assert plan.wandb_target is not None
                detail = await self.wandb_stop(plan.wandb_target)
                return self._done(plan, "sent", detail, evidence=evidence)
            assert plan.command is not None
            shell = self.shell_for(plan.host)
            result = await shell.run(plan.command)
        except RunwatchError as e:
            return self._done(plan, "failed", e.message, evidence=evidence)
        output = (result.stdout + result.stderr).strip()
        if result.exit_status == procs.EXIT_CHANGED:
            status, detail = "refused", _one_line(result.stderr) or "the process changed since the plan: not signalled"
        elif result.exit_status == procs.EXIT_GONE:
            status, detail = "gone", _one_line(result.stderr) or "the process had already exited"
        elif result.exit_status != 0:
            status, detail = "failed", f"exit status {result.exit_status}: {_one_line(output) or 'no message'}"
        else:
            status, detail = "sent", plan.summary + (f": {_one_line(output)}" if output else "")
            if plan.method == PROCESS and settle > 0:
                detail += await self._settled(plan, shell, settle)
        return self._done(plan, status, detail, exit_status=result.exit_status, output=output, evidence=evidence)

    async def _settled(self, plan: StopPlan, shell: Shell, settle: float) -> str:
        await self.sleep(settle)
        try:
            result = await shell.run(procs.alive_script(plan.processes))
        except RunwatchError:
            return ""
        alive = result.stdout.split()
        if not alive:
            return f"; the process exited within {settle:g} s"
        return (
            f"; pid {', '.join(alive)} still running {settle:g} s later (it may be saving a checkpoint; "
            "stop again with signal TERM or KILL if it does not end)"
        )

    def _done(
        self,
        plan: StopPlan,
        status: str,
        detail: str,
        *,
        dry_run: bool = False,
        exit_status: int | None = None,
        output: str = "",
        evidence: SavedBundle | None = None,
    ) -> StopOutcome:
        now = self.clock()
        entry: dict[str, Any] = {}
        if self.audit is not None:
            try:
                entry = self.audit.record(
                    "stop",
                    plan.run_id,
                    now=now,
                    known=plan.secrets,
                    result=status,
                    dry_run=dry_run,
                    name=plan.run_name,
                    target=plan.target,
                    method=plan.method,
                    where=plan.where,
                    summary=plan.summary,
                    command=plan.command,
                    processes=[{"pid": p.pid, "cmdline": p.cmdline} for p in plan.processes],
                    detail=detail,
                    exit_status=exit_status,
                    evidence=str(evidence.path) if evidence else None,
                )
            except RunwatchError as e:
                detail += f" (not in the audit log: {e.message})"
        return StopOutcome(plan, status, detail, exit_status, output, evidence, now, entry)


_NO_WAY = "runwatch does not know how to stop a run it reads from standard input; give it a stop command in the config"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
