"""kill -9 of the leader: survivors elect a new one, nothing acknowledged is lost, the victim catches up."""

from __future__ import annotations

from tests.integration.checks import assert_contains_in_order, assert_same_history, converge, propose_all
from tests.integration.cluster import Cluster


def test_killed_leader_is_replaced_and_no_acknowledged_write_is_lost(cluster: Cluster) -> None:
    old = cluster.start(3)
    old_term = old.metrics()["term"]
    acked, _ = propose_all(old, "before-kill-", 40)

    old.kill()
    survivors = cluster.live()
    assert len(survivors) == 2 and old not in survivors

    new = cluster.leader(timeout=10)
    assert new.id != old.id
    new_metrics = new.metrics()
    assert new_metrics["term"] > old_term
    assert new_metrics["role"] == "leader"

    more, last = propose_all(new, "after-kill-", 20)
    history = converge(cluster, last, survivors)
    for p in survivors:
        assert_contains_in_order(p.state(), acked + more, p)

    # The old leader comes back as a follower of the new term and converges on the same history.
    old.restart()
    cluster.wait_for(
        lambda ms: ms[old.id]["leader_id"] == new.id and ms[old.id]["role"] == "follower",
        10,
        f"restarted node {old.id} to follow node {new.id}",
    )
    converge(cluster, last)
    assert_same_history(cluster.live(), upto=last)
    assert old.state()[: len(history)] == history
