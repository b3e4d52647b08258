"""The Raft core runs on its own threads: a Python process that holds the GIL must not lose leadership."""

from __future__ import annotations

import threading

import pytest

from tests.integration.checks import converge, propose_all, with_prefix
from tests.integration.cluster import CallTimeout, Cluster

BUSY_S = 2.0  # several election timeouts (150-300 ms): without GIL-free heartbeats the leader would fall


def test_leader_holding_the_gil_keeps_its_leadership(cluster: Cluster) -> None:
    leader = cluster.start(3)
    _, last = propose_all(leader, "warm-", 5)
    converge(cluster, last)
    before = cluster.metrics()
    term = before[leader.id]["term"]

    held = leader.call("busy", seconds=BUSY_S, timeout=BUSY_S + 10)
    assert held >= BUSY_S

    after = cluster.metrics()
    assert set(after) == {1, 2, 3}
    for node_id, m in after.items():
        assert m["term"] == term, f"node {node_id} moved to term {m['term']} while the leader held the GIL"
        assert m["leader_id"] == leader.id
        assert m["elections_total"] == before[node_id]["elections_total"], f"node {node_id} ran an election"
    assert after[leader.id]["role"] == "leader"

    acked, last = propose_all(leader, "after-busy-", 5)
    assert with_prefix(converge(cluster, last), "after-busy-") == acked


def test_follower_holding_the_gil_still_acknowledges_appends(cluster: Cluster) -> None:
    leader = cluster.start(3)
    follower, other = [p for p in cluster.live() if p is not leader]
    # With the third node down, every commit needs the busy follower's acknowledgement.
    other.kill()
    before = cluster.metrics()
    term = before[leader.id]["term"]

    busy_result: list[float] = []
    busy = threading.Thread(
        target=lambda: busy_result.append(follower.call("busy", seconds=BUSY_S, timeout=30))
    )
    busy.start()
    try:
        # A ping that goes unanswered proves the follower's Python is stuck right now.
        with pytest.raises(CallTimeout):
            follower.call("ping", timeout=0.3)
        acked, last = propose_all(leader, "during-busy-", 10)
        assert busy.is_alive(), "proposals took longer than the busy period; they proved nothing"
    finally:
        busy.join(BUSY_S + 30)
    assert busy_result and busy_result[0] >= BUSY_S

    after = cluster.metrics()
    for node_id, m in after.items():
        assert m["term"] == term
        assert m["elections_total"] == before[node_id]["elections_total"], f"node {node_id} ran an election"
    assert with_prefix(converge(cluster, last), "during-busy-") == acked
