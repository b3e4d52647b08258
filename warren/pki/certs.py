"""Certificates: the cluster CA, node keys and CSRs, role certificates and the identity in them.

Every key is ECDSA P-256 (supported by OpenSSL, rustls/webpki and every TLS client a user may point at
Warren). A node certificate says who it is in three places:

- subject CN = the node's name (e.g. `worker-3fa2c1`), O = the cluster ID, OU = its role;
- one DNS subject-alternative name per role, `warren-<role>`: TLS clients verify a manager as the host
  name `warren-manager` whatever address they dialled (as Swarm does with `swarm-manager`), so a
  worker's certificate can never pass for a manager's, on the API or on the Raft port.

The CA signs CSRs but takes only the public key from them: name, role and lifetime come from the
cluster's records, never from what the requester asked for.
"""

from __future__ import annotations

import datetime
import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from warren.errors import InvalidError, UnauthorizedError
from warren.pki.names import MANAGER_NAME, server_name
from warren.pki.peek import CLOCK_SKEW_S, DIGEST_LEN, ROLES, PeerIdentity, Role, base36

# Re-exported: the names belong to the certificates made here, and the identity in them is read with
# `ssl` alone (warren.pki.peek) by the nodes that make none.
__all__ = [
    "CLOCK_SKEW_S", "DIGEST_LEN", "MANAGER_NAME", "ROLES", "PeerIdentity", "Role", "base36", "server_name"
]


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise InvalidError("not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidError("the private key is not an EC key")
    return key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise InvalidError("not a PEM certificate") from None


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """Signatures only (ECDSA keys agree and sign, never encipher); certificate and CRL signing for
    the CA alone."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def create_ca(cluster_id: str, lifetime_s: float) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new self-signed cluster CA (path length 0: it signs node certificates only)."""
    key = new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "warren-ca"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(seconds=CLOCK_SKEW_S))
        .not_valid_after(now + datetime.timedelta(seconds=lifetime_s))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def create_csr(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A CSR for `key`, PEM. It names nothing: the CA decides the name and role."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "warren-node")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_public_key(csr_pem: str | bytes) -> ec.EllipticCurvePublicKey:
    """The public key of a CSR whose signature proves its sender holds the private key."""
    data = csr_pem.encode("ascii", "replace") if isinstance(csr_pem, str) else csr_pem
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError:
        raise InvalidError("csr: not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise InvalidError("csr: its signature does not match its key")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, ec.SECP256R1):
        raise InvalidError("csr: the key must be ECDSA P-256")
    return public


def issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    public_key: ec.EllipticCurvePublicKey,
    *,
    name: str,
    role: Role,
    cluster_id: str,
    lifetime_s: float,
) -> x509.Certificate:
    """A certificate for `public_key` as node `name` with `role`, valid for `lifetime_s` from now
    (client and server authentication: every node both dials and accepts)."""
    now = _now()
    not_after = min(now + datetime.timedelta(seconds=lifetime_s), ca_cert.not_valid_after_utc)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(seconds=CLOCK_SKEW_S))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(server_name(role))]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def identity(cert: x509.Certificate) -> PeerIdentity:
    """The name, role and cluster a (verified) certificate states."""

    def one(oid: x509.ObjectIdentifier) -> str:
        attrs = cert.subject.get_attributes_for_oid(oid)
        value = attrs[0].value if len(attrs) == 1 else None
        if not isinstance(value, str):
            raise UnauthorizedError("the client certificate is not a Warren node certificate")
        return value

    role = one(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if role not in ROLES:
        raise UnauthorizedError("the client certificate has no Warren role")
    return PeerIdentity(
        one(NameOID.COMMON_NAME),
        role,
        one(NameOID.ORGANIZATION_NAME),
        fingerprint(cert),
    )


def identity_der(der: bytes) -> PeerIdentity:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise UnauthorizedError("unreadable client certificate") from None
    return identity(cert)


def signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """True if `ca_cert`'s key signed `cert` (no validity or name check: for picking a CA)."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def expires_at(cert: x509.Certificate) -> float:
    return cert.not_valid_after_utc.timestamp()


def issued_at(cert: x509.Certificate) -> float:
    """When the certificate was issued (its start plus the skew allowance)."""
    return cert.not_valid_before_utc.timestamp() + CLOCK_SKEW_S


# -- the CA digest in join tokens ----------------------------------------------------------------


def ca_digest(ca_cert_pem: bytes) -> str:
    """The CA digest a join token carries: SHA-256 of the CA certificate's DER, 50 base36 digits.
    The certificate is parsed first, so garbage is an InvalidError (peek.ca_digest, for the manager's
    own CA, does not parse it)."""
    der = load_cert(ca_cert_pem).public_bytes(serialization.Encoding.DER)
    return base36(hashlib.sha256(der).digest(), DIGEST_LEN)
