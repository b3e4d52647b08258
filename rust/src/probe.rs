//! Timestamps along the commit path, for measuring where a commit spends its time (issue 18).
//!
//! Built only with the `probe` cargo feature; without it every [`mark`] is an empty inline
//! function. With it, each process records `(CLOCK_MONOTONIC ns, point, key)` in memory and a
//! thread appends them every 100 ms to `$WARREN_RAFT_PROBE_DIR/probe-<pid>.tsv` (nothing is
//! recorded when the variable is unset). CLOCK_MONOTONIC is shared by every process on the host
//! (Python's `time.monotonic_ns()` reads it too), so the files of a 3-node cluster line up.
//! `scripts/probe_breakdown.py` turns them into the per-hop table in docs/decisions.md.

/// A point on the commit path. The key is the log index where one is known, else 0.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // each build marks only the points its code paths reach
pub(crate) enum Point {
    /// `RaftNode.propose` entered, on the event loop's thread.
    PyPropose,
    /// The proposer hands a batch to openraft (`client_write`); key: commands in it.
    ClientWrite,
    /// `RaftLogStorage::append` called; key: last index.
    LogAppend,
    /// The log writer's batch is durable (fsync returned); key: last index of the batch.
    LogFlushed,
    /// A log write begins (on the calling thread); key: operations in it.
    LogWriterWoke,
    /// The log file: a write (key: bytes), an fdatasync begins, an fdatasync returned.
    FileWrite,
    FsyncStart,
    FsyncEnd,
    /// AppendEntries handed to the transport; key: last index sent (0: no entries).
    AppendSend,
    /// Its answer is back; key: as for AppendSend.
    AppendAnswered,
    /// Follower: an AppendEntries with entries read off the wire; key: last index.
    AppendReceived,
    /// Follower: its answer encoded, about to be written to the socket; key: last index.
    AppendReplied,
    /// openraft asks the state machine to apply; key: last index.
    Apply,
    /// The application has answered the apply; key: last index.
    Applied,
    /// `client_write` returned; key: the index.
    Committed,
    /// An awaitable's result is queued for the event loop.
    CompletionPushed,
    /// The event loop's thread starts resolving queued results.
    CompletionDrain,
    /// Work handed to Python (converted on the event loop's thread); key: last index, or 0.
    WorkToPython,
}

#[cfg(not(feature = "probe"))]
#[inline(always)]
pub(crate) fn mark(_point: Point, _key: u64) {}

#[cfg(feature = "probe")]
pub(crate) fn mark(point: Point, key: u64) {
    imp::mark(point, key)
}

#[cfg(feature = "probe")]
mod imp {
    use std::io::Write;
    use std::sync::{Mutex, OnceLock};
    use std::time::Duration;

    use super::Point;

    type Events = Mutex<Vec<(u64, Point, u64)>>;

    fn now_ns() -> u64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    fn events() -> Option<&'static Events> {
        static EVENTS: OnceLock<Option<Events>> = OnceLock::new();
        EVENTS
            .get_or_init(|| {
                let dir = std::env::var_os("WARREN_RAFT_PROBE_DIR")?;
                let path = std::path::Path::new(&dir).join(format!("probe-{}.tsv", std::process::id()));
                std::thread::Builder::new()
                    .name("raft-probe".into())
                    .spawn(move || {
                        let mut file = std::fs::File::create(path).expect("probe file");
                        loop {
                            std::thread::sleep(Duration::from_millis(100));
                            let batch = std::mem::take(&mut *events().unwrap().lock().unwrap());
                            let mut out = String::new();
                            for (t, p, k) in batch {
                                out.push_str(&format!("{t}\t{p:?}\t{k}\n"));
                            }
                            let _ = file.write_all(out.as_bytes());
                        }
                    })
                    .ok()?;
                Some(Mutex::new(Vec::with_capacity(1 << 20)))
            })
            .as_ref()
    }

    pub(super) fn mark(point: Point, key: u64) {
        if let Some(events) = events() {
            let t = now_ns();
            events.lock().unwrap().push((t, point, key));
        }
    }
}
