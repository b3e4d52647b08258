"""Leadership transfer: the chosen node takes over, writes continue, nothing acknowledged is lost."""

from __future__ import annotations

import threading
import time

import pytest

from tests.integration.checks import assert_contains_in_order, converge, propose_all
from tests.integration.cluster import Cluster, RemoteError
from warren.testing.wait import eventually


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


def test_transfer_under_write_load_wins_the_first_campaign(cluster: Cluster) -> None:
    """Proposals keep arriving while leadership moves. Those the leader admitted before it closed to
    writes must all be committed before the target campaigns: an entry appended after the target
    caught up would make the target's log the shorter one, the old leader would refuse it the vote,
    and the hand-over would fall back to an election timeout (a later term, or the old leader again)."""
    old = cluster.start(3)
    propose_all(old, "warm-", 5)
    # The old leader grants the target its vote only once its own lease, dated from its election,
    # has run out: election_max_ms.
    time.sleep(cluster.options.election_max_ms / 1000)
    old_term = old.metrics()["term"]
    target = next(p for p in cluster.live() if p is not old)

    acked: list[str] = []
    refused: list[str] = []
    stop = threading.Event()

    def write(worker: int) -> None:
        n = 0
        while not stop.is_set():
            data = f"load-{worker}-{n}"
            n += 1
            try:
                old.call("propose", data=data)
            except RemoteError as exc:
                refused.append(exc.cls)
                continue
            acked.append(data)

    writers = [threading.Thread(target=write, args=(w,), daemon=True) for w in range(8)]
    for t in writers:
        t.start()
    eventually(lambda: len(acked) >= 50, 30, "50 proposals acknowledged under load")
    try:
        assert old.call("transfer_leadership", to=target.id, timeout=10) == target.id
    finally:
        stop.set()
        for t in writers:
            t.join(10)
    assert cluster.leader() is target
    assert target.metrics()["term"] == old_term + 1, "the target did not win its first campaign"
    assert set(refused) <= {"NotLeaderError"}, refused
    more, last = propose_all(target, "after-", 5)
    converge(cluster, last)
    for p in cluster.live():
        state = p.state()
        payloads = {payload for _, payload in state}
        missing = [a for a in acked if a not in payloads]
        assert not missing, f"node {p.id} lacks acknowledged proposals {missing[:5]}"
        assert_contains_in_order(state, more, p)
