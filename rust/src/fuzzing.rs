//! Entry points for the fuzz targets (`rust/fuzz`, nightly, `make fuzz`) and for the corpus replay
//! test (`rust/tests/fuzz_corpus.rs`, stable, part of `cargo test`). Not an API: hidden from the
//! docs, free to change with the targets.
//!
//! Each entry point takes arbitrary bytes and runs them through the code a node runs on bytes from
//! a peer or from its own disk. Hostile input must come back as an error; these functions panic
//! only when an invariant breaks (a decoder panicked, a decoded value does not re-encode to itself,
//! a snapshot file differs from the bytes sent for it), which the fuzzer reports as a crash.
//!
//! - [`frames`]: a peer's byte stream, frame after frame, as [`crate::network`] reads it.
//! - [`log_record`]: one stored log record ([`crate::log_store`]'s `crc32 || postcard`), or a
//!   damaged copy of a whole log file opened as a node opens its log at start.
//! - [`snapshot_install`]: the InstallSnapshot chunks a leader sends, received and installed as a
//!   follower does, up to the hand-off to the application (Warren's SQLite state, in Python),
//!   which gets a path; or a damaged `current.meta` read back at start.
//!
//! [`seeds`] builds small valid inputs for each target from the real encoders (the seed corpus).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use openraft::network::snapshot_transport::Streaming;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::EntryPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::codec::{self, Message, Request};
use crate::log_store::{self, LogStore, LOG_FILE};
use crate::state_machine::{self, StateMachine, Work, SNAPSHOT_DIR};
use crate::types::{Entry, LogId, SnapshotMeta, TypeConfig, Vote};

#[path = "fuzzing_seeds.rs"]
mod seeds;
pub use seeds::seeds;
use seeds::{log_id, sample_entries};

/// Names of the targets, as in `rust/fuzz/fuzz_targets/` and `rust/fuzz/corpus/`.
pub const TARGETS: [&str; 3] = ["frame", "log_entry", "snapshot_install"];

/// Runs the entry point of target `name` on `data`. Panics on an unknown name.
pub fn run(name: &str, data: &[u8]) -> Outcome {
    match name {
        "frame" => frames(data),
        "log_entry" => log_record(data),
        "snapshot_install" => snapshot_install(data),
        other => panic!("no fuzz target {other:?}"),
    }
}

/// What an entry point made of its input: units (frames, records, chunks, files) accepted and refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub accepted: usize,
    pub refused: usize,
}

/// Largest snapshot file whose bytes are compared with what was sent (larger ones are sparse
/// files made by hostile offsets; their size is still checked).
const COMPARED_SNAPSHOT_BYTES: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Frames

/// A peer's byte stream as [`crate::network`]'s `handle_conn` reads it: frames until the stream
/// ends or a bad frame closes the connection. Every decoded message must re-encode to a frame
/// that decodes to the same message.
pub fn frames(data: &[u8]) -> Outcome {
    let max = crate::Config::default().max_frame_bytes;
    let mut stream = std::io::Cursor::new(data);
    let mut out = Outcome::default();
    loop {
        match ready(codec::read_message(&mut stream, max)) {
            Ok(Some(msg)) => {
                assert_reencodes(&msg);
                if let Message::Request { body: Request::Snapshot(req), .. } = &msg {
                    // The transport's gate before a snapshot request reaches openraft.
                    if state_machine::check_snapshot_id(&req.meta.snapshot_id).is_err() {
                        out.refused += 1;
                        return out;
                    }
                }
                out.accepted += 1;
            }
            Ok(None) => return out,
            Err(_) => {
                out.refused += 1;
                return out;
            }
        }
    }
}

fn assert_reencodes(msg: &Message) {
    let frame = codec::encode(msg).expect("a decoded message encodes");
    let len = u32::from_be_bytes(frame[..codec::HEADER_BYTES].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - codec::HEADER_BYTES, "the length prefix counts the body");
    let back = codec::decode(&frame[codec::HEADER_BYTES..]).expect("a re-encoded message decodes");
    assert_eq!(format!("{back:?}"), format!("{msg:?}"));
    assert_eq!(codec::encode(&back).unwrap(), frame, "encode(decode(encode(m))) == encode(m)");
}

// ---------------------------------------------------------------------------------------------
// Log records and log files

/// One stored log record, or a whole damaged log file. The first byte picks the mode:
/// - 0: `data[1..]` is a stored record (`crc32 || postcard`), decoded as an entry, a vote and a
///   purge point are (most fail the checksum: the fuzzer rarely forges one);
/// - 1: `data[1..]` is a record's body; it is sealed with its true checksum first, so the postcard
///   decoding behind the checksum is what is fuzzed;
/// - 2: `data[1..]` is a list of damages (see [`damage`]) applied to a real log file (entries of
///   several kinds and terms, a vote, a purge point), which is then opened as a node opens its
///   log at start: it must open, or be refused with an error.
pub fn log_record(data: &[u8]) -> Outcome {
    let Some((&mode, rest)) = data.split_first() else { return Outcome::default() };
    match mode % 3 {
        0 => records(rest),
        1 => records(&log_store::seal(rest.to_vec())),
        _ => damaged_log(rest),
    }
}

fn records(sealed: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let mut count = |ok: bool| if ok { out.accepted += 1 } else { out.refused += 1 };
    count(record_roundtrips::<Entry>(sealed));
    count(record_roundtrips::<Vote>(sealed));
    count(record_roundtrips::<Option<LogId>>(sealed));
    count(record_roundtrips::<SnapshotMeta>(sealed));
    out
}

/// Decodes `sealed` as a `T` record; a decoded one must re-encode to a record that decodes to it.
fn record_roundtrips<T: Serialize + DeserializeOwned>(sealed: &[u8]) -> bool {
    let Some(v) = log_store::decode_sealed::<T>(sealed) else { return false };
    let again = log_store::encode_sealed(&v);
    let back: T = log_store::decode_sealed(&again).expect("a re-encoded record decodes");
    assert_eq!(log_store::encode_sealed(&back), again, "a record re-encodes to itself");
    true
}

/// The log file every damaged-file input starts from: written by [`LogStore`] itself (8 entries
/// of every kind over terms 1 and 2, a vote, entries 1 and 2 purged).
pub fn base_log_file() -> Vec<u8> {
    base_log().to_vec()
}

fn base_log() -> &'static [u8] {
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    // On a thread of its own: the caller may be inside a runtime already (a #[tokio::test]).
    BASE.get_or_init(|| {
        std::thread::spawn(|| {
            let dir = ScratchDir::new();
            block_on(async {
                let mut log = LogStore::open(dir.path()).expect("a fresh log opens");
                log.blocking_append(sample_entries()).await.unwrap();
                log.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
                log.purge(log_id(1, 2)).await.unwrap();
                log.close().await.unwrap();
            });
            std::fs::read(dir.path().join(LOG_FILE)).unwrap()
        })
        .join()
        .expect("the base log is written")
    })
}

/// Applies `damage` to a copy of `base`: `[flags][cut: u32 LE if flags & 1]` then any number of
/// `[offset: u32 LE][n: u8][n bytes]` overwrites (offsets wrap around the file's length), then
/// the file is cut to `cut % (len + 1)` bytes if asked.
pub fn damage(base: &[u8], damage: &[u8]) -> Vec<u8> {
    let mut file = base.to_vec();
    let Some((&flags, mut rest)) = damage.split_first() else { return file };
    let cut = if flags & 1 == 1 && rest.len() >= 4 {
        let (c, r) = rest.split_at(4);
        rest = r;
        Some(u32::from_le_bytes(c.try_into().unwrap()) as usize)
    } else {
        None
    };
    while rest.len() >= 5 && !file.is_empty() {
        let at = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize % file.len();
        let n = (rest[4] as usize).min(rest.len() - 5);
        let bytes = &rest[5..5 + n];
        let end = (at + n).min(file.len());
        file[at..end].copy_from_slice(&bytes[..end - at]);
        rest = &rest[5 + n..];
    }
    if let Some(cut) = cut {
        file.truncate(cut % (file.len() + 1));
    }
    file
}

fn damaged_log(damages: &[u8]) -> Outcome {
    let dir = ScratchDir::new();
    std::fs::write(dir.path().join(LOG_FILE), damage(base_log(), damages)).unwrap();
    let Ok(mut log) = LogStore::open(dir.path()) else { return Outcome { accepted: 0, refused: 1 } };
    // Opened: what it serves must be a log (contiguous indexes, terms never decreasing, nothing
    // at or below the purge point).
    let state = ready(log.get_log_state()).unwrap();
    let entries = ready(log.try_get_log_entries(..)).unwrap();
    let purged = state.last_purged_log_id.map(|l| l.index);
    let mut prev: Option<&Entry> = None;
    for e in &entries {
        if let Some(p) = purged {
            assert!(e.log_id.index > p, "entry {} at or below the purge point {p}", e.log_id);
        }
        if let Some(prev) = prev {
            assert_eq!(e.log_id.index, prev.log_id.index + 1, "a gap after {}", prev.log_id);
            assert!(e.log_id.leader_id.term >= prev.log_id.leader_id.term, "term decreases at {}", e.log_id);
        }
        record_roundtrips::<Entry>(&log_store::encode_sealed(e));
        prev = Some(e);
    }
    assert_eq!(state.last_log_id, entries.last().map(|e| e.log_id).or(state.last_purged_log_id));
    // A node goes on writing to a log it opened: that must not panic either (an error poisons it).
    let next = state.last_log_id.map_or(1, |l| l.index + 1);
    let term = state.last_log_id.map_or(1, |l| l.leader_id.term);
    block_on(async {
        let appended = log.blocking_append([Entry { log_id: log_id(term, next), payload: EntryPayload::Blank }]).await;
        let voted = log.save_vote(&Vote::new_committed(term + 1, 2)).await;
        if appended.is_ok() && voted.is_ok() {
            assert_eq!(log.get_log_state().await.unwrap().last_log_id, Some(log_id(term, next)));
        }
        log.close().await.unwrap();
    });
    Outcome { accepted: 1, refused: 0 }
}

// ---------------------------------------------------------------------------------------------
// Snapshot install

/// What a follower does with a snapshot a peer sends. The first byte picks the mode:
/// - 0, 1: `data[1..]` is a peer's byte stream of frames ([`frames`]); each InstallSnapshot
///   request passes the transport's gate, then openraft's chunk receiver (its [`Streaming`], as
///   `Raft::install_snapshot` drives it) writes it into the file our [`StateMachine`] gives, and a
///   last chunk installs it: file renamed into place, `current.meta` written, and a
///   [`Work::Restore`] queued for the application with the file's path, where the Rust part ends.
///   The file handed over must hold exactly the bytes sent; after a restart, the node must come
///   back with the snapshot installed last;
/// - 2: `data[1..]` is a `current.meta` (a sealed [`SnapshotMeta`]) found at start;
/// - 3: the same, sealed with its true checksum first.
pub fn snapshot_install(data: &[u8]) -> Outcome {
    let Some((&mode, rest)) = data.split_first() else { return Outcome::default() };
    match mode % 4 {
        0 | 1 => install_stream(rest),
        2 => open_with_meta(rest),
        _ => open_with_meta(&log_store::seal(rest.to_vec())),
    }
}

/// What the application was handed: the snapshot file's path and its bytes (None: too large to
/// compare; its length then).
type Handed = (Option<PathBuf>, Option<Vec<u8>>, u64);

/// Stands in for the application (Warren's Python state machine): answers each restore after
/// noting what it was given. No apply or build is ever asked for by these inputs.
async fn application(
    mut work: tokio::sync::mpsc::UnboundedReceiver<Work>,
    handed: tokio::sync::mpsc::UnboundedSender<Handed>,
) {
    while let Some(item) = work.recv().await {
        match item {
            Work::Restore { path, reply, .. } => {
                let (bytes, len) = match &path {
                    Some(p) => {
                        let len = std::fs::metadata(p).expect("the snapshot handed over exists").len();
                        let bytes = (len <= COMPARED_SNAPSHOT_BYTES).then(|| std::fs::read(p).unwrap());
                        (bytes, len)
                    }
                    None => (None, 0),
                };
                let _ = handed.send((path, bytes, len));
                let _ = reply.send(Ok(()));
            }
            other => panic!("unexpected work {other:?}"),
        }
    }
}

/// The bytes a snapshot file holds after the chunks written so far; None once an offset went
/// beyond what is compared.
struct Expected(Option<Vec<u8>>);

impl Expected {
    fn write(&mut self, offset: u64, data: &[u8]) {
        let end = offset.saturating_add(data.len() as u64);
        match &mut self.0 {
            Some(bytes) if end <= COMPARED_SNAPSHOT_BYTES => {
                let (offset, end) = (offset as usize, end as usize);
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[offset..end].copy_from_slice(data);
            }
            _ => self.0 = None,
        }
    }
}

fn install_stream(data: &[u8]) -> Outcome {
    let dir = ScratchDir::new();
    let snapshots = dir.path().join(SNAPSHOT_DIR);
    let mut out = Outcome::default();
    let installed = block_on(async {
        let (mut sm, work) = StateMachine::open(dir.path()).expect("a fresh state machine opens");
        let (handed_tx, mut handed) = tokio::sync::mpsc::unbounded_channel();
        let app = tokio::spawn(application(work, handed_tx));
        assert_eq!(handed.recv().await.unwrap().0, None, "a fresh node starts from the empty state");

        let max = crate::Config::default().max_frame_bytes;
        let mut stream = std::io::Cursor::new(data);
        let mut streaming: Option<(Streaming<TypeConfig>, Expected)> = None;
        let mut installed: Option<SnapshotMeta> = None;
        loop {
            let msg = match codec::read_message(&mut stream, max).await {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(_) => {
                    out.refused += 1; // a bad frame closes the connection
                    break;
                }
            };
            let Message::Request { body: Request::Snapshot(req), .. } = msg else { continue };
            // The transport's gate (network.rs): a bad id closes the connection.
            if state_machine::check_snapshot_id(&req.meta.snapshot_id).is_err() {
                out.refused += 1;
                break;
            }
            // openraft's Chunked::receive_snapshot, step by step (Raft::install_snapshot runs it
            // once the request's vote is current; the whole Raft is not needed to reach our code).
            let current = streaming.as_ref().map(|(s, _)| s.snapshot_id().clone());
            if current.as_ref() != Some(&req.meta.snapshot_id) {
                if req.offset != 0 {
                    out.refused += 1; // SnapshotMismatch: the leader restarts from offset 0
                    continue;
                }
                let file = sm.begin_receiving_snapshot().await.expect("a snapshot file can be created");
                streaming = Some((Streaming::new(req.meta.snapshot_id.clone(), file), Expected(Some(Vec::new()))));
            }
            let (s, expected) = streaming.as_mut().unwrap();
            let (meta, offset, done, chunk) = (req.meta.clone(), req.offset, req.done, req.data.clone());
            if s.receive(req).await.is_err() {
                // An offset beyond what the file system allows: an error to the leader.
                out.refused += 1;
                streaming = None;
                continue;
            }
            expected.write(offset, &chunk);
            out.accepted += 1;
            if !done {
                continue;
            }
            let (s, expected) = streaming.take().unwrap();
            let mut file = s.into_snapshot_data();
            file.shutdown().await.expect("a snapshot file flushes");
            sm.install_snapshot(&meta, file).await.expect("a received snapshot installs");
            let (path, bytes, len) = handed.recv().await.expect("the application is asked to restore");
            let path = path.expect("a restore from a received snapshot names its file");
            assert_eq!(path.parent(), Some(snapshots.as_path()), "the snapshot stays in its folder");
            if let (Some(want), Some(got)) = (&expected.0, &bytes) {
                assert_eq!(got, want, "the file handed over holds the bytes sent");
            } else if let Some(want) = &expected.0 {
                panic!("expected {} bytes, the file handed over has {len}", want.len());
            }
            assert_eq!(sm.current_snapshot().as_ref(), Some(&meta));
            installed = Some(meta);
        }
        drop(streaming);
        sm.close();
        drop(sm);
        app.await.unwrap();
        installed
    });
    // A restart comes back with the snapshot installed last.
    let reopened = reopen(dir.path());
    match (&installed, reopened) {
        (None, Ok((None, None))) => {}
        (Some(meta), Ok((Some(got), Some(path)))) => {
            assert_eq!(&got, meta, "current.meta holds the last snapshot installed");
            assert_eq!(path.parent(), Some(snapshots.as_path()));
        }
        (want, got) => panic!("installed {want:?}, after a restart {got:?}"),
    }
    out
}

/// Opens the state machine in `dir` as a restarting node does: its current snapshot, and the
/// path of the file the application is asked to restore from.
fn reopen(dir: &Path) -> Result<(Option<SnapshotMeta>, Option<PathBuf>), crate::Error> {
    block_on(async {
        let (sm, work) = StateMachine::open(dir)?;
        let current = sm.current_snapshot();
        let (handed_tx, mut handed) = tokio::sync::mpsc::unbounded_channel();
        let app = tokio::spawn(application(work, handed_tx));
        let (path, _, _) = handed.recv().await.expect("the first work is a restore");
        sm.close();
        drop(sm);
        app.await.unwrap();
        Ok((current, path))
    })
}

fn open_with_meta(meta_file: &[u8]) -> Outcome {
    let dir = ScratchDir::new();
    let snapshots = dir.path().join(SNAPSHOT_DIR);
    std::fs::create_dir_all(&snapshots).unwrap();
    std::fs::write(snapshots.join("current.meta"), meta_file).unwrap();
    // The snapshot file it names, when the name is one we would make.
    let decoded: Option<SnapshotMeta> = log_store::decode_sealed(meta_file);
    if let Some(meta) = &decoded {
        if state_machine::check_snapshot_id(&meta.snapshot_id).is_ok() {
            std::fs::write(snapshots.join(format!("snap-{}.bin", meta.snapshot_id)), b"state").unwrap();
        }
    }
    match reopen(dir.path()) {
        Ok((current, path)) => {
            assert_eq!(current, decoded, "the node starts from the snapshot current.meta names");
            let path = path.expect("a node with a current snapshot restores from its file");
            assert_eq!(path.parent(), Some(snapshots.as_path()), "the snapshot stays in its folder");
            Outcome { accepted: 1, refused: 0 }
        }
        Err(_) => Outcome { accepted: 0, refused: 1 },
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Polls `f` to completion once: the readers here (byte slices, an in-memory log) never wait.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-memory read waited"),
    }
}

/// Runs `f` on this thread's current-thread runtime (tasks it spawns run on it too).
fn block_on<F: Future>(f: F) -> F::Output {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    }
    RT.with(|rt| rt.block_on(f))
}

/// A fresh directory under the temp folder (`TMPDIR`; `make fuzz` uses /dev/shm), removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> ScratchDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("warren-fuzz-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        ScratchDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
