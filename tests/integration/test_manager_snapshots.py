"""Snapshots of the SQLite state under real managers: the log is compacted, a manager that joins after
compaction is brought up to date by a snapshot, and a restarted manager rebuilds from its own snapshot."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.integration.managers import TIMER_FLAGS, ManagerCluster, api
from warren.testing.wait import eventually

pytestmark = pytest.mark.integration

SNAPSHOT_EVERY = 40
WRITES = 130


def test_snapshot_compaction_join_and_restart(make_managers: Callable[..., ManagerCluster]) -> None:
    cluster = make_managers(
        extra_flags=[*TIMER_FLAGS, "--raft-snapshot-threshold", str(SNAPSHOT_EVERY), "--raft-log-keep", "0"]
    )
    first = cluster.init()
    with api(first.api_addr, 10.0) as client:
        for i in range(WRITES):
            response = client.post(
                "/v1/services", json={"name": f"s{i}", "image": "busybox", "replicas": i % 4}
            )
            assert response.status_code == 201, response.text

    def compacted() -> dict[str, float] | None:
        m = first.metrics()
        return m if m["warren_raft_purged_index"] >= SNAPSHOT_EVERY else None

    metrics = eventually(compacted, 20.0, "a snapshot and log compaction on the first manager")
    assert metrics["warren_raft_snapshot_index"] >= metrics["warren_raft_purged_index"]

    # The entries before the snapshot are gone from the leader's log: the joiner needs the snapshot.
    joined = cluster.add_manager(via=first)
    cluster.wait_same_services([joined], first)
    assert "snapshot installed" in joined.errors()
    assert len(joined.services()) == WRITES

    # A restart rebuilds the state from the manager's own snapshot plus the log after it.
    joined.kill()
    joined.restart()
    cluster.wait_same_services([joined], first)
    restarts = joined.errors().split("raft node started")[-1]
    assert "state restored from" in restarts and "/snapshots/" in restarts, joined.log_tail()
