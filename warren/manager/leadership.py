"""Leader-only services (dispatcher, orchestrator) started and stopped with leadership.

The watcher sleeps in the Raft core's `wait_role_change`, which wakes it when the role, term or
leader changes (never for a heartbeat): a new leader starts its services as soon as the core knows,
and an idle manager's watcher costs nothing. Each term of leadership gets new services: a fresh
dispatcher means every worker gets a fresh grace, and nothing of an earlier term (held sessions, log
streams, a half-done pass) survives into the next. Before starting them the new leader waits for its
read barrier, so the state it plans from holds every command committed by earlier leaders.

Once its services started, a new leader writes a "leader elected" note into the log (a
`cluster.note` command, warren.store.events), with its term, its name and `leaderless_ms`: how long
this node went without a working leader, from its last contact with the previous leader (the Raft
core's `last_leader_contact_s` when the node saw the leader go; else when the watcher first saw no
leader, e.g. at start) to the moment its read barrier passed and it could serve writes. The note is
of command version 5: while a manager runs an older Warren it is not written (logged, not retried).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import warren_raft

from warren.errors import WarrenError
from warren.manager.consensus import Consensus
from warren.manager.dispatcher import Dispatcher
from warren.manager.metrics import ManagerMetrics
from warren.manager.orchestrator import Orchestrator, Planner
from warren.manager.peerwatch import PeerWatch
from warren.store import commands

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
        self.peer_watch: PeerWatch | None = None
        self.term: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None  # a term's services being stopped
        # When this node last lost its working leader (monotonic), None while it has one.
        self._lost_at: float | None = time.monotonic()
        self._note: asyncio.Task[None] | None = None
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
        if self._note is not None:
            self._note.cancel()
            await asyncio.gather(self._note, return_exceptions=True)
        if self._stopping is not None:  # the watch was cancelled while it stopped a term's services
            await self._stopping
        await self._stop_services()

    async def _watch(self) -> None:
        node = self.consensus.node
        m = node.metrics()
        while True:
            retry = False
            self._track_leader(m)
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

    def _track_leader(self, m: warren_raft.Metrics) -> None:
        """Note when this node lost its working leader (for the next election's leaderless_ms)."""
        if m["leader_id"] is not None and m["role"] != "leader":
            self._lost_at = None
        elif m["leader_id"] is None and self._lost_at is None:
            contact = m.get("last_leader_contact_s")
            now = time.monotonic()
            self._lost_at = now - contact if isinstance(contact, float | int) and contact >= 0 else now

    def _elected(self, term: int) -> None:
        """Write the "leader elected" note of this term (in the background: never delays the term)."""
        lost_at, self._lost_at = self._lost_at, None
        leaderless_ms = None if lost_at is None else max(0, round((time.monotonic() - lost_at) * 1000))
        leader = self.consensus.leader()
        name = (
            leader.name
            if leader is not None and leader.name
            else f"raft node {self.consensus.node.metrics()['id']}"
        )
        without = "" if leaderless_ms is None else f" after {leaderless_ms} ms without a leader"
        note = commands.ClusterNote(
            "leader",
            "elected",
            name,
            {"term": term, "node": name, "leaderless_ms": leaderless_ms},
            f"{name} elected leader for term {term}{without}",
            time.time(),
        )
        self._note = asyncio.create_task(self._propose_note(note), name="leader-note")

    async def _propose_note(self, note: commands.ClusterNote) -> None:
        try:
            await self.consensus.propose(note)
        except WarrenError as exc:
            log.info("the leader-elected note was not written: %s", exc)
        except Exception:  # a task boundary
            log.exception("writing the leader-elected note failed")

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
        self.peer_watch = PeerWatch(
            self.consensus.node.metrics, self.consensus.propose, self.consensus.settings.events
        )
        self.peer_watch.start()
        self.dispatcher, self.orchestrator, self.term = dispatcher, orchestrator, term
        if self.on_change is not None:
            self.on_change(dispatcher)
        log.info("leader services started (term %d)", term)
        self._elected(term)

    async def _stop_services(self) -> None:
        dispatcher, orchestrator, term = self.dispatcher, self.orchestrator, self.term
        self.dispatcher = self.orchestrator = self.term = None
        watch, self.peer_watch = self.peer_watch, None
        if watch is not None:
            await watch.stop()
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
