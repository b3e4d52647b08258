"""Sticky placement of tasks that mount named volumes (docs/volumes.md): back to the node that holds
them, `wait` or `reschedule` when it cannot take the task, and a new slot's preference for a node that
holds its volume and no replica yet. Fake inventories, no store."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.unit.scheduler.test_placement import GIB, node, nodes_of, req
from warren.scheduler.placement import Candidate, NodeInfo, NodeLoad, Placement, TaskRequest, place


def holding(info: NodeInfo, *volumes: str, driver: str = "docker") -> NodeInfo:
    return replace(info, volumes=frozenset((v, driver) for v in volumes))


def sticky(previous: str | None = "w2", policy: str = "wait", **kw: object) -> TaskRequest:
    return req(volumes=("data",), previous_node=previous, volume_policy=policy, **kw)


CLUSTER = (node("w1"), holding(node("w2"), "data"), node("w3"))


def test_a_task_goes_back_to_the_node_that_holds_its_volume_even_against_spread() -> None:
    # w2 runs more of everything, yet the slot's volume is there.
    candidates = [Candidate(n, NodeLoad(tasks=9, per_service={"svc-a": 3}) if n.name == "w2" else NodeLoad())
                  for n in CLUSTER]
    assert place([sticky()], candidates) == [Placement("w2")]


def test_a_node_without_the_volume_or_gone_means_normal_placement() -> None:
    # The slot's last node no longer holds it (removed with `volume rm`), or the node was removed.
    for previous in ("w1", "w9"):
        (p,) = place([sticky(previous)], nodes_of(*CLUSTER))
        assert p.node == "w2", "placed like a new task: w2 holds data and no replica"
    # A volume of the same name kept by another driver is not this task's data.
    other = (node("w1"), holding(node("w2"), "data", driver="process"))
    (p,) = place([sticky("w2")], nodes_of(*other))
    assert p.node == "w1"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"state": "down"}, "down"),
        ({"availability": "drain"}, "drained"),
        ({"memory": 1 * GIB}, "lacks 2 GiB of free memory"),
    ],
)
def test_wait_keeps_the_task_pending_saying_which_node_it_waits_for(change: dict[str, Any], why: str) -> None:
    w2 = replace(CLUSTER[1], **change)
    (p,) = place([sticky(memory=2 * GIB)], nodes_of(CLUSTER[0], w2, CLUSTER[2]))
    assert p == Placement(None, f"waiting for node w2 ({why}), which holds volume data (volume policy wait)")


def test_reschedule_places_it_like_a_new_task_when_the_node_cannot_take_it() -> None:
    w2 = replace(CLUSTER[1], state="down")
    (p,) = place([sticky(policy="reschedule")], nodes_of(CLUSTER[0], w2, CLUSTER[2]))
    assert p == Placement("w1")


def test_the_reason_names_every_volume_the_node_holds() -> None:
    w2 = replace(holding(node("w2"), "data", "logs", "other"), state="down")
    task = req(volumes=("logs", "data", "cache"), previous_node="w2")
    (p,) = place([task], nodes_of(node("w1"), w2))
    assert p.reason == "waiting for node w2 (down), which holds volumes logs, data (volume policy wait)"


def test_a_new_slot_prefers_a_node_with_its_volume_and_no_replica_else_spreads() -> None:
    nodes = (node("w1"), holding(node("w2"), "data"), holding(node("w3"), "data"), node("w4"))
    tasks = [req(volumes=("data",)) for _ in range(4)]
    # Two slots go where the volume is (one each); the others spread over the rest.
    assert [p.node for p in place(tasks, nodes_of(*nodes))] == ["w2", "w3", "w1", "w4"]
    # A node holding the volume that already runs a replica of the service is not preferred.
    busy = [Candidate(n, NodeLoad(tasks=1, per_service={"svc-a": 1}) if n.name == "w2" else NodeLoad())
            for n in (node("w1"), holding(node("w2"), "data"))]
    assert place([req(volumes=("data",))], busy) == [Placement("w1")]
    # The preference passes the filters first: a drained holder is not chosen.
    drained = (node("w1"), replace(holding(node("w2"), "data"), availability="drain"))
    assert place([req(volumes=("data",))], nodes_of(*drained)) == [Placement("w1")]


def test_a_global_task_stays_on_its_node() -> None:
    (p,) = place([req(node="w1", volumes=("data",), previous_node="w2")], nodes_of(*CLUSTER))
    assert p == Placement("w1")


def test_tasks_without_volumes_place_as_before() -> None:
    assert [p.node for p in place([req() for _ in range(3)], nodes_of(*CLUSTER))] == ["w1", "w2", "w3"]
