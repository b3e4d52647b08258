"""The worker's volume inventory on its session, and the removals a manager asks for
(docs/worker-protocol.md, "Volumes"): WorkerAgent against a FakeManager and FakeRuntimes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.unit.fake_manager import FakeManager, task_doc
from tests.unit.worker.agents import M1, make_settings, worker
from tests.unit.worker.fake_runtime import FakeRuntime
from warren.runtime.base import RuntimeUnavailableError
from warren.spec.mounts import inventory_digest
from warren.testing.wait import eventually_async
from warren.worker.volumes import MAX_REPORTED, VolumeKeeper

DB = [{"type": "volume", "source": "db-data", "target": "/var/lib/db"}]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "worker"


def reported(m: FakeManager) -> list[Any]:
    """The inventories the session calls carried, in order."""
    return [s["volumes"] for s in m.sessions if "volumes" in s]


async def test_the_inventory_is_sent_first_and_when_it_changes(data_dir: Path) -> None:
    m = FakeManager()
    docker, process = FakeRuntime("docker"), FakeRuntime("process")
    process.volume_names.add("cache")  # left by an earlier run of the worker
    async with worker(make_settings(data_dir, runtime="docker,process"), [docker, process], {M1: m}):
        await eventually_async(lambda: len(m.sessions) >= 3, 5.0, "session rounds")
        assert reported(m) == [[{"name": "cache", "driver": "process"}]]
        assert "volumes" in m.sessions[0]  # on the first call after the start
        m.assign(task_doc("t1", mounts=DB))
        await eventually_async(lambda: len(reported(m)) == 2, 5.0, "the new volume reported")
        assert reported(m)[1] == [{"name": "cache", "driver": "process"},
                                  {"name": "db-data", "driver": "docker"}]
        calls = len(m.sessions)
        await eventually_async(lambda: len(m.sessions) >= calls + 3, 5.0, "more session rounds")
        assert len(reported(m)) == 2  # unchanged: not sent again
    # A restarted worker sends it again on its first call.
    m2 = FakeManager()
    async with worker(make_settings(data_dir, runtime="docker,process"), [docker, process], {M1: m2}):
        await eventually_async(lambda: len(m2.sessions) >= 2, 5.0, "session rounds")
        assert "volumes" in m2.sessions[0] and len(reported(m2)) == 1


async def test_no_volume_no_key(data_dir: Path) -> None:
    m = FakeManager()
    async with worker(make_settings(data_dir), FakeRuntime(), {M1: m}):
        await eventually_async(lambda: len(m.sessions) >= 3, 5.0, "session rounds")
    assert reported(m) == []  # an older manager, which refuses the key, takes such a worker


async def test_the_first_report_waits_for_a_listing(data_dir: Path) -> None:
    # The call carrying the resources says "these are all my volumes": while the runtime cannot list
    # them, the worker keeps its session (heartbeats) without that report, so the leader does not read
    # a failed listing as "no volumes" and forget where the volumes are.
    class CannotList(FakeRuntime):
        failing = True

        async def volumes(self) -> list[str]:
            if self.failing:
                raise RuntimeUnavailableError("the engine does not answer")
            return await super().volumes()

    m = FakeManager()
    rt = CannotList()
    rt.volume_names.add("db-data")
    async with worker(make_settings(data_dir), rt, {M1: m}):
        await eventually_async(lambda: len(m.sessions) >= 3, 5.0, "session rounds")
        assert all("resources" not in s and "volumes" not in s for s in m.sessions)
        rt.failing = False
        await eventually_async(lambda: reported(m) != [], 5.0, "the inventory reported")
        first = next(s for s in m.sessions if "resources" in s)
        assert first["volumes"] == [{"name": "db-data", "driver": "docker"}]
        assert sum("resources" in s for s in m.sessions) == 1


async def test_a_list_the_leader_does_not_hold_is_reported_again(data_dir: Path) -> None:
    # A write of the list lost in a leader change: the answers' digest is not the list's, so the worker
    # sends it again (once per answer saying so), and stops when the digest matches.
    m = FakeManager()
    rt = FakeRuntime()
    rt.volume_names.add("db-data")
    mine = inventory_digest([("db-data", "docker")])
    async with worker(make_settings(data_dir), rt, {M1: m}):
        await eventually_async(lambda: len(reported(m)) == 1, 5.0, "the inventory reported")
        m.volumes_digest = inventory_digest([])  # the new leader holds none for this node
        await eventually_async(lambda: len(reported(m)) >= 3, 5.0, "the inventory reported again")
        m.volumes_digest = mine
        await eventually_async(lambda: m.sessions[-1].get("volumes") is None, 5.0, "a call without it")
        calls = len(m.sessions)
        await eventually_async(lambda: len(m.sessions) >= calls + 3, 5.0, "more session rounds")
        assert all("volumes" not in s for s in m.sessions[calls:])
        assert all(r == [{"name": "db-data", "driver": "docker"}] for r in reported(m))


async def test_a_removal_keeps_what_a_task_mounts(data_dir: Path) -> None:
    m = FakeManager()
    rt = FakeRuntime()
    rt.volume_names.update({"old", "busy"})
    rt.busy_volumes.add("busy")
    async with worker(make_settings(data_dir), rt, {M1: m}):
        m.assign(task_doc("t1", mounts=DB))
        await eventually_async(lambda: m.state("t1") == "running", 5.0, "t1 running")
        m.remove_volumes = ["db-data", "old", "busy", "../x"]
        m.assign()  # wakes the held session call
        await eventually_async(lambda: "old" not in rt.volume_names, 5.0, "old removed")
        await eventually_async(
            lambda: bool(reported(m)) and reported(m)[-1] == [{"name": "busy", "driver": "docker"},
                                                              {"name": "db-data", "driver": "docker"}],
            5.0, "the inventory without old",
        )
        assert rt.volume_names == {"db-data", "busy"}  # in use by t1; refused by the engine
        # Once no task mounts it, the next ask removes it.
        m.unassign("t1")
        await eventually_async(lambda: not rt.containers, 5.0, "t1's container removed")
        rt.busy_volumes.clear()
        m.remove_volumes = ["db-data", "busy"]
        m.assign()
        await eventually_async(lambda: reported(m)[-1] == [], 5.0, "an empty inventory reported")
    assert rt.volume_names == set()


async def test_the_inventory_is_bounded_and_survives_a_runtime_that_cannot_list() -> None:
    rt = FakeRuntime()
    rt.volume_names.update(f"v{i:05d}" for i in range(MAX_REPORTED + 5))
    keeper = VolumeKeeper({"docker": rt}, set)
    listed = await keeper.report()
    assert listed is not None and len(listed) == MAX_REPORTED
    assert listed[0] == {"name": "v00000", "driver": "docker"}
    keeper.sent(listed)
    assert await keeper.report() is None
    rt.unavailable = True
    keeper.changed()
    assert await keeper.report() is None  # the earlier listing stands until the runtime answers
    rt.unavailable = False
    rt.volume_names = {"a"}
    assert await keeper.report() == [{"name": "a", "driver": "docker"}]  # still stale: listed again
    await keeper.close()


async def test_only_volume_names_are_reported_and_removed() -> None:
    rt = FakeRuntime("process")
    rt.volume_names.update({"good", "Upper", "dot.ted", "a" * 64, "nl\n"})  # made by hand
    keeper = VolumeKeeper({"process": rt}, set)
    assert await keeper.report() == [{"name": "good", "driver": "process"}]
    keeper.remove(["Upper", "nl\n", 42, "dot.ted", "good"])
    await eventually_async(lambda: "good" not in rt.volume_names, 5.0, "good removed")
    assert rt.volume_names == {"Upper", "dot.ted", "a" * 64, "nl\n"}
    await keeper.close()


async def test_a_runtime_that_hangs_does_not_hold_the_session_call() -> None:
    class Hung(FakeRuntime):
        async def volumes(self) -> list[str]:
            await asyncio.Event().wait()
            return []

    keeper = VolumeKeeper({"docker": Hung()}, set, list_timeout_s=0.05)
    async with asyncio.timeout(2):
        assert await keeper.report() is None  # given up on, and tried again next time
        assert await keeper.report() is None
