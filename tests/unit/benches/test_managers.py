"""The benchmarks' raw clients speak mutual TLS with a cluster's admin certificate, read from the
cluster's own config dir, and keep one connection (one handshake) for many requests; every scenario
runs with WARREN_CONFIG_DIR inside its work dir."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benches.harness import CONFIG_DIR_ENV, CONFIG_DIR_NAME, Scenario, run_scenario
from benches.managers import AdminTls, HarnessError, Http, HttpError, ManagerProc, call
from warren.pki import certs, material, userconfig
from warren.testing.managers import admin_credentials

CLUSTER = "cluster-bench01"


def _issue(ca_key: Any, ca_cert: Any, name: str, role: certs.Role) -> tuple[bytes, bytes]:
    key = certs.new_key()
    cert = certs.issue(
        ca_key, ca_cert, key.public_key(), name=name, role=role, cluster_id=CLUSTER, lifetime_s=3600.0
    )
    return certs.cert_pem(cert), certs.key_pem(key)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one handler serves every request of a connection

    def do_GET(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        if self.path == "/hang":  # a frozen manager: the request is read, no answer comes
            server.hanging.set()
            server.release.wait(10)
            return
        der = self.connection.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        role = certs.identity_der(der).role if der else None
        server.seen.append((self.client_address[1], role))
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    seen: list[tuple[int, str | None]]
    hanging: threading.Event
    release: threading.Event


@dataclass
class Manager:
    addr: str
    config_dir: Path  # where the cluster's admin certificate is
    server: _Server

    def connections(self) -> int:
        """Connections the requests so far came over (distinct client ports)."""
        return len({port for port, _ in self.server.seen})


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Manager]:
    """A TLS server with a manager certificate of a fresh CA, and that CA's admin certificate written
    by userconfig into `tmp_path/config` (as `cluster init` does)."""
    config_dir = tmp_path / "config"
    ca_key, ca_cert = certs.create_ca(CLUSTER, 3600.0)
    ca_pem = certs.cert_pem(ca_cert)
    monkeypatch.setenv(CONFIG_DIR_ENV, str(config_dir))
    userconfig.save_admin(CLUSTER, ca_pem, *_issue(ca_key, ca_cert, "admin", "admin"))
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "elsewhere"))  # the clients must not need it
    node = material.save_node(str(tmp_path / "manager"), ca_pem, *_issue(ca_key, ca_cert, "m1", "manager"))
    server = _Server(("127.0.0.1", 0), _Handler)
    server.seen = []
    server.hanging, server.release = threading.Event(), threading.Event()
    server.socket = material.server_context(node).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Manager(f"127.0.0.1:{server.server_address[1]}", config_dir, server)
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_admin_credentials_appear_once_cluster_init_wrote_them(tmp_path: Path) -> None:
    tls = AdminTls(tmp_path / "config")
    assert admin_credentials(tmp_path / "config") is None
    assert tls.context() is None
    with pytest.raises(HarnessError, match="no admin certificate"):
        tls.require()


def test_keep_alive_https_presents_the_admin_certificate_on_one_connection(cluster: Manager) -> None:
    creds = admin_credentials(cluster.config_dir)
    assert creds is not None and Path(creds.dir).parent == cluster.config_dir / "clusters"
    tls = AdminTls(cluster.config_dir)
    conn = Http(cluster.addr, 5.0, tls.require())
    try:
        answers = [conn.json("GET", "/v1/ready") for _ in range(5)]
    finally:
        conn.close()
    assert answers == [(200, {"ok": True})] * 5
    assert tls.context() is tls.require()  # one context for every connection
    # Every request came over one connection (one handshake), presenting the admin certificate.
    assert cluster.connections() == 1, cluster.server.seen
    assert {role for _, role in cluster.server.seen} == {"admin"}


def test_abort_from_another_thread_fails_a_blocked_tls_request_at_once(cluster: Manager) -> None:
    """What the failover client does to the old leader's connection: the blocked write must end in
    HttpError (not another exception, which would end the client thread), and the connection must
    work again afterwards."""
    conn = Http(cluster.addr, 10.0, AdminTls(cluster.config_dir).require())
    outcome: list[BaseException | tuple[int, bytes]] = []

    def blocked() -> None:
        try:
            outcome.append(conn.request("GET", "/hang"))
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            outcome.append(exc)

    thread = threading.Thread(target=blocked)
    thread.start()
    assert cluster.server.hanging.wait(5)
    t0 = time.monotonic()
    conn.abort()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - t0 < 2
    assert len(outcome) == 1 and isinstance(outcome[0], HttpError), outcome
    cluster.server.release.set()
    try:
        assert conn.json("GET", "/v1/ready") == (200, {"ok": True})  # a new connection
    finally:
        conn.close()


def test_call_opens_a_connection_per_request(cluster: Manager) -> None:
    tls = AdminTls(cluster.config_dir).require()
    assert call(cluster.addr, "GET", "/v1/ready", tls=tls) == (200, {"ok": True})
    assert call(cluster.addr, "GET", "/v1/ready", tls=tls) == (200, {"ok": True})
    assert cluster.connections() == 2


def test_a_plain_http_client_gets_no_answer_from_a_tls_port(cluster: Manager) -> None:
    with pytest.raises(HttpError):
        call(cluster.addr, "GET", "/v1/ready", timeout_s=2.0)
    assert cluster.server.seen == []
    assert call(cluster.addr, "GET", "/v1/ready", tls=AdminTls(cluster.config_dir).require())[0] == 200


def test_a_manager_writes_its_admin_certificate_into_its_clusters_config_dir(tmp_path: Path) -> None:
    admin = AdminTls(tmp_path / "cluster" / "config")
    m = ManagerProc(1, "127.0.0.1", tmp_path / "cluster", [], admin)
    assert m.env is not None and m.env[CONFIG_DIR_ENV] == str(tmp_path / "cluster" / "config")
    assert not m.ready()  # no certificate yet: not ready, no request sent
    with pytest.raises(HarnessError):
        m.http(1.0)


def test_a_scenario_runs_with_its_own_config_dir_which_is_restored_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_DIR_ENV, "/the/users/config")
    seen: list[str | None] = []

    def scenario(work_dir: Path) -> dict[str, Any]:
        seen.append(os.environ.get(CONFIG_DIR_ENV))
        seen.append(userconfig.config_dir())
        raise RuntimeError("broken")

    result = run_scenario(Scenario("s", "nothing", 10, scenario), tmp_path)
    assert result["status"] == "error"
    own = str(tmp_path / "s" / CONFIG_DIR_NAME)
    assert seen == [own, own]
    assert os.environ[CONFIG_DIR_ENV] == "/the/users/config"


def test_no_config_dir_before_means_none_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_DIR_ENV, raising=False)
    run_scenario(Scenario("s", "nothing", 10, lambda d: {"status": "ok", "rows": []}), tmp_path)
    assert CONFIG_DIR_ENV not in os.environ
