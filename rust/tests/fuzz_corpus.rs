//! The fuzz targets' inputs, replayed on the stable toolchain as part of `cargo test`: every file
//! of the kept corpus (rust/fuzz/corpus, including the inputs of crashes fixed since) goes through
//! the same entry point as under `cargo fuzz` (which panics on a broken invariant), and the valid
//! seeds made by the real encoders are accepted whole and round-trip.

use std::path::PathBuf;

use warren_raft::fuzzing;
use warren_raft::log_store::{LogStore, LOG_FILE};
use warren_raft::Error;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
}

fn replay(target: &str) {
    let files = corpus(target);
    assert!(files.len() >= 5, "the {target} corpus holds only {} files", files.len());
    for (path, bytes) in files {
        let outcome = std::panic::catch_unwind(|| fuzzing::run(target, &bytes));
        assert!(outcome.is_ok(), "{target}: {} panicked", path.display());
    }
}

#[test]
fn frame_corpus_replays() {
    replay("frame");
}

#[test]
fn log_entry_corpus_replays() {
    replay("log_entry");
}

#[test]
fn snapshot_install_corpus_replays() {
    replay("snapshot_install");
}

/// Valid inputs are accepted whole (the entry points check their round trip as they go);
/// damaged ones are refused somewhere, without a panic.
#[test]
fn seeds_are_accepted_whole_and_damaged_ones_refused() {
    for target in fuzzing::TARGETS {
        for (name, bytes) in fuzzing::seeds(target) {
            let outcome = fuzzing::run(target, &bytes);
            if name.starts_with("valid-") || name.starts_with("accepted-") {
                assert!(outcome.accepted > 0, "{target}/{name}: {outcome:?}");
                // A record decoded as an entry is refused as a vote: log records count per kind.
                if target != "log_entry" {
                    assert_eq!(outcome.refused, 0, "{target}/{name}: {outcome:?}");
                }
            } else {
                assert!(outcome.refused > 0, "{target}/{name}: {outcome:?}");
            }
        }
    }
}

/// A log file with 9 bytes of a b-tree page zeroed, on which redb fails an assertion when the first
/// write transaction at open walks the tree (found by `make fuzz`, issue 19; its input is
/// corpus/log_entry/regression-redb-btree-assert). A node opening it gets a corrupt-log error, as
/// for any damaged log, not a panic.
#[test]
fn a_log_file_redb_asserts_on_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = fuzzing::base_log_file();
    file[256..265].fill(0);
    std::fs::write(dir.path().join(LOG_FILE), file).unwrap();
    let opened = std::panic::catch_unwind(|| LogStore::open(dir.path()).map(|_| ()));
    match opened {
        Ok(Err(Error::CorruptLog(why))) => assert!(why.contains("damaged"), "{why}"),
        Ok(other) => panic!("a damaged log file opened as {other:?}"),
        Err(_) => panic!("opening a damaged log file panicked"),
    }
}

/// A log file whose header was overwritten so that redb, committing the first transaction at open,
/// reads a page of 8 TiB (found by `make fuzz`, issue 19; corpus/log_entry/regression-redb-read-past-end).
/// The backend allocated the read up front, and a failed allocation aborts the process (no panic to
/// catch). Reads past the end of the file are refused since; and since the integrity check at open
/// (below) the damaged header is caught before redb reads that page.
#[test]
fn a_log_file_that_makes_redb_read_past_its_end_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = fuzzing::base_log_file();
    let damage = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 0x0c, 0x00, 0x00, 0x00, 0xff, 0x2b, 0x65, 0x03, 0x74, 0x7e, 0xff, 0x33,
        0x01, 0x78, 0x41,
    ];
    file[255..255 + damage.len()].copy_from_slice(&damage);
    std::fs::write(dir.path().join(LOG_FILE), file).unwrap();
    match LogStore::open(dir.path()) {
        Err(Error::CorruptLog(why)) => assert!(why.contains("the file is damaged"), "{why}"),
        Err(other) => panic!("a damaged log file refused as {other}"),
        Ok(_) => panic!("a damaged log file opened"),
    }
}

/// A log file whose header says a region holds 0xf8000000 data pages instead of 2^20 (2 bytes
/// overwritten; found by `make fuzz`, issue 19: corpus/log_entry/regression-redb-region-definition).
/// redb opened it, then sized its allocator from it at the first write and took gigabytes. No checksum
/// covers those bytes: LogStore::open compares them with the definition every log is made with.
#[test]
fn a_log_file_with_a_damaged_region_definition_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = fuzzing::base_log_file();
    file[22..24].copy_from_slice(&[0x00, 0xf8]);
    std::fs::write(dir.path().join(LOG_FILE), file).unwrap();
    match LogStore::open(dir.path()) {
        Err(Error::CorruptLog(why)) => assert!(why.contains("describes regions"), "{why}"),
        Err(other) => panic!("a damaged log file refused as {other}"),
        Ok(_) => panic!("a log file with a damaged region definition opened"),
    }
}

/// A log file with 88 bytes of its freed-page tree overwritten: redb opened it and every entry
/// checked out, then the first commit panicked in redb's allocator (found by `make fuzz`, issue 19:
/// corpus/log_entry/regression-redb-panics-writing): a panic in openraft's core. redb's checksums
/// cover that page; LogStore::open now has redb verify them all, and a damaged page of the last
/// commit is rolled back as after a crash. The log serves its entries and takes writes. (A panic
/// while writing would poison the log with a damaged-file error; no known input reaches it now.)
#[tokio::test]
async fn a_log_file_redb_panicked_writing_to_is_repaired_at_open() {
    use openraft::storage::{RaftLogReader, RaftLogStorageExt};
    let dir = tempfile::tempdir().unwrap();
    let mut file = fuzzing::base_log_file();
    let damage = [
        0x73, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73,
        0x73, 0x73, 0x73, 0x00, 0x00, 0x00, 0x12, 0x00, 0x00, 0x00, 0x00, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73,
        0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73, 0x73,
    ];
    file[1586035..1586035 + damage.len()].copy_from_slice(&damage);
    std::fs::write(dir.path().join(LOG_FILE), file).unwrap();
    let mut log = LogStore::open(dir.path()).expect("the damaged page is rolled back at open");
    let entries = log.try_get_log_entries(..).await.unwrap();
    assert_eq!(entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), (3..=8).collect::<Vec<_>>());
    let next = openraft::Entry {
        log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(2, 1), 9),
        payload: openraft::EntryPayload::Blank,
    };
    log.blocking_append([next]).await.expect("the repaired log takes writes");
    assert_eq!(log.failure(), None);
    log.close().await.unwrap();
}

/// A log file with 33 bytes of a b-tree page overwritten so that redb, reading the log back at
/// open, recursed without end and overflowed the stack: SIGSEGV, nothing to catch (found by
/// `make fuzz`, issue 19: corpus/log_entry/regression-redb-page-cycle). redb's checksums cover the
/// page, and LogStore::open now has it verify them all before anything is read.
#[test]
fn a_log_file_whose_btree_page_is_damaged_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = fuzzing::base_log_file();
    let damage = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x30, 0x30, 0x03, 0x24, 0x31, 0x30, 0x2e, 0x30, 0x2e, 0x30,
        0x2e, 0x23, 0x2d, 0x37, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    file[569344..569344 + damage.len()].copy_from_slice(&damage);
    std::fs::write(dir.path().join(LOG_FILE), file).unwrap();
    match LogStore::open(dir.path()) {
        Err(Error::CorruptLog(why)) => assert!(why.contains("the file is damaged"), "{why}"),
        Err(other) => panic!("a damaged log file refused as {other}"),
        Ok(_) => panic!("a log file with a damaged b-tree page opened"),
    }
}
