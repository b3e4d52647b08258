"""The CLI's light path (issue 18: `warren service ls` ≤ 150 ms): a call answered whole goes over
http.client with the admin certificate and the pinned cluster CA, and `service ls` loads neither httpx
nor the other command modules. Checked against a real TLS server on loopback."""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from warren.client import ManagerClient
from warren.config import ClientSettings
from warren.errors import NotFoundError, UnauthorizedError, UnavailableError
from warren.pki import certs, material, userconfig


def _issue(ca_key: Any, ca_cert: Any, name: str, role: certs.Role) -> tuple[bytes, bytes]:
    key = certs.new_key()
    cert = certs.issue(ca_key, ca_cert, key.public_key(), name=name, role=role, cluster_id="c1",
                       lifetime_s=600)
    return certs.cert_pem(cert), certs.key_pem(key)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        peer = self.connection.getpeercert()  # type: ignore[attr-defined]
        self.seen.append({"method": self.command, "path": self.path, "body": body, "peer": peer,
                          "type": self.headers.get("Content-Type")})
        doc: Any = {"name": "web"} if self.command == "POST" else [{"name": "web"}]
        status = 200
        if "/x" in self.path:
            status, doc = 404, {"error": "not_found", "message": "no service x"}
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, userconfig.ClientCredentials, list[dict[str, Any]], Any]]:
    ca_key, ca_cert = certs.create_ca("c1", 3600)
    ca_pem = certs.cert_pem(ca_cert)
    issued = _issue(ca_key, ca_cert, "manager-1", "manager")
    manager = material.save_node(str(tmp_path / "m"), ca_pem, *issued)
    admin_dir = tmp_path / "admin"
    admin = material.save_node(str(admin_dir), ca_pem, *_issue(ca_key, ca_cert, "admin", "admin"))
    creds = userconfig.ClientCredentials(str(admin_dir), ca_pem)
    Path(creds.admin_path).write_bytes(Path(admin.node_path).read_bytes())
    ctx = material.server_context(manager)
    ctx.verify_mode = ssl.CERT_REQUIRED
    seen: list[dict[str, Any]] = []
    handler = type("Handler", (_Handler,), {"seen": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}", creds, seen, (ca_key, ca_cert)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_call_goes_over_http_client_with_the_admin_certificate(server: Any) -> None:
    addr, creds, seen, _ = server
    with ManagerClient(addr, credentials=creds) as client:
        assert client.list_services(consistent=True) == [{"name": "web"}]
        client.create_service({"name": "wéb", "image": "x"})
        with pytest.raises(NotFoundError, match="no service x"):
            client.get_service("x")
        assert client._client is None  # httpx was never used
    assert [s["path"] for s in seen] == ["/v1/services?consistent=true", "/v1/services", "/v1/services/x"]
    assert seen[1]["body"] == '{"name":"wéb","image":"x"}'.encode()  # as httpx writes JSON
    assert seen[1]["type"] == "application/json"
    subject = dict(x[0] for x in seen[0]["peer"]["subject"])
    assert subject["commonName"] == "admin"  # mutual TLS: the server saw the admin certificate


def test_a_manager_from_another_ca_is_refused_not_retried(server: Any, tmp_path: Path) -> None:
    addr, creds, _, _ = server
    _, other_ca = certs.create_ca("c2", 3600)
    foreign = userconfig.ClientCredentials(creds.dir, certs.cert_pem(other_ca))
    with ManagerClient(addr, credentials=foreign) as client, pytest.raises(UnauthorizedError, match="TLS"):
        client.list_services()


def test_an_answer_larger_than_the_bound_is_refused_not_read(server: Any) -> None:
    addr, creds, _, _ = server
    settings = ClientSettings(max_answer_bytes=10)  # the fake's list answer is 18 bytes
    with ManagerClient(addr, credentials=creds, settings=settings) as client:
        with pytest.raises(UnavailableError, match="larger than 10 bytes"):
            client.list_services()
    with ManagerClient(addr, credentials=creds, settings=ClientSettings(max_answer_bytes=18)) as client:
        assert client.list_services() == [{"name": "web"}]


def test_no_manager_listening_is_unavailable_after_the_retries(server: Any) -> None:
    _, creds, _, _ = server
    settings = ClientSettings(retry_deadline_s=0.0)
    with ManagerClient("127.0.0.1:1", credentials=creds, settings=settings) as client:
        with pytest.raises(UnavailableError, match="cannot reach manager at 127.0.0.1:1: connection refused"):
            client.list_services()


def test_service_ls_loads_only_what_it_needs(server: Any, tmp_path: Path) -> None:
    addr, creds, _, _ = server
    config = tmp_path / "config"
    clusters = config / "clusters" / "c1"
    clusters.mkdir(parents=True)
    (clusters / userconfig.CA_FILE).write_bytes(creds.ca_pem)
    (clusters / userconfig.ADMIN_FILE).write_bytes(Path(creds.admin_path).read_bytes())
    probe = (
        "import sys\n"
        "from warren.cli.main import main\n"
        "status = main(['service', 'ls', '--manager', sys.argv[1]])\n"
        "heavy = ('httpx', 'httpcore', 'yaml', 'pydantic', 'cryptography', 'warren.cli.apply_cmds',\n"
        "         'warren.cli.node_cmds', 'warren.cli.daemon_cmds', 'warren.cli.worker_cmds')\n"
        "print(status, sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = {"WARREN_CONFIG_DIR": str(config), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    done = subprocess.run([sys.executable, "-c", probe, addr], capture_output=True, text=True, timeout=60,
                          env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].split() == ["NAME", "REPLICAS", "IMAGE", "VERSION"]
    assert lines[-1] == "0 []"
