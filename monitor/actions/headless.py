"""Actions without a screen: `runwatch check --escalate` and `runwatch watch --on-bad evidence|stop`."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from monitor.actions.api import Actions
from monitor.actions.escalation import answer_stops_run
from monitor.actions.prompt import build_prompt
from monitor.actions.reviewer import ReviewerAnswer, ask_reviewer
from monitor.actions.runref import make_ref
from monitor.check import CheckResult
from monitor.config import Config
from monitor.errors import RunwatchError
from monitor.hub import HubEvent
from monitor.model import Verdict
from monitor.outward import env_redactor, outward_data, ref_redactor

ON_BAD = ("evidence", "stop")


def escalate_results(
    results: list[CheckResult], config: Config, *, env: Mapping[str, str] | None = None, workers: int = 4
) -> list[CheckResult]:
    """Ask the reviewer about each unsure run (several at once); each such result gains `review`."""
    asks: dict[int, tuple[str, str, str]] = {}
    for i, r in enumerate(results):
        if r.analysis is not None and r.analysis.judgement().verdict is Verdict.UNSURE:
            ref = make_ref(r.target, r.analysis, config.run_for(r.target))
            asks[i] = (r.target, ref.name, build_prompt(ref))
    if not asks:
        return results

    def ask(item: tuple[str, str, str]) -> ReviewerAnswer:
        run_id, name, prompt = item
        return ask_reviewer(config.reviewer, prompt, run_id=run_id, run_name=name, env=env)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(asks)))) as pool:
        answers = dict(zip(asks, pool.map(ask, asks.values()), strict=True))
    return [dataclasses.replace(r, review=answers[i]) if i in answers else r for i, r in enumerate(results)]


Emit = Callable[[dict[str, Any]], None]


class OnBadRun:
    """A hub event listener for `watch`: evidence (and a stop, only with `yes`) when a run turns bad.

    With `[reviewer] auto = true` it also escalates unsure runs (rate-limited by `Actions`); a STOP
    answer stops the run only with `auto_stop = true` in the config *and* `yes`.
    Each action is one task on the loop; `drain()` waits for them before the hub stops.
    """

    def __init__(self, actions: Actions, mode: str | None, emit: Emit, *, yes: bool = False, dry_run: bool = False):
        if mode is not None and mode not in ON_BAD:
            raise RunwatchError(f"--on-bad {mode!r}: expected one of {', '.join(ON_BAD)}")
        self.actions = actions
        self.mode = mode
        self._emit = emit
        self.yes = yes
        self.dry_run = dry_run
        self._bad: set[str] = set()
        self._stopped: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, ev: HubEvent) -> None:
        if ev.kind != "verdict":
            return
        if ev.verdict is Verdict.BAD and self.mode is not None and ev.run_id not in self._bad:
            self._bad.add(ev.run_id)
            self._spawn(self._on_bad(ev))
        elif ev.verdict is not Verdict.BAD:
            self._bad.discard(ev.run_id)  # bad again later is a new event worth a new bundle
            if ev.verdict is Verdict.UNSURE and self.actions.config.reviewer.auto:
                self._spawn(self._on_unsure(ev))

    def emit(self, record: dict[str, Any]) -> None:
        """Hand a record on with the secrets in it redacted (stop plans hold command lines)."""
        try:
            red = ref_redactor(self.actions.ref(str(record.get("run", ""))))
        except KeyError:
            red = env_redactor()
        self._emit(outward_data(record, red))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the actions already started."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _on_bad(self, ev: HubEvent) -> None:
        if self.mode == "stop" and ev.run_id not in self._stopped:
            await self._stop(ev, f"the run turned bad: {ev.reason}")
        else:
            await self._save(ev, f"the run turned bad: {ev.reason}")

    async def _save(self, ev: HubEvent, why: str, action: dict[str, Any] | None = None) -> None:
        record: dict[str, Any] = {"event": "evidence", "run": ev.run_id, "name": ev.name}
        try:
            bundle = await self.actions.save_evidence(ev.run_id, why=why, action=action)
        except RunwatchError as e:
            self.emit({**record, "ok": False, "error": e.message})
        else:
            self.emit({**record, "ok": True, "path": str(bundle.path)})

    async def _stop(self, ev: HubEvent, why: str) -> None:
        self._stopped.add(ev.run_id)
        plan = await self.actions.plan_stop(ev.run_id)
        if not (plan.ok and self.yes and not self.dry_run):
            # No real stop (rehearsed, or impossible): the evidence is still worth keeping.
            await self._save(ev, why, plan.to_json())
        outcome = await self.actions.execute_stop(plan, dry_run=self.dry_run or not self.yes)
        record: dict[str, Any] = {
            "event": "stop",
            "run": ev.run_id,
            "name": ev.name,
            "status": outcome.status,
            "detail": outcome.detail,
            "plan": plan.describe(),
        }
        if outcome.evidence is not None:
            record["evidence"] = str(outcome.evidence.path)
        if not self.yes and plan.ok:
            record["detail"] = "not stopped: pass --yes to stop runs unattended; " + outcome.detail
        self.emit(record)

    async def _on_unsure(self, ev: HubEvent) -> None:
        answer = await self.actions.auto_escalate(ev.run_id)
        if answer is None:
            return
        self.emit(
            {
                "event": "reviewer",
                "run": ev.run_id,
                "name": ev.name,
                "decision": answer.decision,
                "reason": answer.reason,
                "error": answer.error,
                "backend": answer.backend,
            }
        )
        if answer_stops_run(self.actions.config.reviewer, answer) and ev.run_id not in self._stopped:
            await self._stop(ev, f"the reviewer said STOP: {answer.reason}")
