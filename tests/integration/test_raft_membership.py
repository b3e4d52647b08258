"""Membership changes: join by add_voter, learner then voter, removal, and refused changes."""

from __future__ import annotations

import pytest

from tests.integration.checks import converge, propose_all, with_prefix
from tests.integration.cluster import Cluster, MetricsByNode, RemoteError


def test_nodes_join_one_by_one_with_add_voter(cluster: Cluster) -> None:
    leader = cluster.start(3, join=True)
    assert leader.id == 1  # the joins went through node 1, which never lost leadership meanwhile
    for m in cluster.metrics().values():
        assert sorted(m["voters"]) == [1, 2, 3]
        assert m["learners"] == []
    acked, last = propose_all(leader, "joined-", 10)
    assert with_prefix(converge(cluster, last), "joined-") == acked


def test_learner_is_promoted_to_voter_and_a_voter_is_removed(cluster: Cluster) -> None:
    leader = cluster.start(3)
    _, last = propose_all(leader, "early-", 20)

    (n4,) = cluster.spawn([4])
    leader.call("add_learner", node_id=4, addr=n4.addr, blocking=True, timeout=30)

    def learner_4(ms: MetricsByNode) -> bool:
        return (
            ms[4]["role"] == "learner" and 4 in ms[leader.id]["learners"] and 4 not in ms[leader.id]["voters"]
        )

    cluster.wait_for(learner_4, 10, "node 4 to be a learner")
    assert leader.metrics()["nodes"][4]["addr"] == n4.addr
    # A learner already receives the log.
    assert with_prefix(converge(cluster, last), "early-") == [f"early-{i}" for i in range(20)]

    leader.call("change_membership", voters=[1, 2, 3, 4], timeout=30)
    cluster.wait_for(
        lambda ms: (
            all(sorted(m["voters"]) == [1, 2, 3, 4] and m["learners"] == [] for m in ms.values())
            and ms[4]["role"] == "follower"
        ),
        10,
        "voters == [1, 2, 3, 4] on every node and node 4 a follower",
    )

    # Remove a voter that is not the leader (removing the leader is a leadership change, tested elsewhere).
    gone = 2 if leader.id != 2 else 3
    leader.call("remove_node", node_id=gone, timeout=30)
    remaining = [p for p in cluster.live() if p.id != gone]
    cluster.wait_for(
        lambda ms: all(
            gone not in ms[p.id]["voters"] and gone not in ms[p.id]["learners"] for p in remaining
        ),
        10,
        f"node {gone} to leave the configuration",
        remaining,
    )
    leader = cluster.leader(nodes=remaining)
    acked, last = propose_all(leader, "after-remove-", 10)
    assert with_prefix(converge(cluster, last, remaining), "after-remove-") == acked


def test_membership_change_to_an_unknown_node_is_refused(cluster: Cluster) -> None:
    leader = cluster.start(3)
    with pytest.raises(RemoteError) as info:
        leader.call("change_membership", voters=[1, 2, 3, 99], timeout=10)
    assert info.value.cls == "MembershipError"
    # The configuration did not move.
    for m in cluster.metrics().values():
        assert sorted(m["voters"]) == [1, 2, 3]
    follower = next(p for p in cluster.live() if p is not leader)
    with pytest.raises(RemoteError) as info:
        follower.call("add_learner", node_id=7, addr="127.0.0.17:1", blocking=False)
    assert info.value.cls == "NotLeaderError"
