"""The leader's view of the other managers, written into the log for the event stream: a manager its
replication has not heard from for EventSettings.unreachable_after_s is "unreachable", and
"reachable" again once it answers (a `cluster.note`, warren.store.events).

Runs with the leader's services, one term at a time, and looks at the Raft core's metrics every
EventSettings.peer_check_s (a dictionary read; nothing is sent). Rate-limited per manager: at most one
note per EventSettings.note_interval_s, so a flapping link cannot flood the log; a change within the
interval is written at its end if it still holds. Every manager starts a term as reachable, so a
manager dead when the term starts (the old leader, after a failover) is noted at the first look.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import warren_raft

from warren.config import EventSettings
from warren.errors import WarrenError
from warren.manager.consensus import MemberMeta
from warren.store import commands

log = logging.getLogger(__name__)


class PeerWatch:
    def __init__(
        self,
        metrics: Callable[[], warren_raft.Metrics],
        propose: Callable[[commands.Command], Awaitable[Any]],
        settings: EventSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._metrics = metrics
        self._propose = propose
        self.settings = settings
        self._clock = clock
        self._wall = wall
        self._reported: dict[int, bool] = {}  # raft id -> reachable, as last written (absent: reachable)
        self._noted_at: dict[int, float] = {}  # raft id -> when its last note was written
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="peer-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.peer_check_s)
            for note in self.check():
                try:
                    await self._propose(note)
                except WarrenError as exc:
                    log.info("manager reachability note not written: %s", exc)

    def check(self) -> list[commands.ClusterNote]:
        """The notes due now (and recorded as written)."""
        m = self._metrics()
        if m["role"] != "leader":
            return []
        now = self._clock()
        notes = []
        for raft_id in (*m["voters"], *m["learners"]):
            if raft_id == m["id"]:
                continue
            peer = m["peers"].get(raft_id)
            contact = None if peer is None else peer["last_contact_s"]
            reachable = contact is not None and contact < self.settings.unreachable_after_s
            if reachable == self._reported.get(raft_id, True):
                continue
            noted = self._noted_at.get(raft_id)
            if noted is not None and now - noted < self.settings.note_interval_s:
                continue  # rate-limited: looked at again at the next check
            self._reported[raft_id] = reachable
            self._noted_at[raft_id] = now
            notes.append(self._note(m, raft_id, reachable, contact))
        return notes

    def _note(
        self, m: warren_raft.Metrics, raft_id: int, reachable: bool, contact: float | None
    ) -> commands.ClusterNote:
        info = m["nodes"].get(raft_id)
        meta = MemberMeta.decode(info["meta"]) if info is not None else None
        name = meta.name if meta is not None else f"raft node {raft_id}"
        seen = "never" if contact is None else f"{contact:.1f} s ago"
        if reachable:
            message = f"manager {name} is reachable again"
        else:
            message = f"manager {name} is unreachable from the leader (last heard from {seen})"
        attrs: dict[str, commands.NoteValue] = {
            "raft_id": raft_id,
            "last_contact_s": None if contact is None else round(contact, 3),
            "term": m["term"],
        }
        action = "reachable" if reachable else "unreachable"
        return commands.ClusterNote("manager", action, name, attrs, message, self._wall())
