//! The state-machine bridge: openraft's apply and snapshot calls become [`Work`] items that the
//! application (Python) pulls in log order, performs, and completes.
//!
//! The application's state is rebuilt from the latest snapshot plus the log on every start: the
//! first item is always a [`Work::Restore`]. Snapshots are files: the application writes its
//! whole state to a path we give it; we make that file durable and own it from then on.
//!
//! Ordering: every item is enqueued under one lock together with the log position it brings the
//! application to, so a snapshot request carries exactly the position the application will be at
//! when it reaches that item, whatever else is queued around it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, StorageIOError};
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::proposer::Waiting;
use crate::types::{Entry, LogId, Payload, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// Name of the snapshot folder inside a node's data directory.
pub const SNAPSHOT_DIR: &str = "snapshots";
const META_FILE: &str = "current.meta";

pub type Reply<T> = oneshot::Sender<Result<T, String>>;

/// One unit of work for the application's state machine.
#[derive(Debug)]
pub enum Work {
    /// Apply committed entries `(index, term, payload)`; reply with one response per entry.
    Apply { entries: Vec<(u64, u64, Vec<u8>)>, reply: ApplyReply },
    /// Write the whole state to `path`.
    BuildSnapshot { path: PathBuf, last_index: Option<u64>, reply: Reply<()> },
    /// Replace the whole state with the snapshot at `path` (None: empty state).
    Restore { path: Option<PathBuf>, last_index: Option<u64>, reply: Reply<()> },
}

/// The reply to a [`Work::Apply`]: one response per command, or why the application failed.
///
/// A successful reply also answers, there and then, the proposers on this node waiting for those
/// commands ([`crate::proposer`]): their entries are committed and now applied. A failed or
/// dropped one leaves them to the proposer, which learns of the failure from openraft.
pub struct ApplyReply {
    tx: oneshot::Sender<Result<Vec<Vec<u8>>, String>>,
    /// Per entry proposed here: who waits, its log index, its first command's position in the batch.
    waiting: Vec<(Waiting, u64, usize)>,
    count: usize,
}

impl ApplyReply {
    /// Hands the application's answer to the node, like `oneshot::Sender::send` (an `Err` back
    /// holds the value when the node no longer waits for it).
    pub fn send(self, result: Result<Vec<Vec<u8>>, String>) -> std::result::Result<(), Result<Vec<Vec<u8>>, String>> {
        let result = match result {
            Ok(mut responses) if responses.len() == self.count => {
                for (waiting, index, first) in &self.waiting {
                    for (k, answer) in waiting.take().into_iter().flatten().enumerate() {
                        // Answered with its response; openraft's copy (unused) is left empty.
                        answer(Ok((*index, std::mem::take(&mut responses[first + k]))));
                    }
                }
                Ok(responses)
            }
            other => other,
        };
        self.tx.send(result)
    }
}

impl std::fmt::Debug for ApplyReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApplyReply({} responses)", self.count)
    }
}

/// The log position the application reaches once it has done everything enqueued so far.
#[derive(Clone, Default)]
struct Position {
    applied: Option<LogId>,
    membership: StoredMembership,
}

struct Shared {
    dir: PathBuf,
    queue: Mutex<(Position, mpsc::UnboundedSender<Work>)>,
    current: Mutex<Option<SnapshotMeta>>,
    receiving: Mutex<Option<PathBuf>>,
    seq: AtomicU64,
}

#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

fn sm_error(verb: ErrorVerb, msg: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, openraft::AnyError::error(msg.to_string())).into()
}

fn snapshot_error(verb: ErrorVerb, msg: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, openraft::AnyError::error(msg.to_string())).into()
}

/// A snapshot-store I/O error that names what was done, to which file, and the errno.
fn snapshot_io(verb: ErrorVerb, what: &str, path: &Path, e: io::Error) -> StorageError {
    snapshot_error(verb, format!("{what} {} failed: {}", path.display(), crate::log_file::describe_io(&e)))
}

async fn await_reply<T>(rx: oneshot::Receiver<Result<T, String>>, what: &str) -> Result<T, String> {
    match rx.await {
        Ok(r) => r.map_err(|e| format!("the state machine failed to {what}: {e}")),
        Err(_) => Err(format!("the state machine went away before it could {what}")),
    }
}

/// Longest snapshot id accepted (bytes). Ours are "term-index-seq", at most 62 bytes.
pub const MAX_SNAPSHOT_ID_BYTES: usize = 128;

/// Checks a snapshot id before it becomes part of a file name: ids arrive from peers (in an
/// InstallSnapshot request) and from our own `current.meta`, and only ASCII letters, digits, '-'
/// and '_' (1 to [`MAX_SNAPSHOT_ID_BYTES`] of them) are accepted, so a name made from one can
/// never leave the snapshot folder, hide as a dot file or carry a NUL.
pub fn check_snapshot_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_SNAPSHOT_ID_BYTES {
        return Err(format!(
            "snapshot id of {} bytes refused: it must be 1 to {MAX_SNAPSHOT_ID_BYTES} bytes",
            id.len()
        ));
    }
    if let Some(bad) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(format!(
            "snapshot id {:?} refused: character {bad:?} is not an ASCII letter, digit, '-' or '_'",
            id.escape_debug().to_string()
        ));
    }
    Ok(())
}

/// The file of the snapshot with id `id` in `dir`; an error for an id that fails [`check_snapshot_id`].
fn snapshot_file(dir: &Path, id: &str) -> Result<PathBuf, String> {
    check_snapshot_id(id)?;
    Ok(dir.join(format!("snap-{id}.bin")))
}

/// Writes `bytes` to `path` atomically and durably (temp file, fsync, rename, fsync folder).
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl StateMachine {
    /// Opens the snapshot store in `data_dir` and returns the bridge and the receiving end of its
    /// work queue, whose first item restores the latest snapshot.
    pub fn open(data_dir: &Path) -> Result<(StateMachine, mpsc::UnboundedReceiver<Work>), Error> {
        let dir = data_dir.join(SNAPSHOT_DIR);
        let io_err = |e: io::Error| Error::Storage(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(&dir).map_err(io_err)?;
        let meta_path = dir.join(META_FILE);
        let current: Option<SnapshotMeta> = match std::fs::read(&meta_path) {
            Ok(bytes) => Some(
                crate::log_store::decode_sealed(&bytes)
                    .ok_or_else(|| Error::CorruptLog(format!("{} fails its checksum", meta_path.display())))?,
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(e)),
        };
        let current_file = match &current {
            Some(meta) => Some(
                snapshot_file(&dir, &meta.snapshot_id)
                    .map_err(|e| Error::CorruptLog(format!("{}: {e}", meta_path.display())))?,
            ),
            None => None,
        };
        if let Some(file) = &current_file {
            if !file.exists() {
                return Err(Error::CorruptLog(format!("snapshot file {} is missing", file.display())));
            }
        }
        // Leftovers of snapshots that were being built or received when the node stopped.
        for entry in std::fs::read_dir(&dir).map_err(io_err)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".part") || name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let position = current
            .as_ref()
            .map(|m| Position { applied: m.last_log_id, membership: m.last_membership.clone() })
            .unwrap_or_default();
        let (tx, rx) = mpsc::unbounded_channel();
        // Queued ahead of everything else, so nothing is applied before it. Not waited for: the
        // application starts pulling work only once open() has returned. If it fails to restore,
        // its driver stops and this node applies nothing more.
        let (reply, restored) = oneshot::channel();
        let path = current_file;
        let last_index = position.applied.map(|l| l.index);
        tx.send(Work::Restore { path, last_index, reply }).expect("receiver is alive");
        tokio::spawn(async move {
            if let Err(e) = await_reply(restored, "restore its state at start").await {
                tracing::error!(error = %e, "state machine restore failed");
            }
        });
        let sm = StateMachine {
            shared: Arc::new(Shared {
                dir,
                queue: Mutex::new((position, tx)),
                current: Mutex::new(current),
                receiving: Mutex::new(None),
                seq: AtomicU64::new(0),
            }),
        };
        Ok((sm, rx))
    }

    pub fn current_snapshot(&self) -> Option<SnapshotMeta> {
        self.shared.current.lock().unwrap().clone()
    }

    /// Closes the work queue: the application sees its end once it has drained what is queued.
    pub fn close(&self) {
        let (_, tx) = &mut *self.shared.queue.lock().unwrap();
        let (closed, _) = mpsc::unbounded_channel();
        *tx = closed;
    }

    fn next_seq(&self) -> u64 {
        self.shared.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Makes `meta` (whose file is already in place) the current snapshot, dropping older files.
    fn set_current(&self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        let dir = &self.shared.dir;
        let bytes = crate::log_store::encode_sealed(meta);
        let meta_path = dir.join(META_FILE);
        write_atomic(dir, &meta_path, &bytes).map_err(|e| snapshot_io(ErrorVerb::Write, "writing", &meta_path, e))?;
        let keep = snapshot_file(dir, &meta.snapshot_id).map_err(|e| snapshot_error(ErrorVerb::Write, e))?;
        *self.shared.current.lock().unwrap() = Some(meta.clone());
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let p = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if p != keep && name.starts_with("snap-") {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        Ok(())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let (pos, _) = &*self.shared.queue.lock().unwrap();
        Ok((pos.applied, pos.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Payload>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Per entry, how many commands it carries (0 for blank and membership entries).
        let mut counts = Vec::new();
        let mut normal = Vec::new();
        let mut waiting = Vec::new();
        let rx = {
            let (pos, tx) = &mut *self.shared.queue.lock().unwrap();
            for entry in entries {
                pos.applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Normal(data) => {
                        counts.push(data.0.len());
                        let (index, term) = (entry.log_id.index, entry.log_id.leader_id.term);
                        if data.1.is_some() {
                            waiting.push((data.1, index, normal.len()));
                        }
                        normal.extend(data.0.into_iter().map(|cmd| (index, term, cmd.into_vec())));
                    }
                    EntryPayload::Membership(m) => {
                        counts.push(0);
                        pos.membership = StoredMembership::new(Some(entry.log_id), m);
                    }
                    EntryPayload::Blank => counts.push(0),
                }
            }
            if normal.is_empty() {
                return Ok(counts.iter().map(|_| Payload::default()).collect());
            }
            crate::probe::mark(crate::probe::Point::Apply, pos.applied.map_or(0, |l| l.index));
            let (reply, rx) = oneshot::channel();
            let reply = ApplyReply { tx: reply, waiting, count: normal.len() };
            tx.send(Work::Apply { entries: normal, reply })
                .map_err(|_| sm_error(ErrorVerb::Write, "the node is shutting down"))?;
            rx
        };
        let out = await_reply(rx, "apply entries").await.map_err(|e| sm_error(ErrorVerb::Write, e))?;
        crate::probe::mark(crate::probe::Point::Applied, 0);
        let want: usize = counts.iter().sum();
        if out.len() != want {
            return Err(sm_error(
                ErrorVerb::Write,
                format!("the state machine gave {} responses for {want} commands", out.len()),
            ));
        }
        let mut out = out.into_iter().map(serde_bytes::ByteBuf::from);
        Ok(counts.into_iter().map(|n| Payload::from(out.by_ref().take(n).collect::<Vec<_>>())).collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let path = self.shared.dir.join(format!("incoming-{}.part", self.next_seq()));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| snapshot_io(ErrorVerb::Write, "creating", &path, e))?;
        *self.shared.receiving.lock().unwrap() = Some(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        // The id came from the leader; the transport refuses bad ones already (network.rs), this
        // is the last check before it names a file.
        let path = snapshot_file(&self.shared.dir, &meta.snapshot_id).map_err(|e| {
            let _ = self.shared.receiving.lock().unwrap().take().map(std::fs::remove_file);
            snapshot_error(ErrorVerb::Write, e)
        })?;
        let synced = snapshot.sync_all().await;
        drop(snapshot);
        let part = self
            .shared
            .receiving
            .lock()
            .unwrap()
            .take()
            .ok_or_else(|| snapshot_error(ErrorVerb::Write, "no snapshot is being received"))?;
        synced.map_err(|e| snapshot_io(ErrorVerb::Write, "fsync of", &part, e))?;
        std::fs::rename(&part, &path).map_err(|e| snapshot_io(ErrorVerb::Write, "renaming", &part, e))?;
        self.set_current(meta)?;
        let rx = {
            let (pos, tx) = &mut *self.shared.queue.lock().unwrap();
            *pos = Position { applied: meta.last_log_id, membership: meta.last_membership.clone() };
            let (reply, rx) = oneshot::channel();
            let last_index = meta.last_log_id.map(|l| l.index);
            tx.send(Work::Restore { path: Some(path), last_index, reply })
                .map_err(|_| sm_error(ErrorVerb::Write, "the node is shutting down"))?;
            rx
        };
        await_reply(rx, "install a snapshot").await.map_err(|e| sm_error(ErrorVerb::Write, e))?;
        tracing::info!(snapshot = %meta.snapshot_id, last_log_id = ?meta.last_log_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(meta) = self.current_snapshot() else { return Ok(None) };
        let path =
            snapshot_file(&self.shared.dir, &meta.snapshot_id).map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
        let file = tokio::fs::File::open(path).await.map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(file) }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let seq = self.next_seq();
        let building = self.shared.dir.join(format!("building-{seq}.part"));
        let (position, rx) = {
            let (pos, tx) = &mut *self.shared.queue.lock().unwrap();
            let (reply, rx) = oneshot::channel();
            let last_index = pos.applied.map(|l| l.index);
            tx.send(Work::BuildSnapshot { path: building.clone(), last_index, reply })
                .map_err(|_| sm_error(ErrorVerb::Read, "the node is shutting down"))?;
            (pos.clone(), rx)
        };
        await_reply(rx, "write a snapshot").await.map_err(|e| snapshot_error(ErrorVerb::Write, e))?;
        let file = std::fs::File::open(&building).map_err(|e| {
            snapshot_error(
                ErrorVerb::Read,
                format!("the state machine wrote no snapshot file at {}: {e}", building.display()),
            )
        })?;
        file.sync_all().map_err(|e| snapshot_io(ErrorVerb::Write, "fsync of", &building, e))?;
        let id = match position.applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, seq),
            None => format!("0-0-{seq}"),
        };
        let meta =
            SnapshotMeta { last_log_id: position.applied, last_membership: position.membership, snapshot_id: id };
        let path =
            snapshot_file(&self.shared.dir, &meta.snapshot_id).map_err(|e| snapshot_error(ErrorVerb::Write, e))?;
        std::fs::rename(&building, &path).map_err(|e| snapshot_io(ErrorVerb::Write, "renaming", &building, e))?;
        self.set_current(&meta)?;
        tracing::info!(snapshot = %meta.snapshot_id, last_log_id = ?meta.last_log_id, "snapshot built");
        let file = tokio::fs::File::open(&path).await.map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
        Ok(Snapshot { meta, snapshot: Box::new(file) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_snapshot_ids_are_refused() {
        let dir = Path::new("/data/snapshots");
        let long = "a".repeat(MAX_SNAPSHOT_ID_BYTES + 1);
        for id in
            ["../x", "a/b", "/etc/passwd", "..", ".", ".hidden", "a\0b", "\0", "", "a b", "a\nb", "é", long.as_str()]
        {
            let err = snapshot_file(dir, id).expect_err(id);
            assert!(err.starts_with("snapshot id"), "{id:?}: {err}");
        }
    }

    #[test]
    fn our_own_ids_are_accepted_and_stay_in_the_folder() {
        let dir = Path::new("/data/snapshots");
        let longest = format!("{}-{}-{}", u64::MAX, u64::MAX, u64::MAX);
        for id in ["0-0-0", "3-1500-7", longest.as_str(), "a_B-9", &"a".repeat(MAX_SNAPSHOT_ID_BYTES)] {
            let path = snapshot_file(dir, id).unwrap();
            assert_eq!(path.parent(), Some(dir), "{id}");
            assert_eq!(path.file_name().unwrap().to_str().unwrap(), format!("snap-{id}.bin"));
        }
    }
}
