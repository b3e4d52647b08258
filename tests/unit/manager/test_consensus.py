"""Consensus.wait_for_leader: woken by the core's role changes, never by polling."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from warren.errors import UnavailableError
from warren.manager.consensus import Consensus


class ScriptedNode:
    """A Raft core whose role, term and leader the test sets; waiters wake on each change."""

    def __init__(self) -> None:
        self.role, self.term, self.leader_id = "candidate", 1, None
        self.changed = asyncio.Event()
        self.waits = 0

    def metrics(self) -> dict[str, Any]:
        return {"role": self.role, "term": self.term, "leader_id": self.leader_id, "nodes": {}}

    def set(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)
        self.changed.set()

    async def wait_role_change(self, role: str, term: int, leader_id: int | None) -> dict[str, Any]:
        self.waits += 1
        while (self.role, self.term, self.leader_id) == (role, term, leader_id):
            self.changed.clear()
            await self.changed.wait()
        return self.metrics()


def consensus(node: ScriptedNode) -> Consensus:
    c = object.__new__(Consensus)
    c.node = node  # type: ignore[assignment]
    return c


async def test_wait_for_leader_wakes_on_the_change_and_does_not_poll() -> None:
    node = ScriptedNode()
    waiter = asyncio.create_task(consensus(node).wait_for_leader(5.0))
    await asyncio.sleep(0.2)  # time for a polling loop to spin: it must not
    assert not waiter.done()
    assert node.waits == 1
    node.set(term=2)  # a new term, still no leader: one more wait
    await asyncio.sleep(0)
    node.set(leader_id=3, role="follower")
    leader = await asyncio.wait_for(waiter, 1.0)
    assert leader.raft_id == 3
    assert node.waits <= 3


async def test_wait_for_leader_returns_at_once_when_a_leader_is_known() -> None:
    node = ScriptedNode()
    node.set(leader_id=1, role="leader")
    assert (await consensus(node).wait_for_leader(0.01)).raft_id == 1
    assert node.waits == 0


async def test_wait_for_leader_times_out_or_stops_with_the_node() -> None:
    node = ScriptedNode()
    with pytest.raises(UnavailableError, match="no leader elected within 0.05 s"):
        await consensus(node).wait_for_leader(0.05)
    node.set(role="shutdown")
    with pytest.raises(UnavailableError, match="shut down"):
        await consensus(node).wait_for_leader(1.0)
