"""A network partition (network namespaces + iptables) cuts the leader off from the two other managers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.managers import (
    ManagerCluster,
    api,
    assert_error_body,
    create_service,
    manager_clusters,
    service_names,
)
from tests.integration.netns import NetnsLab, unavailable_reason
from warren.testing.wait import eventually

# Each manager has a namespace (and an address) of its own: the default ports do not clash.
PORTS = (8080, 7946, 9090)


@pytest.fixture
def lab_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[NetnsLab, ManagerCluster]]:
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):  # .ci/run installs iproute2 and iptables and runs as root
            pytest.fail(f"CI must be able to make network namespaces: {reason}")
        pytest.skip(f"needs network namespaces: {reason}")
    with NetnsLab(3) as lab:
        with manager_clusters(tmp_path, request) as make:  # managers die before the lab is torn down
            yield lab, make(hosts=lab.hosts(PORTS))
    assert not lab.leftovers(), f"the lab left things behind: {lab.leftovers()}"


def test_isolated_leader_loses_writes_keeps_stale_reads_and_catches_up(
    lab_cluster: tuple[NetnsLab, ManagerCluster],
) -> None:
    lab, c = lab_cluster
    c.form(3)
    old = c.leader()
    majority = c.followers(old)
    before = []
    for i in range(3):
        response = create_service(old.api_addr, f"before-{i}")
        assert response.status_code == 201, response.text
        before.append(f"before-{i}")
    c.wait_same_services(c.managers, old)
    old_term = old.metrics()["warren_raft_term"]

    # Cut the leader off from both other managers (the test process still reaches all three).
    lab.isolate(c.managers.index(old) + 1)

    # The majority elects a new leader in a later term and keeps taking writes through both members.
    new = c.leader(among=majority)
    assert new.metrics()["warren_raft_term"] > old_term
    during = []
    for i, m in enumerate(majority * 2):
        response = create_service(m.api_addr, f"during-{i}")
        assert response.status_code == 201, response.text
        during.append(f"during-{i}")

    # The minority refuses writes: 503 (within the CLI's 10 s request timeout), never an acknowledgement.
    with api(old.api_addr, timeout=10) as client:
        response = client.post("/v1/services", json={"name": "minority-write", "image": "nginx"})
    assert_error_body(response, 503, "unavailable")
    assert response.headers.get("retry-after") == "1"
    # It still serves its stale local copy, but not a consistent read.
    assert service_names(old.services()) == before
    with api(old.api_addr, timeout=15) as client:
        response = client.get("/v1/services", params={"consistent": "true"})
    assert_error_body(response, 503, "unavailable")
    # It knows it has no quorum.
    info = old.info()
    assert info["quorum"]["ok"] is False and info["quorum"]["reachable"] == 1, info["quorum"]

    # Heal: the old leader catches up with everything written during the partition and follows, within
    # seconds: its blackholed connections to the others are dialled again (a timed-out RPC closes its
    # connection) rather than waiting out TCP's retransmit timer.
    lab.heal()
    state = c.wait_same_services(c.managers, new, timeout=8)
    assert service_names(state) == sorted(before + during)
    assert "minority-write" not in service_names(state)  # refused, and never committed later either
    leader = c.leader()
    assert leader is not old
    leaders = [m.label for m in c.managers if m.metrics()["warren_raft_leader"] == 1]
    assert leaders == [leader.label], f"expected exactly one leader, metrics say {leaders}"
    # And the healed manager forwards writes again.
    response = create_service(old.api_addr, "after-heal")
    assert response.status_code == 201, response.text
    assert response.headers.get("x-warren-forwarded-to") == leader.api_addr
    eventually(
        lambda: "after-heal" in service_names(old.services()), 10, "the healed manager to apply new writes"
    )
