"""The CLI's credentials: the admin certificate `cluster init` writes into the user's config dir.

Layout: `$WARREN_CONFIG_DIR` or `$XDG_CONFIG_HOME/warren` or `~/.config/warren`, then
`clusters/<cluster-id>-<CA digest prefix>/` with `ca.crt` and `admin.pem` (certificate and key, 0600).

The CLI finds the right one by itself: with one cluster there is nothing to choose; with several, it
asks the manager it is about to call for its certificate (a handshake, nothing sent) and picks the
cluster whose CA signed it.
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass

from warren.durable import read_if_exists, write_atomically
from warren.errors import ConfigError
from warren.formats import split_host_port
from warren.pki import material

ADMIN_FILE = "admin.pem"
CA_FILE = material.CA_FILE
PROBE_TIMEOUT_S = 2.0


def config_dir() -> str:
    explicit = os.environ.get("WARREN_CONFIG_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "warren")


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    dir: str
    ca_pem: bytes

    @property
    def admin_path(self) -> str:
        return os.path.join(self.dir, ADMIN_FILE)

    def context(self) -> ssl.SSLContext:
        return material.client_context(self.ca_pem, self.admin_path)


def save_admin(cluster_id: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> str:
    """Write the admin credentials for a cluster (owner-only files); the directory."""
    from warren.pki import certs

    directory = os.path.join(config_dir(), "clusters", f"{cluster_id}-{certs.ca_digest(ca_pem)[:12]}")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        write_atomically(os.path.join(directory, CA_FILE), ca_pem)
        write_atomically(os.path.join(directory, ADMIN_FILE), cert_pem + key_pem)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the admin certificate to {directory}: {exc.strerror or exc}"
        ) from None
    return directory


def all_credentials() -> list[ClientCredentials]:
    """Every cluster's credentials, newest first."""
    root = os.path.join(config_dir(), "clusters")
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    found: list[tuple[float, ClientCredentials]] = []
    for name in names:
        directory = os.path.join(root, name)
        if not os.path.isdir(directory):
            continue
        ca = read_if_exists(os.path.join(directory, CA_FILE))
        if ca is None or not os.path.exists(os.path.join(directory, ADMIN_FILE)):
            continue
        found.append((os.path.getmtime(os.path.join(directory, CA_FILE)), ClientCredentials(directory, ca)))
    return [c for _, c in sorted(found, key=lambda pair: -pair[0])]


def _server_cert(address: str) -> bytes | None:
    host, port = split_host_port(address, field="--manager", default_port=8080)
    ctx = material.anonymous_context()
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S) as sock:
            with ctx.wrap_socket(sock) as tls:
                return tls.getpeercert(binary_form=True)
    except (OSError, ValueError):
        return None


def find(addresses: list[str]) -> ClientCredentials | None:
    """The credentials for the cluster at `addresses` (None if this user has none)."""
    candidates = all_credentials()
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    from warren.pki import certs  # only to tell several clusters apart

    for address in addresses:
        der = _server_cert(address)
        if der is None:
            continue
        try:
            leaf = certs.load_cert(ssl.DER_cert_to_PEM_cert(der).encode("ascii"))
        except Exception:  # noqa: BLE001 - not a certificate: no cluster of ours
            return None
        for cred in candidates:
            if certs.signed_by(leaf, certs.load_cert(cred.ca_pem)):
                return cred
        return None
    return candidates[0]
