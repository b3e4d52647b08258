"""The PKI tests' certificate authority, and certificates it issues."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from warren.pki import certs

Issue = Callable[..., tuple[bytes, bytes]]  # (name, role, lifetime_s=600) -> (certificate PEM, key PEM)


@pytest.fixture(scope="module")
def ca() -> tuple[Any, Any]:
    return certs.create_ca("cluster-test", 3600)


@pytest.fixture
def issue(ca: tuple[Any, Any]) -> Issue:
    """Issue a certificate from `ca` for a fresh key."""

    def issue(name: str, role: certs.Role, lifetime_s: float = 600) -> tuple[bytes, bytes]:
        key = certs.new_key()
        csr = certs.create_csr(key)
        cert = certs.issue(
            ca[0],
            ca[1],
            certs.csr_public_key(csr),
            name=name,
            role=role,
            cluster_id="cluster-test",
            lifetime_s=lifetime_s,
        )
        return certs.cert_pem(cert), certs.key_pem(key)

    return issue
