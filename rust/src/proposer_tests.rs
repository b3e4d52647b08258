//! While openraft is busy with one batch, what waits in the proposer is bounded in bytes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::MAX_QUEUED_BYTES;
use crate::{Config, Node, Work};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_proposals_stay_within_the_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(dir.path(), 1, "127.0.0.1:0", None, Config::default(), None).await.unwrap();
    // The state machine restores, then never answers an apply: the first batch never completes and
    // every later proposal waits in the proposer.
    let held = Arc::new(Mutex::new(Vec::new()));
    let (n, h) = (node.clone(), held.clone());
    tokio::spawn(async move {
        while let Some(work) = n.next_work().await {
            match work {
                Work::Restore { reply, .. } => {
                    let _ = reply.send(Ok(()));
                }
                Work::Apply { reply, .. } => h.lock().unwrap().push(reply),
                Work::BuildSnapshot { reply, .. } => {
                    let _ = reply.send(Err("not in this test".into()));
                }
            }
        }
    });
    node.bootstrap(BTreeMap::new(), "").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.metrics().role != "leader" {
        assert!(Instant::now() < deadline, "no leadership");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let size = Config::default().max_entry_bytes as usize;
    let count = MAX_QUEUED_BYTES / size + 40; // 40 MiB more than the budget
    for i in 0..count {
        let n = node.clone();
        tokio::spawn(async move { n.propose(vec![i as u8; size]).await });
    }
    let queued = node.proposer.queued.clone();
    // Wait until the queue is as full as it may get (one proposal short of the budget, at least).
    let deadline = Instant::now() + Duration::from_secs(20);
    while queued.now() + size <= MAX_QUEUED_BYTES {
        assert!(Instant::now() < deadline, "only {} bytes queued", queued.now());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        queued.peak() <= MAX_QUEUED_BYTES,
        "{} bytes of proposals queued; the budget is {MAX_QUEUED_BYTES}",
        queued.peak()
    );
    held.lock().unwrap().clear();
    let _ = tokio::time::timeout(Duration::from_secs(5), node.shutdown()).await;
}
