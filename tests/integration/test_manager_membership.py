"""Removing managers with `warren node rm`: the Raft membership shrinks, the leader cannot be removed,
and a dead manager's removal restores fault tolerance for the next failure."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.managers import ManagerCluster, cli, create_service
from warren.testing.wait import eventually

pytestmark = pytest.mark.integration


def test_node_rm_of_a_dead_manager_then_survive_the_next_failure(
    make_managers: Callable[..., ManagerCluster],
) -> None:
    cluster = make_managers()
    cluster.form(3)
    leader = cluster.leader()
    a, b = cluster.followers(leader)

    # The leader cannot be removed: the answer says what to do instead.
    refused = cli("node", "rm", leader.name, "--manager", a.api_addr)
    assert refused.returncode == 1
    assert "is the leader" in refused.stderr and "SIGTERM" in refused.stderr

    # A dead follower is removed: 2 voters remain, and node list no longer shows it.
    b.kill()
    cli("node", "rm", b.name, "--manager", a.api_addr).ok()

    def two_voters() -> dict[str, Any] | None:
        info = leader.info()
        return info if info["quorum"]["managers"] == 2 else None

    info = eventually(two_voters, 10.0, "the voter set to shrink to 2")
    assert [m["name"] for m in info["managers"]] == [leader.name, a.name]
    listed = json.loads(cli("node", "list", "-o", "json", "--manager", leader.api_addr).ok().stdout)
    assert b.name not in {n["name"] for n in listed}
    assert cli("node", "rm", b.name, "--manager", leader.api_addr).returncode == 1  # gone: not found

    # Two voters need both: writes still work now...
    assert create_service(a.api_addr, "after-rm").status_code == 201
    # ...and after a third manager joins, the group again survives the loss of any one.
    c = cluster.add_manager(via=leader)
    assert "Raft quorum: 3/3 managers (needs 2 for majority)" in c.output()
    leader.kill()
    new_leader = cluster.leader(among=[a, c])
    assert create_service(new_leader.api_addr, "after-failover").status_code == 201
    names = {s["name"] for s in a.services(consistent=True)}
    assert {"after-rm", "after-failover"} <= names


def test_node_inspect_and_unknown_names(make_managers: Callable[..., ManagerCluster]) -> None:
    cluster = make_managers()
    (m,) = cluster.form(1)
    shown = json.loads(cli("node", "inspect", m.name, "-o", "json", "--manager", m.api_addr).ok().stdout)
    assert shown["role"] == "manager" and shown["state"] == "ready" and shown["raft_id"] == 1
    missing = cli("node", "inspect", "manager-9-zzzzzz", "--manager", m.api_addr)
    assert missing.returncode == 1 and "no node named" in missing.stderr
    last = cli("node", "rm", m.name, "--manager", m.api_addr)
    assert last.returncode == 1 and "is the leader" in last.stderr


def test_the_data_dir_is_private_to_the_managers_user(make_managers: Callable[..., ManagerCluster]) -> None:
    cluster = make_managers()
    (m,) = cluster.form(1)
    assert create_service(m.api_addr, "web").status_code == 201
    cli("cluster", "join-token", "worker", "--manager", m.api_addr).ok()
    paths = [m.data_dir, *m.data_dir.rglob("*")]
    assert any(p.name == "warren.db" for p in paths) and any(p.name == "node.json" for p in paths)
    loose = {
        str(p.relative_to(m.data_dir)): oct(p.stat().st_mode & 0o777)
        for p in paths
        if p.stat().st_mode & 0o077
    }
    assert not loose, f"files readable by others: {loose}"
