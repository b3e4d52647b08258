//! Seed inputs for the fuzz targets, made by the real encoders ([`super::seeds`]);
//! `cargo run -p warren-raft --example fuzz_seeds` writes them into rust/fuzz/corpus.

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{CommittedLeaderId, EntryPayload, Membership};

use super::base_log;
use crate::codec::{self, Message, Request};
use crate::log_store;
use crate::types::{Entry, LogId, NodeInfo, Payload, SnapshotMeta, StoredMembership, Vote};

pub(super) fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

pub(super) fn membership() -> Membership<u64, NodeInfo> {
    let nodes = (1..=3)
        .map(|id| (id, NodeInfo { addr: format!("10.0.0.{id}:7000"), meta: format!("http://10.0.0.{id}:8080") }))
        .collect::<std::collections::BTreeMap<_, _>>();
    Membership::new(vec![[1, 2, 3].into_iter().collect()], nodes)
}

pub(super) fn sample_entries() -> Vec<Entry> {
    let command = |s: &str| serde_bytes::ByteBuf::from(s.as_bytes().to_vec());
    (1..=8)
        .map(|i| Entry {
            log_id: log_id(if i <= 4 { 1 } else { 2 }, i),
            payload: match i {
                1 | 5 => EntryPayload::Blank,
                2 => EntryPayload::Membership(membership()),
                _ => EntryPayload::Normal(Payload::from(vec![command(&format!("set k{i}")), command("x")])),
            },
        })
        .collect()
}

pub(super) fn sample_meta(id: &str) -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: Some(log_id(2, 6)),
        last_membership: StoredMembership::new(Some(log_id(1, 2)), membership()),
        snapshot_id: id.to_string(),
    }
}

pub(super) fn frame_of(body: Request) -> Vec<u8> {
    codec::encode(&Message::Request { id: 1, body }).unwrap()
}

pub(super) fn chunk(id: &str, offset: u64, data: &[u8], done: bool) -> Vec<u8> {
    frame_of(Request::Snapshot(InstallSnapshotRequest {
        vote: Vote::new_committed(2, 1),
        meta: sample_meta(id),
        offset,
        data: data.to_vec(),
        done,
    }))
}

/// Small inputs for `target`, made by the real encoders, named for what they hold: valid ones
/// (`valid-*`, which the target accepts whole), odd ones it accepts too (`accepted-*`), and
/// damaged ones, which it refuses.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    match target {
        "frame" => {
            let append = frame_of(Request::Append(AppendEntriesRequest {
                vote: Vote::new_committed(2, 1),
                prev_log_id: Some(log_id(1, 0)),
                entries: sample_entries(),
                leader_commit: Some(log_id(2, 5)),
            }));
            let vote = frame_of(Request::Vote(VoteRequest::new(Vote::new(3, 2), Some(log_id(2, 8)))));
            let response = codec::encode(&Message::Response {
                id: 9,
                body: codec::Response::Vote(Ok(openraft::raft::VoteResponse::new(
                    Vote::new(3, 2),
                    Some(log_id(2, 8)),
                    true,
                ))),
            })
            .unwrap();
            let answer = codec::encode(&Message::Response {
                id: 10,
                body: codec::Response::Append(Ok(openraft::raft::AppendEntriesResponse::Success)),
            })
            .unwrap();
            let snapshot = chunk("2-6-0", 0, b"SQLite format 3\0", true);
            out.push(("valid-append".into(), append.clone()));
            out.push(("valid-vote".into(), vote.clone()));
            out.push(("valid-timeout-now".into(), frame_of(Request::TimeoutNow)));
            out.push(("valid-vote-response".into(), response));
            out.push(("valid-append-response".into(), answer));
            out.push(("valid-snapshot-chunk".into(), snapshot.clone()));
            out.push(("valid-stream".into(), [vote.clone(), append.clone(), snapshot].concat()));
            out.push(("truncated-append".into(), append[..append.len() / 2].to_vec()));
            out.push(("oversized-length".into(), vec![0xff, 0xff, 0xff, 0xff, 0, 0]));
            out.push(("bad-snapshot-id".into(), chunk("../../etc/passwd", 0, b"x", true)));
            let mut flipped = vote;
            flipped[4] = 0x7f; // an enum tag that does not exist
            out.push(("bad-tag".into(), flipped));
        }
        "log_entry" => {
            for (i, e) in sample_entries().iter().enumerate().take(3) {
                out.push((format!("valid-record-{i}"), [&[0u8][..], &log_store::encode_sealed(e)].concat()));
                out.push((format!("valid-body-{i}"), [&[1u8][..], &postcard::to_allocvec(e).unwrap()].concat()));
            }
            out.push(("valid-vote".into(), [&[0u8][..], &log_store::encode_sealed(&Vote::new(3, 2))].concat()));
            out.push(("valid-file".into(), vec![2]));
            let mut bad_crc = log_store::encode_sealed(&sample_entries()[3]);
            bad_crc[0] ^= 1;
            out.push(("bad-checksum".into(), [&[0u8][..], &bad_crc].concat()));
            let body = postcard::to_allocvec(&sample_entries()[3]).unwrap();
            out.push(("truncated-body".into(), [&[1u8][..], &body[..body.len() - 3]].concat()));
            let len = base_log().len() as u32;
            out.push(("truncated-file".into(), [&[2u8, 1][..], &(len / 2).to_le_bytes()].concat()));
            // Overwrite the first stored entry's body (found by its command text) and the header.
            let at = find(base_log(), b"set k3").unwrap_or(0) as u32;
            out.push(("damaged-entry".into(), [&[2u8, 0][..], &at.to_le_bytes(), &[3], b"SET"].concat()));
            out.push(("damaged-header".into(), [&[2u8, 0][..], &0u32.to_le_bytes(), &[4], &[0xff; 4]].concat()));
        }
        "snapshot_install" => {
            let whole = chunk("2-6-0", 0, b"SQLite format 3\0whole", true);
            let first = chunk("2-6-1", 0, b"SQLite format 3\0", false);
            let second = chunk("2-6-1", 16, b"second half", true);
            out.push(("valid-one-chunk".into(), [&[0u8][..], &whole].concat()));
            out.push(("valid-two-chunks".into(), [&[0u8][..], &first, &second].concat()));
            out.push(("valid-resent-chunk".into(), [&[0u8][..], &first, &first, &second].concat()));
            out.push(("valid-two-snapshots".into(), [&[0u8][..], &whole, &first, &second].concat()));
            out.push(("valid-meta".into(), [&[2u8][..], &log_store::encode_sealed(&sample_meta("2-6-0"))].concat()));
            out.push((
                "valid-meta-body".into(),
                [&[3u8][..], &postcard::to_allocvec(&sample_meta("7-9-3")).unwrap()].concat(),
            ));
            out.push(("mismatched-offset".into(), [&[0u8][..], &second].concat()));
            out.push(("bad-id".into(), [&[0u8][..], &chunk("../x", 0, b"x", true)].concat()));
            // A chunk past the end written so far leaves a hole; openraft's receiver seeks there,
            // so it is accepted (the file is sparse). Only a leader of the current term can send it.
            out.push((
                "accepted-hole".into(),
                [&[0u8][..], &chunk("2-6-2", 0, b"a", false), &chunk("2-6-2", 1 << 30, b"b", true)].concat(),
            ));
            out.push((
                "bad-meta-id".into(),
                [&[3u8][..], &postcard::to_allocvec(&sample_meta("a/b")).unwrap()].concat(),
            ));
            out.push(("truncated-stream".into(), [&[0u8][..], &whole[..whole.len() - 5]].concat()));
        }
        other => panic!("no fuzz target {other:?}"),
    }
    out
}

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
