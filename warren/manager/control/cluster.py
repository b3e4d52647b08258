"""The cluster as the API's front sees it: health, readiness, `cluster info`, consistent reads, where
the leader is (for leader routing) and the request metrics."""

from __future__ import annotations

from typing import Any

from warren.manager.consensus import Consensus
from warren.manager.metrics import ManagerMetrics, health_body, ready_body
from warren.manager.peer import PeerClient
from warren.store import queries


class Cluster:
    def __init__(
        self, name: str, cluster_id: str, consensus: Consensus, peers: PeerClient, metrics: ManagerMetrics
    ) -> None:
        self.name = name  # this manager's node name
        self.cluster_id = cluster_id
        self.consensus = consensus
        self.peers = peers
        self.metrics = metrics

    # -- health ---------------------------------------------------------------------------------------

    def health(self) -> dict[str, object]:
        return health_body(self.name)

    def ready(self) -> tuple[int, dict[str, object]]:
        """(HTTP status, body) of /v1/ready."""
        return ready_body(self.consensus, self.name)

    # -- leader routing -------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.consensus.seems_leader()  # per request: a stale answer only costs a retry

    def leader_api_addr(self) -> str | None:
        """The leader's API address, None while no leader (or its address) is known."""
        leader = self.consensus.leader()
        return None if leader is None else leader.api_addr

    async def read_barrier(self) -> None:
        """Wait until this manager has applied everything committed when called (`?consistent=true`)."""
        await self.consensus.read_barrier()

    def observe_request(self, method: str, route: str, code: int, seconds: float) -> None:
        self.metrics.observe_request(method, route, code, seconds)

    def count_forwarded(self) -> None:
        self.metrics.api_forwarded.inc()

    # -- cluster info ---------------------------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        conn = self.consensus.store.conn
        m = self.consensus.metrics()
        cluster = queries.cluster(conn) or {}
        leader = self.consensus.leader()
        voters, learners = set(m["voters"]), set(m["learners"])
        managers = queries.nodes(conn, "manager")
        others = [n["api_addr"] for n in managers if n["raft_id"] != m["id"] and n["api_addr"]]
        probes = await self.peers.probe_many(others)
        rows = []
        for n in managers:
            raft_id = n["raft_id"]
            if raft_id == m["id"]:
                status = "ready" if self.consensus.readiness()[0] else "not ready"
            else:
                status = probes.get(n["api_addr"], "unreachable")
            if leader is not None and raft_id == leader.raft_id:
                role = "leader"
            elif raft_id in voters:
                role = "follower"
            elif raft_id in learners:
                role = "learner"
            else:
                role = n["state"]  # joining (not yet a member) or removed
            rows.append(
                {
                    "name": n["name"],
                    "raft_id": raft_id,
                    "api_addr": n["api_addr"],
                    "raft_addr": n["raft_addr"],
                    "role": role,
                    "status": status,
                }
            )
        workers = queries.nodes(conn, "worker")
        by_id = {r["raft_id"]: r for r in rows}
        reachable = sum(1 for v in voters if v in by_id and by_id[v]["status"] != "unreachable")
        needed = len(voters) // 2 + 1
        return {
            "cluster_id": cluster.get("cluster_id", self.cluster_id),
            "created_at": cluster.get("created_at"),
            "node": self.name,
            "leader": None
            if leader is None
            else {
                "name": leader.name,
                "api_addr": leader.api_addr,
                "raft_id": leader.raft_id,
            },
            "quorum": {
                "managers": len(voters),
                "needed": needed,
                "reachable": reachable,
                "ok": leader is not None and reachable >= needed,
            },
            "managers": rows,
            "workers": len(workers),
            "worker_nodes": [
                {"name": w["name"], "state": w["state"], "availability": w["availability"], "addr": w["addr"]}
                for w in workers
            ],
            "raft": {
                "term": m["term"],
                "commit_index": m["commit_index"],
                "applied_index": m["applied_index"],
            },
        }
