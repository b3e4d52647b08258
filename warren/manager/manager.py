"""What a manager does for the API: join tokens, manager and worker membership, services, tasks, logs,
cluster info, backups.

Writes run on the leader (the API forwards them there); each mints the IDs and timestamps its
command carries, so apply stays deterministic.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import sqlite3
import tempfile
import time
from typing import TYPE_CHECKING, Any

from warren import config
from warren.api.peer import PeerClient
from warren.errors import (
    ConflictError,
    InvalidError,
    NotFoundError,
    UnauthorizedError,
    UnavailableError,
    raft_errors,
)
from warren.manager import tokens
from warren.manager.ca import ClusterCA, Issued
from warren.manager.consensus import Consensus, MemberMeta
from warren.manager.dispatcher import secret_digest
from warren.manager.identity import Identity
from warren.manager.logrelay import LogStream
from warren.pki import offload, peek
from warren.store import commands as c
from warren.store import queries, schema
from warren.store.apply import check_token
from warren.store.commands import CommandError
from warren.store.machine import check_state_file

if TYPE_CHECKING:
    from warren.manager.dispatcher import Dispatcher
    from warren.manager.leadership import LeaderServices

log = logging.getLogger(__name__)

# Rows per import command during `cluster init --restore`: keeps each command far below max_entry_bytes.
IMPORT_BATCH_ROWS = 200


class Manager:
    def __init__(
        self,
        identity: Identity,
        settings: config.ManagerSettings,
        consensus: Consensus,
        peers: PeerClient,
        data_key: bytes,
    ) -> None:
        self.identity = identity
        self.settings = settings
        self.consensus = consensus
        self.peers = peers
        consensus.versions.probe = peers.command_version
        # The cluster data key (warren.pki.sealing): opens the CA key and secrets; never replicated.
        self.data_key = data_key
        self.ca = ClusterCA(consensus, data_key)
        # Set by the daemon: the leader-only services (worker sessions, reconcile loop).
        self.leader_services: LeaderServices | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        return self.consensus.store.conn

    def dispatcher(self) -> Dispatcher:
        """This term's dispatcher; UnavailableError while this manager does not lead (or its leader
        services are still starting: a worker retries)."""
        dispatcher = self._maybe_dispatcher()
        if dispatcher is None:
            raise UnavailableError("worker sessions are served by the leader, which is starting them; retry")
        return dispatcher

    def _maybe_dispatcher(self) -> Dispatcher | None:
        services = self.leader_services
        return services.dispatcher if services is not None else None

    # -- join tokens ----------------------------------------------------------------------------------

    async def issue_token(self, role: c.Role, rotate: bool, ttl_s: float | None = None) -> dict[str, Any]:
        token = tokens.mint(self.ca.digest())
        now = time.time()
        ttl = self.settings.join_token_ttl_s if ttl_s is None else ttl_s
        cmd = c.CreateToken(secrets.token_hex(8), role, tokens.digest(token), now, now + ttl, rotate)
        await self.consensus.propose(cmd)
        log.info("%s join token issued%s", role, " (earlier ones revoked)" if rotate else "")
        return {"role": role, "token": token, "expires_at": now + ttl, "ttl_s": ttl}

    # -- managers -------------------------------------------------------------------------------------

    async def register_manager(self, token: str, api_addr: str, raft_addr: str, csr: str) -> dict[str, Any]:
        """First step of a join: check the token, allocate a Raft ID, record the manager as joining,
        and sign its certificate. The answer carries the cluster data key (over mutual TLS to a node
        that checked our CA against its token): every manager needs it to open the CA key."""
        self.consensus.require_leader()
        # The token first (apply checks it again): the CSR check costs a child process
        # (warren.pki.offload), which an anonymous caller must not be able to buy with a made-up token.
        self._check_token_locally("manager", token)
        await _check_csr(csr)  # a bad CSR is refused before anything is recorded
        next_id = self.conn.execute("SELECT next_raft_id FROM cluster").fetchone()
        name = f"manager-{next_id[0] if next_id else 'x'}-{secrets.token_hex(3)}"
        cmd = c.RegisterManager(name, api_addr, raft_addr, tokens.digest(token), time.time())
        result: dict[str, Any] = await self.consensus.propose(cmd)
        issued = await self._issue(csr, name, "manager")
        log.info("manager %s (raft id %s) registered from %s, joining", name, result["raft_id"], api_addr)
        return {**result, **_issued_doc(issued), "data_key": base64.b64encode(self.data_key).decode("ascii")}

    async def _issue(self, csr: str, name: str, role: peek.Role) -> Issued:
        return await self.ca.issue(csr, name=name, role=role, lifetime_s=self.settings.node_cert_lifetime_s)

    async def renew_certificate(self, peer: peek.PeerIdentity, csr: str) -> dict[str, Any]:
        """A new certificate for a node's new key, with the name and role of the one it called with."""
        self.consensus.require_leader()
        if peer.role == "admin":
            raise InvalidError(
                "admin certificates are not renewed here; `cluster init` wrote a long-lived one"
            )
        issued = await self._issue(csr, peer.name, peer.role)
        log.info("certificate of %s %s renewed", peer.role, peer.name)
        return _issued_doc(issued)

    async def promote_manager(self, name: str, token: str) -> dict[str, Any]:
        """Second step: add the running manager as a learner, wait until caught up, make it a voter."""
        self.consensus.require_leader()
        self._check_token_locally("manager", token)
        node = queries.node(self.conn, name)
        if node is None or node["role"] != "manager":
            raise NotFoundError(f"no manager named {name!r}")
        raft_id = int(node["raft_id"])
        meta = MemberMeta(name, node["api_addr"]).encode()
        if raft_id not in self.consensus.metrics()["voters"]:
            with raft_errors():
                await self.consensus.node.add_voter(raft_id, node["raft_addr"], meta)
            log.info("manager %s (raft id %d) promoted to voter", name, raft_id)
        if node["state"] != "ready":
            await self.consensus.propose(c.SetNodeState(name, "ready", time.time()))
        voters = len(self.consensus.metrics()["voters"])
        return {"name": name, "voters": voters, "needed": voters // 2 + 1}

    def _check_token_locally(self, role: str, token: str) -> None:
        _check_form(token)
        try:
            check_token(self.conn, role, tokens.digest(token), time.time())
        except CommandError as exc:
            raise UnauthorizedError(exc.message) from None

    async def remove_node(self, name: str) -> dict[str, Any]:
        self.consensus.require_leader()
        node = queries.node(self.conn, name)
        if node is None:
            raise NotFoundError(f"no node named {name!r}")
        if node["role"] == "manager" and node["raft_id"] is not None:
            raft_id = int(node["raft_id"])
            m = self.consensus.metrics()
            if raft_id == m["id"]:
                raise ConflictError(
                    f"{name} is the leader: stop it first (SIGTERM hands leadership over), "
                    "then remove it through another manager"
                )
            if raft_id in m["voters"] or raft_id in m["learners"]:
                if len(m["voters"]) == 1 and raft_id in m["voters"]:
                    raise ConflictError(f"{name} is the last voting manager")
                with raft_errors():
                    await self.consensus.node.remove_node(raft_id)
                log.info("manager %s (raft id %d) removed from the Raft group", name, raft_id)
        result = dict(await self.consensus.propose(c.RemoveNode(name, time.time())))
        dispatcher = self._maybe_dispatcher()
        if dispatcher is not None:
            dispatcher.forget(name)
        return result

    # -- workers --------------------------------------------------------------------------------------

    async def register_worker(
        self, token: str, addr: str, labels: dict[str, Any], resources: dict[str, Any], csr: str
    ) -> dict[str, Any]:
        """Check the worker token (in apply), mint the node's name and session secret, and sign its
        certificate; only the secret's digest is replicated, the secret itself is answered once."""
        self.consensus.require_leader()
        self._check_token_locally("worker", token)  # before the CSR check, as for managers
        await _check_csr(csr)
        name = "worker-" + secrets.token_hex(3)
        secret = secrets.token_urlsafe(32)
        cmd = c.RegisterWorker(
            name, tokens.digest(token), secret_digest(secret), addr, labels, resources, time.time()
        )
        result = await self.consensus.propose(cmd)
        issued = await self._issue(csr, name, "worker")
        dispatcher = self._maybe_dispatcher()
        if dispatcher is not None:
            dispatcher.touch(name)
        log.info("worker %s joined from %s", name, addr)
        return {
            "name": name,
            "secret": secret,
            "cluster_id": result["cluster_id"],
            "heartbeat_period_s": self.settings.orchestrator.heartbeat_period_s,
            **_issued_doc(issued),
        }

    async def set_availability(self, name: str, availability: c.Availability) -> dict[str, Any]:
        return dict(await self.consensus.propose(c.SetNodeAvailability(name, availability, time.time())))

    # -- services -------------------------------------------------------------------------------------

    async def create_service(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        cmd = c.CreateService("svc-" + secrets.token_hex(6), name, spec, time.time())
        return dict(await self.consensus.propose(cmd))

    async def update_service(
        self, name: str, changes: dict[str, Any], if_version: int | None
    ) -> dict[str, Any]:
        return dict(await self.consensus.propose(c.UpdateService(name, changes, time.time(), if_version)))

    async def remove_service(self, name: str, if_version: int | None) -> dict[str, Any]:
        return dict(await self.consensus.propose(c.RemoveService(name, time.time(), if_version)))

    async def rollback_service(self, name: str, if_version: int | None) -> dict[str, Any]:
        """Back to the previous spec, rolled out like an update and reported as a rollback (the
        reconciler marks it `rollback_completed` once no task of the undone spec is left)."""
        command = c.RollbackService(name, time.time(), if_version, requested=True)
        return dict(await self.consensus.propose(command))

    # -- logs -----------------------------------------------------------------------------------------

    def open_logs(self, service: str, task_id: str | None, follow: bool, tail: int | None) -> LogStream:
        """A stream of the output of one task of `service` (`task_id`) or of each of its tasks that
        is not final, asked of their workers through the dispatcher (leader only)."""
        dispatcher = self.dispatcher()
        svc = queries.service(self.conn, service)
        if svc is None:
            raise NotFoundError(f"no service named {service!r}")
        if task_id is not None:
            task = queries.task(self.conn, task_id)
            if task is None or task["service_id"] != svc["id"]:
                raise NotFoundError(f"service {service!r} has no task {task_id!r}")
            targets = [task]
        else:
            targets = queries.tasks(self.conn, service_id=svc["id"], include_final=False)
        usable = []
        why = []
        for t in targets:
            if t["node"] is None or t["container_id"] is None:
                why.append(f"task {t['name']} has no container yet (state {t['state']})")
            elif not dispatcher.connected(t["node"]):
                why.append(f"node {t['node']} of task {t['name']} has no session with the leader")
            else:
                usable.append(t)
        if not usable:
            raise ConflictError(why[0] if why else f"service {service!r} has no task to show")
        stream = LogStream(
            prefixed=len(usable) > 1, pickup_timeout_s=self.settings.orchestrator.node_down_grace_s
        )
        for t in usable:
            dispatcher.logs.open(
                stream,
                node=t["node"],
                task_id=t["id"],
                container_id=t["container_id"],
                follow=follow,
                tail=tail,
                label=t["name"],
            )
        dispatcher.wake()
        return stream

    # -- cluster info ---------------------------------------------------------------------------------

    async def cluster_info(self) -> dict[str, Any]:
        m = self.consensus.metrics()
        cluster = queries.cluster(self.conn) or {}
        leader = self.consensus.leader()
        voters, learners = set(m["voters"]), set(m["learners"])
        managers = queries.nodes(self.conn, "manager")
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
        workers = queries.nodes(self.conn, "worker")
        by_id = {r["raft_id"]: r for r in rows}
        reachable = sum(1 for v in voters if v in by_id and by_id[v]["status"] != "unreachable")
        needed = len(voters) // 2 + 1
        return {
            "cluster_id": cluster.get("cluster_id", self.identity.cluster_id),
            "created_at": cluster.get("created_at"),
            "node": self.identity.name,
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

    # -- backup and restore ---------------------------------------------------------------------------

    async def backup(self) -> str:
        """A consistent copy of the state (after the read barrier) in a temp file; the caller removes it."""
        await self.consensus.read_barrier()
        fd, path = tempfile.mkstemp(prefix="warren-backup-", suffix=".db")
        os.close(fd)
        os.unlink(path)  # sqlite creates it
        try:
            self.consensus.store.backup_to(path)
        except BaseException:
            if os.path.exists(path):
                os.unlink(path)
            raise
        return path

    async def import_backup(self, path: str, node_ca_pem: bytes) -> dict[str, int]:
        """Replay every row of a backup as import commands; then this manager is the only one.

        `node_ca_pem`: the CA this manager's certificate chains to; a backup of the same CA (a restore
        with the old data key) also brings the CA's records and the sealed secrets."""
        check_state_file(path, versions=schema.IMPORTABLE_VERSIONS)
        counts: dict[str, int] = {}
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        src.row_factory = sqlite3.Row
        try:
            if src.execute("SELECT count(*) FROM cluster").fetchone()[0] != 1:
                raise InvalidError(f"{path}: the backup holds no cluster")
            tables = list(schema.IMPORTED_TABLES)
            sealed = [t for t in schema.SEALED_TABLES if queries.has_table(src, t)]
            backup_ca = queries.cluster_ca(src) if "pki" in sealed else None
            if backup_ca is not None and backup_ca[0].encode("ascii") == node_ca_pem:
                tables += sealed  # restored with the old data key (--restore-key): the CA and secrets open
            elif "secrets" in sealed:
                counts["secrets_left"] = src.execute("SELECT count(*) FROM secrets").fetchone()[0]
            for table in tables:
                rows = queries.table_rows(src, table)
                if table == "nodes":
                    rows = [r for r in rows if r["role"] != "manager"]
                for start in range(0, len(rows), IMPORT_BATCH_ROWS):
                    await self.consensus.propose(c.ImportRows(table, rows[start : start + IMPORT_BATCH_ROWS]))
                counts[table] = len(rows)
        finally:
            src.close()
        me = self.identity
        await self.consensus.propose(
            c.ResetManagers(c.ManagerRecord(me.name, me.raft_id, me.api_addr, me.raft_addr), time.time())
        )
        return counts


def _issued_doc(issued: Issued) -> dict[str, Any]:
    return {
        "certificate": issued.cert_pem.decode("ascii"),
        "ca": issued.ca_pem.decode("ascii"),
        "cert_expires_at": issued.expires_at,
    }


def _check_form(token: str) -> None:
    if not tokens.well_formed(token):
        raise UnauthorizedError("invalid join token (expected SWMTKN-1-...)")


async def _check_csr(csr: str) -> None:
    """InvalidError unless `csr` is a CSR signed by its P-256 key (with `cryptography`, in a child
    process once offloading is enabled: warren.pki.offload)."""
    await offload.run("check_csr", csr=csr)
