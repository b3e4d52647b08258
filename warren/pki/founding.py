"""A cluster's first TLS material: its CA and data key (new, or a restored cluster's), the founding
manager's certificate and the CLI's admin certificate; and the CA key's sealing.

The CA's private key is kept sealed (warren.pki.sealing) under the cluster data key, bound to
`CA_KEY_AAD`; the founder keeps it in `FOUNDER_CA_KEY` until the cluster's state has recorded it.
`cryptography` is imported only inside the functions that make or open keys (a daemon runs them in a
child process: warren.pki.offload).
"""

from __future__ import annotations

import base64
import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from warren.config import SECURITY
from warren.durable import write_atomically
from warren.pki import material, peek, sealing, userconfig

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

# What the sealed CA key is bound to (a sealed blob copied into another record does not open).
CA_KEY_AAD = "pki:ca-key"
# The founder keeps its sealed CA key here, in its TLS dir, until the state has recorded it (SetClusterCA).
FOUNDER_CA_KEY = "ca-key.sealed"


def seal_ca_key(data_key: bytes, key: ec.EllipticCurvePrivateKey) -> str:
    """The CA key sealed under `data_key`, base64, as the state records it."""
    from warren.pki import certs

    return base64.b64encode(sealing.seal(data_key, certs.key_pem(key), CA_KEY_AAD)).decode("ascii")


def open_ca_key(data_key: bytes, sealed: str) -> ec.EllipticCurvePrivateKey:
    """The CA key from its sealed record; CorruptStateError if `data_key` does not open it."""
    from warren.pki import certs

    return certs.load_key(sealing.unseal(data_key, base64.b64decode(sealed), CA_KEY_AAD))


@dataclass(frozen=True, slots=True)
class KeptCA:
    """A backed-up cluster's CA, opened with its data key, for a restore that keeps it."""

    data_key: bytes = dataclasses.field(repr=False)
    ca_key: ec.EllipticCurvePrivateKey = dataclasses.field(repr=False)
    ca_cert: x509.Certificate
    sealed: str


def make_pki(
    node_lifetime_s: float, data_dir: str, cluster_id: str, name: str, kept: KeptCA | None = None
) -> str:
    """Write the founder's TLS material under `data_dir` (node.pem last, so a crash before it makes a
    rerun start over) and the admin certificate; answers the admin certificate's directory."""
    from warren.pki import certs

    if kept is None:
        data_key = os.urandom(sealing.KEY_BYTES)
        ca_key, ca_cert = certs.create_ca(cluster_id, SECURITY.ca_lifetime_s)
        sealed = seal_ca_key(data_key, ca_key)
    else:
        data_key, ca_key, ca_cert, sealed = kept.data_key, kept.ca_key, kept.ca_cert, kept.sealed
    material.save_data_key(data_dir, data_key)
    write_atomically(os.path.join(material.tls_dir(data_dir), FOUNDER_CA_KEY), sealed.encode("ascii"))

    def issue(node: str, role: peek.Role, lifetime_s: float) -> tuple[bytes, bytes]:
        key = certs.new_key()
        cert = certs.issue(
            ca_key,
            ca_cert,
            key.public_key(),
            name=node,
            role=role,
            cluster_id=cluster_id,
            lifetime_s=lifetime_s,
        )
        return certs.cert_pem(cert), certs.key_pem(key)

    ca_pem = certs.cert_pem(ca_cert)
    admin = issue("admin", "admin", SECURITY.admin_cert_lifetime_s)
    admin_dir = userconfig.save_admin(cluster_id, ca_pem, *admin)
    material.save_node(data_dir, ca_pem, *issue(name, "manager", node_lifetime_s))
    return str(admin_dir)
