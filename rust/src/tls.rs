//! Mutual TLS for the Raft transport (rustls, TLS 1.3 only, ring provider).
//!
//! Every node holds one identity: a certificate chain and key, the CA certificates it trusts, and
//! one DNS name that every peer's certificate must be valid for (`peer_name`; the caller picks it,
//! all nodes of a cluster share it). Both ends verify each other: the dialer checks the server's
//! chain and name, the listener requires a client certificate and checks the same. A certificate
//! whose SHA-256 fingerprint is in the revoked set is refused in both directions.
//!
//! The rustls configurations are built once per identity ([`Tls::update`]) and shared by every
//! handshake; connections already open keep the identity they were made with, so renewing a
//! certificate costs no downtime. Session resumption is off on both sides: a resumed session would
//! skip certificate verification, and so the CA, name and revocation checks of the current identity.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::{Error, Result};

/// A handshake that has not finished by then is abandoned and its socket closed, so a client that
/// connects and stays silent holds nothing for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// Inbound handshakes in progress at once; connections beyond that are closed at once. Each one
/// is a task and a few KiB, and an honest cluster has a handful.
pub const MAX_PENDING_HANDSHAKES: usize = 128;

/// At most one warning a period about failed handshakes (the others are logged at debug level and
/// counted in the next warning), so a misconfigured or hostile peer dialling in a loop cannot
/// flood the log.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Bytes read from the socket at once under TLS. rustls asks its transport for 4 KiB at a time; a
/// buffer below it turns a large AppendEntries frame into a few reads instead of one per 4 KiB.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// The socket as a TLS stream's transport: reads buffered, writes passed straight through.
pub fn buffered(stream: tokio::net::TcpStream) -> tokio::io::BufReader<tokio::net::TcpStream> {
    tokio::io::BufReader::with_capacity(READ_BUFFER_BYTES, stream)
}

/// SHA-256 digest of a certificate's DER encoding.
pub type Fingerprint = [u8; 32];

pub fn fingerprint(der: &[u8]) -> Fingerprint {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A node's checked TLS material: parsed from PEM once, cheap to clone. Its `Debug` shows the
/// peer name and fingerprints, never the key.
#[derive(Clone)]
pub struct TlsIdentity {
    roots: Arc<RootCertStore>,
    key: Arc<CertifiedKey>,
    peer_name: ServerName<'static>,
    peer_name_text: String,
    fingerprint: Fingerprint,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("peer_name", &self.peer_name_text)
            .field("cert_sha256", &hex(&self.fingerprint))
            .field("chain_len", &self.key.cert.len())
            .field("ca_certs", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Parses and checks the material: `ca_pem` holds one or more CA certificates, `cert_pem` this
    /// node's certificate followed by any intermediates, `key_pem` its private key (PKCS#8, SEC1
    /// or PKCS#1; EC P-256/P-384, Ed25519 or RSA), which must match the certificate. Messages say
    /// which argument is wrong and never quote the key.
    pub fn from_pem(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8], peer_name: &str) -> Result<TlsIdentity> {
        let invalid = |msg: String| Error::Invalid(msg);
        let cas = certs(ca_pem, "ca_pem")?;
        let mut roots = RootCertStore::empty();
        for (i, ca) in cas.into_iter().enumerate() {
            roots
                .add(ca)
                .map_err(|e| invalid(format!("ca_pem: certificate {} is not a usable trust anchor: {e}", i + 1)))?;
        }
        let chain = certs(cert_pem, "cert_pem")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|_| invalid("key_pem: no PEM private key found (expected PKCS#8, SEC1 or PKCS#1)".to_string()))?;
        let provider = provider();
        let signing = provider.key_provider.load_private_key(key).map_err(|_| {
            invalid("key_pem: unsupported or malformed private key (expected EC P-256/P-384, Ed25519 or RSA)".into())
        })?;
        let key = CertifiedKey::new(chain, signing);
        match key.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(invalid("key_pem does not match the certificate in cert_pem".into()));
            }
            Err(rustls::Error::InconsistentKeys(_)) => {}
            Err(_) => return Err(invalid("cert_pem: the first certificate cannot be parsed".into())),
        }
        let name = ServerName::try_from(peer_name.to_string())
            .map_err(|_| invalid(format!("peer_name {peer_name:?} is not a valid DNS name")))?;
        if !matches!(name, ServerName::DnsName(_)) {
            return Err(invalid(format!("peer_name {peer_name:?} must be a DNS name, not an IP address")));
        }
        let fingerprint = fingerprint(key.cert[0].as_ref());
        Ok(TlsIdentity {
            roots: Arc::new(roots),
            key: Arc::new(key),
            peer_name: name,
            peer_name_text: peer_name.to_string(),
            fingerprint,
        })
    }

    pub fn peer_name(&self) -> &str {
        &self.peer_name_text
    }

    /// SHA-256 of this node's own (end-entity) certificate: what peers put in a revocation list.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Error::Invalid(format!("{what}: malformed PEM")))?;
    if certs.is_empty() {
        return Err(Error::Invalid(format!("{what}: no PEM certificate found")));
    }
    Ok(certs)
}

/// The fingerprints refused at handshake; connections watch it to close when their peer's
/// certificate joins it.
pub type RevokedSet = Arc<HashSet<Fingerprint>>;

#[derive(Clone)]
struct Revoked(Arc<watch::Sender<RevokedSet>>);

impl Revoked {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.0.borrow().contains(&fingerprint(end_entity.as_ref())) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(())
    }
}

impl fmt::Debug for Revoked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Revoked({} certificates)", self.0.borrow().len())
    }
}

/// The listener's check of a client: chains to the CA (webpki, with the clientAuth usage), is
/// valid for `peer_name`, and is not revoked.
#[derive(Debug)]
struct PeerClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    name: ServerName<'static>,
    revoked: Revoked,
}

impl ClientCertVerifier for PeerClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.revoked.check(end_entity)?;
        self.inner.verify_client_cert(end_entity, intermediates, now)?;
        rustls::client::verify_server_name(&ParsedCertificate::try_from(end_entity)?, &self.name)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The dialer's check of a server: webpki's (chain to the CA, serverAuth usage, valid for the
/// name we dialled, which is `peer_name`), plus the revoked set.
#[derive(Debug)]
struct PeerServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    revoked: Revoked,
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.revoked.check(end_entity)?;
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The rustls configurations of one identity, ready for handshakes in either direction.
pub struct Configs {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
    /// The name a dialer verifies the server's certificate against (and sends as SNI).
    pub peer_name: ServerName<'static>,
}

/// A node's TLS state: the current configurations, the revoked set, and handshake bookkeeping.
pub struct Tls {
    current: RwLock<Arc<Configs>>,
    revoked: Revoked,
    failures: AtomicU64,
    suppressed: AtomicU64,
    last_warn: Mutex<Option<Instant>>,
    handshakes: Arc<Semaphore>,
}

impl Tls {
    pub fn new(identity: &TlsIdentity) -> Result<Arc<Tls>> {
        let (revoked, _) = watch::channel(RevokedSet::default());
        let revoked = Revoked(Arc::new(revoked));
        let configs = build(identity, &revoked)?;
        Ok(Arc::new(Tls {
            current: RwLock::new(Arc::new(configs)),
            revoked,
            failures: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            last_warn: Mutex::new(None),
            handshakes: Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES)),
        }))
    }

    /// New connections, both directions, use `identity` from now on; open ones are left alone.
    pub fn update(&self, identity: &TlsIdentity) -> Result<()> {
        let configs = Arc::new(build(identity, &self.revoked)?);
        *self.current.write().unwrap() = configs;
        tracing::info!(peer_name = identity.peer_name(), cert_sha256 = %hex(&identity.fingerprint), "tls identity updated");
        Ok(())
    }

    pub fn current(&self) -> Arc<Configs> {
        self.current.read().unwrap().clone()
    }

    /// Replaces the revoked set; connections whose peer presented one of these close.
    pub fn set_revoked(&self, fingerprints: impl IntoIterator<Item = Fingerprint>) {
        let set: HashSet<Fingerprint> = fingerprints.into_iter().collect();
        let n = set.len();
        self.revoked.0.send_replace(Arc::new(set));
        tracing::info!(certificates = n, "revoked certificate set replaced");
    }

    pub fn is_revoked(&self, fp: &Fingerprint) -> bool {
        self.revoked.0.borrow().contains(fp)
    }

    pub fn watch_revoked(&self) -> watch::Receiver<RevokedSet> {
        self.revoked.0.subscribe()
    }

    /// A slot for one inbound handshake, or None when too many are under way.
    pub fn handshake_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.handshakes.clone().try_acquire_owned().ok()
    }

    /// Counts a failed handshake and logs it, at warning level at most once per period. `reason`
    /// comes from rustls or the transport and holds no key material.
    pub fn handshake_failed(&self, direction: &'static str, peer: &str, reason: &dyn fmt::Display) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let warn = {
            let mut last = self.last_warn.lock().unwrap();
            let due = last.is_none_or(|t| now.saturating_duration_since(t) >= WARN_EVERY);
            if due {
                *last = Some(now);
            }
            due
        };
        if warn {
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            tracing::warn!(direction, peer, reason = %reason, suppressed, "tls handshake failed");
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(direction, peer, reason = %reason, "tls handshake failed");
        }
    }

    /// Failed handshakes since the node opened, both directions.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// Waits until `fp` is in the revoked set (forever when it never is).
pub async fn until_revoked(fp: Fingerprint, mut rx: watch::Receiver<RevokedSet>) {
    loop {
        if rx.borrow_and_update().contains(&fp) {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The fingerprint of the end-entity certificate a finished handshake's peer presented.
pub fn peer_fingerprint(certs: Option<&[CertificateDer<'static>]>) -> Option<Fingerprint> {
    certs.and_then(|c| c.first()).map(|c| fingerprint(c.as_ref()))
}

fn build(identity: &TlsIdentity, revoked: &Revoked) -> Result<Configs> {
    let provider = provider();
    let err = |what: &str, e: &dyn fmt::Display| Error::Invalid(format!("cannot build the tls {what}: {e}"));
    let client_inner = WebPkiClientVerifier::builder_with_provider(identity.roots.clone(), provider.clone())
        .build()
        .map_err(|e| err("client verifier", &e))?;
    let client_verifier = Arc::new(PeerClientVerifier {
        inner: client_inner,
        name: identity.peer_name.clone(),
        revoked: revoked.clone(),
    });
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err("server configuration", &e))?
        .with_client_cert_verifier(client_verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(identity.key.clone())));
    server.session_storage = Arc::new(NoServerSessionStorage {});
    server.send_tls13_tickets = 0;

    let server_inner = WebPkiServerVerifier::builder_with_provider(identity.roots.clone(), provider.clone())
        .build()
        .map_err(|e| err("server verifier", &e))?;
    let server_verifier = Arc::new(PeerServerVerifier { inner: server_inner, revoked: revoked.clone() });
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err("client configuration", &e))?
        .dangerous()
        .with_custom_certificate_verifier(server_verifier)
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(identity.key.clone())));
    client.resumption = rustls::client::Resumption::disabled();

    Ok(Configs {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client)),
        peer_name: identity.peer_name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn identity(cert: &str, key: &str) -> Result<TlsIdentity> {
        TlsIdentity::from_pem(&fixture("ca.pem"), &fixture(cert), &fixture(key), "raft-peer")
    }

    #[test]
    fn loads_ec_chain_and_ed25519_identities() {
        let a = identity("node-a.pem", "node-a.key").unwrap();
        assert_eq!(a.peer_name(), "raft-peer");
        let der = CertificateDer::pem_slice_iter(&fixture("node-a.pem")).next().unwrap().unwrap();
        assert_eq!(a.fingerprint(), fingerprint(der.as_ref()));
        let d = identity("node-d-chain.pem", "node-d.key").unwrap();
        assert_eq!(d.key.cert.len(), 2);
        identity("node-e-ed25519.pem", "node-e-ed25519.key").unwrap();
        Tls::new(&a).unwrap().update(&d).unwrap();
    }

    #[test]
    fn debug_never_shows_the_key() {
        let a = identity("node-a.pem", "node-a.key").unwrap();
        let shown = format!("{a:?}");
        assert!(shown.contains("raft-peer") && shown.contains(&hex(&a.fingerprint())), "{shown}");
        let key = String::from_utf8(fixture("node-a.key")).unwrap();
        let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!shown.contains(&body[..16]), "{shown}");
    }

    #[test]
    fn rejects_bad_material_with_clear_messages() {
        let msg = |r: Result<TlsIdentity>| r.unwrap_err().to_string();
        let m = msg(identity("node-a.pem", "node-b.key"));
        assert!(m.contains("does not match"), "{m}");
        let m = msg(TlsIdentity::from_pem(b"junk", &fixture("node-a.pem"), &fixture("node-a.key"), "raft-peer"));
        assert!(m.contains("ca_pem"), "{m}");
        let m = msg(TlsIdentity::from_pem(&fixture("ca.pem"), b"", &fixture("node-a.key"), "raft-peer"));
        assert!(m.contains("cert_pem"), "{m}");
        let m = msg(TlsIdentity::from_pem(&fixture("ca.pem"), &fixture("node-a.pem"), &fixture("node-a.pem"), "x"));
        assert!(m.contains("key_pem"), "{m}");
        let m = msg(TlsIdentity::from_pem(&fixture("ca.pem"), &fixture("node-a.pem"), &fixture("node-a.key"), "a b"));
        assert!(m.contains("peer_name"), "{m}");
        let m =
            msg(TlsIdentity::from_pem(&fixture("ca.pem"), &fixture("node-a.pem"), &fixture("node-a.key"), "10.0.0.1"));
        assert!(m.contains("DNS name"), "{m}");
    }
}
