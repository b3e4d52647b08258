"""Harness for real multi-process clusters on loopback: start, kill, restart and observe Raft nodes.

`Cluster` is a set of `tests.integration.raftnode` processes (`NodeProc`, see nodeproc.py) with helpers
that wait on conditions. Synchronous on purpose: tests and benches drive it from plain functions.
Nothing here sleeps for a fixed time to let something happen: it waits on metrics, polled every 20 ms
with warren.testing's `eventually`.
"""

from __future__ import annotations

import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.integration.nodeproc import (
    REPO_ROOT,
    CallTimeout,
    HarnessError,
    Metrics,
    NodeExited,
    NodeFatal,
    NodeProc,
    RemoteError,
)
from warren.testing.process import free_port
from warren.testing.wait import WaitTimeout, eventually

__all__ = [
    "CallTimeout",
    "Cluster",
    "HarnessError",
    "Metrics",
    "MetricsByNode",
    "NodeExited",
    "NodeFatal",
    "NodeOptions",
    "NodeProc",
    "RemoteError",
    "WaitTimeout",
    "summarize",
]

POLL_S = 0.02

MetricsByNode = dict[int, Metrics]


@dataclass(frozen=True)
class NodeOptions:
    """Per-node timers and limits passed on the raftnode command line (None: warren_raft's default)."""

    heartbeat_ms: int = 50
    election_min_ms: int = 150
    election_max_ms: int = 300
    snapshot_threshold: int | None = None
    keep: int | None = None
    log_level: str = "info"

    def argv(self) -> list[str]:
        out = [
            "--heartbeat-ms",
            str(self.heartbeat_ms),
            "--election-min-ms",
            str(self.election_min_ms),
            "--election-max-ms",
            str(self.election_max_ms),
            "--log-level",
            self.log_level,
        ]
        if self.snapshot_threshold is not None:
            out += ["--snapshot-threshold", str(self.snapshot_threshold)]
        if self.keep is not None:
            out += ["--keep", str(self.keep)]
        return out


# warren-raft's PEM fixtures (rust/tests/fixtures, made by make_certs.py): a CA and node certificates
# for the DNS name PEER_NAME; CERTS names the certificate of nodes 1..3.
FIXTURES = REPO_ROOT / "rust" / "tests" / "fixtures"
PEER_NAME = "raft-peer"
CERTS = {1: "node-a", 2: "node-b", 3: "node-c"}


@dataclass(frozen=True)
class TlsOptions(NodeOptions):
    """NodeOptions plus the node's TLS identity: certificate `stem`.pem / `stem`.key, trusting `ca`."""

    stem: str = "node-a"
    ca: str = "ca.pem"

    def argv(self) -> list[str]:
        return [
            *super().argv(),
            "--tls-ca",
            str(FIXTURES / self.ca),
            "--tls-cert",
            str(FIXTURES / f"{self.stem}.pem"),
            "--tls-key",
            str(FIXTURES / f"{self.stem}.key"),
            "--tls-peer-name",
            PEER_NAME,
        ]


def read_until_closed(sock: socket.socket | ssl.SSLSocket, timeout: float = 5.0) -> bytes:
    """Everything the peer sends until it closes (EOF, reset or TLS alert); fails if it stays open."""
    sock.settimeout(timeout)
    got = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            break
        except (ssl.SSLError, ConnectionError):
            return got
        if not chunk:
            return got
        got += chunk
    raise AssertionError(f"the node kept the connection open for {timeout} s (got {got!r})")


def summarize(metrics: MetricsByNode) -> str:
    """One line per node with the fields that explain most waits."""
    keys = (
        "role",
        "term",
        "leader_id",
        "commit_index",
        "applied_index",
        "last_log_index",
        "snapshot_index",
        "purged_index",
        "voters",
        "learners",
        "elections_total",
    )
    lines = []
    for node_id in sorted(metrics):
        m = metrics[node_id]
        lines.append(f"  node {node_id}: " + " ".join(f"{k}={m.get(k)}" for k in keys))
    return "\n".join(lines) or "  (no node answered)"


class Cluster:
    """warren_raft nodes 1..n on 127.0.0.(10+id) with free ports; data and logs under `base_dir`."""

    def __init__(
        self,
        base_dir: Path,
        options: NodeOptions | None = None,
        module: str = "tests.integration.raftnode",
    ) -> None:
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.options = options or NodeOptions()
        self.module = module
        self.nodes: dict[int, NodeProc] = {}

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- membership of the harness --------------------------------------------------------------------

    def add_node(self, node_id: int, options: NodeOptions | None = None) -> NodeProc:
        """Create (not start) node `node_id` with its own loopback address, port and data dir."""
        if node_id in self.nodes:
            raise HarnessError(f"node {node_id} already exists")
        host = f"127.0.0.{10 + node_id}"
        addr = f"{host}:{free_port(host)}"
        data_dir = self.base_dir / f"node{node_id}"
        argv = [
            sys.executable,
            "-m",
            self.module,
            "--id",
            str(node_id),
            "--listen",
            addr,
            "--data",
            str(data_dir),
            *(options or self.options).argv(),
        ]
        node = NodeProc(node_id, addr, data_dir, argv, self.base_dir / f"node{node_id}.log")
        self.nodes[node_id] = node
        return node

    def spawn(self, ids: Iterable[int]) -> list[NodeProc]:
        """Create and start nodes in parallel, then wait until each serves."""
        procs = [self.nodes.get(i) or self.add_node(i) for i in ids]
        for p in procs:
            p.start()
        for p in procs:
            p.wait_ready()
        return procs

    def members(self, ids: Iterable[int] | None = None) -> dict[int, list[str]]:
        """Bootstrap member map {id: [addr, meta]} (JSON turns the int keys into strings)."""
        return {i: [self.nodes[i].addr, ""] for i in (ids if ids is not None else sorted(self.nodes))}

    def start(self, n: int, *, join: bool = False, timeout: float = 15.0) -> NodeProc:
        """Start nodes 1..n as one cluster and return its leader.

        join=False: node 1 bootstraps with all n members. join=True: node 1 bootstraps alone and the
        others join one by one with add_voter (the path a real manager takes to grow a cluster).
        """
        procs = self.spawn(range(1, n + 1))
        first = procs[0]
        if not join:
            first.call("bootstrap", members=self.members(range(1, n + 1)), timeout=timeout)
            return self.leader(timeout=timeout)
        first.call("bootstrap", timeout=timeout)
        leader = self.leader(timeout=timeout, nodes=[first])  # the others know of no cluster yet
        for p in procs[1:]:
            leader.call("add_voter", node_id=p.id, addr=p.addr, timeout=timeout)
        want = list(range(1, n + 1))
        self.wait_for(
            lambda ms: all(sorted(m["voters"]) == want for m in ms.values()),
            timeout,
            f"voters == {want} on every node",
        )
        return self.leader(timeout=timeout)

    def live(self) -> list[NodeProc]:
        return [p for _, p in sorted(self.nodes.items()) if p.alive]

    def close(self) -> None:
        """SIGKILL every node (teardown must not depend on the cluster being healthy)."""
        for p in self.nodes.values():
            try:
                p.kill()
            except OSError:
                pass

    # -- observation ----------------------------------------------------------------------------------

    def metrics(self, nodes: Iterable[NodeProc] | None = None) -> MetricsByNode:
        """Metrics of every given (default: live) node that answers within 2 s."""
        out: MetricsByNode = {}
        for p in list(nodes) if nodes is not None else self.live():
            try:
                out[p.id] = p.metrics(timeout=2.0)
            except (HarnessError, RemoteError):
                continue
        return out

    def wait_for(
        self,
        predicate: Callable[[MetricsByNode], bool],
        timeout: float = 10.0,
        what: str = "condition",
        nodes: Iterable[NodeProc] | None = None,
    ) -> MetricsByNode:
        """Poll metrics every 20 ms until `predicate(metrics by node id)` holds; WaitTimeout otherwise.

        Only nodes that answered are in the map; the predicate decides whether a silent node matters.
        """
        node_list = list(nodes) if nodes is not None else None
        last: list[MetricsByNode] = [{}]

        def holds() -> tuple[MetricsByNode] | None:
            last[0] = self.metrics(node_list)
            return (last[0],) if predicate(last[0]) else None

        partial = (KeyError, IndexError, TypeError)  # a node's partial view (no leader yet): keep polling
        (metrics,) = eventually(holds, timeout, what, poll_s=POLL_S, not_yet=partial,
                                detail=lambda: f"last metrics:\n{summarize(last[0])}")
        return metrics

    def leader(self, timeout: float = 10.0, nodes: Iterable[NodeProc] | None = None) -> NodeProc:
        """The node that every given (default: live) node, all answering, agrees is leader in one term."""
        node_list = list(nodes) if nodes is not None else self.live()
        ids = {p.id for p in node_list}

        def agreed(ms: MetricsByNode) -> bool:
            if set(ms) != ids:
                return False
            leaders = {m["leader_id"] for m in ms.values()}
            terms = {m["term"] for m in ms.values()}
            if len(leaders) != 1 or len(terms) != 1:
                return False
            (lid,) = leaders
            return lid in ms and ms[lid]["role"] == "leader"

        ms = self.wait_for(agreed, timeout, f"nodes {sorted(ids)} to agree on one leader", node_list)
        return self.nodes[next(iter(ms.values()))["leader_id"]]

    def wait_applied(
        self, index: int, nodes: Iterable[NodeProc] | None = None, timeout: float = 15.0
    ) -> MetricsByNode:
        """Wait until every given (default: live) node has applied at least `index`."""
        node_list = list(nodes) if nodes is not None else self.live()
        ids = {p.id for p in node_list}
        return self.wait_for(
            lambda ms: set(ms) == ids and all((m["applied_index"] or 0) >= index for m in ms.values()),
            timeout,
            f"applied_index >= {index} on nodes {sorted(ids)}",
            node_list,
        )

    def wait_converged(self, nodes: Iterable[NodeProc] | None = None, timeout: float = 15.0) -> MetricsByNode:
        """Wait until every given (default: live) node has applied the same, leader-committed index."""
        node_list = list(nodes) if nodes is not None else self.live()
        ids = {p.id for p in node_list}

        def same(ms: MetricsByNode) -> bool:
            if set(ms) != ids:
                return False
            applied = {m["applied_index"] for m in ms.values()}
            commits = {m["commit_index"] for m in ms.values() if m["role"] == "leader"}
            return len(applied) == 1 and applied == commits

        return self.wait_for(
            same, timeout, f"nodes {sorted(ids)} to apply the leader's commit index", node_list
        )

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(p.log_tail(lines) for _, p in sorted(self.nodes.items()))
