//! The Raft log's file as redb sees it: redb's own file backend, plus the first I/O failure
//! remembered with its operation, file and errno, and fail-stop after it.
//!
//! Fail-stop because a failed fsync cannot be retried: the kernel may already have dropped the
//! dirty pages it could not write, so a second fsync can succeed without the data ever reaching
//! the disk. After the first failed read, write, resize or fsync, every later call fails with that
//! same error, whatever redb (or anyone) tries next. The log store turns it into a fatal stop.
//!
//! Tests build the backend with [`Faults`] (cfg(test) only) to fail the next write or fsync with a
//! chosen errno, as a full or failing disk would.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::backends::FileBackend;
use redb::{DatabaseError, StorageBackend};

/// The first failure of a [`LogFile`], shared with whoever reports it.
pub(crate) type SharedFailure = Arc<Mutex<Option<Failure>>>;

/// A redb backend over one file that stops at its first I/O failure.
pub(crate) struct LogFile {
    inner: FileBackend,
    path: PathBuf,
    failure: SharedFailure,
    #[cfg(test)]
    faults: Arc<Faults>,
}

/// The first I/O failure of a [`LogFile`]: what was being done, to which file, and the OS error.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    op: &'static str,
    path: PathBuf,
    kind: io::ErrorKind,
    errno: Option<i32>,
    text: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} failed: {}", self.op, self.path.display(), self.text)
    }
}

impl Failure {
    /// A read past the end of the file: the file is damaged (or cut short), not the disk failing.
    pub(crate) fn is_past_end(&self) -> bool {
        self.op == "read" && self.kind == io::ErrorKind::UnexpectedEof
    }

    fn to_io(&self) -> io::Error {
        // The original errno, so every later caller sees the same cause.
        match self.errno {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(self.kind, self.text.clone()),
        }
    }
}

/// "No space left on device (os error 28, ENOSPC)": the OS text plus the errno's name.
pub(crate) fn describe_io(e: &io::Error) -> String {
    match e.raw_os_error().and_then(errno_name) {
        Some(name) => {
            let text = e.to_string();
            match text.strip_suffix(')') {
                Some(head) => format!("{head}, {name})"),
                None => format!("{text} ({name})"),
            }
        }
        None => e.to_string(),
    }
}

/// Names of the errnos a failing disk or file system reports (Linux numbering).
fn errno_name(code: i32) -> Option<&'static str> {
    Some(match code {
        1 => "EPERM",
        5 => "EIO",
        6 => "ENXIO",
        9 => "EBADF",
        12 => "ENOMEM",
        13 => "EACCES",
        19 => "ENODEV",
        22 => "EINVAL",
        27 => "EFBIG",
        28 => "ENOSPC",
        30 => "EROFS",
        117 => "EUCLEAN",
        122 => "EDQUOT",
        _ => return None,
    })
}

impl LogFile {
    /// Opens (creating it if missing) the file at `path` under an exclusive lock, as redb does.
    pub(crate) fn open(path: &Path) -> Result<(LogFile, SharedFailure), DatabaseError> {
        let file = File::options().read(true).write(true).create(true).truncate(false).open(path)?;
        let failure = Arc::new(Mutex::new(None));
        let log_file = LogFile {
            inner: FileBackend::new(file)?,
            path: path.to_path_buf(),
            failure: failure.clone(),
            #[cfg(test)]
            faults: Arc::default(),
        };
        Ok((log_file, failure))
    }

    #[cfg(test)]
    pub(crate) fn with_faults(mut self, faults: Arc<Faults>) -> LogFile {
        self.faults = faults;
        self
    }

    /// Runs one operation unless an earlier one failed; remembers its failure.
    fn guard<T>(&self, op: &'static str, run: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        if let Some(first) = self.failure.lock().unwrap().as_ref() {
            return Err(first.to_io());
        }
        #[cfg(test)]
        let result = match self.faults.take(op) {
            Some(code) => Err(io::Error::from_raw_os_error(code)),
            None => run(),
        };
        #[cfg(not(test))]
        let result = run();
        if let Err(e) = &result {
            let mut failure = self.failure.lock().unwrap();
            if failure.is_none() {
                let first = Failure {
                    op,
                    path: self.path.clone(),
                    kind: e.kind(),
                    errno: e.raw_os_error(),
                    text: describe_io(e),
                };
                tracing::error!(error = %first, "raft log i/o failed; the log accepts nothing more");
                *failure = Some(first);
            }
        }
        result
    }
}

impl fmt::Debug for LogFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogFile").field("path", &self.path).finish()
    }
}

impl StorageBackend for LogFile {
    fn len(&self) -> io::Result<u64> {
        self.guard("stat", || self.inner.len())
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.guard("read", || {
            // The backend allocates the whole read up front. In a damaged file redb can ask for a
            // page whose size or place comes from garbled bytes (found by fuzzing, issue 19: 8 TiB
            // at open, and a failed allocation aborts the process). Nothing past the end exists.
            let file_len = self.inner.len()?;
            if offset.checked_add(len as u64).is_none_or(|end| end > file_len) {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "a read of {len} bytes at offset {offset} goes past the end of the file ({file_len} bytes)"
                    ),
                ));
            }
            self.inner.read(offset, len)
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.guard("resize", || self.inner.set_len(len))
    }

    fn sync_data(&self, eventual: bool) -> io::Result<()> {
        crate::probe::mark(crate::probe::Point::FsyncStart, 0);
        let r = self.guard("fsync", || self.inner.sync_data(eventual));
        crate::probe::mark(crate::probe::Point::FsyncEnd, 0);
        r
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        crate::probe::mark(crate::probe::Point::FileWrite, data.len() as u64);
        self.guard("write", || self.inner.write(offset, data))
    }
}

/// Test-only failure points: the next write or fsync fails with the errno set here (once), and
/// every call that reaches the file after that is counted.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Faults {
    pub(crate) fail_write: std::sync::atomic::AtomicI32,
    pub(crate) fail_fsync: std::sync::atomic::AtomicI32,
    pub(crate) calls: std::sync::atomic::AtomicU64,
}

#[cfg(test)]
impl Faults {
    fn take(&self, op: &str) -> Option<i32> {
        use std::sync::atomic::Ordering::SeqCst;
        self.calls.fetch_add(1, SeqCst);
        let slot = match op {
            "write" => &self.fail_write,
            "fsync" => &self.fail_fsync,
            _ => return None,
        };
        match slot.swap(0, SeqCst) {
            0 => None,
            code => Some(code),
        }
    }
}
