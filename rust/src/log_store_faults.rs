//! Fault injection into the log's file: a failed write or fsync poisons the log (nothing more is
//! accepted, nothing more reaches the file, the error names the operation, file and errno), and a
//! reopen finds every acknowledged entry, with no gap and no "corrupt log".

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};
use serde_bytes::ByteBuf;

use super::{LogStore, LOG_FILE};
use crate::log_file::Faults;
use crate::types::{Entry, Payload};

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

fn entry(index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Payload::from(vec![ByteBuf::from(format!("entry-{index:04}").into_bytes())])),
    }
}

fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range.map(entry).collect()
}

/// Appends 1..=acked, arms `arm`, and checks the next append fails and poisons the log. Returns
/// the poisoned log's error text.
async fn poison_after(dir: &std::path::Path, acked: u64, arm: impl FnOnce(&Faults), want: &[&str]) -> String {
    let faults = Arc::new(Faults::default());
    let mut log = LogStore::open_with_faults(dir, faults.clone()).unwrap();
    log.blocking_append(entries(1..=acked)).await.unwrap();
    arm(&faults);
    let err = log.blocking_append(entries(acked + 1..=acked + 5)).await.unwrap_err().to_string();
    let path = dir.join(LOG_FILE).display().to_string();
    for needle in want.iter().copied().chain([path.as_str()]) {
        assert!(err.contains(needle), "{needle:?} missing from {err}");
    }
    let why = log.failure().expect("the log reports why it stopped");
    assert!(err.contains(&why), "the append's error is the log's failure: {err} / {why}");

    // Poisoned: every later operation fails with the same cause, and none reaches the file.
    let calls = faults.calls.load(SeqCst);
    let again = log.blocking_append(entries(acked + 6..=acked + 6)).await.unwrap_err().to_string();
    assert!(again.contains(&why), "a later append fails with the first cause: {again}");
    let vote = log.save_vote(&Vote::new(9, 1)).await.unwrap_err().to_string();
    assert!(vote.contains(&why), "{vote}");
    let trunc = log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 2)).await.unwrap_err().to_string();
    assert!(trunc.contains(&why), "{trunc}");
    assert_eq!(faults.calls.load(SeqCst), calls, "the file was touched after the failure");
    log.close().await.expect("a poisoned log closes quietly");
    why
}

/// The reopened log holds 1..=n for some n >= acked (entries of the failed batch may or may not
/// have reached the disk: they were never acknowledged), each intact.
async fn assert_intact_prefix(dir: &std::path::Path, acked: u64) {
    let mut log = LogStore::open(dir).expect("the log reopens after the failure");
    let state = log.get_log_state().await.unwrap();
    let last = state.last_log_id.map(|l| l.index).unwrap_or(0);
    assert!(last >= acked, "acknowledged entries lost: the log ends at {last}, {acked} were acknowledged");
    let got = log.try_get_log_entries(0..u64::MAX).await.unwrap();
    assert_eq!(got, entries(1..=last), "the reopened log is not the prefix 1..={last}");
    // And it works again: the next entry appends.
    log.blocking_append(entries(last + 1..=last + 1)).await.unwrap();
    log.close().await.unwrap();
}

#[tokio::test]
async fn failed_fsync_poisons_the_log_and_the_prefix_reopens() {
    let dir = tempfile::tempdir().unwrap();
    poison_after(dir.path(), 20, |f| f.fail_fsync.store(EIO, SeqCst), &["fsync", "EIO", "os error 5"]).await;
    assert_intact_prefix(dir.path(), 20).await;
}

#[tokio::test]
async fn failed_write_poisons_the_log_and_the_prefix_reopens() {
    let dir = tempfile::tempdir().unwrap();
    poison_after(dir.path(), 50, |f| f.fail_write.store(ENOSPC, SeqCst), &["write", "ENOSPC", "No space left"]).await;
    assert_intact_prefix(dir.path(), 50).await;
}

#[tokio::test]
async fn a_failed_vote_save_poisons_too() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let mut log = LogStore::open_with_faults(dir.path(), faults.clone()).unwrap();
    log.blocking_append(entries(1..=3)).await.unwrap();
    faults.fail_fsync.store(EIO, SeqCst);
    let err = log.save_vote(&Vote::new(2, 1)).await.unwrap_err().to_string();
    assert!(err.contains("EIO"), "{err}");
    assert!(log.blocking_append(entries(4..=4)).await.is_err());
    log.close().await.unwrap();
    drop(log);
    assert_intact_prefix(dir.path(), 3).await;
}
