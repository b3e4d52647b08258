//! The openraft type configuration: what a log entry carries, how a node is addressed.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::proposer::Waiting;

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
///
/// The second field never leaves the process (it is not serialized: on the wire and on disk a
/// Payload is its commands alone, as it always was): on the leader that proposed the entry, it is
/// where the proposers wait, so that the apply of the entry answers them at once
/// ([`crate::proposer`]).
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Payload(pub Vec<serde_bytes::ByteBuf>, #[serde(skip)] pub Waiting);

impl From<Vec<serde_bytes::ByteBuf>> for Payload {
    fn from(commands: Vec<serde_bytes::ByteBuf>) -> Self {
        Payload(commands, Waiting::default())
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Payload {}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a Payload was before it carried its waiting proposers: the commands alone.
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct CommandsOnly(Vec<serde_bytes::ByteBuf>);

    #[test]
    fn the_waiting_proposers_never_reach_the_wire_or_the_disk() {
        let commands = vec![serde_bytes::ByteBuf::from(b"a".to_vec()), serde_bytes::ByteBuf::from(vec![0u8; 300])];
        let bytes = postcard::to_allocvec(&CommandsOnly(commands.clone())).unwrap();
        let (tx, _rx) = std::sync::mpsc::channel::<u8>();
        let answer: crate::proposer::Answer = Box::new(move |_| {
            let _ = tx.send(1);
        });
        let waiting = crate::proposer::tests_support::waiting(vec![answer]);
        assert_eq!(postcard::to_allocvec(&Payload(commands.clone(), waiting)).unwrap(), bytes);
        let back: Payload = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, Payload::from(commands));
        assert!(!back.1.is_some(), "a decoded entry has nobody waiting for it");
    }
}
