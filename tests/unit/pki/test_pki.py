"""The PKI's pieces without a network: CA, CSR, issued certificates, sealing, node files, tokens,
the CLI's credential lookup and the API's authorization policy."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from warren.api import auth
from warren.errors import CorruptStateError, InvalidError, UnauthorizedError
from warren.pki import certs, material, sealing, tokens, userconfig


@pytest.fixture(scope="module")
def ca() -> tuple[Any, Any]:
    return certs.create_ca("cluster-test", 3600)


def issue(ca: tuple[Any, Any], name: str, role: certs.Role, lifetime_s: float = 600) -> tuple[bytes, bytes]:
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


def test_an_issued_certificate_states_name_role_and_cluster(ca: tuple[Any, Any]) -> None:
    cert_pem, _ = issue(ca, "worker-abc123", "worker")
    cert = certs.load_cert(cert_pem)
    who = certs.identity(cert)
    assert (who.name, who.role, who.cluster_id) == ("worker-abc123", "worker", "cluster-test")
    assert certs.signed_by(cert, ca[1])
    assert not certs.signed_by(cert, certs.create_ca("other", 60)[1])
    san = cert.extensions.get_extension_for_class(certs.x509.SubjectAlternativeName).value
    assert san.get_values_for_type(certs.x509.DNSName) == ["warren-worker"]
    # Short-lived as asked (plus the clock-skew allowance at the start), never past the CA.
    assert certs.expires_at(cert) - certs.issued_at(cert) == pytest.approx(600, abs=2)
    long_pem, _ = issue(ca, "m", "manager", lifetime_s=10 * 365 * 86400)
    assert certs.expires_at(certs.load_cert(long_pem)) <= certs.expires_at(ca[1])


def test_a_csr_gives_only_its_key(ca: tuple[Any, Any]) -> None:
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


def test_sealing_opens_only_with_the_key_and_for_the_same_purpose() -> None:
    key, other = sealing.new_data_key(), sealing.new_data_key()
    blob = sealing.seal(key, b"hunter2", "secret:s1")
    assert b"hunter2" not in blob and sealing.unseal(key, blob, "secret:s1") == b"hunter2"
    assert sealing.seal(key, b"hunter2", "secret:s1") != blob  # a fresh nonce each time
    for wrong_key, aad in ((other, "secret:s1"), (key, "secret:s2")):
        with pytest.raises(CorruptStateError):
            sealing.unseal(wrong_key, blob, aad)
    with pytest.raises(CorruptStateError, match="malformed"):
        sealing.unseal(key, b"\x01short", "secret:s1")


def test_node_material_is_private_and_checked(tmp_path: Path, ca: tuple[Any, Any]) -> None:
    data_dir = str(tmp_path)
    assert material.load_node(data_dir) is None
    cert_pem, key_pem = issue(ca, "manager-1-aaaaaa", "manager")
    material.save_node(data_dir, certs.cert_pem(ca[1]), cert_pem, key_pem)
    loaded = material.load_node(data_dir)
    assert loaded is not None and loaded.identity.name == "manager-1-aaaaaa"
    assert "PRIVATE" not in repr(loaded)
    for name in (material.NODE_FILE, material.CA_FILE):
        assert stat.S_IMODE(os.stat(tmp_path / material.DIR_NAME / name).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / material.DIR_NAME).st_mode) == 0o700
    # A key that does not match its certificate is damage, named as such.
    _, other_key = issue(ca, "x", "worker")
    (tmp_path / material.DIR_NAME / material.NODE_FILE).write_bytes(cert_pem + other_key)
    with pytest.raises(CorruptStateError, match="does not match"):
        material.load_node(data_dir)


def test_the_cli_finds_its_only_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ca: tuple[Any, Any]
) -> None:
    monkeypatch.setenv("WARREN_CONFIG_DIR", str(tmp_path))
    assert userconfig.find(["127.0.0.1:1"]) is None
    cert_pem, key_pem = issue(ca, "admin", "admin")
    directory = userconfig.save_admin("cluster-test", certs.cert_pem(ca[1]), cert_pem, key_pem)
    assert stat.S_IMODE(os.stat(Path(directory) / userconfig.ADMIN_FILE).st_mode) == 0o600
    found = userconfig.find(["127.0.0.1:1"])
    assert found is not None and found.dir == directory
    assert found.context().verify_mode.name == "CERT_REQUIRED"


async def _run(
    peer: certs.PeerIdentity | None,
    method: str,
    path: str,
    headers: list[Any] | None = None,
    local: bool = False,
) -> tuple[int, Any]:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["identity"] = scope[auth.IDENTITY_KEY]
        seen["headers"] = scope["headers"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    policy = auth.Authorization(app, {"worker-1": "worker", "manager-1": "manager"}.get)
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": headers or [],
        "extensions": {auth.PEER_KEY: peer, auth.LOCAL_KEY: local},
    }
    await policy(scope, receive, send)
    return sent[0]["status"], seen


WORKER = certs.PeerIdentity("worker-1", "worker", "c", "f")
MANAGER = certs.PeerIdentity("manager-1", "manager", "c", "f")
ADMIN = certs.PeerIdentity("admin", "admin", "c", "f")


@pytest.mark.parametrize(
    ("peer", "method", "path", "status"),
    [
        (None, "GET", "/v1/ca", 200),
        (None, "POST", "/v1/workers/join", 200),
        (None, "POST", "/v1/managers/join", 200),
        (None, "GET", "/v1/services", 401),
        (None, "POST", "/v1/dispatcher/session", 401),
        (WORKER, "POST", "/v1/dispatcher/session", 200),
        (WORKER, "POST", "/v1/certs/renew", 200),
        (WORKER, "POST", "/v1/services", 403),
        (WORKER, "POST", "/v1/cluster/join-tokens", 403),
        (WORKER, "GET", "/v1/nodes", 403),
        (certs.PeerIdentity("worker-gone", "worker", "c", "f"), "POST", "/v1/dispatcher/session", 401),
        (certs.PeerIdentity("worker-1", "manager", "c", "f"), "GET", "/v1/services", 401),
        (MANAGER, "POST", "/v1/services", 200),
        (ADMIN, "POST", "/v1/cluster/join-tokens", 200),
    ],
)
async def test_who_may_call_what(
    peer: certs.PeerIdentity | None, method: str, path: str, status: int
) -> None:
    assert (await _run(peer, method, path))[0] == status


async def test_only_a_manager_may_state_whom_it_forwards_for() -> None:
    claim = [(auth.IDENTITY_HEADER, b"admin admin")]
    # A worker claiming to forward for an admin is still a worker.
    assert (await _run(WORKER, "POST", "/v1/services", claim))[0] == 403
    # A manager forwarding a worker's call: the worker's rights apply.
    status, seen = await _run(MANAGER, "POST", "/v1/services", [(auth.IDENTITY_HEADER, b"worker worker-1")])
    assert status == 403
    status, seen = await _run(MANAGER, "POST", "/v1/services", claim)
    assert status == 200 and seen["identity"].role == "admin"
    # The header the app (and a further forward) sees is the authorized caller, set by us.
    assert seen["headers"] == [(auth.IDENTITY_HEADER, b"admin admin")]
    status, seen = await _run(None, "GET", "/v1/services", local=True)
    assert status == 200 and seen["identity"] == auth.LOCAL_ADMIN


def test_an_identity_needs_a_role() -> None:
    # The CA's own certificate (no role) is no node's identity.
    with pytest.raises(UnauthorizedError, match="not a Warren node certificate"):
        certs.identity(certs.create_ca("c", 60)[1])


def test_the_ca_fetch_keeps_only_the_certificate_whose_digest_it_checked(monkeypatch: Any) -> None:
    # A manager (or someone in between) answering the token's CA followed by one of its own must not get
    # its own into the trust store that the join then verifies the manager with.
    from tests.unit.fake_manager import CA_PEM, other_ca_pem
    from warren.pki import join

    answer = {"ca": (CA_PEM + other_ca_pem()).decode("ascii")}

    class _Answer:
        status_code = 200

        def json(self) -> Any:
            return answer

    class _Client:
        def __init__(self, **_: Any) -> None:
            pass

        def __enter__(self) -> _Client:
            return self

        def __exit__(self, *_: Any) -> None:
            pass

        def get(self, _url: str) -> _Answer:
            return _Answer()

    monkeypatch.setattr(join.httpx, "Client", _Client)
    token = tokens.mint(certs.ca_digest(CA_PEM))
    kept = join.pinned_ca("127.0.0.1:1", token)
    assert kept.count(b"BEGIN CERTIFICATE") == 1
    assert certs.ca_digest(kept) == certs.ca_digest(CA_PEM)
