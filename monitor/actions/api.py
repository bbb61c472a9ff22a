"""`Actions`: stop, escalate and save evidence for the runs of one session, with no UI in sight.

The TUI (keys `s`, `e`, `b`) and `runwatch watch` use it the same way::

    actions = Actions(config, hub=hub)                    # one per session; `await actions.aclose()` at the end
    plan = await actions.plan_stop(run_id)                # StopPlan: plan.describe() is the confirmation text
    if plan.ok and confirmed:
        outcome = await actions.execute_stop(plan, screenshot_svg=svg)   # evidence, act, audit: StopOutcome
    answer = await actions.escalate(run_id)               # ReviewerAnswer: answer.one_line()
    bundle = await actions.save_evidence(run_id, screenshot_svg=svg)  # SavedBundle: bundle.path

Every method is a coroutine to await on the loop that owns the runs (the hub's): it reads the live
run there, then does the slow part (subprocesses, HTTP, file writes) in worker threads or over
asyncssh, so the loop never blocks. Expected failures come back as values (`StopOutcome.status`,
`ReviewerAnswer.error`); only `save_evidence` raises (`EvidenceError`, a `RunwatchError`).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from monitor.actions.audit import AUDIT_FILE, AuditLog
from monitor.actions.escalation import EscalationLimiter, wants_auto_escalation
from monitor.actions.evidence import SavedBundle, collect_evidence, write_bundle
from monitor.actions.prompt import build_prompt
from monitor.actions.reviewer import ReviewerAnswer, ask_reviewer
from monitor.actions.runref import RunRef, make_ref
from monitor.actions.shell import LocalShell, Shell, SSHShell
from monitor.actions.stop import StopOutcome, Stopper, StopPlan
from monitor.actions.wandb_stop import stop_wandb_run
from monitor.analysis import RunAnalysis
from monitor.config import Config
from monitor.sources.ssh import SSHEndpoint
from monitor.sources.wandb_api import WandbTarget


class RunSource(Protocol):
    """Where live runs come from: `monitor.hub.Hub`, or anything with its `analysis()`."""

    def analysis(self, run_id: str) -> RunAnalysis: ...


class Actions:
    """Stop, escalate and evidence for one session's runs (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        *,
        hub: RunSource | None = None,
        ssh_pool: Any = None,
        evidence_dir: Path | None = None,
        wandb_client_factory: Callable[[str | None], Any] | None = None,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        settle: float = 2.0,
        archive: bool = False,
    ) -> None:
        self.config = config
        self.hub = hub
        self.evidence_dir = evidence_dir or config.evidence_dir
        self.audit = AuditLog(self.evidence_dir / AUDIT_FILE)
        self.env = env
        self.clock = clock
        self.settle = settle
        self.archive = archive
        self.limiter = EscalationLimiter(config.reviewer.interval_minutes * 60.0)
        self._pool = ssh_pool
        self._own_pool = ssh_pool is None
        self._wandb_client_factory = wandb_client_factory
        self._runs: dict[str, RunAnalysis] = {}
        self._answers: dict[str, ReviewerAnswer] = {}
        self._hostname = socket.gethostname()
        self.stopper = Stopper(
            self._shell_for,
            self._wandb_stop,
            audit=self.audit,
            evidence_dir=str(self.evidence_dir),
            clock=clock,
        )

    # ---- runs ----------------------------------------------------------------------------------
    def add_run(self, run_id: str, analysis: RunAnalysis) -> None:
        """Make a run outside any hub known (e.g. one `runwatch check` read)."""
        self._runs[run_id] = analysis

    def ref(self, run_id: str) -> RunRef:
        """The run an action applies to; `KeyError` for an unknown id."""
        analysis = self._runs.get(run_id)
        if analysis is None:
            if self.hub is None:
                raise KeyError(run_id)
            analysis = self.hub.analysis(run_id)
        return make_ref(run_id, analysis, self.config.run_for(analysis.info.target))

    def last_answer(self, run_id: str) -> ReviewerAnswer | None:
        """The reviewer's latest answer about a run (it goes into the run's next bundle)."""
        return self._answers.get(run_id)

    # ---- evidence ------------------------------------------------------------------------------
    async def save_evidence(
        self,
        run_id: str,
        *,
        why: str = "saved by hand",
        screenshot_svg: str | None = None,
        action: dict[str, Any] | None = None,
        archive: bool | None = None,
    ) -> SavedBundle:
        """Write an evidence bundle for a run; raises `EvidenceError` when it cannot be written."""
        ev = collect_evidence(
            self.ref(run_id),
            now=self.clock(),
            why=why,
            review=self._answers.get(run_id),
            screenshot_svg=screenshot_svg,
            action=action,
        )
        keep = self.archive if archive is None else archive
        return await asyncio.to_thread(write_bundle, ev, self.evidence_dir, archive=keep, env=self.env)

    # ---- stop ----------------------------------------------------------------------------------
    async def plan_stop(self, run_id: str) -> StopPlan:
        """How the run would be stopped, for the confirmation dialog; changes nothing."""
        return await self.stopper.plan(self.ref(run_id))

    async def execute_stop(
        self,
        plan: StopPlan,
        *,
        dry_run: bool = False,
        screenshot_svg: str | None = None,
        require_evidence: bool = True,
    ) -> StopOutcome:
        """Save evidence, carry out a confirmed plan, audit the outcome. `dry_run` only records the plan."""

        async def save(p: StopPlan) -> SavedBundle:
            return await self.save_evidence(
                p.run_id, why=f"saved before stopping the run: {p.summary}", screenshot_svg=screenshot_svg,
                action=p.to_json(),
            )  # fmt: skip

        return await self.stopper.execute(
            plan, save_evidence=save, dry_run=dry_run, require_evidence=require_evidence, settle=self.settle
        )

    def _shell_for(self, host: SSHEndpoint | None) -> Shell:
        if host is None:
            return LocalShell(self._hostname)
        if self._pool is None:
            from monitor.sources.ssh import SSHPool

            self._pool = SSHPool()
        return SSHShell(self._pool, host)

    async def _wandb_stop(self, target: WandbTarget) -> str:
        def stop() -> str:
            if self._wandb_client_factory is not None:
                client = self._wandb_client_factory(target.base_url)
            else:
                from monitor.sources.wandb_api import WandbClient, resolve_credentials

                client = WandbClient(resolve_credentials(target.base_url, env=self.env))
            return stop_wandb_run(client, target)

        return await asyncio.to_thread(stop)

    # ---- reviewer ------------------------------------------------------------------------------
    async def escalate(self, run_id: str, *, question: str | None = None) -> ReviewerAnswer:
        """Ask the configured reviewer about a run; a failure is an answer with `error` set."""
        ref = self.ref(run_id)
        prompt = build_prompt(ref, question=question)
        answer = await asyncio.to_thread(
            ask_reviewer, self.config.reviewer, prompt, run_id=run_id, run_name=ref.name, env=self.env,
            clock=self.clock,
        )  # fmt: skip
        self._answers[run_id] = answer
        return answer

    async def auto_escalate(self, run_id: str) -> ReviewerAnswer | None:
        """Escalate an unsure run when `[reviewer] auto` is on, at most once per run per interval."""
        verdict = self.ref(run_id).analysis.judgement().verdict
        if not wants_auto_escalation(self.config.reviewer, verdict):
            return None
        if not self.limiter.take(run_id, self.clock()):
            return None
        return await self.escalate(run_id)

    # ---- life cycle ----------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the SSH connections this object opened."""
        if self._own_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
