"""Mutual TLS and authorization on a real cluster: who is refused where, and why.

Every manager port but metrics is TLS with client certificates from the cluster CA. A node's
certificate is what it is allowed to do (a worker's reaches only its own session); removing the node
revokes it; certificates renew without a pause. The Raft port's own refusals are in test_raft_tls.py.
"""

from __future__ import annotations

import os
import socket
import ssl
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.cluster import read_until_closed
from tests.integration.fakeworker import tls_worker
from tests.integration.managers import (
    TIMER_FLAGS,
    ManagerCluster,
    ManagerProc,
    api,
    assert_error_body,
    cli,
    credentials,
)
from warren.daemons.servers import SOCKET_NAME
from warren.formats import split_host_port
from warren.pki import certs, material
from warren.pki.join import new_join_key
from warren.testing.wait import eventually


@pytest.fixture
def cluster(make_managers: Callable[..., ManagerCluster]) -> Iterator[tuple[ManagerCluster, ManagerProc]]:
    c = make_managers(extra_flags=[*TIMER_FLAGS, "--cert-expiry", "8s"])
    yield c, c.init()


def _as(addr: str, context: ssl.SSLContext | bool) -> httpx.Client:
    return httpx.Client(base_url=f"https://{addr}", verify=context, timeout=5)


def test_plain_tcp_and_foreign_certificates_are_refused(
    cluster: tuple[ManagerCluster, ManagerProc], tmp_path: Path
) -> None:
    _, m = cluster
    # Plain HTTP on the API port: the TLS server takes it for a broken handshake and hangs up.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{m.api_addr}/v1/services", timeout=5).raise_for_status()
    # Plain TCP on the Raft port: a frame is never read as one; the connection is dropped.
    with socket.create_connection(split_host_port(m.raft_addr, field="raft_addr"), timeout=10) as plain:
        plain.sendall(b"\x00\x00\x00\x10" + b"\x00" * 16)
        answer = read_until_closed(plain)
    assert answer == b"" or answer[0] == 0x15, f"plain client got {answer!r}"  # nothing, or a TLS alert
    # It is TLS with the manager's certificate of this CA; without a client certificate the manager
    # hangs up after the handshake.
    anonymous = material.client_context(credentials(m.api_addr).ca_pem, None)
    with socket.create_connection(split_host_port(m.raft_addr, field="raft_addr"), timeout=10) as raw:
        with anonymous.wrap_socket(raw) as tls:
            assert certs.identity_der(tls.getpeercert(binary_form=True) or b"").role == "manager"
            tls.sendall(b"\x00\x00\x00\x10" + b"\x00" * 16)
            assert read_until_closed(tls) == b""
    # A client certificate from another CA: the handshake itself fails.
    ca_key, ca_cert = certs.create_ca("intruders", 3600)
    key = certs.new_key()
    cert = certs.issue(
        ca_key, ca_cert, key.public_key(), name="admin", role="admin", cluster_id="x", lifetime_s=600
    )
    foreign = material.client_context(credentials(m.api_addr).ca_pem, None)
    foreign_file = tmp_path / "foreign.pem"
    foreign_file.write_bytes(certs.cert_pem(cert) + certs.key_pem(key))
    foreign.load_cert_chain(str(foreign_file))
    # (TLS 1.3: the server's refusal arrives after the client's side of the handshake, as a hang-up.)
    with pytest.raises(httpx.TransportError), _as(m.api_addr, foreign) as client:
        client.get("/v1/services")
    # A client that does not trust the cluster CA cannot talk to it either (no trust on first use).
    with (
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
        _as(m.api_addr, True) as client,
    ):
        client.get("/v1/ca")
    # TLS without a client certificate: only the join calls and the CA certificate are open.
    with _as(m.api_addr, material.client_context(credentials(m.api_addr).ca_pem, None)) as anonymous:
        assert anonymous.get("/v1/ca").status_code == 200
        for method, path in (
            ("GET", "/v1/services"),
            ("POST", "/v1/cluster/join-tokens"),
            ("GET", "/v1/nodes"),
        ):
            message = assert_error_body(anonymous.request(method, path), 401, "unauthorized")["message"]
            assert "client certificate" in message
    # The CLI with no admin certificate says what to do instead of retrying.
    env = dict(os.environ, WARREN_CONFIG_DIR=str(tmp_path / "empty"))
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "warren.cli.main", "service", "list", "--manager", m.api_addr],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 1 and "no admin certificate" in done.stderr, done.stderr


def test_a_worker_certificate_reaches_only_its_own_session(
    cluster: tuple[ManagerCluster, ManagerProc], tmp_path: Path
) -> None:
    _, m = cluster
    doc, worker_tls = tls_worker(tmp_path, m)
    other, _ = tls_worker(tmp_path, m)
    bearer = {"Authorization": f"Bearer {doc['secret']}"}
    with _as(m.api_addr, worker_tls) as worker:
        ok = worker.post("/v1/dispatcher/session", json={"node": doc["name"]}, headers=bearer)
        assert ok.status_code == 200, ok.text
        # Not another node's session, even with that node's secret.
        theirs = worker.post(
            "/v1/dispatcher/session",
            json={"node": other["name"]},
            headers={"Authorization": f"Bearer {other['secret']}"},
        )
        assert_error_body(theirs, 403, "forbidden")
        for method, path, body in (
            ("POST", "/v1/services", {"name": "evil", "image": "x"}),
            ("POST", "/v1/cluster/join-tokens", {"role": "manager"}),
            ("GET", "/v1/nodes", None),
            ("GET", "/v1/services", None),
            ("GET", "/v1/cluster/backup", None),
        ):
            refused = worker.request(method, path, json=body)
            assert "worker certificate" in assert_error_body(refused, 403, "forbidden")["message"]
        # Renewal: a new certificate for a new key, with the same name and role.
        key = new_join_key()
        renewed = worker.post("/v1/certs/renew", json={"csr": key.csr_pem})
        assert renewed.status_code == 200, renewed.text
        who = certs.identity(certs.load_cert(renewed.json()["certificate"].encode()))
        assert (who.name, who.role) == (doc["name"], "worker")
    assert cli("service", "list", "--manager", m.api_addr).ok()

    # `node rm` revokes: the certificate (still within its lifetime) is refused at once.
    cli("node", "rm", doc["name"], "--manager", m.api_addr).ok()
    with _as(m.api_addr, worker_tls) as worker:
        gone = worker.post("/v1/dispatcher/session", json={"node": doc["name"]}, headers=bearer)
        assert "revoked" in assert_error_body(gone, 401, "unauthorized")["message"]


def test_credentials_are_private_and_root_has_the_unix_socket(
    cluster: tuple[ManagerCluster, ManagerProc],
) -> None:
    _, m = cluster
    creds = Path(credentials(m.api_addr).dir)
    for path in (
        creds / "admin.pem",
        Path(m.data_dir) / "tls" / "node.pem",
        Path(m.data_dir) / "tls" / "data.key",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    sock = Path(m.data_dir) / SOCKET_NAME
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
    out = cli("cluster", "info", "-o", "json", "--manager", f"unix:{sock}").ok().stdout
    assert '"cluster_id"' in out
    # The CA key is in the replicated state sealed, never in the clear, in the data dir.
    for path in Path(m.data_dir).rglob("*"):
        if path.is_file() and path.name != "node.pem":
            assert b"PRIVATE KEY" not in path.read_bytes(), path


def test_certificates_renew_without_downtime(cluster: tuple[ManagerCluster, ManagerProc]) -> None:
    c, first = cluster
    second = c.add_manager(first)
    # Certificates live 8 s and are renewed after 4 s: keep writing through a follower (forwarded to
    # the leader over mutual TLS, committed over Raft) for two full lifetimes, every write answered.
    start, written = time.monotonic(), 0
    with api(second.api_addr, 10) as client:
        while time.monotonic() - start < 18:
            response = client.post(
                "/v1/services", json={"name": f"s{written}", "image": "busybox", "replicas": 0}
            )
            assert response.status_code == 201, (
                f"write {written} after {time.monotonic() - start:.1f} s: {response.text}"
            )
            written += 1
    for m in (first, second):
        assert m.errors().count("certificate renewed") >= 3, m.log_tail()
        # The certificate in use now is not the first one: the one it started with has expired.
        node = material.load_node(str(m.data_dir))
        assert node is not None and certs.expires_at(node.cert) > time.time()
    # A new connection (new handshake) with the renewed certificates works.
    eventually(lambda: len(first.services()) == written, 10, "every write on the first manager")


def _raft_handshake(addr: str, ca_pem: bytes, node_pem: Path) -> bool:
    """Whether the Raft port at `addr` serves a client with the certificate in `node_pem` (it answers
    nothing to a frame it cannot parse, so "served" means it did not hang up at the handshake)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=ca_pem.decode())
    context.load_cert_chain(str(node_pem))
    context.check_hostname = False
    try:
        with socket.create_connection(split_host_port(addr, field="raft_addr"), timeout=5) as raw:
            with context.wrap_socket(raw) as tls:
                tls.settimeout(1.0)
                try:
                    return tls.recv(1) != b""  # TLS 1.3: a refused client certificate arrives as an alert
                except TimeoutError:
                    return True  # still open, waiting for a frame: accepted
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return False


def test_a_removed_manager_is_refused_on_the_raft_port(make_managers: Callable[..., ManagerCluster]) -> None:
    c = make_managers()  # certificates live 7 days here: a refusal below is a revocation, not an expiry
    first = c.init()
    second = c.add_manager(first)
    leader = c.leader()
    other = second if leader is first else first
    ca_pem = credentials(first.api_addr).ca_pem
    removed_pem = Path(other.data_dir) / "tls" / "node.pem"
    assert _raft_handshake(leader.raft_addr, ca_pem, removed_pem)
    cli("node", "rm", other.name, "--manager", leader.api_addr).ok()  # a follower, still running
    # Its certificate is still within its lifetime, but every manager now refuses it.
    eventually(
        lambda: not _raft_handshake(leader.raft_addr, ca_pem, removed_pem), 10, "the Raft port to refuse it"
    )
