"""Hostile bytes on the Raft port: the transport drops the connection, the cluster does not notice."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager

from tests.integration.checks import converge, propose_all, with_prefix
from tests.integration.cluster import Cluster, NodeProc

# Frames are length-prefixed; each payload breaks a different assumption of the decoder.
ATTACKS: dict[str, bytes] = {
    "random bytes": os.urandom(4096),
    "huge length prefix": b"\xff\xff\xff\xff" + os.urandom(64),
    "valid length, garbage body": struct.pack(">I", 64) + os.urandom(64),
    "valid little-endian length, garbage body": struct.pack("<I", 64) + os.urandom(64),
    "zero length": struct.pack(">I", 0) * 16,
    "truncated frame": struct.pack(">I", 1000) + os.urandom(10),
}


@contextmanager
def raw(node: NodeProc) -> Iterator[socket.socket]:
    s = socket.create_connection((node.host, node.port), timeout=5)
    try:
        yield s
    finally:
        s.close()


def send(node: NodeProc, payload: bytes) -> None:
    """Send `payload`, then give the node a moment to answer or hang up (a reset is fine too)."""
    with raw(node) as s:
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(1.0)
            while s.recv(65536):
                pass
        except OSError:  # reset, broken pipe, not connected (the node hung up first), timeout
            pass


def test_garbage_on_the_raft_port_does_not_disturb_the_cluster(cluster: Cluster) -> None:
    leader = cluster.start(3)
    follower = next(p for p in cluster.live() if p is not leader)
    before = cluster.metrics()
    term = before[leader.id]["term"]

    # A stalled half-frame stays open during the whole test: it must not block real peers.
    with raw(leader) as stalled_leader, raw(follower) as stalled_follower:
        stalled_leader.sendall(struct.pack(">I", 4096) + b"x" * 100)
        stalled_follower.sendall(struct.pack(">I", 4096) + b"x" * 100)
        for target in (follower, leader):
            for _name, payload in ATTACKS.items():
                send(target, payload)
        # Connect and close without a byte.
        for target in (follower, leader):
            with raw(target):
                pass

        assert all(p.alive for p in cluster.nodes.values()), "a node died of garbage on its Raft port"
        acked, last = propose_all(leader, "after-garbage-", 20)
        assert with_prefix(converge(cluster, last), "after-garbage-") == acked

    after = cluster.metrics()
    assert set(after) == {1, 2, 3}
    for node_id, m in after.items():
        assert m["term"] == term, f"node {node_id} changed term"
        assert m["leader_id"] == leader.id
        assert m["elections_total"] == before[node_id]["elections_total"]
    acked, last = propose_all(leader, "after-close-", 5)
    assert with_prefix(converge(cluster, last), "after-close-") == acked
