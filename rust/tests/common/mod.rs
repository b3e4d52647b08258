//! Helpers for engine tests: a node with a tiny in-Rust state machine (a list of payloads).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use warren_raft::{Config, Node, TlsIdentity, Work};

pub type Applied = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// Opens a node and drives its work queue with a list-of-payloads state machine.
#[allow(dead_code)] // each test binary compiles this module and uses one of the two
pub async fn start(dir: &std::path::Path, id: u64, config: Config) -> (Arc<Node>, Applied) {
    start_with_tls(dir, id, config, None).await
}

/// [`start`], with the transport over mutual TLS when `tls` is given.
pub async fn start_with_tls(
    dir: &std::path::Path,
    id: u64,
    config: Config,
    tls: Option<TlsIdentity>,
) -> (Arc<Node>, Applied) {
    let node = Node::open(dir, id, "127.0.0.1:0", None, config, tls).await.expect("open");
    let applied: Applied = Default::default();
    let (n, a) = (node.clone(), applied.clone());
    tokio::spawn(async move {
        while let Some(work) = n.next_work().await {
            match work {
                Work::Apply { entries, reply } => {
                    let mut list = a.lock().unwrap();
                    let out = entries.iter().map(|(i, _, _)| i.to_string().into_bytes()).collect();
                    list.extend(entries.into_iter().map(|(i, _, p)| (i, p)));
                    let _ = reply.send(Ok(out));
                }
                Work::BuildSnapshot { path, reply, .. } => {
                    let bytes = serde_snapshot(&a.lock().unwrap());
                    std::fs::write(path, bytes).unwrap();
                    let _ = reply.send(Ok(()));
                }
                Work::Restore { path, reply, .. } => {
                    let restored = path.map(|p| parse_snapshot(&std::fs::read(p).unwrap())).unwrap_or_default();
                    *a.lock().unwrap() = restored;
                    let _ = reply.send(Ok(()));
                }
            }
        }
    });
    (node, applied)
}

fn serde_snapshot(list: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in list {
        out.extend_from_slice(&i.to_le_bytes());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

fn parse_snapshot(mut b: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let i = u64::from_le_bytes(b[..8].try_into().unwrap());
        let n = u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
        out.push((i, b[12..12 + n].to_vec()));
        b = &b[12 + n..];
    }
    out
}

/// Polls `cond` every 10 ms until it holds, panicking with `what` after `timeout`.
#[allow(dead_code)] // not every test binary waits on a condition
pub async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
