"""The cluster CA at work on a manager: issuing node certificates from CSRs.

The CA certificate and its sealed private key are in the replicated state (`pki` table), so whichever
manager leads can sign; the key is unsealed with this manager's copy of the cluster data key, only in
memory. Each issued certificate is recorded (`RecordCert`) before it is handed out, so removing its
node revokes it. The name and role come from the cluster's records, never from the CSR.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

from warren.errors import UnavailableError
from warren.manager.consensus import Consensus
from warren.pki import offload, peek
from warren.store import commands as c
from warren.store import queries


@dataclass(frozen=True, slots=True)
class Issued:
    cert_pem: bytes
    ca_pem: bytes
    expires_at: float


class ClusterCA:
    def __init__(self, consensus: Consensus, data_key: bytes) -> None:
        self.consensus = consensus
        self.data_key = data_key

    def ca_pem(self) -> bytes:
        record = queries.cluster_ca(self.consensus.store.conn)
        if record is None:
            raise UnavailableError("the cluster CA is not recorded yet (the cluster is starting); retry")
        return record[0].encode("ascii")

    def digest(self) -> str:
        return peek.ca_digest(self.ca_pem())

    async def issue(self, csr_pem: str, *, name: str, role: peek.Role, lifetime_s: float) -> Issued:
        """Sign the CSR's key as `name` with `role`; recorded (committed) before it is returned.

        The CA key is unsealed and used in a child process once offloading is enabled (a leader keeps
        no `cryptography` and no CA key in memory: warren.pki.offload)."""
        record = queries.cluster_ca(self.consensus.store.conn)
        if record is None:
            raise UnavailableError("the cluster CA is not recorded yet (the cluster is starting); retry")
        ca_pem, sealed = record
        cluster = queries.cluster(self.consensus.store.conn)
        cluster_id = str(cluster["cluster_id"]) if cluster else ""
        doc = await offload.run(
            "issue",
            data_key=base64.b64encode(self.data_key).decode("ascii"),
            sealed=sealed,
            ca_pem=ca_pem,
            csr_pem=csr_pem,
            name=name,
            role=role,
            cluster_id=cluster_id,
            lifetime_s=lifetime_s,
        )
        expires = float(doc["expires_at"])
        if role != "admin":
            await self.consensus.propose(
                c.RecordCert(str(doc["fingerprint"]), name, role, expires, time.time())
            )
        return Issued(str(doc["cert_pem"]).encode("ascii"), ca_pem.encode("ascii"), expires)
