"""The leader's reconcile loop: turn the difference between what services want and what runs into
commands, propose them, and do it again.

Event-driven: a pass runs after any change of the state (Store.on_change), at the time the last plan
asked to be woken (`Plan.wake_at`: a restart delay, an update's monitor period), and every
`full_pass_interval_s` as a safety net. A pass woken by a change first lets the proposals waiting for
their answers have them (`answers_settled`, at most `answers_first_max_s`): the apply that woke it is
theirs, and their answers would otherwise wait behind the plan. Planning blocks the event loop the API
is served on, so a pass woken by a change first waits `pass_pacing` times as long as the last one
planned (1 ms in a small cluster, more in a large one: requests are served between passes however fast
changes come). Never two passes at once: a pass proposes its commands together (they commit in one
batch), waits for them, and the commit wakes the next pass. A failing pass is logged; a command apply
refused is retried at the next wake (only a change can help), one that was not committed (no quorum)
or a planner error is retried by itself; both no sooner than ERROR_BACKOFF_S later, doubled per failure
in a row up to the full pass interval.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from warren.config import OrchestratorSettings
from warren.errors import NotLeaderError, UnavailableError, WarrenError
from warren.pki import tokens
from warren.reconciler import planner
from warren.reconciler.actions import Plan
from warren.store import commands as c

if TYPE_CHECKING:
    from warren.manager.metrics import ManagerMetrics
    from warren.store.machine import Store

log = logging.getLogger(__name__)

Propose = Callable[[c.Command], Awaitable[Any]]
# Returns once no proposal waits for its answer, or after the timeout given (warren.manager.inflight).
Settled = Callable[[float], Awaitable[object]]

# After a pass whose planning or proposals failed, the next one waits at least this long (a command
# that keeps being refused would otherwise replan on its own refusal's commit, in a loop); seconds.
ERROR_BACKOFF_S = 0.5


Outcome = Literal["ok", "refused", "failed"]
# warren.reconciler.planner.plan: the commands that move the state towards the specs (it mints the new
# tasks' IDs itself: the proposer mints IDs, never apply).
Planner = Callable[[sqlite3.Connection, float, OrchestratorSettings], Plan]


class Orchestrator:
    """One leader term's reconcile loop: `start()` on gaining leadership, `stop()` on losing it."""

    def __init__(
        self,
        store: Store,
        propose: Propose,
        settings: OrchestratorSettings,
        *,
        plan: Planner | None = None,
        metrics: ManagerMetrics | None = None,
        wall: Callable[[], float] = time.time,
        answers_settled: Settled | None = None,
    ) -> None:
        self.store = store
        self.answers_settled = answers_settled
        self.propose = propose
        self.settings = settings
        # Parsed service rows and the last pass, kept for this term (a new leader starts afresh).
        self.plan: Planner = plan if plan is not None else planner.Planner()
        self.metrics = metrics
        self.wall = wall
        self._wake = asyncio.Event()
        # How long the last pass planned (blocking the event loop); seconds. Paces the next pass.
        self.last_plan_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.store.on_change.append(self._wake.set)
        self._task = asyncio.create_task(self._loop(), name="orchestrator")

    async def stop(self) -> None:
        """Stop at once: a pass in flight is abandoned (its proposals may still commit, which is
        harmless: the next leader plans from whatever committed)."""
        if self._wake.set in self.store.on_change:
            self.store.on_change.remove(self._wake.set)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            self._wake.clear()
            outcome, wake_at = await self.run_pass()
            # A change wakes the next pass no sooner than this (see OrchestratorSettings.pass_pacing).
            paced = loop.time() + self.last_plan_s * self.settings.pass_pacing
            delay = self.settings.full_pass_interval_s
            if wake_at is not None:
                delay = min(delay, max(0.0, wake_at - self.wall()))
            if outcome == "ok":
                failures = 0
            else:
                # Our own refused commands' commits set the wake flag: wait out the backoff first.
                backoff = min(ERROR_BACKOFF_S * 2**failures, self.settings.full_pass_interval_s)
                failures += 1
                await asyncio.sleep(backoff)
                self._wake.clear()
                if outcome == "failed":
                    continue  # no quorum, or a planner bug: try again, more slowly each time
                delay = max(0.0, delay - backoff)  # refused: the state must change first
            due = loop.time() + delay
            try:
                async with asyncio.timeout_at(due):
                    await self._wake.wait()
            except TimeoutError:
                continue
            # Woken by a change: the writes whose apply woke us are answered first (their answers come
            # back from the Raft core just after the apply; see OrchestratorSettings.answers_first_max_s).
            if self.answers_settled is not None and self.settings.answers_first_max_s > 0:
                await self.answers_settled(self.settings.answers_first_max_s)
            # Then let the API have the event loop for a while (the planner runs on it, blocking it),
            # unless a wake_at or the full pass comes sooner.
            hold = min(paced, due) - loop.time()
            if hold > 0:
                await asyncio.sleep(hold)

    async def run_pass(self) -> tuple[Outcome, float | None]:
        """One plan-and-propose pass: its outcome ("ok"; "refused": apply refused a command, which only
        a change of the state can fix; "failed": planning failed, or a command was not committed) and
        when to plan again at the latest."""
        start = time.perf_counter()
        try:
            result = self.plan(self.store.conn, self.wall(), self.settings)
        except Exception as exc:  # a task boundary: a planner bug must not stop the leader
            trace = "".join(traceback.format_exception(exc))
            log.error("reconcile pass failed while planning:\n%s", tokens.redact(trace).rstrip())
            self._observe(start, "failed")
            return "failed", None
        finally:
            self.last_plan_s = time.perf_counter() - start
        outcome: Outcome = "ok"
        if result.commands:
            answers = await asyncio.gather(
                *(self.propose(cmd) for cmd in result.commands), return_exceptions=True
            )
            for cmd, answer in zip(result.commands, answers, strict=True):
                if isinstance(answer, asyncio.CancelledError):
                    raise answer
                if isinstance(answer, UnavailableError | NotLeaderError):
                    outcome = "failed"
                    log.warning("reconcile: %s not committed: %s", cmd.OP, tokens.redact(str(answer)))
                elif isinstance(answer, WarrenError):
                    outcome = "failed" if outcome == "failed" else "refused"
                    log.warning("reconcile: %s refused: %s", cmd.OP, tokens.redact(str(answer)))
                elif isinstance(answer, BaseException):
                    outcome = "failed"
                    log.error("reconcile: %s failed: %s", cmd.OP, tokens.redact(repr(answer)))
        self._observe(start, outcome)
        return outcome, result.wake_at

    def _observe(self, start: float, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.reconcile_passes.labels(outcome).inc()
            self.metrics.reconcile_seconds.observe(time.perf_counter() - start)
