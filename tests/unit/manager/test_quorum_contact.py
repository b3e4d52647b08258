"""A leader that no majority has acknowledged lately sends its workers elsewhere (503), so that a leader
cut off from the other managers but not from its workers cannot keep their sessions while a new leader
takes them for down and starts their tasks again (the chaos run's duplicate tasks, issue 19)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from warren.config import ManagerSettings
from warren.errors import UnavailableError
from warren.manager.consensus import Consensus
from warren.manager.control.workers import Workers


class Node:
    def __init__(self, role: str = "leader", voters: tuple[int, ...] = (1, 2, 3),
                 since_ack: int | None = 10) -> None:
        self.m: dict[str, Any] = {"id": 1, "role": role, "voters": list(voters), "learners": [],
                                  "leader_id": 1, "nodes": {}, "millis_since_quorum_ack": since_ack}

    def metrics(self) -> dict[str, Any]:
        return self.m


def consensus(node: Node) -> Consensus:
    c = Consensus(node, None, ManagerSettings())  # type: ignore[arg-type]
    c.metrics = node.metrics  # type: ignore[method-assign]  # no cache between the cases
    return c


def test_a_leader_acknowledged_lately_serves() -> None:
    consensus(Node(since_ack=10)).require_quorum_contact(1.0)
    consensus(Node(since_ack=None)).require_quorum_contact(1.0)  # not measured yet: no verdict
    consensus(Node(voters=(1,), since_ack=60_000)).require_quorum_contact(1.0)  # alone, it is the quorum
    consensus(Node(role="follower", since_ack=60_000)).require_quorum_contact(1.0)  # forwards anyway


def test_a_leader_unacknowledged_past_the_limit_refuses() -> None:
    c = consensus(Node(since_ack=999))
    c.require_quorum_contact(1.0)
    c.metrics()["millis_since_quorum_ack"] = 1500
    with pytest.raises(UnavailableError, match="no majority of managers has acknowledged it for 1500 ms"):
        c.require_quorum_contact(1.0)


async def test_a_worker_session_on_a_cut_off_leader_is_sent_elsewhere() -> None:
    held: list[str] = []

    async def session(node: str, *args: Any) -> dict[str, Any]:
        held.append(node)
        return {}

    dispatcher = SimpleNamespace(settings=SimpleNamespace(heartbeat_period_s=1.0), session=session)
    node = Node(since_ack=20)
    workers = Workers(consensus(node), SimpleNamespace(get=lambda: dispatcher))  # type: ignore[arg-type]
    await workers.session("worker-1", None, None, None, None)
    assert held == ["worker-1"]
    node.m["millis_since_quorum_ack"] = 4000  # isolated: the other managers elected another leader
    with pytest.raises(UnavailableError):
        await workers.session("worker-1", None, None, None, None)
    assert held == ["worker-1"]
