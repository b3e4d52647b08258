//! Transport between nodes: one persistent, multiplexed connection per peer address
//! (TCP_NODELAY, requests pipelined and matched to responses by id), and the server side that
//! feeds incoming requests to openraft. A peer sending a bad frame loses its connection; the node
//! keeps serving everyone else.
//!
//! The connection is plain TCP, or mutual TLS 1.3 when the node has a [`Tls`] identity: the
//! dialer and the listener each verify the other's certificate ([`crate::tls`]). Inbound
//! handshakes run in their own task under [`tls::HANDSHAKE_TIMEOUT`], so a silent or slow client
//! never holds up the accept loop; a failed one closes the socket and counts in the metrics. A
//! connection whose peer's certificate is revoked later is closed.
//!
//! Memory fed by the network is bounded (see docs next to each):
//! - inbound frames: at most `max_frame_bytes` each ([`codec::read_frame`], which grows its buffer
//!   with the bytes that actually arrive), read one at a time per connection: [`handle_conn`]
//!   answers a request before it reads the next, so a connection holds one request and one answer;
//! - outbound frames to a peer: one largest frame's worth of bytes per connection ([`Conn`]'s
//!   `room`), whether the peer reads or not;
//! - calls waiting for an answer: one entry each in a connection's `pending` map, removed on the
//!   answer, and all of them when any call times out (the connection is then given up);
//! - inbound TLS handshakes: [`tls::MAX_PENDING_HANDSHAKES`] at once, each within
//!   [`tls::HANDSHAKE_TIMEOUT`];
//! - a peer-supplied snapshot id is checked ([`crate::state_machine::check_snapshot_id`]) before
//!   the request reaches openraft; a bad one closes the connection like a bad frame.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

use crate::codec::{self, Message, Request, Response};
use crate::gauge::Gauge;
use crate::tls::{self, Fingerprint, Tls};
use crate::types::{NodeId, NodeInfo, Raft, TypeConfig};

/// When each peer last answered us, and when a leader last reached us.
#[derive(Default)]
pub struct Contacts {
    peers: Mutex<HashMap<NodeId, Instant>>,
    leader: Mutex<Option<Instant>>,
}

impl Contacts {
    pub fn peer(&self, id: NodeId) -> Option<Instant> {
        self.peers.lock().unwrap().get(&id).copied()
    }
    pub fn leader(&self) -> Option<Instant> {
        *self.leader.lock().unwrap()
    }
    fn record_peer(&self, id: NodeId) {
        self.peers.lock().unwrap().insert(id, Instant::now());
    }
    fn record_leader(&self) {
        *self.leader.lock().unwrap() = Some(Instant::now());
    }
}

#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("tls handshake with {0} failed: {1}")]
    Handshake(String, String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection to {0} lost")]
    Lost(String),
    #[error("request of {0} bytes exceeds the frame limit")]
    TooLarge(usize),
    #[error("encoding failed: {0}")]
    Encode(String),
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>;
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Conn>>>>;

/// A frame queued for a connection's writer, holding its share of the connection's queue budget
/// until it has been written.
type Queued = (Vec<u8>, OwnedSemaphorePermit);

/// One live connection: a writer task sends frames, a reader task routes responses.
struct Conn {
    /// The writer's queue. Unbounded as a channel, but every frame in it (or being written) holds
    /// permits of `room` for its size: at most `max_frame_bytes` + header bytes are queued per
    /// connection ([`Peers::queue_budget`]). A caller waits for room until its deadline; a peer
    /// that stops reading makes calls time out, and a timed-out call gives the connection up.
    frames: mpsc::UnboundedSender<Queued>,
    room: Arc<Semaphore>,
    /// Bytes queued or being written now, and the most ever (what the budget bounds).
    queued: Arc<Gauge>,
    pending: Pending,
    alive: Arc<AtomicBool>,
    tasks: [tokio::task::AbortHandle; 2],
}

impl Conn {
    /// Gives the connection up: the next call dials again. A request that timed out says the peer
    /// or the path to it is gone; a blackholed TCP connection would otherwise keep queueing frames
    /// behind a retransmit timer that grows to minutes, and stall replication long after the path
    /// heals. Aborting the tasks drops the socket; callers still waiting fail at once.
    fn close(&self) {
        self.alive.store(false, Ordering::Release);
        for task in &self.tasks {
            task.abort();
        }
        // Callers waiting for room in the queue fail at once too.
        self.room.close();
        self.pending.lock().unwrap().clear();
    }
}

/// All connections of this node, keyed by peer address, shared by every openraft client.
pub struct Peers {
    /// One slot per address; a slot's lock is held while connecting, so a peer that is slow to
    /// answer a connect never delays traffic to the others.
    slots: Mutex<HashMap<String, Slot>>,
    next_id: AtomicU64,
    max_frame: u64,
    rpc_timeout: Duration,
    pub contacts: Arc<Contacts>,
    tls: Option<Arc<Tls>>,
}

impl Peers {
    pub fn new(max_frame: u64, rpc_timeout: Duration, contacts: Arc<Contacts>, tls: Option<Arc<Tls>>) -> Arc<Peers> {
        Arc::new(Peers { slots: Default::default(), next_id: AtomicU64::new(1), max_frame, rpc_timeout, contacts, tls })
    }

    async fn conn(&self, addr: &str, timeout: Duration) -> Result<Arc<Conn>, CallError> {
        let slot = self.slots.lock().unwrap().entry(addr.to_string()).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some(c) = slot.as_ref() {
            if c.alive.load(Ordering::Acquire) {
                return Ok(c.clone());
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(CallError::Connect(addr.to_string(), e)),
            Err(_) => {
                return Err(CallError::Connect(addr.to_string(), std::io::ErrorKind::TimedOut.into()));
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = match &self.tls {
            None => {
                let (rd, wr) = stream.into_split();
                self.start(addr, rd, wr, None)
            }
            Some(tls) => {
                let configs = tls.current();
                let handshake = configs.connector.connect(configs.peer_name.clone(), tls::buffered(stream));
                let failed = |reason: String| {
                    tls.handshake_failed("outbound", addr, &reason);
                    CallError::Handshake(addr.to_string(), reason)
                };
                let stream = match tokio::time::timeout_at(deadline, handshake).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return Err(failed(e.to_string())),
                    Err(_) => return Err(failed(format!("no handshake within {timeout:?}"))),
                };
                let fp = match tls::peer_fingerprint(stream.get_ref().1.peer_certificates()) {
                    Some(fp) if tls.is_revoked(&fp) => {
                        return Err(failed("the server's certificate is revoked".into()))
                    }
                    Some(fp) => fp,
                    None => return Err(failed("the server presented no certificate".into())),
                };
                let (rd, wr) = tokio::io::split(stream);
                self.start(addr, rd, wr, Some((tls.clone(), fp)))
            }
        };
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Runs a connection's writer and reader tasks over the two halves of its stream. Over TLS
    /// (`tls`: the node's state and the server certificate's fingerprint), the connection closes
    /// when that certificate is revoked, and a connection that fails before its first answer
    /// counts as a failed handshake: with TLS 1.3 the server checks our certificate only after our
    /// side of the handshake has ended, so its refusal arrives as an alert on the first read.
    fn start<R, W>(&self, addr: &str, mut rd: R, mut wr: W, tls: Option<(Arc<Tls>, Fingerprint)>) -> Arc<Conn>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (frames, mut rx) = mpsc::unbounded_channel::<Queued>();
        let room = Arc::new(Semaphore::new(self.queue_budget()));
        let queued = Arc::new(Gauge::default());
        let writer_queued = queued.clone();
        let pending: Pending = Default::default();
        let alive = Arc::new(AtomicBool::new(true));
        let writer_alive = alive.clone();
        let reader_alive = alive.clone();
        let reader_pending = pending.clone();
        let writer = tokio::spawn(async move {
            while let Some((frame, permit)) = rx.recv().await {
                let mut buf = frame;
                let mut permits = vec![permit];
                while let Ok((more, permit)) = rx.try_recv() {
                    buf.extend_from_slice(&more);
                    permits.push(permit);
                }
                // A TLS stream may keep encrypted bytes buffered until flushed.
                if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
                writer_queued.sub(buf.len());
                drop(permits);
            }
            writer_alive.store(false, Ordering::Release);
        });
        let writer_handle = writer.abort_handle();
        let max = self.max_frame;
        let peer = addr.to_string();
        let refused = tls.clone().map(|(t, _)| t);
        let reader = tokio::spawn(async move {
            let read = async {
                let mut answered = false;
                loop {
                    match codec::read_message(&mut rd, max).await {
                        Ok(Some(Message::Response { id, body })) => {
                            answered = true;
                            if let Some(tx) = reader_pending.lock().unwrap().remove(&id) {
                                let _ = tx.send(body);
                            }
                        }
                        Ok(None) => break,
                        Ok(Some(Message::Request { .. })) => {
                            tracing::warn!(peer = %peer, "closing raft connection: peer sent a request on a client connection");
                            break;
                        }
                        Err(e) => {
                            match &refused {
                                Some(tls) if !answered => tls.handshake_failed("outbound", &peer, &e),
                                _ => {
                                    tracing::warn!(peer = %peer, error = %e, "closing raft connection: bad frame from peer")
                                }
                            }
                            break;
                        }
                    }
                }
            };
            match tls {
                None => read.await,
                Some((tls, fp)) => tokio::select! {
                    _ = read => {}
                    _ = tls::until_revoked(fp, tls.watch_revoked()) => {
                        tracing::warn!(peer = %peer, "closing raft connection: the peer's certificate was revoked");
                        writer_handle.abort();
                    }
                },
            }
            reader_alive.store(false, Ordering::Release);
            // Dropping the senders fails every caller still waiting on this connection.
            reader_pending.lock().unwrap().clear();
        });
        Arc::new(Conn { frames, room, queued, pending, alive, tasks: [writer.abort_handle(), reader.abort_handle()] })
    }

    /// Bytes of frames one connection may have queued or being written: one frame of the largest
    /// size, so the largest frame always fits and a peer that stops reading costs no more.
    fn queue_budget(&self) -> usize {
        self.max_frame as usize + codec::HEADER_BYTES
    }

    async fn call(&self, addr: &str, body: Request, timeout: Duration) -> Result<Response, CallError> {
        let timeout = timeout.min(self.rpc_timeout);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = codec::encode(&Message::Request { id, body }).map_err(|e| CallError::Encode(e.to_string()))?;
        if frame.len() as u64 - codec::HEADER_BYTES as u64 > self.max_frame {
            return Err(CallError::TooLarge(frame.len()));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = self.conn(addr, timeout).await?;
        // Fits the budget: the frame is at most max_frame + header bytes (checked above).
        let size = u32::try_from(frame.len()).map_err(|_| CallError::TooLarge(frame.len()))?;
        let permit = match tokio::time::timeout_at(deadline, conn.room.clone().acquire_many_owned(size)).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(CallError::Lost(addr.to_string())),
            Err(_) => {
                conn.close();
                return Err(CallError::Timeout(timeout));
            }
        };
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().unwrap().insert(id, tx);
        conn.queued.add(frame.len());
        if conn.frames.send((frame, permit)).is_err() {
            conn.alive.store(false, Ordering::Release);
            return Err(CallError::Lost(addr.to_string()));
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(CallError::Lost(addr.to_string())),
            Err(_) => {
                conn.close();
                Err(CallError::Timeout(timeout))
            }
        }
    }

    /// Asks `addr` to start an election at once (leadership transfer).
    pub async fn timeout_now(&self, addr: &str) -> Result<(), String> {
        match self.call(addr, Request::TimeoutNow, self.rpc_timeout).await {
            Ok(Response::TimeoutNow(r)) => r,
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The openraft network factory: clients to peers, all sharing [`Peers`].
#[derive(Clone)]
pub struct Network {
    pub peers: Arc<Peers>,
}

pub struct PeerClient {
    target: NodeId,
    addr: String,
    peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        PeerClient { target, addr: node.addr.clone(), peers: self.peers.clone() }
    }
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn rpc<T, E: std::error::Error>(
        &self,
        kind: RPCTypes,
        body: Request,
        option: &RPCOption,
        entries: usize,
        unpack: impl FnOnce(Response) -> Option<Result<T, RaftError<NodeId, E>>>,
    ) -> RpcResult<T, E> {
        let resp = self.peers.call(&self.addr, body, option.hard_ttl()).await.map_err(|e| match e {
            CallError::Connect(..) | CallError::Handshake(..) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Timeout(t) => {
                RPCError::Timeout(Timeout { action: kind, id: 0, target: self.target, timeout: t })
            }
            // openraft retries with fewer entries.
            CallError::TooLarge(_) => {
                RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint((entries / 2).max(1) as u64))
            }
            other => RPCError::Network(NetworkError::new(&other)),
        })?;
        self.peers.contacts.record_peer(self.target);
        match unpack(resp) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            None => Err(RPCError::Network(NetworkError::new(&CallError::Lost(format!(
                "{}: mismatched response type",
                self.addr
            ))))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        let n = rpc.entries.len();
        let last = rpc.entries.last().map_or(0, |e| e.log_id.index);
        crate::probe::mark(crate::probe::Point::AppendSend, last);
        let res = self
            .rpc(RPCTypes::AppendEntries, Request::Append(rpc), &option, n, |r| match r {
                Response::Append(r) => Some(r),
                _ => None,
            })
            .await;
        crate::probe::mark(crate::probe::Point::AppendAnswered, last);
        res
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.rpc(RPCTypes::InstallSnapshot, Request::Snapshot(rpc), &option, 1, |r| match r {
            Response::Snapshot(r) => Some(r),
            _ => None,
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.rpc(RPCTypes::Vote, Request::Vote(rpc), &option, 1, |r| match r {
            Response::Vote(r) => Some(r),
            _ => None,
        })
        .await
    }

    fn backoff(&self) -> openraft::network::Backoff {
        // A restarted peer is usually back within a second; retry it often enough to notice.
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}

/// Serves Raft requests from peers until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    raft: Raft,
    max_frame: u64,
    contacts: Arc<Contacts>,
    tls: Option<Arc<Tls>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let (raft, contacts, stop) = (raft.clone(), contacts.clone(), stop.clone());
                    match &tls {
                        None => {
                            let (rd, wr) = stream.into_split();
                            tokio::spawn(handle_conn(rd, wr, peer, raft, max_frame, contacts, stop));
                        }
                        Some(tls) => {
                            tokio::spawn(handle_tls_conn(stream, peer, tls.clone(), raft, max_frame, contacts, stop));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a raft connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Completes the server side of a handshake within [`tls::HANDSHAKE_TIMEOUT`], then serves the
/// connection until it ends or its peer's certificate is revoked.
async fn handle_tls_conn(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Arc<Tls>,
    raft: Raft,
    max_frame: u64,
    contacts: Arc<Contacts>,
    mut stop: watch::Receiver<bool>,
) {
    let peer_text = peer.to_string();
    let Some(slot) = tls.handshake_slot() else {
        tls.handshake_failed("inbound", &peer_text, &"too many handshakes under way");
        return;
    };
    let configs = tls.current();
    let handshake = tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, configs.acceptor.accept(tls::buffered(stream)));
    let stream = tokio::select! {
        _ = stop.changed() => return,
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return tls.handshake_failed("inbound", &peer_text, &e),
            Err(_) => {
                let reason = format!("no handshake within {:?}", tls::HANDSHAKE_TIMEOUT);
                return tls.handshake_failed("inbound", &peer_text, &reason);
            }
        }
    };
    drop(slot);
    let fp = tls::peer_fingerprint(stream.get_ref().1.peer_certificates());
    let Some(fp) = fp.filter(|fp| !tls.is_revoked(fp)) else {
        return tls.handshake_failed("inbound", &peer_text, &"the client's certificate is revoked");
    };
    let revoked = tls.watch_revoked();
    let (rd, wr) = tokio::io::split(stream);
    tokio::select! {
        _ = handle_conn(rd, wr, peer, raft, max_frame, contacts, stop) => {}
        _ = tls::until_revoked(fp, revoked) => {
            tracing::warn!(peer = %peer, "closing raft connection: the peer's certificate was revoked");
        }
    }
}

async fn handle_conn<R, W>(
    mut rd: R,
    mut wr: W,
    peer: SocketAddr,
    raft: Raft,
    max_frame: u64,
    contacts: Arc<Contacts>,
    mut stop: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let (id, req) = tokio::select! {
            _ = stop.changed() => return,
            r = codec::read_message(&mut rd, max_frame) => match r {
                Ok(Some(Message::Request { id, body })) => (id, body),
                Ok(None) => return,
                Ok(Some(Message::Response { .. })) => {
                    tracing::warn!(peer = %peer, "closing raft connection: unexpected response frame");
                    return;
                }
                Err(e) => {
                    tracing::warn!(peer = %peer, error = %e, "closing raft connection: bad frame");
                    return;
                }
            }
        };
        let mut appended = 0;
        let resp = match req {
            Request::Append(r) => {
                appended = r.entries.last().map_or(0, |e| e.log_id.index);
                if appended > 0 {
                    crate::probe::mark(crate::probe::Point::AppendReceived, appended);
                }
                let res = raft.append_entries(r).await;
                if matches!(res, Ok(AppendEntriesResponse::Success) | Ok(AppendEntriesResponse::PartialSuccess(_))) {
                    contacts.record_leader();
                }
                Response::Append(res)
            }
            Request::Vote(r) => Response::Vote(raft.vote(r).await),
            Request::Snapshot(r) => {
                // The id becomes part of a file name once the snapshot is complete: refuse a bad
                // one now, before any of its data is stored, and treat it as a bad frame.
                if let Err(e) = crate::state_machine::check_snapshot_id(&r.meta.snapshot_id) {
                    tracing::warn!(peer = %peer, error = %e, "closing raft connection: bad snapshot id");
                    return;
                }
                let res = raft.install_snapshot(r).await;
                contacts.record_leader();
                Response::Snapshot(res)
            }
            Request::TimeoutNow => {
                tracing::info!(peer = %peer, "asked to take over leadership; starting an election");
                Response::TimeoutNow(raft.trigger().elect().await.map_err(|e| e.to_string()))
            }
        };
        let frame = match codec::encode(&Message::Response { id, body: resp }) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a raft response");
                return;
            }
        };
        if appended > 0 {
            crate::probe::mark(crate::probe::Point::AppendReplied, appended);
        }
        if wr.write_all(&frame).await.is_err() || wr.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};

    fn append_of(bytes: usize) -> Request {
        let entry = crate::types::Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
            payload: EntryPayload::Normal(crate::types::Payload::from(vec![serde_bytes::ByteBuf::from(vec![
                7u8;
                bytes
            ])])),
        };
        Request::Append(AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            entries: vec![entry],
            leader_commit: None,
        })
    }

    /// A peer that accepts and then never reads: the kernel's socket buffers fill, the writer
    /// blocks, and what piles up in our process stays within one frame's budget; every call fails
    /// within its deadline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_never_reads_costs_at_most_the_queue_budget() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let held = tokio::spawn(async move {
            let mut socks = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                socks.push(sock); // kept open, never read
            }
        });
        let max_frame = 256 * 1024;
        let peers = Peers::new(max_frame, Duration::from_secs(3), Arc::default(), None);
        let frame = 200 * 1024;
        let calls: Vec<_> = (0..200)
            .map(|_| {
                let (peers, addr) = (peers.clone(), addr.clone());
                tokio::spawn(async move { peers.call(&addr, append_of(frame), Duration::from_secs(3)).await })
            })
            .collect();
        let conn = loop {
            let slot = peers.slots.lock().unwrap().get(&addr).cloned();
            if let Some(slot) = slot {
                if let Some(c) = slot.lock().await.clone() {
                    break c;
                }
            }
            tokio::task::yield_now().await;
        };
        for call in calls {
            let res = call.await.unwrap();
            assert!(matches!(res, Err(CallError::Timeout(_)) | Err(CallError::Lost(_))), "{res:?}");
        }
        let peak = conn.queued.peak();
        let budget = max_frame as usize + codec::HEADER_BYTES; // one largest frame
        assert!(peak <= budget, "{peak} bytes were queued for a peer that never reads; the budget is {budget}");
        assert!(peak > 0);
        held.abort();
    }
}
