"""The dispatcher and volumes: a worker's reported inventory is written only when it differs from the
stored one (a failed write is tried again on the next call), each answer lists the node's volumes to
remove, and a held session wakes when a removal is asked for."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.unit.manager.test_dispatcher import SETTINGS, T0, World
from warren.config import OrchestratorSettings
from warren.errors import UnavailableError
from warren.manager.dispatcher import NodeReport
from warren.spec.mounts import inventory_digest
from warren.store import commands as c
from warren.store import volumes
from warren.testing.wait import eventually_async

LONG = OrchestratorSettings(heartbeat_period_s=10.0, node_down_grace_s=20.0)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def report(*vols: tuple[str, str]) -> NodeReport:
    return NodeReport(volumes=[{"name": n, "driver": d} for n, d in vols])


async def test_the_inventory_is_written_only_when_it_differs_from_the_stored_one(world: World) -> None:
    w1 = world.worker("worker-aaaaa1")
    d = world.dispatcher()
    d.start()
    await d.session(w1, None, report(("logs", "process"), ("data", "docker"), ("data", "docker")))
    (written,) = world.propose.of(c.NodeVolumes)
    assert written.node == w1
    assert [(v.name, v.driver) for v in written.volumes] == [("data", "docker"), ("logs", "process")]
    assert volumes.of_node(world.store.conn, w1) == [("data", "docker"), ("logs", "process")]
    # The same list again (a worker restarted), or no list: no write.
    known = world.digest(w1)
    await d.session(w1, None, report(("data", "docker"), ("logs", "process")))
    await d.session(w1, known, NodeReport(addr="127.0.0.9"))
    assert len(world.propose.of(c.NodeVolumes)) == 1
    # A changed one: written.
    await d.session(w1, None, report(("data", "docker")))
    assert len(world.propose.of(c.NodeVolumes)) == 2
    assert volumes.of_node(world.store.conn, w1) == [("data", "docker")]
    await d.stop()


async def test_a_first_call_without_volumes_says_the_worker_has_none(world: World) -> None:
    w1 = world.worker("worker-aaaaa1")
    d = world.dispatcher()
    d.start()
    await d.session(w1, None, report(("data", "docker")))
    # Restarted with its volumes gone (a new disk): its first call carries its resources, no volumes.
    await d.session(w1, None, NodeReport(resources={"drivers": ["docker"]}))
    assert volumes.of_node(world.store.conn, w1) == []
    assert len(world.propose.of(c.NodeVolumes)) == 2
    await d.session(w1, None, NodeReport(resources={"drivers": ["docker"]}))  # still none: no write
    assert len(world.propose.of(c.NodeVolumes)) == 2
    await d.stop()


async def test_a_failed_write_is_tried_again_on_the_next_call(world: World) -> None:
    w1 = world.worker("worker-aaaaa1")
    d = world.dispatcher()
    d.start()
    real = world.propose

    async def refuse(cmd: c.Command) -> Any:
        if isinstance(cmd, c.NodeVolumes):
            real.proposed.append(cmd)
            raise UnavailableError("no quorum")
        return await real(cmd)

    d.propose = refuse
    answer = await d.session(w1, None, report(("data", "docker")))  # the session is still answered
    assert answer["assignments"] == []
    assert volumes.of_node(world.store.conn, w1) == []
    # Not tried again at every call (each try asks the other managers' versions), but after a while.
    await d.session(w1, answer["digest"], None)
    assert len(world.propose.of(c.NodeVolumes)) == 1
    # The answers say the leader holds no list; the worker sends the same one again: still no retry yet.
    assert answer["volumes_digest"] == inventory_digest([])
    await d.session(w1, answer["digest"], report(("data", "docker")))
    assert len(world.propose.of(c.NodeVolumes)) == 1
    d.propose = real
    world.clock.now += SETTINGS.volume_report_retry_s
    await d.session(w1, answer["digest"], None)  # the worker does not report the same list again
    assert volumes.of_node(world.store.conn, w1) == [("data", "docker")]
    assert len(world.propose.of(c.NodeVolumes)) == 2
    answer = await d.session(w1, answer["digest"], None)
    assert len(world.propose.of(c.NodeVolumes)) == 2, "written once it is stored: not again"
    assert answer["volumes_digest"] == inventory_digest([("data", "docker")])
    await d.stop()


async def test_answers_list_the_volumes_to_remove_and_a_request_wakes_a_held_session(world: World) -> None:
    w1, w2 = world.worker("worker-aaaaa1"), world.worker("worker-aaaaa2")
    d = world.dispatcher(LONG)
    d.start()
    first = await d.session(w1, None, report(("data", "docker"), ("logs", "docker")))
    await d.session(w2, None, report(("data", "docker")))
    assert first["remove_volumes"] == []
    held = asyncio.create_task(d.session(w1, first["digest"], None))
    other = asyncio.create_task(d.session(w2, world.digest(w2), None))
    await eventually_async(lambda: d.held == 2, 1.0, "both sessions held")
    start = time.monotonic()
    world.propose.apply(c.RemoveVolume(w1, "data", T0))
    answer = await held
    assert time.monotonic() - start < 2.0
    assert answer["remove_volumes"] == ["data"] and answer["assignments"] is None
    assert not other.done(), "a removal on another node does not answer its session"
    # Still pending: every answer carries it, but it does not wake the next held call again.
    again = asyncio.create_task(d.session(w1, first["digest"], None))
    await eventually_async(lambda: d.held == 2, 1.0, "held again")
    await asyncio.sleep(0.2)
    assert not again.done()
    # The worker removed it and says so: the request ends.
    gone = await d.session(w1, first["digest"], report(("logs", "docker")))
    assert gone["remove_volumes"] == []
    assert volumes.removals(world.store.conn) == {}
    for task in (again, other):
        task.cancel()
    await asyncio.gather(again, other, return_exceptions=True)
    await d.stop()
