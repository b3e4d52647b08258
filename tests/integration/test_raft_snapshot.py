"""Log compaction: a follower that missed compacted entries catches up from a snapshot."""

from __future__ import annotations

from collections.abc import Callable

from tests.integration.checks import assert_contains_in_order, converge, propose_all, with_prefix
from tests.integration.cluster import Cluster


def test_lagging_follower_catches_up_from_a_snapshot(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(snapshot_threshold=50, keep=5)
    leader = cluster.start(3)
    early, last = propose_all(leader, "early-", 10)
    converge(cluster, last)

    lagger = next(p for p in cluster.live() if p is not leader)
    lagger_applied = lagger.metrics()["applied_index"]
    lagger.stop()

    acked, last = propose_all(leader, "while-down-", 300)
    leader.call("trigger_snapshot", timeout=30)
    cluster.wait_for(
        lambda ms: (
            (ms[leader.id]["purged_index"] or 0) > lagger_applied
            and (ms[leader.id]["snapshot_index"] or 0) >= last
        ),
        20,
        f"leader to purge its log beyond node {lagger.id}'s last applied index {lagger_applied}",
        [leader],
    )

    lagger.restart()
    history = converge(cluster, last)
    assert with_prefix(history, "early-") == early
    assert with_prefix(history, "while-down-") == acked
    assert_contains_in_order(lagger.state(), early + acked, lagger)
    m = lagger.metrics()
    assert m["snapshot_index"] is not None, "the lagging node caught up without installing a snapshot"
    assert m["snapshot_index"] > lagger_applied

    # Compaction did not break ordinary replication afterwards.
    more, last = propose_all(leader, "after-snapshot-", 10)
    assert with_prefix(converge(cluster, last), "after-snapshot-") == more


def test_restart_rebuilds_state_from_snapshot_plus_log(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(snapshot_threshold=50, keep=5)
    node = cluster.start(1)
    acked, last = propose_all(node, "compacted-", 120)
    cluster.wait_for(
        lambda ms: (ms[1]["snapshot_index"] or 0) > 0 and ms[1]["purged_index"] is not None,
        20,
        "a threshold snapshot and log purge on node 1",
    )
    before = node.state()
    node.stop()
    node.restart()
    cluster.leader()
    cluster.wait_applied(last)
    after = node.state()
    assert after[: len(before)] == before
    assert with_prefix(after, "compacted-") == acked
