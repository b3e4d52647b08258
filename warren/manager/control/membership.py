"""Who belongs to the cluster: join tokens, manager joins (register, then promote), worker joins,
node certificates (issue, renew) and the CA certificate a joining node checks first.

A join's token is checked here before its CSR (which costs a child process: warren.pki.offload), so
an anonymous caller cannot buy one with a made-up token; apply checks the token again.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from typing import Any

from warren import config
from warren.errors import InvalidError, NotFoundError, UnauthorizedError, raft_errors
from warren.manager.ca import ClusterCA, Issued
from warren.manager.consensus import Consensus, MemberMeta
from warren.manager.control.leader import LeaderDispatcher
from warren.manager.dispatcher import secret_digest
from warren.pki import offload, peek, tokens
from warren.store import commands as c
from warren.store import queries
from warren.store.apply import check_token
from warren.store.commands import CommandError

log = logging.getLogger(__name__)


class Membership:
    def __init__(
        self,
        settings: config.ManagerSettings,
        consensus: Consensus,
        ca: ClusterCA,
        data_key: bytes,
        dispatcher: LeaderDispatcher,
    ) -> None:
        self.settings = settings
        self.consensus = consensus
        self.ca = ca
        # The cluster data key (warren.pki.sealing): a joining manager gets it in its join's answer.
        self.data_key = data_key
        self.dispatcher = dispatcher

    # -- the CA and join tokens -----------------------------------------------------------------------

    def ca_certificate(self) -> dict[str, str]:
        """The CA certificate and its digest (what a join token pins)."""
        pem = self.ca.ca_pem()
        return {"ca": pem.decode("ascii"), "digest": peek.ca_digest(pem)}

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
        self._check_token_locally("manager", token)
        await _check_csr(csr)  # a bad CSR is refused before anything is recorded
        next_id = self.consensus.store.conn.execute("SELECT next_raft_id FROM cluster").fetchone()
        name = f"manager-{next_id[0] if next_id else 'x'}-{secrets.token_hex(3)}"
        cmd = c.RegisterManager(name, api_addr, raft_addr, tokens.digest(token), time.time())
        result: dict[str, Any] = await self.consensus.propose(cmd)
        issued = await self._issue(csr, name, "manager")
        log.info("manager %s (raft id %s) registered from %s, joining", name, result["raft_id"], api_addr)
        return {**result, **_issued_doc(issued), "data_key": base64.b64encode(self.data_key).decode("ascii")}

    async def promote_manager(self, name: str, token: str) -> dict[str, Any]:
        """Second step: add the running manager as a learner, wait until caught up, make it a voter."""
        self.consensus.require_leader()
        self._check_token_locally("manager", token)
        node = queries.node(self.consensus.store.conn, name)
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
        # Heard from now, before the node exists: a liveness pass between the commit and a later
        # touch would find a ready worker never heard from and count its silence from this leader's
        # start, writing a worker down as it joins once the leader is older than the grace.
        dispatcher = self.dispatcher.maybe()
        if dispatcher is not None:
            dispatcher.touch(name)
        try:
            result = await self.consensus.propose(cmd)
        except BaseException:
            if dispatcher is not None:
                dispatcher.forget(name)
            raise
        issued = await self._issue(csr, name, "worker")
        log.info("worker %s joined from %s", name, addr)
        return {
            "name": name,
            "secret": secret,
            "cluster_id": result["cluster_id"],
            "heartbeat_period_s": self.settings.orchestrator.heartbeat_period_s,
            **_issued_doc(issued),
        }

    # -- certificates ---------------------------------------------------------------------------------

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

    async def _issue(self, csr: str, name: str, role: peek.Role) -> Issued:
        return await self.ca.issue(csr, name=name, role=role, lifetime_s=self.settings.node_cert_lifetime_s)

    def _check_token_locally(self, role: str, token: str) -> None:
        if not tokens.well_formed(token):
            raise UnauthorizedError("invalid join token (expected SWMTKN-1-...)")
        try:
            check_token(self.consensus.store.conn, role, tokens.digest(token), time.time())
        except CommandError as exc:
            raise UnauthorizedError(exc.message) from None


def _issued_doc(issued: Issued) -> dict[str, Any]:
    return {
        "certificate": issued.cert_pem.decode("ascii"),
        "ca": issued.ca_pem.decode("ascii"),
        "cert_expires_at": issued.expires_at,
    }


async def _check_csr(csr: str) -> None:
    """InvalidError unless `csr` is a CSR signed by its P-256 key (with `cryptography`, in a child
    process once offloading is enabled: warren.pki.offload)."""
    await offload.run("check_csr", csr=csr)
