//! A peer-supplied snapshot id never names a file unchecked: a hostile one closes the connection
//! before any of the snapshot is stored, and the node keeps running.

mod common;

use std::time::Duration;

use openraft::raft::InstallSnapshotRequest;
use openraft::{CommittedLeaderId, LogId, SnapshotMeta, Vote};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_raft::codec::{self, Message, Request};
use warren_raft::Config;

fn install(id: &str) -> Vec<u8> {
    let req = InstallSnapshotRequest {
        vote: Vote::new_committed(5, 2),
        meta: SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(5, 2), 10)),
            last_membership: Default::default(),
            snapshot_id: id.to_string(),
        },
        offset: 0,
        data: Vec::new(),
        done: true,
    };
    codec::encode(&Message::Request { id: 1, body: Request::Snapshot(req) }).unwrap()
}

/// Sends one frame and returns what comes back before the peer closes (or 5 s pass).
async fn exchange(addr: &str, frame: &[u8]) -> Option<Message> {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(frame).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(5), codec::read_message(&mut sock, 1 << 20)).await;
    let reply = read.expect("the node neither answered nor closed the connection").ok().flatten();
    if reply.is_none() {
        // Closed: nothing more comes.
        let mut rest = Vec::new();
        let _ = sock.read_to_end(&mut rest).await;
        assert!(rest.is_empty());
    }
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_snapshot_ids_close_the_connection_and_the_node_keeps_running() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("node");
    let (node, _) = common::start(&dir, 1, Config::default()).await;
    let long = "7".repeat(200);
    for id in ["../../escaped", "x/../../escaped", "/tmp/escaped", "a\0b", "", long.as_str()] {
        assert!(exchange(node.addr(), &install(id)).await.is_none(), "{id:?} was answered");
        let m = node.metrics();
        assert_eq!(m.fatal_error, None, "{id:?} stopped the node");
        assert_ne!(m.role, "shutdown", "{id:?} stopped the node");
    }
    let names: Vec<_> = walk(base.path()).into_iter().filter(|p| p.contains("escaped")).collect();
    assert!(names.is_empty(), "files named by a hostile id: {names:?}");
    // The same request with a proper id is answered: the refusals above were about the id.
    let reply = exchange(node.addr(), &install("5-10-0")).await;
    assert!(matches!(reply, Some(Message::Response { .. })), "{reply:?}");
    node.shutdown().await.unwrap();
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        out.push(p.display().to_string());
        if p.is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}
