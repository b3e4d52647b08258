"""Leader-only services (dispatcher, orchestrator) started and stopped with leadership.

The watcher sleeps in the Raft core's `wait_role_change`, which wakes it when the role, term or
leader changes (never for a heartbeat): a new leader starts its services as soon as the core knows,
and an idle manager's watcher costs nothing. Each term of leadership gets new services: a fresh
dispatcher means every worker gets a fresh grace, and nothing of an earlier term (held sessions, log
streams, a half-done pass) survives into the next. Before starting them the new leader waits for its
read barrier, so the state it plans from holds every command committed by earlier leaders.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from warren.errors import WarrenError
from warren.manager.consensus import Consensus
from warren.manager.dispatcher import Dispatcher
from warren.manager.metrics import ManagerMetrics
from warren.manager.orchestrator import Orchestrator, Planner

log = logging.getLogger(__name__)

# After a failed attempt to start or stop a term's services (no read barrier in time, an error), the
# role is looked at again this much later, changed or not; seconds.
RETRY_S = 0.05


class LeaderServices:
    """Watches the role; `dispatcher` is the current term's dispatcher, or None when not leading."""

    def __init__(
        self,
        consensus: Consensus,
        *,
        metrics: ManagerMetrics | None = None,
        plan: Planner | None = None,
        hold_s: float | None = None,
        on_change: Callable[[Dispatcher | None], None] | None = None,
        data_key: bytes | None = None,
    ) -> None:
        self.consensus = consensus
        self.data_key = data_key  # for each term's dispatcher: it opens the secrets it delivers
        self.metrics = metrics
        self.plan = plan
        self.hold_s = hold_s
        self.on_change = on_change
        self.dispatcher: Dispatcher | None = None
        self.orchestrator: Orchestrator | None = None
        self.term: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None  # a term's services being stopped
        if metrics is not None:
            metrics.sessions_held.set_function(self._held)

    def _held(self) -> int:
        return 0 if self.dispatcher is None else self.dispatcher.held

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="leader-services")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._stopping is not None:  # the watch was cancelled while it stopped a term's services
            await self._stopping
        await self._stop_services()

    async def _watch(self) -> None:
        node = self.consensus.node
        m = node.metrics()
        while True:
            retry = False
            try:
                leading = m["role"] == "leader"
                if self.term is not None and (not leading or m["term"] != self.term):
                    await self._stop_services()
                if leading and self.term is None:
                    await self._start_services(m["term"])
                    retry = self.term is None  # not started (no read barrier yet): no change may come
            except Exception:  # a task boundary: log, and look again soon
                log.exception("starting or stopping the leader services failed")
                retry = True
            if m["role"] == "shutdown":
                return
            if retry:
                await asyncio.sleep(RETRY_S)
                m = node.metrics()
            else:
                m = await node.wait_role_change(m["role"], m["term"], m["leader_id"])

    async def _start_services(self, term: int) -> None:
        try:
            async with asyncio.timeout(self.consensus.settings.write_timeout_s):
                await self.consensus.read_barrier()
        except TimeoutError:
            log.info("leader services not started yet (term %d): no read barrier in time", term)
            return
        except WarrenError as exc:
            log.info("leader services not started yet (term %d): %s", term, exc)
            return
        if not self.consensus.is_leader():
            return
        orch = self.consensus.settings.orchestrator
        store = self.consensus.store
        dispatcher = Dispatcher(
            store,
            self.consensus.propose,
            orch,
            hold_s=self.hold_s,
            metrics=self.metrics,
            data_key=self.data_key,
        )
        orchestrator = Orchestrator(
            store,
            self.consensus.propose,
            orch,
            plan=self.plan,
            metrics=self.metrics,
            answers_settled=self.consensus.in_flight.settled,
        )
        dispatcher.start()
        orchestrator.start()
        self.dispatcher, self.orchestrator, self.term = dispatcher, orchestrator, term
        if self.on_change is not None:
            self.on_change(dispatcher)
        log.info("leader services started (term %d)", term)

    async def _stop_services(self) -> None:
        dispatcher, orchestrator, term = self.dispatcher, self.orchestrator, self.term
        self.dispatcher = self.orchestrator = self.term = None
        if dispatcher is None and orchestrator is None:
            return
        if self.on_change is not None:
            self.on_change(None)
        # Shielded: cancelling the watch (stop()) must not leave a dispatcher half stopped, its store
        # listener still registered; stop() waits for this instead.
        self._stopping = asyncio.create_task(self._stop_both(dispatcher, orchestrator, term))
        await asyncio.shield(self._stopping)

    async def _stop_both(
        self, dispatcher: Dispatcher | None, orchestrator: Orchestrator | None, term: int | None
    ) -> None:
        if orchestrator is not None:
            await orchestrator.stop()
        if dispatcher is not None:
            await dispatcher.stop()
        log.info("leader services stopped (term %s)", term)
