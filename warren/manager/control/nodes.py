"""The cluster's nodes (managers and workers): list, inspect, remove, drain or activate."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from warren.errors import ConflictError, NotFoundError, UnavailableError, raft_errors
from warren.manager.consensus import Consensus
from warren.manager.control.leader import LeaderDispatcher
from warren.store import commands as c
from warren.store import queries

log = logging.getLogger(__name__)


class Nodes:
    def __init__(self, consensus: Consensus, dispatcher: LeaderDispatcher) -> None:
        self.consensus = consensus
        self.dispatcher = dispatcher
        self._caught_up_term: int | None = None  # the term of the last read barrier `catch_up` passed

    def all(self) -> list[dict[str, Any]]:
        return queries.nodes(self.consensus.store.conn)

    def get(self, name: str) -> dict[str, Any]:
        node = queries.node(self.consensus.store.conn, name)
        if node is None:
            raise NotFoundError(f"no node named {name!r}")
        return node

    def role_of(self, name: str) -> str | None:
        """The role the state records for node `name`; None if there is no such node (removed: its
        certificate is revoked). UnavailableError if there is none yet on a manager that is not ready:
        one restarted and still applying its log has not reached the node's join, and a worker told
        "revoked" would stop for good (the chaos suite saw it after every manager restarted at once)."""
        role = queries.node_role(self.consensus.store.conn, name)
        if role is None and not self.consensus.readiness()[0]:
            raise UnavailableError(
                f"this manager has not caught up with the cluster's state: it cannot tell whether node "
                f"{name} was removed; retry (or ask another manager)"
            )
        return role

    async def catch_up(self) -> None:
        """Until this manager has applied everything committed when called (the API asks before it
        calls a node certificate revoked); UnavailableError if that does not happen in time.

        Once per term: after one barrier in a term the state is the cluster's, give or take the last
        milliseconds, so a removed node's certificate cannot make every request it sends cost a
        quorum round (a state left behind comes with a restart, and a restart comes with a new term
        for this manager to see)."""
        term = self.consensus.metrics()["term"]
        if self._caught_up_term == term:
            return
        try:
            async with asyncio.timeout(self.consensus.settings.write_timeout_s):
                await self.consensus.read_barrier()
        except TimeoutError:
            raise UnavailableError("this manager could not catch up with the cluster's state") from None
        self._caught_up_term = term

    async def remove(self, name: str) -> dict[str, Any]:
        self.consensus.require_leader()
        node = self.get(name)
        if node["role"] == "manager" and node["raft_id"] is not None:
            raft_id = int(node["raft_id"])
            m = self.consensus.metrics()
            if raft_id == m["id"]:
                raise ConflictError(
                    f"{name} is the leader: stop it first (SIGTERM hands leadership over), "
                    "then remove it through another manager"
                )
            if raft_id in m["voters"] or raft_id in m["learners"]:
                if len(m["voters"]) == 1 and raft_id in m["voters"]:
                    raise ConflictError(f"{name} is the last voting manager")
                with raft_errors():
                    await self.consensus.node.remove_node(raft_id)
                log.info("manager %s (raft id %d) removed from the Raft group", name, raft_id)
        result = dict(await self.consensus.propose(c.RemoveNode(name, time.time())))
        dispatcher = self.dispatcher.maybe()
        if dispatcher is not None:
            dispatcher.forget(name)
        return result

    async def set_availability(self, name: str, availability: c.Availability) -> dict[str, Any]:
        return dict(await self.consensus.propose(c.SetNodeAvailability(name, availability, time.time())))

    async def set_labels(self, name: str, add: dict[str, str], remove: list[str]) -> dict[str, Any]:
        """An operator's labels: `add` set, `remove` taken away (a worker's reported ones stay)."""
        return dict(await self.consensus.propose(c.SetNodeLabels(name, add, remove, time.time())))
