"""Consensus.wait_for_leader: woken by the core's role changes, never by polling; Consensus.propose
counts the proposals waiting for their answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from warren.config import ManagerSettings
from warren.errors import UnavailableError
from warren.manager.consensus import Consensus
from warren.manager.inflight import InFlight
from warren.manager.versions import VersionGate
from warren.store import commands


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


def test_is_leader_reads_the_core_fresh_right_after_a_cached_read(monkeypatch: pytest.MonkeyPatch) -> None:
    # The founder asks "do I lead?" right after the election: an answer cached from before it made
    # `warren manager init` skip the cluster's first command (CI: a drill's manager never listed).
    monkeypatch.setattr("warren.manager.consensus.time.monotonic", lambda: 100.0)  # within the TTL
    node = ScriptedNode()
    c = consensus(node)
    c._metrics, c._metrics_at = node.metrics(), 100.0
    assert not c.seems_leader()
    node.set(leader_id=1, role="leader")
    assert c.is_leader()
    assert not c.seems_leader()  # the per-request answer may lag by up to METRICS_TTL_S


class AnsweringNode:
    """A Raft core whose proposals are answered when the test says (or fail with `error`)."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.error: Exception | None = None

    async def propose(self, payload: bytes) -> tuple[int, bytes]:
        await self.answer.wait()
        if self.error is not None:
            raise self.error
        return 7, b'{"ok": {"done": true}}'


def proposing(node: AnsweringNode) -> Consensus:
    c = object.__new__(Consensus)
    c.node = node  # type: ignore[assignment]
    c.settings = ManagerSettings()
    c.observe_commit = []
    c.versions = VersionGate(lambda: [])
    c.in_flight = InFlight()
    return c


async def test_propose_is_in_flight_until_its_answer_whatever_the_answer() -> None:
    node = AnsweringNode()
    cons = proposing(node)
    first = asyncio.create_task(cons.propose(commands.RemoveTasks(["t1"])))
    await asyncio.sleep(0.01)
    assert cons.in_flight.count == 1
    settled = asyncio.create_task(cons.in_flight.settled(5.0))
    await asyncio.sleep(0.01)
    assert not settled.done()
    node.answer.set()
    assert await first == {"done": True}
    assert cons.in_flight.count == 0 and await settled is True
    node.error = TimeoutError()  # the write timeout's shape: the answer never came
    with pytest.raises(UnavailableError):
        await cons.propose(commands.RemoveTasks(["t2"]))
    assert cons.in_flight.count == 0
