//! Engine tests: real nodes on loopback in one process, driven without Python.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{start, wait_for};
use warren_raft::{Config, Error, NodeInfo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_commits_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (node, applied) = start(dir.path(), 1, Config::default()).await;
    node.bootstrap(BTreeMap::new(), "").await.unwrap();
    wait_for("leadership", Duration::from_secs(5), || node.metrics().role == "leader").await;
    let mut last = 0;
    for i in 0..20u32 {
        let (index, resp) = node.propose(i.to_le_bytes().to_vec()).await.unwrap();
        assert!(index > last);
        assert_eq!(resp, index.to_string().into_bytes());
        last = index;
    }
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let n = node.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                n.propose(b"x".to_vec()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!("64x50 proposals in {:?}", t.elapsed());
    let before = applied.lock().unwrap().clone();
    assert_eq!(before.len(), 20 + 64 * 50);
    node.shutdown().await.unwrap();
    drop(node);

    let (node, applied) = start(dir.path(), 1, Config::default()).await;
    wait_for("leadership after restart", Duration::from_secs(5), || node.metrics().role == "leader").await;
    wait_for("replay", Duration::from_secs(5), || applied.lock().unwrap().len() == before.len()).await;
    assert_eq!(*applied.lock().unwrap(), before);
    let (index, _) = node.propose(b"after".to_vec()).await.unwrap();
    assert!(index > before.last().unwrap().0);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_and_reject_follower_writes() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        nodes.push(start(d.path(), i as u64 + 1, Config::default()).await);
    }
    let members: BTreeMap<u64, NodeInfo> =
        nodes.iter().map(|(n, _)| (n.id(), NodeInfo { addr: n.addr().to_string(), meta: String::new() })).collect();
    nodes[0].0.bootstrap(members, "").await.unwrap();
    wait_for("a leader", Duration::from_secs(5), || nodes.iter().any(|(n, _)| n.metrics().role == "leader")).await;
    let leader = nodes.iter().find(|(n, _)| n.metrics().role == "leader").unwrap().0.clone();
    for i in 0..30u32 {
        leader.propose(i.to_le_bytes().to_vec()).await.unwrap();
    }
    let want = nodes.iter().find(|(n, _)| n.id() == leader.id()).unwrap().1.lock().unwrap().clone();
    for (n, applied) in &nodes {
        wait_for("replication", Duration::from_secs(5), || applied.lock().unwrap().len() == want.len()).await;
        assert_eq!(*applied.lock().unwrap(), want, "node {}", n.id());
    }
    let follower = nodes.iter().find(|(n, _)| n.id() != leader.id()).unwrap().0.clone();
    match follower.propose(b"no".to_vec()).await {
        Err(Error::NotLeader { leader_id, leader_addr }) => {
            assert_eq!(leader_id, Some(leader.id()));
            assert_eq!(leader_addr.as_deref(), Some(leader.addr()));
        }
        other => panic!("expected NotLeader, got {other:?}"),
    }
    for (n, _) in &nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_watch_sleeps_through_heartbeats_and_wakes_on_a_new_leader() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        nodes.push(start(d.path(), i as u64 + 1, Config::default()).await.0);
    }
    let members: BTreeMap<u64, NodeInfo> =
        nodes.iter().map(|n| (n.id(), NodeInfo { addr: n.addr().to_string(), meta: String::new() })).collect();
    nodes[0].bootstrap(members, "").await.unwrap();
    wait_for("a leader everybody follows", Duration::from_secs(5), || {
        nodes.iter().any(|n| n.metrics().role == "leader")
            && nodes.iter().all(|n| n.metrics().leader_id.is_some_and(|l| l == nodes[0].metrics().leader_id.unwrap()))
    })
    .await;
    let leader = nodes.iter().find(|n| n.metrics().role == "leader").unwrap().clone();
    let followers: Vec<_> = nodes.iter().filter(|n| n.id() != leader.id()).cloned().collect();

    // Idle: heartbeats flow (20 a second) but neither the leader's nor a follower's watch wakes.
    let watches: Vec<_> = nodes
        .iter()
        .map(|n| {
            let (n, m) = (n.clone(), n.metrics());
            tokio::spawn(async move { n.wait_role_change(m.role, m.term, m.leader_id).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(watches.iter().all(|w| !w.is_finished()), "a watch woke while nothing changed");

    // The leader goes: every watch resolves (the leader's with "shutdown"), and a follower that
    // waits on until it sees a new leader gets there.
    let old_term = leader.metrics().term;
    leader.shutdown().await.unwrap();
    for w in watches {
        let m = tokio::time::timeout(Duration::from_secs(5), w).await.expect("a watch did not wake").unwrap();
        assert!(m.role == "shutdown" || m.term > old_term || m.leader_id != Some(leader.id()), "{m:?}");
    }
    let f = &followers[0];
    let mut m = f.metrics();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while m.leader_id.is_none() || m.leader_id == Some(leader.id()) {
        m = tokio::time::timeout_at(deadline, f.wait_role_change(m.role, m.term, m.leader_id))
            .await
            .expect("no new leader seen");
    }
    assert!(m.term > old_term);

    // A stopped node's watch returns at once, whatever it is given.
    for n in &followers {
        n.shutdown().await.unwrap();
    }
    let m = f.metrics();
    assert_eq!(m.role, "shutdown");
    let again = tokio::time::timeout(Duration::from_secs(1), f.wait_role_change(m.role, m.term, m.leader_id)).await;
    assert_eq!(again.expect("a stopped node's watch must return at once").role, "shutdown");
}
