//! The module's exception classes and the one place Rust errors become Python exceptions.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use crate::error::Error;

create_exception!(warren_raft, RaftError, PyException, "Root of every error raised by warren_raft.");
create_exception!(warren_raft, ConfigError, RaftError, "A configuration value or combination is invalid.");
create_exception!(warren_raft, NotLeaderError, RaftError, "This node is not the leader; retry on leader_addr.");
create_exception!(warren_raft, StorageError, RaftError, "The durable log or snapshot store failed.");
create_exception!(warren_raft, CorruptLogError, StorageError, "The on-disk log failed validation at open.");
create_exception!(warren_raft, MembershipError, RaftError, "A membership change was refused.");
create_exception!(warren_raft, RaftTimeoutError, RaftError, "The operation did not complete within its deadline.");
create_exception!(warren_raft, ShutdownError, RaftError, "The node has been shut down.");

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("RaftError", py.get_type::<RaftError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    let not_leader = py.get_type::<NotLeaderError>();
    not_leader.setattr("leader_id", py.None())?;
    not_leader.setattr("leader_addr", py.None())?;
    m.add("NotLeaderError", not_leader)?;
    m.add("StorageError", py.get_type::<StorageError>())?;
    m.add("CorruptLogError", py.get_type::<CorruptLogError>())?;
    m.add("MembershipError", py.get_type::<MembershipError>())?;
    m.add("RaftTimeoutError", py.get_type::<RaftTimeoutError>())?;
    m.add("ShutdownError", py.get_type::<ShutdownError>())?;
    Ok(())
}

/// Converts a crate error into the matching exception (`ValueError` for plain bad arguments).
pub fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::Config(_) => ConfigError::new_err(msg),
        Error::NotLeader { leader_id, leader_addr } => Python::with_gil(|py| {
            let err = NotLeaderError::new_err(msg);
            let value = err.value(py);
            let _ = value.setattr("leader_id", leader_id);
            let _ = value.setattr("leader_addr", leader_addr);
            err
        }),
        Error::Storage(_) => StorageError::new_err(msg),
        Error::CorruptLog(_) => CorruptLogError::new_err(msg),
        Error::Membership(_) => MembershipError::new_err(msg),
        Error::Timeout(_) => RaftTimeoutError::new_err(msg),
        Error::Shutdown(_) => ShutdownError::new_err(msg),
        Error::Invalid(_) => pyo3::exceptions::PyValueError::new_err(msg),
    }
}
