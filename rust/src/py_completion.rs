//! Every awaitable of the module is resolved here, on the event loop's own thread, many per wake-up.
//!
//! Completing an asyncio future from another thread needs that thread to take the GIL: a busy
//! event loop hands it over only every few milliseconds (one future per hand-over capped
//! throughput), and at interpreter exit a foreign thread touching Python objects crashes the
//! process. Instead, finished operations are queued here as closures that build their Python
//! result, and a byte is written to a pipe that the event loop watches (`loop.add_reader`); the loop
//! drains the whole queue in one callback, on its own thread. Consensus threads only push and, at
//! most once per drain, write one byte: they never take the GIL and never wait for Python.

use std::collections::HashMap;
use std::io::{PipeReader, PipeWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;

/// Builds an operation's Python result (or exception) once the event loop's thread runs it.
pub type Outcome = Box<dyn FnOnce(Python<'_>) -> PyResult<PyObject> + Send>;

pub struct Completions {
    queue: Mutex<Vec<(u64, Outcome)>>,
    /// True while a wake-up byte is in the pipe (or about to be): at most one byte is ever queued.
    signalled: AtomicBool,
    reader: PipeReader,
    writer: PipeWriter,
    next_id: AtomicU64,
    futures: Mutex<HashMap<u64, Py<PyAny>>>,
    watched_loop: Mutex<Option<Py<PyAny>>>,
}

impl Completions {
    pub fn new() -> std::io::Result<Completions> {
        let (reader, writer) = std::io::pipe()?;
        Ok(Completions {
            queue: Mutex::new(Vec::new()),
            signalled: AtomicBool::new(false),
            reader,
            writer,
            next_id: AtomicU64::new(1),
            futures: Mutex::new(HashMap::new()),
            watched_loop: Mutex::new(None),
        })
    }

    /// A new future on the running loop, registered under a fresh id. `drain` gives the callable
    /// the loop runs when the pipe is readable; it is asked for only when a new loop is seen.
    pub fn future<'py>(
        &self,
        py: Python<'py>,
        drain: impl FnOnce() -> PyResult<Bound<'py, PyAny>>,
    ) -> PyResult<(u64, Bound<'py, PyAny>)> {
        static GET_RUNNING_LOOP: GILOnceCell<Py<PyAny>> = GILOnceCell::new();
        let get_loop = GET_RUNNING_LOOP
            .get_or_try_init(py, || py.import("asyncio")?.getattr("get_running_loop").map(Bound::unbind))?;
        let event_loop = get_loop.call0(py)?.into_bound(py);
        {
            let mut watched = self.watched_loop.lock().unwrap();
            let same = watched.as_ref().is_some_and(|l| l.bind(py).is(&event_loop));
            if !same {
                if let Some(old) = watched.take() {
                    // The previous loop may be closed already; then it watches nothing anyway.
                    let _ = old.bind(py).call_method1("remove_reader", (self.reader.as_raw_fd(),));
                }
                event_loop.call_method1("add_reader", (self.reader.as_raw_fd(), drain()?))?;
                *watched = Some(event_loop.clone().unbind());
            }
        }
        let fut = event_loop.call_method0(intern!(py, "create_future"))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.futures.lock().unwrap().insert(id, fut.clone().unbind());
        Ok((id, fut))
    }

    /// Called from any thread when the operation `id` has finished.
    pub fn push(&self, id: u64, outcome: Outcome) {
        crate::probe::mark(crate::probe::Point::CompletionPushed, id);
        self.queue.lock().unwrap().push((id, outcome));
        if !self.signalled.swap(true, Ordering::AcqRel) {
            let _ = (&self.writer).write(&[1]);
        }
    }

    /// Runs on the event loop's thread: resolves every finished future.
    pub fn drain(&self, py: Python<'_>) -> PyResult<()> {
        crate::probe::mark(crate::probe::Point::CompletionDrain, 0);
        let mut byte = [0u8; 1];
        let _ = (&self.reader).read(&mut byte);
        self.signalled.store(false, Ordering::Release);
        let done = std::mem::take(&mut *self.queue.lock().unwrap());
        for (id, outcome) in done {
            let Some(fut) = self.futures.lock().unwrap().remove(&id) else { continue };
            let fut = fut.bind(py);
            if fut.call_method0(intern!(py, "done"))?.is_truthy()? {
                continue; // cancelled by its awaiter
            }
            match outcome(py) {
                Ok(value) => fut.call_method1(intern!(py, "set_result"), (value,))?,
                Err(e) => fut.call_method1(intern!(py, "set_exception"), (e.into_value(py),))?,
            };
        }
        Ok(())
    }
}
