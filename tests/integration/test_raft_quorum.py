"""Without a quorum nothing commits: a two-node cluster that lost one node refuses or times out writes."""

from __future__ import annotations

import pytest

from tests.integration.checks import converge, propose_all, with_prefix
from tests.integration.cluster import CallTimeout, Cluster, RemoteError


def test_two_node_cluster_without_quorum_does_not_acknowledge_writes(cluster: Cluster) -> None:
    leader = cluster.start(2)
    follower = next(p for p in cluster.live() if p is not leader)
    acked, last = propose_all(leader, "with-quorum-", 10)
    converge(cluster, last)

    follower.kill()
    with pytest.raises((RemoteError, CallTimeout)) as info:
        leader.call("propose", data="no-quorum", timeout=3)
    if isinstance(info.value, RemoteError):
        assert info.value.cls in ("RaftTimeoutError", "NotLeaderError", "ShutdownError"), info.value
    # Reads need a quorum too (a lone leader might be deposed without knowing it).
    with pytest.raises((RemoteError, CallTimeout)):
        leader.call("read_barrier", timeout=3)

    # Once the follower is back, the cluster commits again and the history is intact.
    follower.restart()
    new = cluster.leader(timeout=15)
    more, last = propose_all(new, "quorum-back-", 5)
    history = converge(cluster, last)
    assert with_prefix(history, "with-quorum-") == acked
    assert with_prefix(history, "quorum-back-") == more
