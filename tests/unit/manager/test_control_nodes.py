"""Nodes.role_of, which the API's authorization asks for every node certificate: a node the state does
not hold is removed only when this manager is caught up; before that it cannot tell."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from warren.config import ManagerSettings
from warren.errors import UnavailableError
from warren.manager.control.nodes import Nodes
from warren.store import commands as c
from warren.store.machine import Store


def nodes(tmp_path: Path, ready: list[bool]) -> Nodes:
    store = Store(str(tmp_path))
    store.restore(None)
    founder = c.ManagerRecord("manager-1", 1, "127.0.0.1:1", "127.0.0.1:2")
    store.apply([(1, 1, c.encode(c.InitCluster("cluster-1", 1_700_000_000.0, founder)))])
    consensus: Any = SimpleNamespace(store=store, readiness=lambda: (ready[0], "test"))
    return Nodes(consensus, None)  # type: ignore[arg-type]


def test_role_of_a_node_missing_from_a_state_still_catching_up_is_unknown_not_removed(tmp_path: Path) -> None:
    ready = [False]
    n = nodes(tmp_path, ready)
    assert n.role_of("manager-1") == "manager"  # what the state holds is answered, ready or not
    with pytest.raises(UnavailableError, match="not caught up"):
        n.role_of("worker-7")
    ready[0] = True
    assert n.role_of("worker-7") is None  # caught up: no such node means removed


async def test_catch_up_pays_one_read_barrier_per_term(tmp_path: Path) -> None:
    # A removed node's certificate must not make each of its requests cost a quorum round.
    term = [3]
    barriers: list[int] = []

    async def read_barrier() -> int:
        barriers.append(term[0])
        return 1

    n = nodes(tmp_path, [True])
    n.consensus = SimpleNamespace(  # type: ignore[assignment]
        metrics=lambda: {"term": term[0]}, read_barrier=read_barrier, settings=ManagerSettings()
    )
    await n.catch_up()
    await n.catch_up()
    assert barriers == [3]
    term[0] = 4  # a new term: the state may be behind again (restarted with the others)
    await n.catch_up()
    assert barriers == [3, 4]
