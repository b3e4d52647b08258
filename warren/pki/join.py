"""The joining side of a join: check the manager's CA against the token before sending anything,
then make this node's key and CSR.

The CA certificate is fetched over a TLS connection that verifies nothing (the node has nothing to
verify with yet) and carries nothing but `GET /v1/ca`; its SHA-256 must equal the digest in the
token, compared in constant time. Only then does the node send its token and CSR, over a connection
that verifies the manager against that CA. A man in the middle or a manager of another cluster is
thus refused before it sees the token.
"""

from __future__ import annotations

import hmac
import ssl
from dataclasses import dataclass, field

import httpx

from warren.config import SECURITY
from warren.errors import InvalidError, UnauthorizedError, UnavailableError
from warren.formats import join_host_port, split_host_port
from warren.pki import material, peek, tokens


@dataclass(frozen=True, slots=True)
class JoinKey:
    """A fresh private key (kept on this node) and the CSR for it."""

    key_pem: bytes = field(repr=False)
    csr_pem: str


def new_join_key() -> JoinKey:
    from warren.pki import certs  # making a key is what `cryptography` is loaded for

    key = certs.new_key()
    return JoinKey(certs.key_pem(key), certs.create_csr(key).decode("ascii"))


def pinned_ca(manager: str, token: str, *, timeout_s: float = SECURITY.ca_fetch_timeout_s) -> bytes:
    """The CA certificate (PEM) of the manager at `manager`, if it is the one `token` pins."""
    expected = tokens.ca_digest(token)
    if expected is None:
        raise UnauthorizedError("invalid join token (expected SWMTKN-1-<CA digest>-<secret>)")
    host, port = split_host_port(manager, field="--manager")
    url = f"https://{join_host_port(host, port)}/v1/ca"
    try:
        with httpx.Client(verify=material.anonymous_context(), timeout=timeout_s) as client:
            resp = client.get(url)
    except httpx.HTTPError as exc:
        raise UnavailableError(f"cannot reach manager at {manager}: {exc or type(exc).__name__}") from None
    try:
        answered = str(resp.json()["ca"]).encode("ascii")
        # Only the certificate whose digest is checked is kept: another certificate appended to the
        # answer must never join the trust store the join's next request verifies the manager with.
        ca_pem = ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(peek.first_pem_cert(answered))).encode()
        digest = peek.ca_digest(ca_pem)
    except (ValueError, KeyError, TypeError, UnicodeError, InvalidError):
        raise UnavailableError(
            f"{manager} did not answer with a CA certificate (HTTP {resp.status_code})"
        ) from None
    if not hmac.compare_digest(digest, expected):
        raise UnauthorizedError(
            f"the manager at {manager} presents a CA that does not match the join token's digest: "
            "refusing to join (a token of another cluster, or someone in between); nothing was sent"
        )
    try:
        peek.read_pem(ca_pem)  # a readable certificate (InvalidError if not), read with `ssl`
    except InvalidError:
        raise UnavailableError(f"{manager} answered with an unreadable CA certificate") from None
    return ca_pem
