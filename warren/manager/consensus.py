"""A manager's Raft node and its SQLite state machine, wired together.

`Consensus` proposes commands and turns their replicated answers into results or Warren errors, knows
who leads (and at which API address, carried in each member's Raft metadata), and computes readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import warren_raft

from warren.config import ManagerSettings
from warren.errors import (
    NotLeaderError,
    UnavailableError,
    error_class,
    raft_errors,
)
from warren.manager.inflight import InFlight
from warren.manager.versions import VersionGate
from warren.pki.material import NodeMaterial
from warren.pki.names import MANAGER_NAME
from warren.raft_bridge import drive
from warren.store import commands
from warren.store.events import EventRing
from warren.store.machine import Store

log = logging.getLogger(__name__)

# How long one read of the core's metrics answers `seems_leader`, `leader` and friends; seconds. A stale
# answer costs nothing there: a write routed to a node that just lost leadership fails in propose and is
# retried. Decisions taken once (found the cluster, start the leader's services) read fresh: `is_leader`.
METRICS_TTL_S = 0.002


@dataclass(frozen=True, slots=True)
class MemberMeta:
    """What a manager advertises in its Raft membership entry."""

    name: str
    api_addr: str

    def encode(self) -> str:
        return orjson.dumps({"name": self.name, "api": self.api_addr}).decode()

    @staticmethod
    def decode(meta: str) -> MemberMeta | None:
        try:
            doc = orjson.loads(meta)
            return MemberMeta(str(doc["name"]), str(doc["api"]))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    raft_id: int
    name: str | None
    api_addr: str | None


def raft_tls(material: NodeMaterial) -> warren_raft.TlsConfig:
    """The Raft transport's mutual TLS: peers must hold a manager certificate of this cluster's CA."""
    return warren_raft.TlsConfig(
        ca_pem=material.ca_pem, cert_pem=material.cert_pem, key_pem=material.key_pem, peer_name=MANAGER_NAME
    )


class Consensus:
    """The Raft node plus the state machine it drives. Construct with `open`, then `start`."""

    def __init__(self, node: warren_raft.RaftNode, store: Store, settings: ManagerSettings) -> None:
        self.node = node
        self.store = store
        self.settings = settings
        # A leader that has had no quorum acknowledgement for longer than a follower waits before
        # standing for election has probably been cut off (a new leader may exist); milliseconds.
        self._quorum_ack_limit_ms = settings.raft.election_timeout_max_s * 1000
        # Filled by the metrics module: called with each successful proposal's seconds.
        self.observe_commit: list[Callable[[float], None]] = []
        self._drive_task: asyncio.Task[None] | None = None
        self._metrics = node.metrics()
        self._metrics_at = time.monotonic()
        # Refuses a command that another manager's (older) Warren cannot apply; the manager gives it
        # the probe that asks them (warren.manager.versions).
        self.versions = VersionGate(self.other_managers)
        # Proposals waiting for their answers: the reconcile loop lets them be answered before it plans.
        self.in_flight = InFlight()

    @classmethod
    def open(
        cls,
        *,
        raft_dir: str,
        data_dir: str,
        raft_id: int,
        listen_addr: str,
        advertise_addr: str,
        meta: MemberMeta,
        settings: ManagerSettings,
        tls: NodeMaterial | None,
    ) -> Consensus:
        ring = EventRing(settings.events.max_events, settings.events.max_age_s)
        store = Store(data_dir, event_ring=ring)
        with raft_errors():
            node = warren_raft.RaftNode.open(
                raft_dir,
                raft_id,
                listen_addr,
                advertise_addr=advertise_addr,
                meta=meta.encode(),
                config=settings.raft.to_core(),
                tls=None if tls is None else raft_tls(tls),
            )
        return cls(node, store, settings)

    def update_tls(self, material: NodeMaterial) -> None:
        """A renewed certificate for the Raft transport's new connections."""
        self.node.update_tls(raft_tls(material))

    def set_revoked(self, fingerprints: list[str]) -> None:
        """Raft peers presenting one of these certificates (SHA-256 hex) are refused."""
        self.node.set_revoked([bytes.fromhex(f) for f in fingerprints])

    def start(self) -> asyncio.Task[None]:
        """Start feeding committed entries to the store; the task ends when the node shuts down."""
        self._drive_task = asyncio.create_task(drive(self.node, self.store), name="raft-apply")
        return self._drive_task

    # -- writes ---------------------------------------------------------------------------------------

    async def propose(self, cmd: commands.Command) -> Any:
        """Commit `cmd` and return its result; raises the Warren error its replicated answer names."""
        await self.versions.check(cmd)
        payload = commands.encode(cmd)
        start = time.perf_counter()
        try:
            # asyncio.timeout, not wait_for: wait_for wraps the awaitable in a task (~0.1 ms a write).
            async with asyncio.timeout(self.settings.write_timeout_s):
                with raft_errors(), self.in_flight.track():
                    _, answer = await self.node.propose(payload)
        except TimeoutError:
            raise UnavailableError(
                f"the write was not committed within {self.settings.write_timeout_s:g} s (no quorum?); "
                "it may still be applied later"
            ) from None
        elapsed = time.perf_counter() - start
        for observe in self.observe_commit:
            observe(elapsed)
        doc = orjson.loads(answer)
        if "error" in doc:
            raise error_class(doc["error"])(doc.get("message", doc["error"]))
        return doc["ok"]

    async def read_barrier(self) -> int:
        with raft_errors():
            return await self.node.read_barrier()

    # -- who leads ------------------------------------------------------------------------------------

    def metrics(self) -> warren_raft.Metrics:
        """The core's metrics, reused for METRICS_TTL_S: every request asks who leads, and building the
        dict in the core costs more than the rest of the check. Never older than that."""
        now = time.monotonic()
        if now - self._metrics_at >= METRICS_TTL_S:
            self._metrics = self.node.metrics()
            self._metrics_at = now
        return self._metrics

    def is_leader(self) -> bool:
        """Whether this node leads now, from the core's metrics read fresh."""
        return self.node.metrics()["role"] == "leader"

    def seems_leader(self) -> bool:
        """`is_leader` from metrics up to METRICS_TTL_S old: for routing each API request only."""
        return self.metrics()["role"] == "leader"

    def leader(self) -> LeaderInfo | None:
        return self._leader_in(self.metrics())

    @staticmethod
    def _leader_in(m: warren_raft.Metrics) -> LeaderInfo | None:
        leader_id = m["leader_id"]
        if leader_id is None or m["role"] == "shutdown":
            return None
        info = m["nodes"].get(leader_id)
        meta = MemberMeta.decode(info["meta"]) if info is not None else None
        return LeaderInfo(leader_id, meta.name if meta else None, meta.api_addr if meta else None)

    def other_managers(self) -> list[tuple[str, str | None]]:
        """(name, API address) of every other Raft member, voter or learner, from its metadata."""
        m = self.metrics()
        others: list[tuple[str, str | None]] = []
        for raft_id in (*m["voters"], *m["learners"]):
            if raft_id != m["id"]:
                info = m["nodes"].get(raft_id)
                meta = MemberMeta.decode(info["meta"]) if info is not None else None
                others.append((meta.name, meta.api_addr) if meta else (f"raft node {raft_id}", None))
        return others

    def require_leader(self) -> None:
        """Raise NotLeaderError (with the leader's API address when known) unless this node leads."""
        if self.is_leader():
            return
        leader = self.leader()
        raise NotLeaderError(
            "this manager is not the leader",
            leader_id=leader.raft_id if leader else None,
            leader_addr=leader.api_addr if leader else None,
        )

    def require_quorum_contact(self, limit_s: float) -> None:
        """UnavailableError when this node leads a cluster of several voters but no majority has
        acknowledged it for more than `limit_s` (or the election bound, whichever is longer): it has
        probably been cut off, and another manager may lead. Read from metrics up to METRICS_TTL_S old.

        For the worker sessions it answers: a leader cut off from the other managers but not from its
        workers would otherwise keep their sessions to itself, while the new leader, hearing nothing
        from them, takes them for down and starts their tasks again elsewhere, with the old ones still
        running (found by the chaos run, issue 19). A 503 sends a worker to the next manager at once."""
        m = self.metrics()
        if m["role"] != "leader" or len(m["voters"]) <= 1:
            return
        since_ack = m["millis_since_quorum_ack"]
        limit_ms = max(limit_s * 1000, self._quorum_ack_limit_ms)
        if since_ack is not None and since_ack > limit_ms:
            raise UnavailableError(
                f"this manager leads, but no majority of managers has acknowledged it for {since_ack} ms: "
                "it may be cut off, and another may lead; try another manager"
            )

    def fatal_error(self) -> str | None:
        """Why the Raft core stopped on its own (a storage fault, naming the file and errno); None while
        it runs and after a requested shutdown. Read fresh, never from the metrics cache."""
        return self.node.metrics()["fatal_error"]

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason): ready = a leader is known and applying keeps up with the commit index."""
        m = self.metrics()
        if m["fatal_error"] is not None:
            return False, f"raft stopped: {m['fatal_error']}"
        if m["role"] == "shutdown":
            return False, "shutting down"
        if m["leader_id"] is None:
            return False, "no leader (election in progress, or no quorum)"
        if m["role"] == "leader" and len(m["voters"]) > 1:
            since_ack = m["millis_since_quorum_ack"]
            if since_ack is None or since_ack > self._quorum_ack_limit_ms:
                return False, "leader without a quorum: no majority has acknowledged it recently"
        commit = m["commit_index"] or 0
        applied = m["applied_index"] or 0
        if commit - applied > self.settings.ready_apply_lag:
            return False, f"applying lags the commit index ({applied} < {commit})"
        return True, "ok"

    async def wait_for_leader(self, timeout_s: float) -> LeaderInfo:
        """Wait until some leader is known, woken by the Raft core at each change of role, term or
        leader (`wait_role_change`), never by polling."""
        try:
            async with asyncio.timeout(timeout_s):
                m = self.node.metrics()
                while (leader := self._leader_in(m)) is None:
                    if m["role"] == "shutdown":
                        raise UnavailableError("this manager's Raft node has shut down")
                    # Returns at once if anything moved since `m` was read (no change is missed).
                    m = await self.node.wait_role_change(m["role"], m["term"], m["leader_id"])
                return leader
        except TimeoutError:
            raise UnavailableError(f"no leader elected within {timeout_s:g} s") from None

    async def shutdown(self) -> None:
        with raft_errors():
            await self.node.shutdown()
        if self._drive_task is not None:
            with contextlib.suppress(Exception):
                await self._drive_task
        self.store.close()
