"""Prometheus metrics of a manager (names from DESIGN.md) and the /metrics, /health, /ready server.

Raft gauges are read from the live node at scrape time (a custom collector), so they are never stale;
commit latency and API requests are observed as they happen. Each manager has its own registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from warren.store import commands, queries

if TYPE_CHECKING:
    from warren.manager.consensus import Consensus

# Commit latency buckets: from sub-millisecond (LAN, one node) to the 1 s RPC timeout; seconds.
COMMIT_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
API_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
# Reconcile pass duration (planning plus committing its commands); seconds.
RECONCILE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
# Task status updates per committed batch.
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000)


class RaftCollector(Collector):
    """Raft state and object counts, read at scrape time."""

    def __init__(self, consensus: Consensus) -> None:
        self.consensus = consensus

    def collect(self) -> Iterator[Metric]:
        m = self.consensus.metrics()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        yield gauge(
            "warren_raft_leader", "1 if this manager is the Raft leader, else 0", m["role"] == "leader"
        )
        yield gauge(
            "warren_raft_peers", "Voting members of the Raft group, this manager included", len(m["voters"])
        )
        yield gauge("warren_raft_term", "Current Raft term", m["term"])
        yield gauge("warren_raft_commit_index", "Highest committed log index", m["commit_index"] or 0)
        yield gauge(
            "warren_raft_applied_index", "Highest log index applied to the state", m["applied_index"] or 0
        )
        yield gauge(
            "warren_raft_last_log_index", "Highest log index stored locally", m["last_log_index"] or 0
        )
        yield gauge(
            "warren_raft_snapshot_index",
            "Last log index in the latest snapshot (0: none)",
            m["snapshot_index"] or 0,
        )
        yield gauge(
            "warren_raft_purged_index", "Highest log index compacted away (0: none)", m["purged_index"] or 0
        )
        contact = 0.0 if m["role"] == "leader" else m["last_leader_contact_s"]
        yield gauge(
            "warren_raft_last_contact_seconds",
            "Seconds since this manager last heard from the leader (0 on the leader; -1 never)",
            -1.0 if contact is None else contact,
        )
        elections = CounterMetricFamily(
            "warren_raft_elections", "Elections this manager has seen start since it started"
        )
        elections.add_metric([], m["elections_total"])
        yield elections
        state = GaugeMetricFamily(
            "warren_raft_state", "1 for this manager's current Raft role", labels=["role"]
        )
        for role in ("leader", "follower", "candidate", "learner", "shutdown"):
            state.add_metric([role], 1.0 if m["role"] == role else 0.0)
        yield state
        peer_contact = GaugeMetricFamily(
            "warren_raft_peer_last_contact_seconds",
            "On the leader: seconds since each peer last acknowledged (-1 never)",
            labels=["peer"],
        )
        lag = GaugeMetricFamily(
            "warren_raft_peer_replication_lag", "On the leader: entries each peer is behind", labels=["peer"]
        )
        last = m["last_log_index"] or 0
        for peer, pm in m["peers"].items():
            seconds = pm["last_contact_s"]
            peer_contact.add_metric([str(peer)], -1.0 if seconds is None else seconds)
            lag.add_metric([str(peer)], float(last - (pm["match_index"] or 0)))
        yield peer_contact
        yield lag
        if m["role"] == "shutdown":
            return
        conn = self.consensus.store.conn
        nodes = GaugeMetricFamily("warren_nodes", "Nodes by role and state", labels=["role", "state"])
        for row in conn.execute("SELECT role, state, count(*) FROM nodes GROUP BY role, state"):
            nodes.add_metric([row[0], row[1]], row[2])
        yield nodes
        yield gauge("warren_services", "Services defined", queries.count_rows(conn, "services"))
        tasks = GaugeMetricFamily("warren_tasks", "Tasks by state", labels=["state"])
        for row in conn.execute("SELECT state, count(*) FROM tasks GROUP BY state"):
            tasks.add_metric([row[0]], row[1])
        yield tasks


class ManagerMetrics:
    """The registry of one manager and the instruments other modules observe into."""

    def __init__(self, consensus: Consensus) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(RaftCollector(consensus))
        self.commit_seconds = Histogram(
            "warren_raft_commit_duration_seconds",
            "From proposing a command to its result (committed and applied on the leader)",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.api_requests = Counter(
            "warren_api_requests",
            "API requests answered, by method, route and status code",
            ["method", "route", "code"],
            registry=self.registry,
        )
        self.api_seconds = Histogram(
            "warren_api_request_duration_seconds",
            "API request latency, by method and route",
            ["method", "route"],
            buckets=API_BUCKETS,
            registry=self.registry,
        )
        self.api_forwarded = Counter(
            "warren_api_forwarded_requests",
            "Writes this manager forwarded to the leader",
            registry=self.registry,
        )
        self.reconcile_passes = Counter(
            "warren_reconcile_passes",
            "Reconcile passes run by this manager while leader, by outcome (ok, refused, failed)",
            ["outcome"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "warren_reconcile_duration_seconds",
            "One reconcile pass: planning and committing its commands",
            buckets=RECONCILE_BUCKETS,
            registry=self.registry,
        )
        self.sessions_held = Gauge(
            "warren_dispatcher_sessions_held",
            "Worker session calls the leader is holding open now",
            registry=self.registry,
        )
        self.nodes_down = Counter(
            "warren_dispatcher_nodes_down",
            "Workers this manager wrote down after their heartbeat grace",
            registry=self.registry,
        )
        self.status_batches = Histogram(
            "warren_dispatcher_status_batch_size",
            "Task status updates per committed batch",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        consensus.observe_commit.append(self.commit_seconds.observe)

    def observe_request(self, method: str, route: str, code: int, seconds: float) -> None:
        self.api_requests.labels(method, route, str(code)).inc()
        self.api_seconds.labels(method, route).observe(seconds)


def health_body(name: str) -> dict[str, object]:
    return {"status": "ok", "node": name}


def ready_body(consensus: Consensus, name: str) -> tuple[int, dict[str, object]]:
    ready, reason = consensus.readiness()
    m = consensus.metrics()
    body: dict[str, object] = {
        "ready": ready,
        "reason": reason,
        "node": name,
        "role": m["role"],
        "term": m["term"],
        "leader_id": m["leader_id"],
        "commit_index": m["commit_index"],
        "applied_index": m["applied_index"],
        # The highest command version this manager applies (warren.manager.versions).
        "command_version": commands.COMMAND_VERSION,
    }
    return (200 if ready else 503), body


def metrics_app(metrics: ManagerMetrics, consensus: Consensus, name: str) -> Starlette:
    """The ASGI app served on --metrics-addr: /metrics (Prometheus text), /health, /ready."""

    async def scrape(_: Request) -> Response:
        return Response(
            generate_latest(metrics.registry), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    async def health(_: Request) -> Response:
        return JSONResponse(health_body(name))

    async def ready(_: Request) -> Response:
        code, body = ready_body(consensus, name)
        return JSONResponse(body, status_code=code)

    return Starlette(routes=[Route("/metrics", scrape), Route("/health", health), Route("/ready", ready)])
