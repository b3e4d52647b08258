//! Wire format between nodes: a frame is a 4-byte big-endian length followed by that many bytes
//! of postcard-encoded [`Message`]. Every decoding failure is an error value, never a panic.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::types::{NodeId, TypeConfig};

/// Bytes of the length prefix.
pub const HEADER_BYTES: usize = 4;

#[derive(Debug, Serialize, Deserialize)]
pub enum Message {
    Request { id: u64, body: Request },
    Response { id: u64, body: Response },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// Leadership transfer: the receiver starts an election at once.
    TimeoutNow,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    TimeoutNow(Result<(), String>),
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    Oversized { len: u64, max: u64 },
    #[error("connection closed in the middle of a frame ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error("undecodable frame: {0}")]
    Decode(#[from] postcard::Error),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `msg` as one frame (length prefix included).
pub fn encode(msg: &Message) -> Result<Vec<u8>, CodecError> {
    let mut buf = vec![0u8; HEADER_BYTES];
    let mut buf = postcard::to_extend(msg, std::mem::take(&mut buf))?;
    let len = (buf.len() - HEADER_BYTES) as u32;
    buf[..HEADER_BYTES].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Decodes a frame body (without its length prefix). Trailing bytes are an error.
pub fn decode(body: &[u8]) -> Result<Message, CodecError> {
    let (msg, rest) = postcard::take_from_bytes::<Message>(body)?;
    if !rest.is_empty() {
        return Err(CodecError::Decode(postcard::Error::DeserializeBadEncoding));
    }
    Ok(msg)
}

/// Reads one frame body. `Ok(None)` on a clean end of stream between frames.
///
/// Memory grows with the bytes that actually arrive, not with the announced length, so a peer
/// cannot make us allocate `max` bytes by sending four.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: u64) -> Result<Option<Vec<u8>>, CodecError> {
    let mut header = [0u8; HEADER_BYTES];
    let mut got = 0;
    while got < HEADER_BYTES {
        let n = r.read(&mut header[got..]).await?;
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(CodecError::Truncated { got, want: HEADER_BYTES }) };
        }
        got += n;
    }
    let len = u32::from_be_bytes(header) as u64;
    if len > max {
        return Err(CodecError::Oversized { len, max });
    }
    let mut body = Vec::with_capacity((len as usize).min(64 * 1024));
    let n = r.take(len).read_to_end(&mut body).await?;
    if (n as u64) < len {
        return Err(CodecError::Truncated { got: n, want: len as usize });
    }
    Ok(Some(body))
}

/// Reads and decodes one message. `Ok(None)` on a clean end of stream between frames.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R, max: u64) -> Result<Option<Message>, CodecError> {
    match read_frame(r, max).await? {
        Some(body) => decode(&body).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vote_request(term: u64, node: u64, last: Option<(u64, u64)>) -> Message {
        let last_log_id = last.map(|(t, i)| openraft::LogId::new(openraft::CommittedLeaderId::new(t, node), i));
        Message::Request {
            id: term ^ node,
            body: Request::Vote(VoteRequest::new(openraft::Vote::new(term, node), last_log_id)),
        }
    }

    async fn roundtrip(frame: Vec<u8>, max: u64) -> Result<Option<Message>, CodecError> {
        read_message(&mut std::io::Cursor::new(frame), max).await
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().build().unwrap()
    }

    proptest! {
        #[test]
        fn vote_roundtrips(term in 0u64..u64::MAX, node in 0u64..1000, last in proptest::option::of((0u64..1<<40, 0u64..1<<40))) {
            let msg = vote_request(term, node, last);
            let frame = encode(&msg).unwrap();
            let back = rt().block_on(roundtrip(frame, 1 << 20)).unwrap().unwrap();
            prop_assert_eq!(format!("{back:?}"), format!("{msg:?}"));
        }

        #[test]
        fn append_roundtrips(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
            let leader = openraft::CommittedLeaderId::new(3, 1);
            let entries = payloads.iter().enumerate().map(|(i, p)| openraft::Entry::<TypeConfig> {
                log_id: openraft::LogId::new(leader, i as u64 + 1),
                payload: openraft::EntryPayload::Normal(crate::types::Payload::from(vec![serde_bytes::ByteBuf::from(p.clone())])),
            }).collect();
            let msg = Message::Request { id: 7, body: Request::Append(AppendEntriesRequest {
                vote: openraft::Vote::new_committed(3, 1), prev_log_id: None, entries, leader_commit: None }) };
            let frame = encode(&msg).unwrap();
            let back = rt().block_on(roundtrip(frame, 1 << 24)).unwrap().unwrap();
            prop_assert_eq!(format!("{back:?}"), format!("{msg:?}"));
        }

        /// Arbitrary bytes never panic the decoder: they decode or fail with an error.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = decode(&bytes);
            let _ = rt().block_on(roundtrip(bytes, 1 << 16));
        }

        /// Any strict prefix of a valid frame is reported as truncated (or a clean EOF when empty).
        #[test]
        fn truncated_frames_are_errors(term in 1u64..1000, cut in 0usize..1000) {
            let frame = encode(&vote_request(term, 1, Some((term, term)))).unwrap();
            let cut = cut % frame.len();
            let res = rt().block_on(roundtrip(frame[..cut].to_vec(), 1 << 16));
            if cut == 0 { prop_assert!(matches!(res, Ok(None))); }
            else { prop_assert!(matches!(res, Err(CodecError::Truncated { .. })), "{res:?}"); }
        }
    }

    #[test]
    fn oversized_length_is_refused_before_reading_body() {
        let frame = vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3];
        let res = rt().block_on(roundtrip(frame, 1 << 20));
        assert!(matches!(res, Err(CodecError::Oversized { len: 0xffff_ffff, .. })), "{res:?}");
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut frame = encode(&vote_request(1, 1, None)).unwrap();
        frame.push(0);
        let len = (frame.len() - HEADER_BYTES) as u32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        assert!(rt().block_on(roundtrip(frame, 1 << 20)).is_err());
    }
}
