//! The openraft type configuration: what a log entry carries, how a node is addressed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How to reach a member: its Raft address plus an opaque string the application may use
/// (Warren puts the manager's API address there).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeInfo {
    pub addr: String,
    pub meta: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)
    }
}

/// Opaque application commands carried by one log entry (or the state machine's responses to
/// them, one per command). Proposals that arrive together share an entry: openraft 0.9 flushes
/// the log once per client write, so batching them is what makes one fsync serve many.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload(pub Vec<serde_bytes::ByteBuf>);

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Payloads may hold secrets; logs only ever see their size.
        let bytes: usize = self.0.iter().map(|b| b.len()).sum();
        write!(f, "Payload({} commands, {bytes} bytes)", self.0.len())
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

openraft::declare_raft_types!(
    /// Type configuration of a warren-raft node.
    pub TypeConfig:
        D = Payload,
        R = Payload,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeInfo>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeInfo>;
pub type Raft = openraft::Raft<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
