"""The etcd peer's mutual-TLS material: a member's certificate names its IP and is trusted through the
run's CA, and the client certificate is what a member requiring client certificates accepts."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from benches import etcd_certs


def handshake(client: ssl.SSLContext, server: ssl.SSLContext, server_hostname: str) -> None:
    """A TLS handshake between the two contexts over memory buffers (no sockets)."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(10):
        for name, obj, out, peer_in in (("c", c, c_out, s_in), ("s", s, s_out, c_in)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def member_context(tls: etcd_certs.EtcdTls, ip: str) -> ssl.SSLContext:
    """What an etcd member started with --cert-file/--key-file/--trusted-ca-file/--client-cert-auth does."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tls.members[ip].cert), str(tls.members[ip].key))
    ctx.load_verify_locations(cafile=str(tls.ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def test_members_have_ip_sans_and_accept_the_client_certificate(tmp_path: Path) -> None:
    ips = ["127.0.0.61", "127.0.0.62", "127.0.0.63"]
    tls = etcd_certs.make(tmp_path / "tls", ips)
    assert sorted(tls.members) == ips
    for ip in ips:
        cert = x509.load_pem_x509_certificate(tls.members[ip].cert.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == [ip, "127.0.0.1"]
        assert stat.S_IMODE(tls.members[ip].key.stat().st_mode) == 0o600
    handshake(tls.client_context(), member_context(tls, "127.0.0.62"), "127.0.0.62")


def test_a_member_certificate_is_refused_for_another_address(tmp_path: Path) -> None:
    tls = etcd_certs.make(tmp_path / "tls", ["127.0.0.61", "127.0.0.62"])
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tls.client_context(), member_context(tls, "127.0.0.61"), "127.0.0.62")


def test_a_member_requiring_client_certificates_refuses_a_client_without_one(tmp_path: Path) -> None:
    tls = etcd_certs.make(tmp_path / "tls", ["127.0.0.61"])
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.load_verify_locations(cafile=str(tls.ca))
    with pytest.raises(ssl.SSLError):
        handshake(anonymous, member_context(tls, "127.0.0.61"), "127.0.0.61")
