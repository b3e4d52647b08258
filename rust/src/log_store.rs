//! Durable Raft log on redb: one transaction, one fsync, per append.
//!
//! Each write (an append, a vote, a truncation, a purge) is one redb transaction committed with
//! one fsync, on the calling thread (openraft's core, which waits for each before it goes on), and
//! acknowledged once durable. Group commit comes from above: the proposer puts whatever proposals
//! wait into one entry, and a follower gets many entries in one append. The write used to go to a
//! writer thread; waking it and being woken back cost two thread hand-offs per fsync, on the
//! commit path of the leader and of the follower (docs/decisions.md, issue 18). On tokio's
//! multi-thread runtime the core's worker first hands its other tasks to another thread
//! (`block_in_place`), so a slow fsync holds up no other task.
//!
//! An in-memory mirror of the (compaction-bounded) log serves reads, so entries are readable the
//! moment they are appended, before they are durable; openraft only counts them once flushed.
//!
//! Each stored entry is `crc32(body) || body` (body = postcard entry). At open the whole log is
//! checked: checksums, keys matching entry indexes, no gaps. Any failure refuses to open rather
//! than start from silently wrong data.
//!
//! Fail-stop on I/O errors: the first failed write or fsync poisons the log. That batch and
//! everything after it fail with the same error (operation, file, errno) without touching the
//! file again (a failed fsync is never retried: see [`crate::log_file`]), and openraft, given a
//! StorageError, stops its core; the node reports why ([`LogStore::failure`]). What redb last
//! committed is intact, so a restart opens the log up to its last durable entry.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend};
use redb::{Builder, Database, Durability, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;
use crate::log_file::{LogFile, SharedFailure};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// File name of the log inside a node's data directory.
pub const LOG_FILE: &str = "raft-log.redb";

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const KEY_VOTE: &str = "vote";
const KEY_PURGED: &str = "purged";

enum Op {
    Append(Vec<(u64, Vec<u8>)>),
    TruncateSince(u64),
    /// Records the purge point and deletes the entries up to it, in one transaction.
    Purge(u64, Vec<u8>),
    Meta(&'static str, Vec<u8>),
}

#[derive(Default)]
struct Mirror {
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

struct Shared {
    mirror: RwLock<Mirror>,
    /// The file's writer; None once the log is closed.
    writer: Mutex<Option<Writer>>,
    /// Set once, by the writer, when a write or fsync fails: why the log accepts nothing more.
    poison: Arc<OnceLock<String>>,
}

/// The log store. Cheap to clone; clones share the same log (one is the openraft log reader).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

pub(crate) fn seal(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn unseal(value: &[u8]) -> Option<&[u8]> {
    if value.len() < 4 {
        return None;
    }
    let (crc, body) = value.split_at(4);
    (crc32fast::hash(body).to_le_bytes() == crc).then_some(body)
}

/// postcard + checksum, as every record on disk is stored.
pub(crate) fn encode_sealed<T: Serialize>(v: &T) -> Vec<u8> {
    seal(postcard::to_allocvec(v).expect("log types always serialize"))
}

/// The inverse of [`encode_sealed`]; None if the checksum or the encoding is wrong.
pub(crate) fn decode_sealed<T: DeserializeOwned>(value: &[u8]) -> Option<T> {
    postcard::from_bytes(unseal(value)?).ok()
}

fn open_error(path: &Path, e: redb::DatabaseError) -> Error {
    let corrupt = match &e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => true,
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => io.kind() == io::ErrorKind::UnexpectedEof,
        _ => false,
    };
    if corrupt {
        Error::CorruptLog(format!(
            "{} cannot be opened ({e}); restore this node's data directory from a backup, or remove it and \
             re-add the node to the cluster",
            path.display()
        ))
    } else {
        Error::Storage(format!("cannot open {}: {e}", path.display()))
    }
}

/// Where a redb file says how it is laid out: after the magic number (9 bytes), a flags byte and 2
/// of padding, its page size, region header pages and region max data pages (u32 LE each). No
/// checksum covers them, and redb sizes its allocator from them: in a damaged file they made it
/// allocate gigabytes at the first write (a region of 4 billion pages; found by fuzzing, issue 19).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
const REGION_DEFINITION: std::ops::Range<usize> = 12..24;
/// Every log this crate makes has the same definition (redb's defaults: 4 KiB pages, 130 region
/// header pages, 2^20 data pages per region). `a_fresh_log_has_the_expected_region_definition`
/// pins it, so a redb upgrade that changes it is noticed.
pub const LOG_REGION_DEFINITION: [u8; 12] = [0x00, 0x10, 0, 0, 0x82, 0, 0, 0, 0, 0, 0x10, 0];

/// Refuses a log file whose redb header has a region definition other than the one we write.
/// A missing, short or unrecognised file is left to redb, which creates, repairs or refuses it.
fn check_region_definition(path: &Path) -> Result<(), Error> {
    let mut head = [0u8; 24];
    let read = std::fs::File::open(path).and_then(|mut f| io::Read::read_exact(&mut f, &mut head));
    match read {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof) => return Ok(()),
        Err(e) => return Err(Error::Storage(format!("cannot read {}: {e}", path.display()))),
    }
    if head[..REDB_MAGIC.len()] == REDB_MAGIC && head[REGION_DEFINITION] != LOG_REGION_DEFINITION {
        return Err(corrupt(
            path,
            format!(
                "the file is damaged (its header describes regions as {:02x?}, this log writes {:02x?})",
                &head[REGION_DEFINITION], LOG_REGION_DEFINITION
            ),
        ));
    }
    Ok(())
}

/// Closes a database redb panicked on (or refused): its Drop commits, and on that file it can
/// panic again, which is caught here.
fn close_damaged(db: Database) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(db)));
}

fn corrupt(path: &Path, what: String) -> Error {
    Error::CorruptLog(format!(
        "{}: {what}; the node refuses to start from it: restore this node's data directory from a backup, \
         or remove it and re-add the node to the cluster",
        path.display()
    ))
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, validating every stored entry.
    pub fn open(dir: &Path) -> Result<LogStore, Error> {
        Self::open_with(dir, |file| file)
    }

    /// [`LogStore::open`] with failure points in the file (tests only).
    #[cfg(test)]
    pub(crate) fn open_with_faults(dir: &Path, faults: Arc<crate::log_file::Faults>) -> Result<LogStore, Error> {
        Self::open_with(dir, |file| file.with_faults(faults))
    }

    fn open_with(dir: &Path, wrap: impl FnOnce(LogFile) -> LogFile) -> Result<LogStore, Error> {
        let path = dir.join(LOG_FILE);
        check_region_definition(&path)?;
        let (file, failure) = LogFile::open(&path).map_err(|e| open_error(&path, e))?;
        let file = wrap(file);
        // redb asserts (panics) on some damaged files: one cut short when it reads the layout, one
        // whose b-tree pages were overwritten when the first transaction walks them (found by
        // fuzzing, issue 19). Anywhere in opening and reading the file back, that is corruption too.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::open_db(file, &path)))
            .map_err(|_| corrupt(&path, "the file is damaged (redb failed a check of its own reading it)".into()))?;
        let (db, mirror) = opened.map_err(|e| match failure.lock().unwrap().as_ref() {
            Some(f) if f.is_past_end() => corrupt(&path, format!("the file is damaged ({f})")),
            _ => e,
        })?;
        let poison = Arc::new(OnceLock::new());
        let writer =
            Writer { db: Some(db), path: path.clone(), failure, poison: poison.clone(), damaged: Default::default() };
        Ok(LogStore {
            shared: Arc::new(Shared { mirror: RwLock::new(mirror), writer: Mutex::new(Some(writer)), poison }),
        })
    }

    /// Opens the redb database on `file`, creates the tables if missing and reads the log back.
    fn open_db(file: LogFile, path: &Path) -> Result<(Database, Mirror), Error> {
        let mut db = Builder::new().create_with_backend(file).map_err(|e| open_error(path, e))?;
        let storage = |e: &dyn std::fmt::Display| Error::Storage(format!("{}: {e}", path.display()));
        // A panic is caught here, with the database still alive, not by the caller: unwinding past
        // it would run its Drop, which commits, and on the file that made redb panic that can panic
        // again, and a panic while unwinding aborts the process.
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<Mirror, Error> {
            // redb trusts a page once it has read it: a damaged one can make it panic, allocate from
            // garbage, or recurse without end (a page that is its own child overflowed the stack;
            // found by fuzzing, issue 19). Its checksums cover every page, top down, but it verifies
            // them only after an unclean shutdown; here at every open (one read of the whole file).
            // A damaged last commit is rolled back to the one before, as redb does after a crash.
            match db.check_integrity() {
                Ok(true) => {}
                Ok(false) => tracing::warn!(file = %path.display(), "raft log file repaired at open"),
                Err(e) => return Err(corrupt(path, format!("the file is damaged ({e})"))),
            }
            let txn = db.begin_write().map_err(|e| storage(&e))?;
            txn.open_table(LOG).map_err(|e| storage(&e))?;
            txn.open_table(META).map_err(|e| storage(&e))?;
            txn.commit().map_err(|e| storage(&e))?;
            Self::load(&db, path)
        }));
        match read {
            Ok(Ok(mirror)) => Ok((db, mirror)),
            Ok(Err(e)) => {
                close_damaged(db);
                Err(e)
            }
            Err(_) => {
                close_damaged(db);
                Err(corrupt(path, "the file is damaged (redb failed a check of its own reading it)".into()))
            }
        }
    }

    fn load(db: &Database, path: &Path) -> Result<Mirror, Error> {
        let storage = |e: &dyn std::fmt::Display| Error::Storage(format!("{}: {e}", path.display()));
        let txn = db.begin_read().map_err(|e| storage(&e))?;
        let meta = txn.open_table(META).map_err(|e| storage(&e))?;
        let mut mirror = Mirror::default();
        let read_meta = |key: &str| -> Result<Option<Vec<u8>>, Error> {
            Ok(meta.get(key).map_err(|e| storage(&e))?.map(|v| v.value().to_vec()))
        };
        if let Some(v) = read_meta(KEY_VOTE)? {
            mirror.vote =
                Some(decode_sealed(&v).ok_or_else(|| corrupt(path, "the stored vote fails its checksum".into()))?);
        }
        if let Some(v) = read_meta(KEY_PURGED)? {
            mirror.last_purged =
                decode_sealed(&v).ok_or_else(|| corrupt(path, "the stored purge point fails its checksum".into()))?;
        }
        let log = txn.open_table(LOG).map_err(|e| storage(&e))?;
        let mut expected = mirror.last_purged.map(|l| l.index + 1);
        let mut last_term = 0;
        for item in log.iter().map_err(|e| storage(&e))? {
            let (k, v) = item.map_err(|e| storage(&e))?;
            let index = k.value();
            if let Some(want) = expected {
                if index != want {
                    return Err(corrupt(path, format!("log entry {want} is missing (next stored entry is {index})")));
                }
            }
            let entry: Entry = decode_sealed(v.value())
                .ok_or_else(|| corrupt(path, format!("log entry {index} fails its checksum")))?;
            if entry.log_id.index != index || entry.log_id.leader_id.term < last_term {
                return Err(corrupt(path, format!("log entry {index} holds log id {}", entry.log_id)));
            }
            last_term = entry.log_id.leader_id.term;
            expected = Some(index + 1);
            mirror.entries.insert(index, entry);
        }
        Ok(mirror)
    }

    /// The last committed log id recorded (it may lag the true commit point; never leads it).
    pub fn committed(&self) -> Option<LogId> {
        self.shared.mirror.read().unwrap().committed
    }

    /// Why the log accepts nothing more: its first failed write or fsync (operation, file, errno).
    /// None while it works.
    pub fn failure(&self) -> Option<String> {
        self.shared.poison.get().cloned()
    }

    fn refuse_if_poisoned(&self, subject: &ErrorSubject<u64>) -> Result<(), StorageError> {
        match self.shared.poison.get() {
            Some(why) => Err(write_error(subject.clone(), why)),
            None => Ok(()),
        }
    }

    /// Writes `ops` in one transaction and makes them durable (one fsync) before it returns.
    fn write(&self, subject: ErrorSubject<u64>, ops: &[Op]) -> Result<(), StorageError> {
        self.refuse_if_poisoned(&subject)?;
        let result = blocking(|| match self.shared.writer.lock().unwrap().as_ref() {
            Some(writer) => writer.write(ops),
            None => Err("the log is closed".to_string()),
        });
        result.map_err(|e| write_error(subject, &e))
    }

    /// Closes the file (at shutdown); every acknowledged write is durable already. Idempotent.
    ///
    /// A poisoned log closes without error: every operation after its failure has already failed
    /// (and was never acknowledged), and the failure itself was reported when it happened.
    pub async fn close(&self) -> Result<(), StorageError> {
        let writer = self.shared.writer.lock().unwrap().take();
        drop(writer);
        Ok(())
    }
}

/// Runs blocking file I/O for async code: on tokio's multi-thread runtime the worker first hands
/// its other tasks to another thread; elsewhere (a current-thread runtime, no runtime) in place.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn write_error(subject: ErrorSubject<u64>, msg: &str) -> StorageError {
    openraft::StorageIOError::new(subject, ErrorVerb::Write, openraft::AnyError::error(msg)).into()
}

/// The file's writer: one redb transaction (and one fsync) per write.
struct Writer {
    /// Some until the writer is dropped.
    db: Option<Database>,
    path: PathBuf,
    /// The file's first I/O failure, as the backend saw it (operation and errno).
    failure: SharedFailure,
    poison: Arc<OnceLock<String>>,
    /// Set when redb panicked writing (a damaged file it had opened): its Drop, which commits,
    /// may panic again on that file, and is then run where a panic is caught.
    damaged: std::sync::atomic::AtomicBool,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.damaged.load(std::sync::atomic::Ordering::Acquire) {
            if let Some(db) = self.db.take() {
                close_damaged(db);
            }
        }
    }
}

impl Writer {
    /// One transaction (one fsync) for `ops`; once a write has failed, nothing reaches the file.
    fn write(&self, ops: &[Op]) -> Result<(), String> {
        let result = match self.poison.get() {
            Some(why) => Err(why.clone()),
            None => {
                let db = self.db.as_ref().expect("the database is open until the writer is dropped");
                // redb can panic on a damaged file it opened (found by fuzzing, issue 19: a freed-page
                // bitmap out of range at the first commit). That is a damaged log, not a crash.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_batch(db, ops))) {
                    Ok(result) => result.map_err(|e| self.poisoned_by(e)),
                    Err(_) => Err(self.damaged()),
                }
            }
        };
        let last = ops.iter().filter_map(|op| match op {
            Op::Append(e) => e.last().map(|e| e.0),
            _ => None,
        });
        crate::probe::mark(crate::probe::Point::LogFlushed, last.max().unwrap_or(0));
        result
    }

    /// Poisons the log after redb panicked writing to it.
    fn damaged(&self) -> String {
        self.damaged.store(true, std::sync::atomic::Ordering::Release);
        let why = format!(
            "raft log write failed: {}: the file is damaged (redb failed a check of its own while writing); \
             the log accepts nothing more and this node stops: restore this node's data directory from a \
             backup, or remove it and re-add the node to the cluster",
            self.path.display()
        );
        tracing::error!(error = %why, "raft log poisoned");
        self.poison.get_or_init(|| why).clone()
    }

    /// Poisons the log with `e`, described by the failed operation when the file saw one.
    fn poisoned_by(&self, e: redb::Error) -> String {
        let cause = match self.failure.lock().unwrap().as_ref() {
            Some(f) => f.to_string(),
            None => match &e {
                redb::Error::Io(io) => format!("{}: {}", self.path.display(), crate::log_file::describe_io(io)),
                other => format!("{}: {other}", self.path.display()),
            },
        };
        let why = format!(
            "raft log write failed: {cause}; the log accepts nothing more and this node stops: fix or free \
             the disk, then restart the node (it resumes from its last durable entry)"
        );
        tracing::error!(error = %why, "raft log poisoned");
        self.poison.get_or_init(|| why).clone()
    }
}

fn write_batch(db: &Database, batch: &[Op]) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    {
        let mut log = txn.open_table(LOG)?;
        let mut meta = txn.open_table(META)?;
        for op in batch {
            match op {
                Op::Append(entries) => {
                    for (index, value) in entries {
                        log.insert(*index, value.as_slice())?;
                    }
                }
                Op::TruncateSince(since) => log.retain_in(*since.., |_, _| false)?,
                Op::Purge(upto, point) => {
                    meta.insert(KEY_PURGED, point.as_slice())?;
                    log.retain_in(..=*upto, |_, _| false)?;
                }
                Op::Meta(key, value) => {
                    meta.insert(*key, value.as_slice())?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let mirror = self.shared.mirror.read().unwrap();
        Ok(mirror.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let mirror = self.shared.mirror.read().unwrap();
        let last = mirror.entries.values().next_back().map(|e| e.log_id).or(mirror.last_purged);
        Ok(LogState { last_purged_log_id: mirror.last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.refuse_if_poisoned(&ErrorSubject::Vote)?;
        self.shared.mirror.write().unwrap().vote = Some(*vote);
        self.write(ErrorSubject::Vote, &[Op::Meta(KEY_VOTE, encode_sealed(vote))])
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.shared.mirror.read().unwrap().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Kept in memory for metrics only. Were it read back at open, openraft would re-apply the
        // log inside Raft::new, before the application can pull work: open would wait on itself.
        // After a restart the commit point is learnt again from the leader (or, alone, at once).
        self.shared.mirror.write().unwrap().committed = committed;
        Ok(())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.refuse_if_poisoned(&ErrorSubject::Logs)?;
        let entries: Vec<Entry> = entries.into_iter().collect();
        crate::probe::mark(crate::probe::Point::LogAppend, entries.last().map_or(0, |e| e.log_id.index));
        let encoded = entries.iter().map(|e| (e.log_id.index, encode_sealed(e))).collect();
        {
            let mut mirror = self.shared.mirror.write().unwrap();
            for e in entries {
                mirror.entries.insert(e.log_id.index, e);
            }
        }
        crate::probe::mark(crate::probe::Point::LogWriterWoke, 1);
        let result = self.write(ErrorSubject::Logs, &[Op::Append(encoded)]);
        // openraft learns of a failure through the callback, as it would from a later flush.
        callback.log_io_completed(result.map_err(|e| io::Error::other(e.to_string())));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.refuse_if_poisoned(&ErrorSubject::Logs)?;
        self.shared.mirror.write().unwrap().entries.split_off(&log_id.index);
        self.write(ErrorSubject::Logs, &[Op::TruncateSince(log_id.index)])
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.refuse_if_poisoned(&ErrorSubject::Logs)?;
        {
            let mut mirror = self.shared.mirror.write().unwrap();
            let keep = mirror.entries.split_off(&(log_id.index + 1));
            mirror.entries = keep;
            mirror.last_purged = Some(log_id);
        }
        self.write(ErrorSubject::Logs, &[Op::Purge(log_id.index, encode_sealed(&Some(log_id)))])
    }
}

#[cfg(test)]
#[path = "log_store_faults.rs"]
mod faults;
