"""Sticky placement through the planner (docs/volumes.md): a slot whose service mounts a named volume
goes back to the node holding it through crashes, rolling updates and a node's return; `wait` keeps
it pending with the reason while that node is down or drained, `reschedule` moves it. The fake
workers report their volumes as a real worker does once a task mounting one has started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.unit.reconciler.sim import Sim
from warren.config import OrchestratorSettings
from warren.spec.service import ServiceSpec, decode
from warren.store import commands as c
from warren.store import volumes

DATA = {"type": "volume", "source": "data", "target": "/data"}


def create(sim: Sim, name: str, **spec: Any) -> None:
    doc = {"image": "redis", "replicas": 2, "mounts": [DATA], **spec}
    sim.apply(c.CreateService(f"svc-{name}", name, decode(ServiceSpec, doc), sim.now))


def report_volumes(sim: Sim) -> None:
    """Each live worker reports what it holds: what it had, plus the volumes of the tasks it started."""
    held: dict[str, set[tuple[str, str]]] = {}
    for name in [r[0] for r in sim.store.conn.execute("SELECT name FROM nodes WHERE role = 'worker'")]:
        held[name] = set(volumes.of_node(sim.store.conn, name))
    for row in sim.store.conn.execute("SELECT node, spec FROM tasks WHERE state = 'running'"):
        spec = decode(ServiceSpec, row["spec"])
        held[row["node"]].update((v, spec.driver) for v in spec.volumes)
    for node, vols in held.items():
        if node not in sim.dead and sorted(vols) != volumes.of_node(sim.store.conn, node):
            records = [c.VolumeRecord(n, d) for n, d in sorted(vols)]  # type: ignore[arg-type]
            sim.apply(c.NodeVolumes(node, records, sim.now))


def start(sim: Sim, *nodes: str, **spec: Any) -> dict[int, str]:
    for name in nodes:
        sim.add_node(name)
    create(sim, "db", **spec)
    sim.settle()
    report_volumes(sim)
    return placed(sim)


def placed(sim: Sim) -> dict[int, str]:
    return {slot: t["node"] for slot, t in sim.slots("db").items()}


def test_a_crashed_task_goes_back_to_the_node_holding_its_volume(sim: Sim) -> None:
    first = start(sim, "w1", "w2", "w3")
    assert first == {1: "w1", 2: "w2"}
    for _ in range(2):
        for task in sim.running("db"):
            sim.crash(task["id"])
        sim.run_until(lambda: len(sim.running("db")) == 2)  # after the restart backoff
        # Without its volume a replacement would spread to w3, the node with no task of the service.
        assert placed(sim) == first
        assert len(sim.running("db")) == 2


def test_wait_keeps_the_task_pending_while_its_node_is_down_and_it_returns_there(sim: Sim) -> None:
    start(sim, "w1", "w2", "w3")
    sim.node_down("w1")
    sim.settle()
    (pending,) = [t for t in sim.live("db") if t["slot"] == 1]
    assert pending["state"] == "pending" and pending["node"] is None
    assert pending["message"] == "waiting for node w1 (down), which holds volume data (volume policy wait)"
    assert not sim.plan().commands, "a waiting task costs no writes"
    sim.node_up("w1")
    sim.settle()
    assert placed(sim) == {1: "w1", 2: "w2"}
    assert len(sim.running("db")) == 2


def test_reschedule_moves_the_task_to_a_new_node(sim: Sim) -> None:
    start(sim, "w1", "w2", "w3", volume_policy="reschedule")
    sim.node_down("w1")
    sim.settle()
    assert placed(sim) == {1: "w3", 2: "w2"}
    report_volumes(sim)
    sim.node_up("w1")
    sim.settle()
    assert placed(sim) == {1: "w3", 2: "w2"}, "it stays where its new volume is"


def test_a_drained_node_makes_a_wait_task_wait_and_activate_brings_it_back(sim: Sim) -> None:
    start(sim, "w1", "w2", "w3")
    sim.drain("w2")
    sim.settle()
    (pending,) = [t for t in sim.live("db") if t["slot"] == 2]
    assert pending["message"] == "waiting for node w2 (drained), which holds volume data (volume policy wait)"
    sim.activate("w2")
    sim.settle()
    assert placed(sim) == {1: "w1", 2: "w2"}


def test_a_removed_node_took_its_volume_the_task_is_placed_normally(sim: Sim) -> None:
    start(sim, "w1", "w2", "w3")
    sim.remove_node("w1")
    sim.settle()
    assert placed(sim) == {1: "w3", 2: "w2"}


def test_a_rolling_update_keeps_each_slot_on_its_node(sim: Sim) -> None:
    first = start(sim, "w1", "w2", "w3")
    for order in ("stop-first", "start-first"):
        sim.apply(c.UpdateService("db", {"image": f"redis:{order}", "update": {"order": order}}, sim.now))
        sim.run_until(lambda: sim.update_state("db") == "completed")
        assert placed(sim) == first
        assert {t["node"] for t in sim.tasks("db")} == {"w1", "w2"}, "no task went to w3"


def test_changing_the_volume_policy_rolls_no_task(sim: Sim) -> None:
    start(sim, "w1", "w2")
    before = {t["id"] for t in sim.tasks("db")}
    sim.apply(c.UpdateService("db", {"volume_policy": "reschedule"}, sim.now))
    sim.settle()
    assert {t["id"] for t in sim.tasks("db")} == before


def test_a_new_slot_prefers_a_node_holding_its_volume_without_a_replica(sim: Sim) -> None:
    for name in ("w1", "w2", "w3"):
        sim.add_node(name)
    # w3 holds `data` from before (an earlier service's); w1 and w2 hold nothing.
    sim.apply(c.NodeVolumes("w3", [c.VolumeRecord("data", "docker")], sim.now))
    create(sim, "db", replicas=1)
    sim.settle()
    assert placed(sim) == {1: "w3"}
    sim.apply(c.UpdateService("db", {"replicas": 3}, sim.now))
    sim.settle()
    assert sorted(placed(sim).values()) == ["w1", "w2", "w3"]


def test_the_history_keeps_where_a_waiting_slot_s_volume_is(tmp_path: Path) -> None:
    sim = Sim(tmp_path, OrchestratorSettings(task_history_per_slot=0))
    start(sim, "w1", "w2", "w3")
    sim.node_down("w1")
    sim.settle()
    slot1 = [t for t in sim.tasks("db") if t["slot"] == 1]
    assert [(t["node"], t["state"]) for t in slot1] == [("w1", "failed"), (None, "pending")]
    sim.node_up("w1")
    sim.settle()
    assert placed(sim)[1] == "w1"


def test_switching_a_waiting_task_to_reschedule_places_it_at_once(sim: Sim) -> None:
    start(sim, "w1", "w2", "w3")
    sim.node_down("w1")
    sim.settle()
    assert placed(sim)[1] is None  # pending, waiting for w1
    sim.apply(c.UpdateService("db", {"volume_policy": "reschedule"}, sim.now))
    sim.settle()
    assert placed(sim) == {1: "w3", 2: "w2"}
    assert len(sim.running("db")) == 2
