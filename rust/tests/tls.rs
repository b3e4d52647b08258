//! Mutual TLS on the transport: real nodes on loopback with the PEM fixtures of
//! tests/fixtures (made by make_certs.py; every node certificate is for DNS "raft-peer").

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{start_with_tls, wait_for, Applied};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_raft::codec::{self, Message, Request};
use warren_raft::{Config, Error, Node, NodeInfo, TlsIdentity};

const PEER_NAME: &str = "raft-peer";

/// The tests of this file run one at a time: each asserts that no election happens for a while,
/// which several clusters starting at once on a small machine could make untrue.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn identity(cert: &str, key: &str) -> TlsIdentity {
    TlsIdentity::from_pem(&fixture("ca.pem"), &fixture(cert), &fixture(key), PEER_NAME).unwrap()
}

fn node_identity(stem: &str) -> TlsIdentity {
    identity(&format!("{stem}.pem"), &format!("{stem}.key"))
}

/// Election timeouts wide enough that a loaded machine does not start elections by itself; frequent
/// snapshots that keep no log behind them, so a joining node is sent a snapshot.
fn config() -> Config {
    Config {
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        snapshot_threshold: 50,
        max_in_snapshot_log_to_keep: 0,
        ..Config::default()
    }
}

struct Member {
    node: Arc<Node>,
    applied: Applied,
    _dir: tempfile::TempDir,
}

async fn open(id: u64, tls: TlsIdentity) -> Member {
    let dir = tempfile::tempdir().unwrap();
    let (node, applied) = start_with_tls(dir.path(), id, config(), Some(tls)).await;
    Member { node, applied, _dir: dir }
}

fn info(n: &Node) -> NodeInfo {
    NodeInfo { addr: n.addr().to_string(), meta: String::new() }
}

/// Nodes 1, 2, 3 with the certificates of nodes A, B, C, bootstrapped as one cluster.
async fn cluster() -> Vec<Member> {
    let mut members = Vec::new();
    for (id, stem) in [(1, "node-a"), (2, "node-b"), (3, "node-c")] {
        members.push(open(id, node_identity(stem)).await);
    }
    let voters: BTreeMap<u64, NodeInfo> = members.iter().map(|m| (m.node.id(), info(&m.node))).collect();
    members[0].node.bootstrap(voters, "").await.unwrap();
    leader(&members).await;
    members
}

/// The member that all members agree leads, in one term.
async fn leader(members: &[Member]) -> Arc<Node> {
    wait_for("one agreed leader", Duration::from_secs(10), || {
        let ms: Vec<_> = members.iter().map(|m| m.node.metrics()).collect();
        let l = ms[0].leader_id;
        l.is_some() && ms.iter().all(|m| m.leader_id == l && m.term == ms[0].term)
    })
    .await;
    let id = members[0].node.metrics().leader_id.unwrap();
    members.iter().find(|m| m.node.id() == id).unwrap().node.clone()
}

async fn propose_n(node: &Node, n: usize, prefix: &str) -> u64 {
    let mut last = 0;
    for i in 0..n {
        last = node.propose(format!("{prefix}{i}").into_bytes()).await.unwrap().0;
    }
    last
}

async fn wait_applied(members: &[&Member], index: u64) {
    for m in members {
        wait_for(&format!("node {} to apply {index}", m.node.id()), Duration::from_secs(10), || {
            m.applied.lock().unwrap().last().is_some_and(|(i, _)| *i >= index)
        })
        .await;
    }
}

async fn shutdown(members: &[Member]) {
    for m in members {
        m.node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_commits_and_accepts_chain_and_ed25519_identities() {
    let _serial = SERIAL.lock().await;
    let mut members = cluster().await;
    let leader = leader(&members).await;
    propose_n(&leader, 20, "tls-").await;
    // Entries of 900 KiB: frames far larger than a TLS record.
    for i in 0..2u8 {
        leader.propose(vec![i; 900 * 1024]).await.unwrap();
    }
    let last = propose_n(&leader, 40, "more-").await;
    wait_applied(&members.iter().collect::<Vec<_>>(), last).await;
    for m in &members {
        let metrics = m.node.metrics();
        assert!(metrics.tls);
        assert_eq!(metrics.tls_handshake_failures, 0, "node {}", m.node.id());
    }
    wait_for("the leader to purge its log", Duration::from_secs(10), || leader.metrics().purged_index.is_some()).await;
    // Node 4 presents a leaf plus intermediate; node 5 an Ed25519 key. Both start from a snapshot.
    members.push(open(4, identity("node-d-chain.pem", "node-d.key")).await);
    members.push(open(5, node_identity("node-e-ed25519")).await);
    for id in [4, 5] {
        let n = members.iter().find(|m| m.node.id() == id).unwrap().node.clone();
        tokio::time::timeout(Duration::from_secs(10), leader.add_voter(id, info(&n))).await.unwrap().unwrap();
    }
    let last = propose_n(&leader, 5, "five-").await;
    wait_applied(&members.iter().collect::<Vec<_>>(), last).await;
    assert_eq!(leader.metrics().voters, vec![1, 2, 3, 4, 5]);
    let want = members[0].applied.lock().unwrap().clone();
    assert!(want.iter().any(|(_, p)| p.len() == 900 * 1024));
    for m in &members {
        let got = m.applied.lock().unwrap().clone();
        assert!(got.len() == want.len() && got == want, "node {} applied a different history", m.node.id());
    }
    shutdown(&members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_wrong_name_and_expired_nodes_cannot_join_or_disturb() {
    let _serial = SERIAL.lock().await;
    let members = cluster().await;
    let leader = leader(&members).await;
    let before = leader.metrics();
    let intruders = [
        (
            "wrong CA",
            TlsIdentity::from_pem(&fixture("other-ca.pem"), &fixture("rogue.pem"), &fixture("rogue.key"), PEER_NAME)
                .unwrap(),
        ),
        ("wrong name", node_identity("wrong-name")),
        ("expired", node_identity("expired")),
    ];
    for (i, (what, tls)) in intruders.into_iter().enumerate() {
        let id = 10 + i as u64;
        let intruder = open(id, tls).await;
        // It believes it belongs to the cluster and campaigns; the leader also tries to add it.
        let mut voters: BTreeMap<u64, NodeInfo> = members.iter().map(|m| (m.node.id(), info(&m.node))).collect();
        voters.insert(id, info(&intruder.node));
        intruder.node.bootstrap(voters, "").await.unwrap();
        leader.add_learner(id, info(&intruder.node), false).await.unwrap();
        let failures = leader.metrics().tls_handshake_failures;
        let last = propose_n(&leader, 5, "during-").await;
        // Several of the intruder's election timeouts.
        let window = Instant::now() + Duration::from_millis(2_000);
        while Instant::now() < window {
            for m in &members {
                let now = m.node.metrics();
                assert_eq!(now.term, before.term, "{what}: node {} changed term", m.node.id());
                assert_eq!(now.leader_id, Some(leader.id()), "{what}: node {} lost its leader", m.node.id());
            }
            let peer = leader.metrics().peers.get(&id).copied();
            assert!(matches!(peer, Some((None, _))), "{what}: the leader replicated to the intruder: {peer:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(intruder.node.metrics().term >= 1, "{what}: the intruder never campaigned");
        assert!(leader.metrics().tls_handshake_failures > failures, "{what}: no handshake failure counted");
        // Refused by every member, it counts its own failures too (a TLS 1.3 refusal arrives as an alert).
        assert!(intruder.node.metrics().tls_handshake_failures > 0, "{what}: the intruder counted no failure");
        wait_applied(&members.iter().collect::<Vec<_>>(), last).await;
        assert!(intruder.applied.lock().unwrap().iter().all(|(_, p)| !p.starts_with(b"during-")), "{what}");
        leader.remove_node(id).await.unwrap();
        intruder.node.shutdown().await.unwrap();
    }
    shutdown(&members).await;
}

type Probe = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Dials `addr` over TLS presenting `stem`.pem/.key and trusting the cluster CA; None when the
/// client's side of the handshake fails. With TLS 1.3 that side ends before the server has checked
/// the client's certificate, so a refusal shows on the first request.
async fn dial(addr: &str, stem: &str) -> Option<Probe> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&fixture(&format!("{stem}.pem"))).map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_slice(&fixture(&format!("{stem}.key"))).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(&fixture("ca.pem")).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(PEER_NAME).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.ok()
}

/// Sends `body` and returns the answer; None when the node closed the connection instead.
async fn ask(tls: &mut Probe, body: Request) -> Option<Message> {
    let frame = codec::encode(&Message::Request { id: 7, body }).unwrap();
    tls.write_all(&frame).await.ok()?;
    tls.flush().await.ok()?;
    let answer = tokio::time::timeout(Duration::from_secs(5), codec::read_message(tls, 1 << 20)).await;
    answer.expect("the node neither answered nor closed within 5 s").ok().flatten()
}

/// A vote request for term 0: every node turns it down, and nothing changes.
fn stale_vote() -> Request {
    Request::Vote(openraft::raft::VoteRequest::new(openraft::Vote::new(0, 99), None))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_refuses_clients_with_a_wrong_ca_name_expiry_or_a_revoked_certificate() {
    let _serial = SERIAL.lock().await;
    let members = cluster().await;
    let leader = leader(&members).await;
    let follower = members.iter().find(|m| m.node.id() != leader.id()).unwrap().node.clone();
    let term = follower.metrics().term;

    // An accepted client's open connection closes once its certificate is revoked.
    let mut open = dial(follower.addr(), "node-c").await.unwrap();
    assert!(matches!(ask(&mut open, stale_vote()).await, Some(Message::Response { id: 7, .. })));
    follower.set_revoked(vec![node_identity("node-c").fingerprint()]).unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), open.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the revoked client's connection stayed open");

    // TimeoutNow would make the follower campaign: a refused client must not get that far.
    for stem in ["rogue", "wrong-name", "expired", "node-c"] {
        let answer = match dial(follower.addr(), stem).await {
            Some(mut tls) => ask(&mut tls, Request::TimeoutNow).await,
            None => None,
        };
        assert!(answer.is_none(), "{stem}: the node answered {answer:?}");
    }
    assert!(follower.metrics().tls_handshake_failures >= 4);
    assert_eq!(follower.metrics().term, term, "a refused client made the follower campaign");
    // Once the set is replaced, the same client is served (and the follower campaigns).
    follower.set_revoked(Vec::new()).unwrap();
    let answer = ask(&mut dial(follower.addr(), "node-c").await.unwrap(), Request::TimeoutNow).await;
    assert!(matches!(answer, Some(Message::Response { id: 7, .. })), "{answer:?}");
    wait_for("the follower's election", Duration::from_secs(5), || follower.metrics().term > term).await;
    shutdown(&members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_and_silent_clients_are_dropped() {
    let _serial = SERIAL.lock().await;
    let members = cluster().await;
    let leader = leader(&members).await;
    let failures = leader.metrics().tls_handshake_failures;
    let started = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(leader.addr()).await.unwrap();
    let mut plain = tokio::net::TcpStream::connect(leader.addr()).await.unwrap();
    let frame = codec::encode(&Message::Request { id: 1, body: Request::TimeoutNow }).unwrap();
    plain.write_all(&frame).await.unwrap();
    // The node answers with at most a TLS alert, then closes.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(_)) | Ok(Err(_))), "plain connection still open");
    assert!(buf.len() < 64 && !buf.windows(frame.len()).any(|w| w == frame), "unexpected answer {buf:?}");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(6), silent.read_to_end(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(_)) | Ok(Err(_))), "silent connection still open after {:?}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_secs(2), "closed before the handshake timeout");
    assert!(leader.metrics().tls_handshake_failures >= failures + 2);
    let before = leader.metrics();
    let last = propose_n(&leader, 5, "after-").await;
    wait_applied(&members.iter().collect::<Vec<_>>(), last).await;
    assert_eq!(leader.metrics().term, before.term);
    shutdown(&members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_tls_keeps_committing_and_new_connections_use_the_new_identity() {
    let _serial = SERIAL.lock().await;
    let members = cluster().await;
    let leader = leader(&members).await;
    let old = node_identity(["node-a", "node-b", "node-c"][leader.id() as usize - 1]);
    let renewed = node_identity("node-a-renewed");
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let proposer = {
        let (leader, stop, ok) = (leader.clone(), stop.clone(), ok.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                leader.propose(b"swap".to_vec()).await.expect("a proposal failed during the certificate swap");
                ok.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    wait_for("proposals before the swap", Duration::from_secs(5), || ok.load(Ordering::Relaxed) >= 20).await;
    leader.update_tls(&renewed).unwrap();
    let at_swap = ok.load(Ordering::Relaxed);
    wait_for("proposals after the swap", Duration::from_secs(5), || ok.load(Ordering::Relaxed) >= at_swap + 50).await;
    stop.store(true, Ordering::Release);
    proposer.await.unwrap();

    // The followers revoke the leader's old certificate: their connections with it close, and the
    // leader's new connections, made with the renewed certificate, are accepted.
    for m in members.iter().filter(|m| m.node.id() != leader.id()) {
        m.node.set_revoked(vec![old.fingerprint()]).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let index = loop {
        let leader = self::leader(&members).await;
        match leader.propose(b"after-revoke".to_vec()).await {
            Ok((index, _)) => break index,
            Err(e) => assert!(Instant::now() < deadline, "no commit after revoking the old certificate: {e}"),
        }
    };
    wait_applied(&members.iter().collect::<Vec<_>>(), index).await;
    assert!(members.iter().all(|m| m.node.metrics().tls_handshake_failures == 0));
    shutdown(&members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_revoked_cuts_a_peer_off_until_the_set_is_replaced() {
    let _serial = SERIAL.lock().await;
    let members = cluster().await;
    let leader = leader(&members).await;
    let last = propose_n(&leader, 5, "before-").await;
    wait_applied(&members.iter().collect::<Vec<_>>(), last).await;
    let cut = members.iter().find(|m| m.node.id() != leader.id()).unwrap();
    let cut_fp = node_identity(["node-a", "node-b", "node-c"][cut.node.id() as usize - 1]).fingerprint();
    for m in members.iter().filter(|m| m.node.id() != cut.node.id()) {
        m.node.set_revoked(vec![cut_fp]).unwrap();
    }
    let term = leader.metrics().term;
    wait_for("the leader to lose contact with the revoked peer", Duration::from_secs(5), || {
        leader.metrics().peers.get(&cut.node.id()).and_then(|p| p.1).is_some_and(|ago| ago > 0.5)
    })
    .await;
    let during = propose_n(&leader, 5, "during-").await;
    let window = Instant::now() + Duration::from_millis(1_500);
    while Instant::now() < window {
        assert!(cut.applied.lock().unwrap().last().is_none_or(|(i, _)| *i < during), "the revoked peer got entries");
        assert_eq!(leader.metrics().term, term, "the revoked peer disturbed the leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Replacing the set with an empty one lets it back in.
    for m in &members {
        m.node.set_revoked(Vec::new()).unwrap();
    }
    wait_applied(&[cut], during).await;
    shutdown(&members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_calls_on_a_plain_node_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = common::start(dir.path(), 1, Config::default()).await;
    let m = node.metrics();
    assert!(!m.tls);
    assert_eq!(m.tls_handshake_failures, 0);
    assert!(matches!(node.update_tls(&node_identity("node-a")), Err(Error::Invalid(_))));
    assert!(matches!(node.set_revoked(Vec::new()), Err(Error::Invalid(_))));
    node.shutdown().await.unwrap();
}
