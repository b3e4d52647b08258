"""Assertions shared by the Raft integration tests (what "same history" and "nothing lost" mean)."""

from __future__ import annotations

from tests.integration.cluster import Cluster, NodeProc

State = list[tuple[int, str]]


def with_prefix(state: State, prefix: str) -> list[str]:
    """The payloads this test wrote (by prefix), in applied order; other entries are ignored."""
    return [payload for _, payload in state if payload.startswith(prefix)]


def assert_indexes_increase(indexes: list[int]) -> None:
    assert all(b > a for a, b in zip(indexes, indexes[1:], strict=False)), (
        f"indexes not increasing: {indexes}"
    )


def assert_same_history(nodes: list[NodeProc], upto: int | None = None) -> State:
    """Every node applied exactly the same (index, payload) sequence (up to index `upto`); returns it.

    `upto` leaves out entries a node may apply a moment after the others (e.g. a new leader's blank).
    """
    states = {p.id: [e for e in p.state() if upto is None or e[0] <= upto] for p in nodes}
    first_id = min(states)
    reference = states[first_id]
    for node_id, state in states.items():
        if state != reference:
            diverge = next(
                (i for i, (a, b) in enumerate(zip(reference, state, strict=False)) if a != b),
                min(len(reference), len(state)),
            )
            raise AssertionError(
                f"node {node_id} history differs from node {first_id} at position {diverge}: "
                f"{state[diverge : diverge + 3]} vs {reference[diverge : diverge + 3]} "
                f"(lengths {len(state)} vs {len(reference)})"
            )
    return reference


def assert_contains_in_order(state: State, acked: list[str], node: NodeProc) -> None:
    """Every acknowledged write is in the node's history, once, in the order it was acknowledged."""
    wanted = set(acked)
    seen = [payload for _, payload in state if payload in wanted]
    missing = [a for a in acked if a not in set(seen)]
    assert not missing, f"node {node.id} lost {len(missing)} acknowledged writes, e.g. {missing[:5]}"
    assert seen == acked, f"node {node.id} applied acknowledged writes out of order or twice"


def propose_all(node: NodeProc, prefix: str, count: int, timeout: float = 30.0) -> tuple[list[str], int]:
    """`count` sequential proposals on `node`; returns the acknowledged payloads and the last index."""
    indexes = node.call("propose_many", count=count, prefix=prefix, timeout=timeout)
    assert len(indexes) == count
    assert_indexes_increase(indexes)
    return [f"{prefix}{i}" for i in range(count)], indexes[-1]


def converge(cluster: Cluster, index: int, nodes: list[NodeProc] | None = None) -> State:
    """Wait until `nodes` (default: live) applied `index`, then check they applied the same history."""
    nodes = nodes if nodes is not None else cluster.live()
    cluster.wait_applied(index, nodes)
    return assert_same_history(nodes, upto=index)
