"""Leadership transfer: the chosen node takes over, writes continue, nothing acknowledged is lost."""

from __future__ import annotations

import pytest

from tests.integration.checks import assert_contains_in_order, converge, propose_all
from tests.integration.cluster import Cluster, RemoteError


def test_transfer_to_a_chosen_node(cluster: Cluster) -> None:
    old = cluster.start(3)
    old_term = old.metrics()["term"]
    acked, _ = propose_all(old, "before-transfer-", 20)

    target = next(p for p in cluster.live() if p is not old)
    assert old.call("transfer_leadership", to=target.id, timeout=10) == target.id
    new = cluster.leader()
    assert new is target
    assert new.metrics()["term"] > old_term

    more, last = propose_all(new, "after-transfer-", 20)
    converge(cluster, last)
    for p in cluster.live():
        assert_contains_in_order(p.state(), acked + more, p)

    # The old leader now redirects to the new one.
    with pytest.raises(RemoteError) as info:
        old.call("propose", data="to-the-old-leader")
    assert info.value.cls == "NotLeaderError"
    assert info.value.leader_id == target.id
    assert info.value.leader_addr == target.addr


def test_transfer_without_target_picks_another_voter(cluster: Cluster) -> None:
    old = cluster.start(3)
    acked, _ = propose_all(old, "before-", 10)
    new_id = old.call("transfer_leadership", timeout=10)
    assert new_id != old.id and new_id in cluster.nodes
    new = cluster.leader()
    assert new.id == new_id
    more, last = propose_all(new, "after-", 10)
    converge(cluster, last)
    for p in cluster.live():
        assert_contains_in_order(p.state(), acked + more, p)


def test_transfer_from_a_follower_is_refused(cluster: Cluster) -> None:
    leader = cluster.start(3)
    follower = next(p for p in cluster.live() if p is not leader)
    with pytest.raises(RemoteError) as info:
        follower.call("transfer_leadership", to=follower.id, timeout=10)
    assert info.value.cls == "NotLeaderError"
    assert info.value.leader_id == leader.id
    assert cluster.leader() is leader
