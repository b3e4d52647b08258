//! Python bindings (`warren_raft`). Consensus runs on the extension's own "raft-core" runtime,
//! whose threads never take the GIL: awaitables are resolved on the event loop's thread through
//! `py_completion`, so a Python process that holds the GIL can delay its own results but never a
//! heartbeat or a vote.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use pyo3::IntoPyObjectExt;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::error::Error;
use crate::logging;
use crate::node::{MetricsView, Node};
use crate::proposer::Answer;
use crate::py_completion::{Completions, Outcome};
use crate::py_errors::{self, to_py};
use crate::state_machine::{ApplyReply, Work};
use crate::tls::{Fingerprint, TlsIdentity};
use crate::types::NodeInfo;

/// Threads of the consensus runtime (elections, heartbeats, replication, log I/O hand-off).
const CORE_THREADS: usize = 2;

fn core() -> &'static tokio::runtime::Runtime {
    static CORE: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    CORE.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(CORE_THREADS)
            .thread_name("raft-core")
            .enable_all()
            .build()
            .expect("cannot start the raft-core runtime")
    })
}

/// Runs `fut` on the core runtime and returns an asyncio future of its result.
fn awaitable<'py, F, T>(slf: &Bound<'py, PyRaftNode>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T, Error>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let py = slf.py();
    let completions = slf.get().completions.clone();
    let (id, pyfut) = completions.future(py, || slf.getattr("_drain_completions"))?;
    core().spawn(async move {
        let result = fut.await;
        let outcome: Outcome = Box::new(move |py| match result {
            Ok(v) => v.into_py_any(py),
            Err(e) => Err(to_py(e)),
        });
        completions.push(id, outcome);
    });
    Ok(pyfut)
}

#[pyclass(frozen, name = "Config", module = "warren_raft")]
#[derive(Clone)]
pub struct PyConfig {
    #[pyo3(get)]
    heartbeat_interval_ms: u64,
    #[pyo3(get)]
    election_timeout_min_ms: u64,
    #[pyo3(get)]
    election_timeout_max_ms: u64,
    #[pyo3(get)]
    snapshot_threshold: u64,
    #[pyo3(get)]
    max_in_snapshot_log_to_keep: u64,
    #[pyo3(get)]
    max_payload_entries: u64,
    #[pyo3(get)]
    max_entry_bytes: u64,
    #[pyo3(get)]
    max_frame_bytes: u64,
    #[pyo3(get)]
    rpc_timeout_ms: u64,
}

impl PyConfig {
    fn to_config(&self) -> Config {
        Config {
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            election_timeout_min_ms: self.election_timeout_min_ms,
            election_timeout_max_ms: self.election_timeout_max_ms,
            snapshot_threshold: self.snapshot_threshold,
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            max_payload_entries: self.max_payload_entries,
            max_entry_bytes: self.max_entry_bytes,
            max_frame_bytes: self.max_frame_bytes,
            rpc_timeout_ms: self.rpc_timeout_ms,
        }
    }
}

#[pymethods]
impl PyConfig {
    #[new]
    #[pyo3(signature = (*, heartbeat_interval_ms=None, election_timeout_min_ms=None, election_timeout_max_ms=None,
        snapshot_threshold=None, max_in_snapshot_log_to_keep=None, max_payload_entries=None, max_entry_bytes=None,
        max_frame_bytes=None, rpc_timeout_ms=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        heartbeat_interval_ms: Option<u64>,
        election_timeout_min_ms: Option<u64>,
        election_timeout_max_ms: Option<u64>,
        snapshot_threshold: Option<u64>,
        max_in_snapshot_log_to_keep: Option<u64>,
        max_payload_entries: Option<u64>,
        max_entry_bytes: Option<u64>,
        max_frame_bytes: Option<u64>,
        rpc_timeout_ms: Option<u64>,
    ) -> PyResult<Self> {
        let d = Config::default();
        let c = Config {
            heartbeat_interval_ms: heartbeat_interval_ms.unwrap_or(d.heartbeat_interval_ms),
            election_timeout_min_ms: election_timeout_min_ms.unwrap_or(d.election_timeout_min_ms),
            election_timeout_max_ms: election_timeout_max_ms.unwrap_or(d.election_timeout_max_ms),
            snapshot_threshold: snapshot_threshold.unwrap_or(d.snapshot_threshold),
            max_in_snapshot_log_to_keep: max_in_snapshot_log_to_keep.unwrap_or(d.max_in_snapshot_log_to_keep),
            max_payload_entries: max_payload_entries.unwrap_or(d.max_payload_entries),
            max_entry_bytes: max_entry_bytes.unwrap_or(d.max_entry_bytes),
            max_frame_bytes: max_frame_bytes.unwrap_or(d.max_frame_bytes),
            rpc_timeout_ms: rpc_timeout_ms.unwrap_or(d.rpc_timeout_ms),
        };
        c.validate().map_err(to_py)?;
        Ok(PyConfig {
            heartbeat_interval_ms: c.heartbeat_interval_ms,
            election_timeout_min_ms: c.election_timeout_min_ms,
            election_timeout_max_ms: c.election_timeout_max_ms,
            snapshot_threshold: c.snapshot_threshold,
            max_in_snapshot_log_to_keep: c.max_in_snapshot_log_to_keep,
            max_payload_entries: c.max_payload_entries,
            max_entry_bytes: c.max_entry_bytes,
            max_frame_bytes: c.max_frame_bytes,
            rpc_timeout_ms: c.rpc_timeout_ms,
        })
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.to_config()).replacen("Config", "warren_raft.Config", 1)
    }
}

/// A node's TLS identity, checked on construction; see `TlsConfig` in warren_raft.pyi.
#[pyclass(frozen, name = "TlsConfig", module = "warren_raft")]
pub struct PyTlsConfig {
    identity: TlsIdentity,
}

#[pymethods]
impl PyTlsConfig {
    #[new]
    #[pyo3(signature = (*, ca_pem, cert_pem, key_pem, peer_name))]
    fn new(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8], peer_name: &str) -> PyResult<Self> {
        Ok(PyTlsConfig { identity: TlsIdentity::from_pem(ca_pem, cert_pem, key_pem, peer_name).map_err(to_py)? })
    }

    #[getter]
    fn peer_name(&self) -> &str {
        self.identity.peer_name()
    }

    #[getter]
    fn fingerprint<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.identity.fingerprint())
    }

    fn __repr__(&self) -> String {
        let fp: String = self.identity.fingerprint().iter().map(|b| format!("{b:02x}")).collect();
        format!("<warren_raft.TlsConfig peer_name={:?} cert_sha256={fp}>", self.identity.peer_name())
    }
}

/// Where a work item's outcome goes.
trait ReplyTo<T> {
    fn reply(self, value: Result<T, String>);
}

impl<T> ReplyTo<T> for oneshot::Sender<Result<T, String>> {
    fn reply(self, value: Result<T, String>) {
        let _ = self.send(value);
    }
}

impl ReplyTo<Vec<Vec<u8>>> for ApplyReply {
    fn reply(self, value: Result<Vec<Vec<u8>>, String>) {
        let _ = self.send(value);
    }
}

/// A reply slot that can be used once.
struct Once<S>(Mutex<Option<S>>);

impl<S> Once<S> {
    fn new(tx: S) -> Self {
        Once(Mutex::new(Some(tx)))
    }
    fn send<T>(&self, value: Result<T, String>) -> PyResult<()>
    where
        S: ReplyTo<T>,
    {
        let tx = self.0.lock().unwrap().take();
        match tx {
            Some(tx) => {
                tx.reply(value);
                Ok(())
            }
            None => Err(pyo3::exceptions::PyRuntimeError::new_err("this work item was already completed")),
        }
    }
}

type OnceReply<T> = Once<oneshot::Sender<Result<T, String>>>;

#[pyclass(frozen, name = "ApplyBatch", module = "warren_raft")]
pub struct PyApplyBatch {
    #[pyo3(get)]
    entries: Py<PyList>,
    count: usize,
    reply: Once<ApplyReply>,
}

#[pymethods]
impl PyApplyBatch {
    #[getter]
    fn kind(&self) -> &'static str {
        "apply"
    }
    fn complete(&self, responses: Vec<Vec<u8>>) -> PyResult<()> {
        if responses.len() != self.count {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "expected {} responses, got {}",
                self.count,
                responses.len()
            )));
        }
        self.reply.send(Ok(responses))
    }
    fn fail(&self, message: String) -> PyResult<()> {
        self.reply.send(Err(message))
    }
    fn __repr__(&self) -> String {
        format!("<ApplyBatch of {} entries>", self.count)
    }
}

#[pyclass(frozen, name = "BuildSnapshot", module = "warren_raft")]
pub struct PyBuildSnapshot {
    #[pyo3(get)]
    path: String,
    #[pyo3(get)]
    last_index: Option<u64>,
    reply: OnceReply<()>,
}

#[pymethods]
impl PyBuildSnapshot {
    #[getter]
    fn kind(&self) -> &'static str {
        "snapshot"
    }
    fn complete(&self) -> PyResult<()> {
        self.reply.send(Ok(()))
    }
    fn fail(&self, message: String) -> PyResult<()> {
        self.reply.send(Err(message))
    }
}

#[pyclass(frozen, name = "RestoreSnapshot", module = "warren_raft")]
pub struct PyRestoreSnapshot {
    #[pyo3(get)]
    path: Option<String>,
    #[pyo3(get)]
    last_index: Option<u64>,
    reply: OnceReply<()>,
}

#[pymethods]
impl PyRestoreSnapshot {
    #[getter]
    fn kind(&self) -> &'static str {
        "restore"
    }
    fn complete(&self) -> PyResult<()> {
        self.reply.send(Ok(()))
    }
    fn fail(&self, message: String) -> PyResult<()> {
        self.reply.send(Err(message))
    }
}

fn path_str(p: PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

/// A work item on its way to Python (None: the queue has ended).
struct WorkOut(Option<Work>);

impl<'py> IntoPyObject<'py> for WorkOut {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self.0 {
            None => py.None().into_bound(py),
            Some(Work::Apply { entries, reply }) => {
                let count = entries.len();
                crate::probe::mark(crate::probe::Point::WorkToPython, entries.last().map_or(0, |e| e.0));
                let items = entries
                    .into_iter()
                    .map(|(index, term, data)| (index, term, PyBytes::new(py, &data)).into_pyobject(py))
                    .collect::<PyResult<Vec<Bound<'py, PyTuple>>>>()?;
                let list = PyList::new(py, items)?.unbind();
                Bound::new(py, PyApplyBatch { entries: list, count, reply: Once::new(reply) })?.into_any()
            }
            Some(Work::BuildSnapshot { path, last_index, reply }) => {
                Bound::new(py, PyBuildSnapshot { path: path_str(path), last_index, reply: Once::new(reply) })?
                    .into_any()
            }
            Some(Work::Restore { path, last_index, reply }) => {
                Bound::new(py, PyRestoreSnapshot { path: path.map(path_str), last_index, reply: Once::new(reply) })?
                    .into_any()
            }
        })
    }
}

#[pyclass(frozen, name = "RaftNode", module = "warren_raft")]
pub struct PyRaftNode {
    node: Arc<Node>,
    meta: String,
    completions: Arc<Completions>,
}

#[pymethods]
impl PyRaftNode {
    #[staticmethod]
    #[pyo3(signature = (data_dir, node_id, listen_addr, *, advertise_addr=None, meta=String::new(), config=None,
        tls=None))]
    #[allow(clippy::too_many_arguments)]
    fn open(
        py: Python<'_>,
        data_dir: PathBuf,
        node_id: u64,
        listen_addr: String,
        advertise_addr: Option<String>,
        meta: String,
        config: Option<PyConfig>,
        tls: Option<PyRef<'_, PyTlsConfig>>,
    ) -> PyResult<Self> {
        let config = config.map(|c| c.to_config()).unwrap_or_default();
        let tls = tls.map(|t| t.identity.clone());
        let node = py
            .allow_threads(|| {
                core().block_on(Node::open(&data_dir, node_id, &listen_addr, advertise_addr.as_deref(), config, tls))
            })
            .map_err(to_py)?;
        let completions =
            Completions::new().map_err(|e| to_py(Error::Storage(format!("cannot create the completion pipe: {e}"))))?;
        Ok(PyRaftNode { node, meta, completions: Arc::new(completions) })
    }

    #[getter]
    fn node_id(&self) -> u64 {
        self.node.id()
    }

    #[getter]
    fn addr(&self) -> String {
        self.node.addr().to_string()
    }

    #[pyo3(signature = (members=None))]
    fn bootstrap<'py>(
        slf: &Bound<'py, Self>,
        members: Option<BTreeMap<u64, (String, String)>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let node = slf.get().node.clone();
        let meta = slf.get().meta.clone();
        let members =
            members.unwrap_or_default().into_iter().map(|(id, (addr, meta))| (id, NodeInfo { addr, meta })).collect();
        awaitable(slf, async move { node.bootstrap(members, &meta).await })
    }

    fn is_initialized<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let node = slf.get().node.clone();
        awaitable(slf, async move { node.is_initialized().await })
    }

    fn propose<'py>(slf: &Bound<'py, Self>, data: &Bound<'py, PyBytes>) -> PyResult<Bound<'py, PyAny>> {
        crate::probe::mark(crate::probe::Point::PyPropose, 0);
        // No task per proposal: the proposal goes straight into the proposer's queue, and the apply
        // of its entry answers it (on this thread, when this process's state machine applies it).
        let py = slf.py();
        let node = slf.get().node.clone();
        let completions = slf.get().completions.clone();
        let (id, pyfut) = completions.future(py, || slf.getattr("_drain_completions"))?;
        let answer: Answer = Box::new(move |outcome| {
            completions.push(
                id,
                Box::new(move |py| match outcome {
                    Ok((index, response)) => (index, ResponseBytes(response)).into_py_any(py),
                    Err(e) => Err(to_py(e)),
                }),
            )
        });
        if let Some((data, answer)) = node.submit(data.as_bytes().to_vec(), answer) {
            core().spawn(async move { node.propose_with(data, answer).await });
        }
        Ok(pyfut)
    }

    fn _drain_completions(&self, py: Python<'_>) -> PyResult<()> {
        self.completions.drain(py)
    }

    fn read_barrier<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let node = slf.get().node.clone();
        awaitable(slf, async move { node.read_barrier().await })
    }

    #[pyo3(signature = (node_id, addr, meta=String::new(), blocking=true))]
    fn add_learner<'py>(
        slf: &Bound<'py, Self>,
        node_id: u64,
        addr: String,
        meta: String,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let node = slf.get().node.clone();
        awaitable(slf, async move { node.add_learner(node_id, NodeInfo { addr, meta }, blocking).await })
    }

    #[pyo3(signature = (voters, retain=false))]
    fn change_membership<'py>(slf: &Bound<'py, Self>, voters: Vec<u64>, retain: bool) -> PyResult<Bound<'py, PyAny>> {
        let node = slf.get().node.clone();
        let voters: BTreeSet<u64> = voters.into_iter().collect();
        awaitable(slf, async move { node.change_membership(voters, retain).await })
    }

    #[pyo3(signature = (node_id, addr, meta=String::new()))]
    fn add_voter<'py>(slf: &Bound<'py, Self>, node_id: u64, addr: String, meta: String) -> PyResult<Bound<'py, PyAny>> {
        let node = slf.get().node.clone();
        awaitable(slf, async move { node.add_voter(node_id, NodeInfo { addr, meta }).await })
    }

    fn remove_node<'py>(slf: &Bound<'py, Self>, node_id: u64) -> PyResult<Bound<'py, PyAny>> {
        let node = slf.get().node.clone();
        awaitable(slf, async move { node.remove_node(node_id).await })
    }

    #[pyo3(signature = (to=None, timeout_s=3.0))]
    fn transfer_leadership<'py>(
        slf: &Bound<'py, Self>,
        to: Option<u64>,
        timeout_s: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        if !(timeout_s.is_finite() && timeout_s > 0.0) {
            return Err(pyo3::exceptions::PyValueError::new_err("timeout_s must be a positive number"));
        }
        let node = slf.get().node.clone();
        awaitable(slf, async move { node.transfer_leadership(to, Duration::from_secs_f64(timeout_s)).await })
    }

    fn trigger_snapshot<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let node = slf.get().node.clone();
        awaitable(slf, async move { node.trigger_snapshot().await })
    }

    fn next_work<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let node = slf.get().node.clone();
        awaitable(slf, async move {
            match node.next_work().await {
                // The queue ended because consensus stopped on a fault: say why, not just "done".
                None => match node.fatal_error() {
                    Some(why) => Err(Error::Storage(why)),
                    None => Ok(WorkOut(None)),
                },
                work => Ok(WorkOut(work)),
            }
        })
    }

    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        metrics_dict(py, self.node.metrics())
    }

    #[pyo3(signature = (role, term, leader_id))]
    fn wait_role_change<'py>(
        slf: &Bound<'py, Self>,
        role: String,
        term: u64,
        leader_id: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let node = slf.get().node.clone();
        awaitable(slf, async move { Ok(MetricsOut(node.wait_role_change(&role, term, leader_id).await)) })
    }

    fn update_tls(&self, tls: PyRef<'_, PyTlsConfig>) -> PyResult<()> {
        self.node.update_tls(&tls.identity).map_err(to_py)
    }

    fn set_revoked(&self, fingerprints: Vec<Vec<u8>>) -> PyResult<()> {
        let fps = fingerprints
            .into_iter()
            .map(|f| {
                Fingerprint::try_from(f.as_slice()).map_err(|_| {
                    pyo3::exceptions::PyValueError::new_err(format!(
                        "a fingerprint is the 32-byte SHA-256 of a certificate's DER, got {} bytes",
                        f.len()
                    ))
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        self.node.set_revoked(fps).map_err(to_py)
    }

    fn shutdown<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let node = slf.get().node.clone();
        awaitable(slf, async move { node.shutdown().await })
    }

    fn __repr__(&self) -> String {
        format!("<RaftNode {} at {}>", self.node.id(), self.node.addr())
    }
}

/// The `Metrics` dict of warren_raft.pyi.
fn metrics_dict(py: Python<'_>, m: MetricsView) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", m.id)?;
    d.set_item("role", m.role)?;
    d.set_item("term", m.term)?;
    d.set_item("leader_id", m.leader_id)?;
    d.set_item("leader_addr", m.leader_addr)?;
    d.set_item("commit_index", m.commit_index)?;
    d.set_item("applied_index", m.applied_index)?;
    d.set_item("last_log_index", m.last_log_index)?;
    d.set_item("snapshot_index", m.snapshot_index)?;
    d.set_item("purged_index", m.purged_index)?;
    d.set_item("voters", m.voters)?;
    d.set_item("learners", m.learners)?;
    let nodes = PyDict::new(py);
    for (id, info) in m.nodes {
        let n = PyDict::new(py);
        n.set_item("addr", info.addr)?;
        n.set_item("meta", info.meta)?;
        nodes.set_item(id, n)?;
    }
    d.set_item("nodes", nodes)?;
    let peers = PyDict::new(py);
    for (id, (match_index, last_contact)) in m.peers {
        let p = PyDict::new(py);
        p.set_item("match_index", match_index)?;
        p.set_item("last_contact_s", last_contact)?;
        peers.set_item(id, p)?;
    }
    d.set_item("peers", peers)?;
    d.set_item("last_leader_contact_s", m.last_leader_contact_s)?;
    d.set_item("millis_since_quorum_ack", m.millis_since_quorum_ack)?;
    d.set_item("elections_total", m.elections_total)?;
    d.set_item("log_records_dropped", m.log_records_dropped)?;
    d.set_item("tls", m.tls)?;
    d.set_item("tls_handshake_failures", m.tls_handshake_failures)?;
    d.set_item("fatal_error", m.fatal_error)?;
    Ok(d)
}

/// Metrics on their way to Python, built on the event loop's thread.
struct MetricsOut(MetricsView);

impl<'py> IntoPyObject<'py> for MetricsOut {
    type Target = PyDict;
    type Output = Bound<'py, PyDict>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        metrics_dict(py, self.0)
    }
}

/// A state-machine response, handed to Python as `bytes`.
struct ResponseBytes(Vec<u8>);

impl<'py> IntoPyObject<'py> for ResponseBytes {
    type Target = PyBytes;
    type Output = Bound<'py, PyBytes>;
    type Error = std::convert::Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Bound<'py, PyBytes>, Self::Error> {
        Ok(PyBytes::new(py, &self.0))
    }
}

static FORWARDER: Mutex<Option<std::thread::JoinHandle<()>>> = Mutex::new(None);
static FORWARDER_STOP: AtomicBool = AtomicBool::new(false);

fn forward(rec: logging::Record) {
    Python::with_gil(|py| {
        if FORWARDER_STOP.load(Ordering::Acquire) {
            return;
        }
        let name = if rec.target.starts_with("warren_raft") {
            rec.target.replace("::", ".")
        } else {
            format!("warren_raft.{}", rec.target.split("::").next().unwrap_or("core"))
        };
        let levelno = match rec.level {
            tracing::Level::ERROR => 40,
            tracing::Level::WARN => 30,
            tracing::Level::INFO => 20,
            _ => 10,
        };
        let _ = py
            .import("logging")
            .and_then(|l| l.call_method1("getLogger", (name,)))
            .and_then(|lg| lg.call_method1("log", (levelno, rec.message)));
    });
}

/// Registered with `atexit`: the forwarder thread must be gone before the interpreter finalizes,
/// or its next `with_gil` would touch a dying interpreter.
#[pyfunction]
fn _stop_log_forwarding(py: Python<'_>) {
    FORWARDER_STOP.store(true, Ordering::Release);
    logging::wake();
    let handle = FORWARDER.lock().unwrap().take();
    if let Some(h) = handle {
        py.allow_threads(|| {
            let _ = h.join();
        });
    }
}

/// Forwards the core's log records at `level` and above to Python's `logging`.
#[pyfunction]
#[pyo3(signature = (level="info"))]
fn init_logging(py: Python<'_>, level: &str) -> PyResult<()> {
    let lvl = logging::parse_level(level).ok_or_else(|| {
        py_errors::ConfigError::new_err(format!("unknown log level {level:?}; use error, warn, info, debug or trace"))
    })?;
    if let Some(rx) = logging::install(lvl) {
        let handle = std::thread::Builder::new()
            .name("raft-log-forward".into())
            .spawn(move || {
                while let Ok(rec) = rx.recv() {
                    if FORWARDER_STOP.load(Ordering::Acquire) {
                        return;
                    }
                    if !rec.target.is_empty() {
                        forward(rec);
                    }
                }
            })
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
        *FORWARDER.lock().unwrap() = Some(handle);
        let stop = wrap_pyfunction!(_stop_log_forwarding, py)?;
        py.import("atexit")?.call_method1("register", (stop,))?;
    }
    Ok(())
}

#[pymodule]
fn warren_raft(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("OPENRAFT_VERSION", crate::OPENRAFT_VERSION)?;
    py_errors::register(m)?;
    m.add_class::<PyConfig>()?;
    m.add_class::<PyTlsConfig>()?;
    m.add_class::<PyRaftNode>()?;
    m.add_class::<PyApplyBatch>()?;
    m.add_class::<PyBuildSnapshot>()?;
    m.add_class::<PyRestoreSnapshot>()?;
    m.add_function(wrap_pyfunction!(init_logging, m)?)?;
    Ok(())
}
