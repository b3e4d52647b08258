"""A single-node cluster: bootstrap, proposals and their responses, and durability across a restart."""

from __future__ import annotations

from tests.integration.checks import assert_indexes_increase
from tests.integration.cluster import Cluster


def test_bootstrap_makes_the_single_node_leader(cluster: Cluster) -> None:
    node = cluster.start(1)
    assert node.id == 1
    m = node.metrics()
    assert m["role"] == "leader"
    assert m["leader_id"] == 1
    assert m["leader_addr"] == node.addr
    assert m["voters"] == [1]
    assert m["learners"] == []


def test_propose_returns_increasing_indexes_and_the_state_machine_response(cluster: Cluster) -> None:
    node = cluster.start(1)
    results = [node.call("propose", data=f"single-{i}") for i in range(20)]
    indexes = [r["index"] for r in results]
    assert_indexes_increase(indexes)
    assert [r["response"] for r in results] == [str(i) for i in indexes]
    # The state machine saw exactly those payloads at exactly those indexes.
    state = node.state()
    mine = [(i, p) for i, p in state if p.startswith("single-")]
    assert mine == [(idx, f"single-{i}") for i, idx in enumerate(indexes)]
    assert node.call("read_barrier") >= indexes[-1]


def test_restart_from_data_dir_keeps_every_entry_and_continues_after_them(cluster: Cluster) -> None:
    node = cluster.start(1)
    indexes = [node.call("propose", data=f"durable-{i}")["index"] for i in range(30)]
    before = node.state()
    assert [p for _, p in before if p.startswith("durable-")] == [f"durable-{i}" for i in range(30)]

    node.stop()
    assert not node.alive
    node.restart()
    cluster.leader()
    cluster.wait_applied(indexes[-1])

    after = node.state()
    # A restart may commit a new leader's (empty) entry after the old history, nothing else.
    assert after[: len(before)] == before
    assert all(p == "" for _, p in after[len(before) :]), after[len(before) :]

    more = [node.call("propose", data=f"after-restart-{i}")["index"] for i in range(5)]
    assert more[0] > indexes[-1]
    assert_indexes_increase(more)
    assert [p for _, p in node.state() if p.startswith("after-restart-")] == [
        f"after-restart-{i}" for i in range(5)
    ]


def test_kill_9_keeps_every_acknowledged_entry(cluster: Cluster) -> None:
    node = cluster.start(1)
    indexes = node.call("propose_many", count=50, prefix="acked-")
    node.kill()
    node.restart()
    cluster.leader()
    cluster.wait_applied(indexes[-1])
    assert [p for _, p in node.state() if p.startswith("acked-")] == [f"acked-{i}" for i in range(50)]
