//! The crate's one error type. The Python bindings map each variant to an exception class.

use crate::types::NodeId;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),

    #[error("not the leader{}", leader_hint(*.leader_id, .leader_addr))]
    NotLeader { leader_id: Option<NodeId>, leader_addr: Option<String> },

    #[error("storage error: {0}")]
    Storage(String),

    #[error("corrupt log: {0}")]
    CorruptLog(String),

    #[error("membership change refused: {0}")]
    Membership(String),

    #[error("timed out: {0}")]
    Timeout(String),

    #[error("node is shut down{}", if .0.is_empty() { String::new() } else { format!(": {}", .0) })]
    Shutdown(String),

    #[error("{0}")]
    Invalid(String),
}

fn leader_hint(id: Option<NodeId>, addr: &Option<String>) -> String {
    match (id, addr) {
        (Some(id), Some(addr)) => format!("; the leader is node {id} at {addr}"),
        (Some(id), None) => format!("; the leader is node {id}"),
        _ => "; no leader is known yet, retry shortly".to_string(),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<openraft::error::Fatal<NodeId>> for Error {
    fn from(e: openraft::error::Fatal<NodeId>) -> Self {
        match e {
            openraft::error::Fatal::StorageError(s) => Error::Storage(s.to_string()),
            other => Error::Shutdown(other.to_string()),
        }
    }
}

impl From<openraft::error::ForwardToLeader<NodeId, crate::types::NodeInfo>> for Error {
    fn from(f: openraft::error::ForwardToLeader<NodeId, crate::types::NodeInfo>) -> Self {
        Error::NotLeader { leader_id: f.leader_id, leader_addr: f.leader_node.map(|n| n.addr) }
    }
}

impl From<openraft::error::RaftError<NodeId, openraft::error::ClientWriteError<NodeId, crate::types::NodeInfo>>>
    for Error
{
    fn from(
        e: openraft::error::RaftError<NodeId, openraft::error::ClientWriteError<NodeId, crate::types::NodeInfo>>,
    ) -> Self {
        use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => f.into(),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(p))) => {
                Error::Membership(format!("another membership change is in progress ({p})"))
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => Error::Membership(c.to_string()),
            RaftError::Fatal(f) => f.into(),
        }
    }
}
