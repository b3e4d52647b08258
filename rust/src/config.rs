//! Every tunable of a node, its default, its unit, and the rules that tie them together.

use std::time::Duration;

use crate::error::Error;

/// Timers and limits of one node. Durations are milliseconds at this edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How often the leader sends heartbeats (ms). Must be well below the election timeout.
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomised election timeout (ms).
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomised election timeout (ms). openraft also uses it as the leader
    /// lease: a follower that heard from a leader this recently refuses to vote for anyone else.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and compact the log) after this many entries since the last one.
    pub snapshot_threshold: u64,
    /// Entries kept in the log behind the latest snapshot, so a slightly lagging follower catches
    /// up from the log rather than needing a whole snapshot.
    pub max_in_snapshot_log_to_keep: u64,
    /// Most entries sent in one AppendEntries request.
    pub max_payload_entries: u64,
    /// Largest payload `propose` accepts (bytes).
    pub max_entry_bytes: u64,
    /// Largest frame the transport sends or accepts (bytes), at most 4 GiB - 1. A peer announcing
    /// more is cut off. Also what one connection holds at most: one inbound frame, and one frame's
    /// worth of outbound bytes queued (network.rs).
    pub max_frame_bytes: u64,
    /// Deadline of one RPC to a peer (ms), and of the TCP connect to it.
    pub rpc_timeout_ms: u64,
}

/// Bytes a frame needs beyond the entry payloads it carries (headers, log ids, membership).
const FRAME_OVERHEAD_BYTES: u64 = 64 * 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            snapshot_threshold: 10_000,
            max_in_snapshot_log_to_keep: 1_000,
            max_payload_entries: 64,
            max_entry_bytes: 1024 * 1024,
            max_frame_bytes: 80 * 1024 * 1024,
            rpc_timeout_ms: 1_000,
        }
    }
}

impl Config {
    /// Rejects impossible values and combinations, naming the field and the rule.
    pub fn validate(&self) -> Result<(), Error> {
        let positive = [
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("election_timeout_min_ms", self.election_timeout_min_ms),
            ("election_timeout_max_ms", self.election_timeout_max_ms),
            ("snapshot_threshold", self.snapshot_threshold),
            ("max_payload_entries", self.max_payload_entries),
            ("max_entry_bytes", self.max_entry_bytes),
            ("max_frame_bytes", self.max_frame_bytes),
            ("rpc_timeout_ms", self.rpc_timeout_ms),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::Config(format!("{name} must be greater than 0")));
            }
        }
        if self.heartbeat_interval_ms >= self.election_timeout_min_ms {
            return Err(Error::Config(format!(
                "heartbeat_interval_ms ({}) must be less than election_timeout_min_ms ({}), \
                 or followers start elections between heartbeats",
                self.heartbeat_interval_ms, self.election_timeout_min_ms
            )));
        }
        if self.election_timeout_min_ms >= self.election_timeout_max_ms {
            return Err(Error::Config(format!(
                "election_timeout_min_ms ({}) must be less than election_timeout_max_ms ({})",
                self.election_timeout_min_ms, self.election_timeout_max_ms
            )));
        }
        // The frame's length is 4 bytes on the wire, and a peer's writer queue holds one largest
        // frame's bytes as semaphore permits (network.rs), at most MAX_PERMITS (about 512 MiB on
        // 32-bit targets such as armv7).
        let limit = u64::from(u32::MAX)
            .min((tokio::sync::Semaphore::MAX_PERMITS as u64).saturating_sub(crate::codec::HEADER_BYTES as u64));
        if self.max_frame_bytes > limit {
            return Err(Error::Config(format!(
                "max_frame_bytes ({}) must be at most {limit} (a frame's length is 4 bytes on the wire, \
                 and a peer's send queue holds one largest frame)",
                self.max_frame_bytes
            )));
        }
        if self.max_entry_bytes + FRAME_OVERHEAD_BYTES > self.max_frame_bytes {
            return Err(Error::Config(format!(
                "max_frame_bytes ({}) must exceed max_entry_bytes ({}) by at least {} bytes, \
                 or a single entry could never be replicated",
                self.max_frame_bytes, self.max_entry_bytes, FRAME_OVERHEAD_BYTES
            )));
        }
        Ok(())
    }

    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.rpc_timeout_ms)
    }

    /// The openraft configuration these values stand for.
    pub(crate) fn to_openraft(&self) -> Result<openraft::Config, Error> {
        self.validate()?;
        let cfg = openraft::Config {
            cluster_name: "warren-raft".to_string(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: self.rpc_timeout_ms.max(200),
            max_payload_entries: self.max_payload_entries,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_threshold),
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            // A snapshot chunk must fit in one frame with room to spare.
            snapshot_max_chunk_size: (self.max_frame_bytes / 2).min(4 * 1024 * 1024),
            ..Default::default()
        };
        cfg.validate().map_err(|e| Error::Config(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        Config::default().validate().unwrap();
        Config::default().to_openraft().unwrap();
    }

    #[test]
    fn rejects_heartbeat_not_below_election() {
        let c = Config { heartbeat_interval_ms: 150, ..Config::default() };
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("heartbeat_interval_ms"), "{msg}");
    }

    #[test]
    fn rejects_inverted_election_range_and_zero() {
        let c = Config { election_timeout_min_ms: 300, election_timeout_max_ms: 300, ..Config::default() };
        assert!(c.validate().is_err());
        let c = Config { rpc_timeout_ms: 0, ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().contains("rpc_timeout_ms"));
    }

    #[test]
    fn rejects_frame_larger_than_its_length_field() {
        let c = Config { max_frame_bytes: 1 << 32, ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().contains("4 bytes on the wire"));
    }

    #[test]
    fn rejects_frame_smaller_than_entry() {
        let c = Config { max_entry_bytes: 10 << 20, max_frame_bytes: 10 << 20, ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().contains("max_frame_bytes"));
    }
}
