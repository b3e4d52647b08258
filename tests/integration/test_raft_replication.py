"""Three nodes: one leader, identical applied history everywhere, followers redirect to the leader."""

from __future__ import annotations

import pytest

from tests.integration.checks import converge, propose_all, with_prefix
from tests.integration.cluster import Cluster, RemoteError


def test_proposals_are_applied_in_the_same_order_on_every_node(cluster: Cluster) -> None:
    leader = cluster.start(3)
    acked, last = propose_all(leader, "rep-", 50)

    history = converge(cluster, last)
    assert with_prefix(history, "rep-") == acked
    for p in cluster.live():
        m = p.metrics()
        assert m["leader_id"] == leader.id
        assert sorted(m["voters"]) == [1, 2, 3]


def test_follower_propose_raises_not_leader_with_the_leaders_address(cluster: Cluster) -> None:
    leader = cluster.start(3)
    followers = [p for p in cluster.live() if p is not leader]
    assert len(followers) == 2
    for follower in followers:
        with pytest.raises(RemoteError) as info:
            follower.call("propose", data="must-not-commit")
        assert info.value.cls == "NotLeaderError"
        assert info.value.leader_id == leader.id
        assert info.value.leader_addr == leader.addr

        with pytest.raises(RemoteError) as info:
            follower.call("read_barrier")
        assert info.value.cls == "NotLeaderError"
        assert info.value.leader_id == leader.id

    # The refused proposal never reached the log.
    _, last = propose_all(leader, "after-", 3)
    history = converge(cluster, last)
    assert with_prefix(history, "must-not-commit") == []


def test_concurrent_proposals_all_commit_once(cluster: Cluster) -> None:
    leader = cluster.start(3)
    result = leader.call("bench", n=500, concurrency=16, size=32, timeout=60)
    assert len(result["latencies_s"]) == 500
    assert all(lat > 0 for lat in result["latencies_s"])
    last = leader.metrics()["applied_index"]
    history = converge(cluster, last)
    assert len(with_prefix(history, "b" * 32)) == 500
