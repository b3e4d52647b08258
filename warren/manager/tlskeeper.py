"""A manager's certificate upkeep: renewal before expiry and the Raft transport's revocation list.

- Renewal (warren.pki.renewal.Renewer) goes through this manager's own API, which handles it on the
  leader (or forwards it there); the renewed certificate is loaded into the API server's context,
  the client context (peer calls, forwarding) and the Raft transport, for new connections; open ones
  keep theirs, so nothing is interrupted.
- Revocation: the HTTP API refuses a removed node's certificate by looking the node up; the Raft
  transport cannot, so it is given the fingerprints of removed managers' (unexpired) certificates,
  refreshed every REVOCATION_CHECK_S from the replicated state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from warren.manager.consensus import Consensus
from warren.manager.peer import PeerClient
from warren.pki import material
from warren.pki.material import NodeMaterial
from warren.pki.renewal import Renewer
from warren.store import queries

log = logging.getLogger(__name__)

REVOCATION_CHECK_S = 1.0

# Asks the cluster for a certificate for a CSR (PEM); answers {"certificate", "ca", ...}.
Request = Callable[[str], Awaitable[Mapping[str, Any]]]


class TlsKeeper:
    def __init__(
        self,
        data_dir: str,
        consensus: Consensus,
        contexts: list[ssl.SSLContext],
        renew: Request,
    ) -> None:
        self.consensus = consensus
        self.contexts = contexts
        self.renewer = Renewer(data_dir, renew, self._renewed)
        self._revoked: list[str] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _renewed(self, renewed: NodeMaterial) -> None:
        for ctx in self.contexts:
            material.reload(ctx, renewed)
        self.consensus.update_tls(renewed)

    def _check_revoked(self) -> None:
        revoked = queries.revoked_fingerprints(self.consensus.store.conn, time.time())
        if revoked != self._revoked:
            self.consensus.set_revoked(revoked)
            if self._revoked is not None or revoked:
                log.info("raft transport: %d revoked certificate(s)", len(revoked))
            self._revoked = revoked

    async def _revocations(self) -> None:
        while True:
            self._check_revoked()
            await asyncio.sleep(REVOCATION_CHECK_S)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.renewer.run(), name="cert-renewal"),
            asyncio.create_task(self._revocations(), name="cert-revocations"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def renew_through(peers: PeerClient, api_addr: str) -> Request:
    """A Renewer request that POSTs the CSR to this manager's own API (which reaches the leader)."""

    async def request(csr_pem: str) -> Mapping[str, Any]:
        doc, _ = await peers.call(api_addr, "POST", "/v1/certs/renew", {"csr": csr_pem})
        return dict(doc)

    return request
