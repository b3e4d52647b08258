"""The daemons' memory budget (issue 14: manager ≤ 70 MB, worker ≤ 40 MB idle, benches `footprint`):
what a daemon imports to start and to idle. `cryptography` (about 8 MB with its own OpenSSL) is loaded
only to make a key or a certificate, check a signature or seal; FastAPI and pydantic only where the API
is served; httpx's command-line client (click) never. The ssl-based reader (warren.pki.peek) that
replaces `cryptography` on those paths must agree with it."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from warren.errors import InvalidError, UnauthorizedError
from warren.pki import certs, material, peek

HEAVY = ("cryptography", "fastapi", "pydantic", "click", "warren.pki.certs", "dns")


def loaded_after(code: str, *args: str) -> list[str]:
    """Which of HEAVY a fresh interpreter has loaded after running `code`."""
    report = f"sorted(m for m in {HEAVY!r} if m in sys.modules)"
    probe = f"{code}\nimport json, sys\nprint(json.dumps({report}))\n"
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_a_worker_loads_neither_cryptography_nor_the_api_stack_nor_dnspython() -> None:
    # dnspython (about 2 MB) comes only when the DNS server starts (for process tasks, or for Docker
    # containers on the worker's network: since issue 17 part 2 a Docker worker starts it too, unless
    # --docker-network off), never with a worker's imports.
    code = (
        "from warren.cli.main import build_parser\n"
        "import warren.worker.daemon, warren.runtime.docker, warren.runtime.process, warren.pki.renewal\n"
        "build_parser().parse_args(['worker', 'start', '--token', 'x', '--manager', '127.0.0.1:1'])\n"
    )
    assert loaded_after(code) == []


def test_a_manager_loads_the_api_stack_but_not_cryptography() -> None:
    loaded = loaded_after("import warren.daemons.manager, warren.manager.secrets, warren.manager.ca")
    assert "cryptography" not in loaded and "warren.pki.certs" not in loaded
    assert "click" in loaded  # uvicorn imports it itself: unavoidable while the API runs on uvicorn
    assert {"fastapi", "pydantic"} <= set(loaded)


def test_httpx_comes_without_its_command_line_client() -> None:
    assert loaded_after("import warren, httpx\nassert callable(httpx.main)") == []


def _node(tmp_path: Path, role: certs.Role = "worker") -> tuple[str, bytes, bytes]:
    ca_key, ca_cert = certs.create_ca("cluster-1", 3600)
    key = certs.new_key()
    cert = certs.issue(
        ca_key, ca_cert, key.public_key(), name="worker-abc123", role=role, cluster_id="cluster-1",
        lifetime_s=600,
    )
    data_dir = str(tmp_path / "data")
    material.save_node(data_dir, certs.cert_pem(ca_cert), certs.cert_pem(cert), certs.key_pem(key))
    return data_dir, certs.cert_pem(cert), certs.cert_pem(ca_cert)


def test_resuming_a_node_reads_its_certificate_without_cryptography(tmp_path: Path) -> None:
    data_dir, _, _ = _node(tmp_path)
    code = (
        "import sys, asyncio\n"
        "from warren.pki import material\n"
        "from warren.pki.renewal import Renewer\n"
        "m = material.load_node(sys.argv[1])\n"
        "assert m is not None and m.identity.name == 'worker-abc123', m\n"
        "assert Renewer(sys.argv[1], None, print).due_at(m) < m.facts.not_after\n"
        "material.client_context(m.ca_pem, m.node_path)\n"
        "material.server_context(m)\n"
        "from warren.manager import ca, secrets\n"
        "from warren.daemons import servers\n"
    )
    loaded = loaded_after(code, data_dir)
    assert "cryptography" not in loaded and "warren.pki.certs" not in loaded


def test_the_ssl_reader_agrees_with_cryptography(tmp_path: Path) -> None:
    data_dir, cert_pem, ca_pem = _node(tmp_path)
    cert = certs.load_cert(cert_pem)
    facts = peek.read_pem(cert_pem)
    assert peek.identity(facts) == certs.identity(cert)
    assert facts.not_after == certs.expires_at(cert)
    assert facts.issued_at == certs.issued_at(cert)
    assert facts.fingerprint == certs.fingerprint(cert)
    assert peek.ca_digest(ca_pem) == certs.ca_digest(ca_pem)
    loaded = material.load_node(data_dir)
    assert loaded is not None and loaded.identity == certs.identity(cert)
    with pytest.raises(InvalidError):
        peek.read_pem(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")


def test_a_key_that_does_not_match_its_certificate_is_damage(tmp_path: Path) -> None:
    data_dir, cert_pem, ca_pem = _node(tmp_path)
    material.save_node(data_dir, ca_pem, cert_pem, certs.key_pem(certs.new_key()))
    with pytest.raises(Exception, match="is damaged") as caught:
        material.load_node(data_dir)
    assert "does not match" in str(caught.value)


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> ssl.SSLObject:
    """A TLS handshake in memory; the server's end of it."""
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    cli = client.wrap_bio(c_in, c_out, server_hostname=certs.MANAGER_NAME)
    for _ in range(10):
        for end in (cli, srv):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
        c_in.write(s_out.read())
        s_in.write(c_out.read())
        try:
            srv.do_handshake()
            cli.do_handshake()
            return srv
        except ssl.SSLWantReadError:
            continue
    raise AssertionError("no handshake")


@pytest.mark.parametrize("role", ["worker", "admin"])
def test_a_peer_is_identified_from_its_verified_certificate(tmp_path: Path, role: certs.Role) -> None:
    ca_key, ca_cert = certs.create_ca("cluster-1", 3600)

    def issue(name: str, r: certs.Role) -> tuple[bytes, bytes]:
        key = certs.new_key()
        cert = certs.issue(
            ca_key, ca_cert, key.public_key(), name=name, role=r, cluster_id="cluster-1", lifetime_s=600
        )
        return certs.cert_pem(cert), certs.key_pem(key)

    ca_pem = certs.cert_pem(ca_cert)
    manager = material.save_node(str(tmp_path / "m"), ca_pem, *issue("manager-1", "manager"))
    peer = material.save_node(str(tmp_path / "p"), ca_pem, *issue("peer-1", role))
    server = material.server_context(manager)
    srv = _handshake(server, material.client_context(ca_pem, peer.node_path))
    assert peek.peer_identity(srv) == certs.identity_der(srv.getpeercert(binary_form=True) or b"")
    assert peek.peer_identity(srv) == peek.PeerIdentity("peer-1", role, "cluster-1", peer.facts.fingerprint)
    anonymous = _handshake(server, material.client_context(ca_pem, None))
    assert peek.peer_identity(anonymous) is None


def test_a_certificate_without_a_warren_role_is_no_identity() -> None:
    facts = peek.CertFacts({"commonName": ("x",), "organizationName": ("c",)}, 0.0, 1.0, b"der")
    with pytest.raises(UnauthorizedError):
        peek.identity(facts)
    with pytest.raises(UnauthorizedError):
        peek.identity(peek.CertFacts({**facts.subject, "organizationalUnitName": ("root",)}, 0.0, 1.0, b""))


def test_keys_made_in_a_child_process_leave_the_daemon_without_cryptography() -> None:
    code = (
        "import asyncio\n"
        "from warren.errors import InvalidError\n"
        "from warren.pki import offload\n"
        "async def main() -> None:\n"
        "    with offload.enabled_in():\n"
        "        key = await offload.new_join_key()\n"
        "        assert key.csr_pem.startswith('-----BEGIN CERTIFICATE REQUEST-----'), key\n"
        "        assert key.key_pem.startswith(b'-----BEGIN PRIVATE KEY-----')\n"
        "        try:\n"
        "            await offload.run('check_csr', csr='not a csr')\n"
        "        except InvalidError as exc:\n"
        "            print('refused:', exc)\n"
        "    assert not offload.enabled()\n"
        "asyncio.run(main())\n"
    )
    assert loaded_after(code) == []
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "refused: csr: not a PEM certificate signing request" in done.stdout, done.stderr
