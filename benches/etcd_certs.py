"""Certificates for the etcd peer's mutual-TLS cluster, made by the benchmark (nothing fetched or kept).

One throw-away CA; per member one certificate with the member's loopback address as IP SAN (and
127.0.0.1, where its peer connections come from: see PEER_SOURCE_IP), used for
both its client and its peer port (both key usages: a member serves and dials its peers, and etcd 3.4's
JSON gateway dials its own gRPC port with it); one client certificate for the benchmark's client. ECDSA
P-256, as Warren's own PKI issues (warren.pki.certs), so the two clusters pay for the same handshakes and
record sizes. Files are written owner-only into the run's base dir, removed with it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LIFETIME = datetime.timedelta(days=2)  # longer than any run; a certificate of a finished run is useless
# etcd checks a peer's client certificate against the address the connection comes from, and a member
# dials its peers without binding a source address: from 127.0.0.1 on loopback. Each member's
# certificate names it besides the member's own address (clients check that one).
PEER_SOURCE_IP = "127.0.0.1"


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class EtcdTls:
    """Where the run's CA, members' and client's files are; `client_context()` for the client side."""

    ca: Path
    members: dict[str, Pair]  # by the member's IP address
    client: Pair

    def client_context(self) -> ssl.SSLContext:
        """Trust only the run's CA and present the client certificate (etcd's --client-cert-auth)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(cafile=str(self.ca))
        ctx.load_cert_chain(str(self.client.cert), str(self.client.key))
        return ctx


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)  # clock skew


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _save(directory: Path, stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> Pair:
    pair = Pair(directory / f"{stem}.crt", directory / f"{stem}.key")
    _write(pair.cert, cert.public_bytes(serialization.Encoding.PEM))
    _write(
        pair.key,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    return pair


def _issue(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, cn: str, ips: list[str]
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(_now() + LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    if ips:
        sans = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def make(directory: Path, member_ips: list[str]) -> EtcdTls:
    """A CA, one certificate per member IP (IP SAN; server and client use) and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("etcd bench CA"))
        .issuer_name(_name("etcd bench CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(_now() + LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .sign(ca_key, hashes.SHA256())
    )
    ca = directory / "ca.crt"
    _write(ca, ca_cert.public_bytes(serialization.Encoding.PEM))
    members = {
        ip: _save(directory, f"member-{ip}", *_issue(ca_key, ca_cert, f"etcd {ip}", [ip, PEER_SOURCE_IP]))
        for ip in member_ips
    }
    client = _save(directory, "client", *_issue(ca_key, ca_cert, "bench client", []))
    return EtcdTls(ca, members, client)
