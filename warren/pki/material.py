"""Where a node keeps its TLS material, and the TLS contexts built from it.

In a data dir (manager or worker), directory `tls/` (0700):

- `ca.crt`: the cluster CA certificate (public);
- `node.pem`: this node's certificate followed by its private key, in one file (0600) so a renewal
  replaces both at once and a crash never leaves a key that does not match its certificate;
- `data.key` (managers only, 0600): the cluster data key that seals secrets and the CA key.

The private key is generated on the node and never leaves it: the CA only ever sees a CSR.
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from warren.durable import read_if_exists, write_atomically
from warren.errors import ConfigError, CorruptStateError, InvalidError
from warren.pki import peek
from warren.pki.names import MANAGER_NAME

if TYPE_CHECKING:  # parsing certificates loads `cryptography`; a TLS client alone does not need it
    from cryptography import x509

DIR_NAME = "tls"
CA_FILE = "ca.crt"
NODE_FILE = "node.pem"
DATA_KEY_FILE = "data.key"


def tls_dir(data_dir: str) -> str:
    return os.path.join(data_dir, DIR_NAME)


@dataclass(frozen=True, slots=True)
class NodeMaterial:
    """A node's CA, certificate and key, as loaded from (or just written to) its data dir."""

    dir: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    @property
    def node_path(self) -> str:
        return os.path.join(self.dir, NODE_FILE)

    @property
    def cert(self) -> x509.Certificate:
        """The certificate as `cryptography` parses it (loads that package: for making and checking
        certificates; `facts` and `identity` read what a running node needs with `ssl`)."""
        from warren.pki import certs

        return certs.load_cert(self.cert_pem)

    @property
    def facts(self) -> peek.CertFacts:
        return peek.read_pem(self.cert_pem)

    @property
    def identity(self) -> peek.PeerIdentity:
        return peek.identity(self.facts)


def _split_pem(blob: bytes) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a node.pem."""
    marker = b"-----BEGIN PRIVATE KEY-----"
    at = blob.find(marker)
    if at <= 0:
        raise ValueError("no certificate followed by a private key")
    return blob[:at], blob[at:]


def load_node(data_dir: str) -> NodeMaterial | None:
    """The node's TLS material, or None if it has none yet (CorruptStateError if damaged).

    Read and checked with `ssl` alone (warren.pki.peek): a node resuming loads no `cryptography`."""
    directory = tls_dir(data_dir)
    blob = read_if_exists(os.path.join(directory, NODE_FILE))
    ca = read_if_exists(os.path.join(directory, CA_FILE))
    if blob is None and ca is None:
        return None
    try:
        if blob is None or ca is None:
            raise ValueError(f"{NODE_FILE} or {CA_FILE} is missing")
        cert_pem, key_pem = _split_pem(blob)
        peek.read_pem(ca)
        material = NodeMaterial(directory, ca, cert_pem, key_pem)
        peek.key_matches(material.node_path)
        material.identity  # noqa: B018 - checks it is a Warren node certificate
        return material
    except (ValueError, InvalidError) as exc:
        raise CorruptStateError(
            f"{directory} is damaged ({exc}); restore the data dir from a backup, or remove it and join "
            "this node again"
        ) from None
    except Exception as exc:  # an UnauthorizedError from identity(): not a Warren certificate
        raise CorruptStateError(f"{directory} holds no Warren node certificate ({exc})") from None


def save_node(data_dir: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> NodeMaterial:
    """Write (or replace, on renewal) the node's material; each file atomically, owner-only."""
    directory = tls_dir(data_dir)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    write_atomically(os.path.join(directory, CA_FILE), ca_pem)
    write_atomically(os.path.join(directory, NODE_FILE), cert_pem + key_pem)
    return NodeMaterial(directory, ca_pem, cert_pem, key_pem)


def load_data_key(data_dir: str) -> bytes | None:
    raw = read_if_exists(os.path.join(tls_dir(data_dir), DATA_KEY_FILE))
    if raw is not None and len(raw) != 32:
        raise CorruptStateError(f"{os.path.join(tls_dir(data_dir), DATA_KEY_FILE)} is damaged (wrong size)")
    return raw


def save_data_key(data_dir: str, key: bytes) -> None:
    directory = tls_dir(data_dir)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    write_atomically(os.path.join(directory, DATA_KEY_FILE), key)


# -- TLS contexts ---------------------------------------------------------------------------------


class _ManagerContext(ssl.SSLContext):
    """A client context that verifies the server as `warren-manager`, whatever address was dialled:
    managers are reached by IP, and only manager certificates carry that name."""

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        name = None if server_side else MANAGER_NAME
        return super().wrap_socket(
            sock, server_side, do_handshake_on_connect, suppress_ragged_eofs, name, session
        )

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        name = None if server_side else MANAGER_NAME
        return super().wrap_bio(incoming, outgoing, server_side, name, session)


def client_context(ca_pem: bytes, node_path: str | None) -> ssl.SSLContext:
    """For calls to managers: trust only the cluster CA, verify the peer is a manager, and present
    the certificate in `node_path` (cert + key PEM) if given."""
    ctx = _ManagerContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=ca_pem.decode("ascii"))
    if node_path is not None:
        try:
            ctx.load_cert_chain(node_path)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the client certificate {node_path}: {exc}") from None
    return ctx


def server_context(material: NodeMaterial) -> ssl.SSLContext:
    """For a manager's API: its own certificate; client certificates from the cluster CA are
    verified when presented, and required by the API's authorization for everything but a join."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=material.ca_pem.decode("ascii"))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    reload(ctx, material)
    return ctx


def reload(ctx: ssl.SSLContext, material: NodeMaterial) -> None:
    """Use a renewed certificate for new connections from now on (open ones keep theirs)."""
    ctx.load_cert_chain(material.node_path)


def anonymous_context() -> ssl.SSLContext:
    """Only for fetching the CA certificate before a join, whose digest is then checked against the
    token's: nothing but that GET is sent over it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
