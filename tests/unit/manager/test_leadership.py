"""The leader-services watcher: services start and stop with the Raft role, fresh each term, woken by
the core's `wait_role_change` (never by a timer), against a scripted role and against a real
one-node core."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from warren.config import EventSettings, ManagerSettings, OrchestratorSettings
from warren.manager.consensus import Consensus, MemberMeta
from warren.manager.inflight import InFlight
from warren.manager.leadership import LeaderServices
from warren.reconciler.actions import Plan
from warren.store import commands as c
from warren.store.machine import Store
from warren.testing.wait import eventually_async


def idle_plan(conn: Any, now: float, settings: OrchestratorSettings) -> Plan:
    return Plan([], None)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(str(tmp_path))
    s.restore(None)
    return s


class ScriptedNode:
    """The core's role as the watcher sees it: `set` changes it and wakes waiters, as the core does."""

    def __init__(self) -> None:
        self.role, self.term, self.leader_id = "follower", 1, 2
        self.changed = asyncio.Event()
        self.waits = 0  # wait_role_change calls: each one is a wake-up of the watcher

    def metrics(self) -> dict[str, Any]:
        return {"role": self.role, "term": self.term, "leader_id": self.leader_id}

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


class ScriptedConsensus:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.settings = ManagerSettings()
        self.node = ScriptedNode()
        self.barriers = 0
        self.in_flight = InFlight()

    def is_leader(self) -> bool:
        return self.node.role == "leader"

    async def read_barrier(self) -> int:
        self.barriers += 1
        return 0

    async def propose(self, cmd: c.Command) -> Any:
        return {}


async def test_leader_services_follow_the_role_and_are_new_each_term(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")

    consensus = ScriptedConsensus(store)
    node = consensus.node
    seen: list[object] = []
    services = LeaderServices(consensus, plan=idle_plan, on_change=seen.append)  # type: ignore[arg-type]
    services.start()
    await eventually_async(lambda: node.waits == 1, 5.0, "the watcher waiting on the core")
    await asyncio.sleep(0.2)  # the behaviour under test: nothing wakes the watcher meanwhile
    assert services.dispatcher is None and seen == [] and node.waits == 1, "woke with nothing changed"
    node.set(role="leader", leader_id=1)
    await eventually_async(lambda: services.dispatcher is not None, 5.0, "a dispatcher")
    first = services.dispatcher
    assert consensus.barriers == 1 and services.term == 1
    node.set(term=2)  # lost and won again before the watcher looked
    await eventually_async(
        lambda: services.dispatcher is not None and services.dispatcher is not first, 5.0, "a new dispatcher"
    )
    assert services.term == 2
    node.set(role="follower", leader_id=3)
    await eventually_async(lambda: services.dispatcher is None, 5.0, "no dispatcher")
    assert services.orchestrator is None
    await services.stop()
    assert [d is None for d in seen] == [False, True, False, True]
    assert store.on_change == [], "a stopped term left a listener behind"

    assert "leader services started (term 1)" in caplog.text
    assert "leader services stopped (term 1)" in caplog.text
    assert "leader services started (term 2)" in caplog.text


async def test_a_start_without_read_barrier_is_retried_without_a_role_change(store: Store) -> None:
    consensus = ScriptedConsensus(store)
    barriers = 0

    async def flaky_barrier() -> int:
        nonlocal barriers
        barriers += 1
        if barriers == 1:
            raise TimeoutError
        return 0

    consensus.read_barrier = flaky_barrier  # type: ignore[method-assign]
    consensus.node.set(role="leader", leader_id=1)
    services = LeaderServices(consensus, plan=idle_plan)  # type: ignore[arg-type]
    services.start()
    await eventually_async(lambda: services.dispatcher is not None, 5.0, "a dispatcher")
    assert barriers == 2 and services.term == 1
    await services.stop()


class CountingNode:
    """A real core's node, counting the watcher's calls (a pyo3 object takes no new attributes)."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.waits = 0
        self.metrics_reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.node, name)

    def metrics(self) -> Any:
        self.metrics_reads += 1
        return self.node.metrics()

    async def wait_role_change(self, role: str, term: int, leader_id: int | None) -> Any:
        self.waits += 1
        return await self.node.wait_role_change(role, term, leader_id)


async def test_a_real_core_wakes_the_watcher_on_leadership_and_shutdown_only(
    raft: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()

    consensus = Consensus.open(
        raft_dir=str(tmp_path / "raft"),
        data_dir=str(tmp_path / "data"),
        raft_id=1,
        listen_addr="127.0.0.1:0",
        advertise_addr="127.0.0.1:1",
        meta=MemberMeta("m1", "127.0.0.1:2"),
        # The leader's peer watch looks at the metrics once a second by design (test_peerwatch.py):
        # out of the way here, where the watcher's own wake-ups are counted.
        settings=ManagerSettings(events=EventSettings(peer_check_s=3600.0)),
        tls=None,
    )
    node = CountingNode(consensus.node)
    consensus.node = node  # type: ignore[assignment]
    consensus.start()
    services = LeaderServices(consensus, plan=idle_plan)
    services.start()
    # one wait at least: more when the new node settles its role
    await eventually_async(lambda: node.waits >= 1, 5.0, "the watcher waiting on the core")
    assert services.dispatcher is None
    await consensus.node.bootstrap()
    await eventually_async(lambda: services.dispatcher is not None, 5.0, "a dispatcher")
    assert services.term == consensus.metrics()["term"]
    # Leading and idle, with heartbeats: the watcher sleeps (a poll would have read metrics 20 times).
    waits, reads = node.waits, node.metrics_reads
    await asyncio.sleep(1.0)  # the behaviour under test: an idle second
    assert (node.waits, node.metrics_reads) == (waits, reads)
    assert services._task is not None
    await consensus.shutdown()  # role "shutdown": the services stop and the watcher returns
    await eventually_async(
        lambda: services._task is not None and services._task.done(), 5.0, "the watcher returned"
    )
    assert services.dispatcher is None and services._task.exception() is None
    await services.stop()

