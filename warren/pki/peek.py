"""What a running node reads in certificates, with the `ssl` module alone.

A manager or worker that only serves and calls over TLS needs a few facts from certificates: who a
peer is (CN, O, OU of its verified certificate), when its own certificate expires, its fingerprint.
Parsing them with `cryptography` (warren.pki.certs) loads a second copy of OpenSSL and its bindings,
about 8 MB of resident memory and 40-80 ms per process for the life of the process: see
docs/decisions.md, "Daemons load cryptography only to make keys". So the idle paths read certificates
here, through the interpreter's own `ssl` module; `cryptography` is loaded only when a key or a
certificate is made or a signature checked (join, renewal, issuing, sealing).
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from warren.errors import InvalidError, UnauthorizedError

Role = Literal["manager", "worker", "admin"]
ROLES: tuple[Role, ...] = ("manager", "worker", "admin")

# A certificate may start this long before its issue time, for clocks a little behind the CA's.
CLOCK_SKEW_S = 300.0
# The CA digest in join tokens (warren.pki.certs.ca_digest): base36 digits of a SHA-256 (36**50 > 2**256).
DIGEST_LEN = 50


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """Who is on the other end of a TLS connection, read from its verified certificate."""

    name: str
    role: Role
    cluster_id: str
    fingerprint: str  # SHA-256 of the certificate's DER, hex


@dataclass(frozen=True, slots=True)
class CertFacts:
    """A certificate's subject (attribute name → values, as `ssl` names them), its validity and DER."""

    subject: Mapping[str, tuple[str, ...]]
    not_before: float  # seconds since the epoch
    not_after: float
    der: bytes

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @property
    def issued_at(self) -> float:
        """When the certificate was issued (its start plus the skew allowance)."""
        return self.not_before + CLOCK_SKEW_S


def _subject(decoded: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for rdn in decoded.get("subject", ()):
        for name, value in rdn:
            out.setdefault(str(name), []).append(str(value))
    return {k: tuple(v) for k, v in out.items()}


def _facts(decoded: Mapping[str, Any], der: bytes) -> CertFacts:
    try:
        before = float(ssl.cert_time_to_seconds(decoded["notBefore"]))
        after = float(ssl.cert_time_to_seconds(decoded["notAfter"]))
    except (KeyError, ValueError):
        raise InvalidError("the certificate has no readable validity period") from None
    return CertFacts(_subject(decoded), before, after, der)


def first_pem_cert(pem: bytes) -> str:
    text = pem.decode("ascii", "replace")
    start, end = text.find("-----BEGIN CERTIFICATE-----"), text.find("-----END CERTIFICATE-----")
    if start < 0 or end < start:
        raise InvalidError("not a PEM certificate")
    return text[start : end + len("-----END CERTIFICATE-----")] + "\n"


def read_pem(pem: bytes) -> CertFacts:
    """The facts of the first certificate in `pem` (InvalidError if there is none, or it is damaged).

    `ssl` decodes certificates from a file only (`_ssl._test_decode_cert`, the decoder behind
    `getpeercert()`), so the certificate, public, goes through a private temporary file."""
    cert = first_pem_cert(pem)
    try:
        der = ssl.PEM_cert_to_DER_cert(cert)
    except ValueError:
        raise InvalidError("not a PEM certificate") from None
    fd, path = tempfile.mkstemp(prefix="warren-cert-", suffix=".pem")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(cert)
        decoded = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
    except ssl.SSLError:
        raise InvalidError("not a PEM certificate") from None
    finally:
        os.unlink(path)
    return _facts(decoded, der)


def read_peer(decoded: Mapping[str, Any], der: bytes) -> CertFacts:
    """The facts of a verified peer certificate: `getpeercert()` and `getpeercert(binary_form=True)`."""
    return _facts(decoded, der)


def identity(facts: CertFacts) -> PeerIdentity:
    """The name, role and cluster a (verified) certificate states (UnauthorizedError if it is not a
    Warren node certificate)."""

    def one(attr: str) -> str:
        values = facts.subject.get(attr, ())
        if len(values) != 1 or not values[0]:
            raise UnauthorizedError("the client certificate is not a Warren node certificate")
        return values[0]

    role = one("organizationalUnitName")
    if role not in ROLES:
        raise UnauthorizedError("the client certificate has no Warren role")
    return PeerIdentity(one("commonName"), role, one("organizationName"), facts.fingerprint)


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> PeerIdentity | None:
    """The identity in the verified client certificate of a TLS connection; None if it presented none
    (UnauthorizedError if the certificate is not a Warren node certificate)."""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    decoded = ssl_object.getpeercert()
    if not decoded:  # presented but not verified: cannot happen with CERT_OPTIONAL; anonymous
        return None
    return identity(read_peer(decoded, der))


def key_matches(node_path: str) -> None:
    """InvalidError unless the file holds a certificate and the private key that goes with it (OpenSSL
    checks it when loading them as a TLS identity)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(node_path)
    except ssl.SSLError as exc:
        raise InvalidError(f"the key does not match the certificate ({exc.reason or exc})") from None



# -- the CA digest in join tokens ----------------------------------------------------------------

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def base36(data: bytes, width: int) -> str:
    n = int.from_bytes(data, "big")
    out = []
    for _ in range(width):
        n, r = divmod(n, 36)
        out.append(_B36[r])
    return "".join(reversed(out))


def ca_digest(ca_cert_pem: bytes) -> str:
    """The CA digest a join token carries (= warren.pki.certs.ca_digest), for a CA certificate this
    manager holds: SHA-256 of its DER, 50 base36 digits."""
    try:
        der = ssl.PEM_cert_to_DER_cert(first_pem_cert(ca_cert_pem))
    except ValueError:
        raise InvalidError("not a PEM certificate") from None
    return base36(hashlib.sha256(der).digest(), DIGEST_LEN)
