"""Certificates without a network: the CA, CSRs, issued certificates and the identity they state, the CA
digest that tokens pin."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.pki.conftest import Issue
from warren.errors import InvalidError, UnauthorizedError
from warren.pki import certs, tokens


def test_an_issued_certificate_states_name_role_and_cluster(ca: tuple[Any, Any], issue: Issue) -> None:
    cert_pem, _ = issue("worker-abc123", "worker")
    cert = certs.load_cert(cert_pem)
    who = certs.identity(cert)
    assert (who.name, who.role, who.cluster_id) == ("worker-abc123", "worker", "cluster-test")
    assert certs.signed_by(cert, ca[1])
    assert not certs.signed_by(cert, certs.create_ca("other", 60)[1])
    san = cert.extensions.get_extension_for_class(certs.x509.SubjectAlternativeName).value
    assert san.get_values_for_type(certs.x509.DNSName) == ["warren-worker"]
    # Short-lived as asked (plus the clock-skew allowance at the start), never past the CA.
    assert certs.expires_at(cert) - certs.issued_at(cert) == pytest.approx(600, abs=2)
    long_pem, _ = issue("m", "manager", lifetime_s=10 * 365 * 86400)
    assert certs.expires_at(certs.load_cert(long_pem)) <= certs.expires_at(ca[1])


def test_a_csr_gives_only_its_key() -> None:
    with pytest.raises(InvalidError, match="not a PEM certificate signing request"):
        certs.csr_public_key("-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n")
    # A CSR for another curve is refused (every Warren key is P-256).
    from cryptography.hazmat.primitives.asymmetric import ec

    with pytest.raises(InvalidError, match="P-256"):
        certs.csr_public_key(certs.create_csr(ec.generate_private_key(ec.SECP384R1())))  # type: ignore[arg-type]


def test_the_ca_digest_is_what_tokens_pin(ca: tuple[Any, Any]) -> None:
    pem = certs.cert_pem(ca[1])
    digest = certs.ca_digest(pem)
    assert len(digest) == certs.DIGEST_LEN and digest == certs.ca_digest(pem)
    token = tokens.mint(digest)
    assert tokens.well_formed(token) and tokens.ca_digest(token) == digest
    assert certs.ca_digest(certs.cert_pem(certs.create_ca("x", 60)[1])) != digest
    assert tokens.redact(f"bad {token}!") == "bad SWMTKN-1-<redacted>!"


def test_an_identity_needs_a_role() -> None:
    # The CA's own certificate (no role) is no node's identity.
    with pytest.raises(UnauthorizedError, match="not a Warren node certificate"):
        certs.identity(certs.create_ca("c", 60)[1])
