//! Proposal batching: concurrent proposals share one log entry.
//!
//! openraft 0.9 writes (and fsyncs) the log once per client write and waits for that flush
//! before taking the next, so one entry per proposal caps a node at one commit per fsync. Here
//! proposals queue up while earlier batches are being committed and go out together; each
//! proposer still gets its own response (the state machine answers every command).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};
use crate::gauge::Gauge;
use crate::types::{Payload, Raft};
use crate::write_gate::Pass;

/// Batches handed to openraft at once. One: while it commits, the next batch fills up. Measured
/// with `python -m benches --only commit_latency`: 2 and 4 gave no more throughput, only smaller
/// batches (4: 17,500/s on one node against 29,400/s with 1).
const MAX_IN_FLIGHT: usize = 1;
/// Most commands in one log entry.
const MAX_BATCH_COMMANDS: usize = 4096;
/// Bytes of proposals queued and not yet handed to openraft (bytes; raised to the largest entry
/// if that is bigger). Proposals come from API clients; beyond this a proposer waits for room (its
/// caller's write timeout still applies), so a burst of writes cannot grow the queue without bound.
const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

type Reply = oneshot::Sender<Result<(u64, Vec<u8>)>>;

struct Proposal {
    data: Vec<u8>,
    reply: Reply,
    _room: Room,
    /// Held until openraft has answered the batch (see [`crate::write_gate`]).
    pass: Pass,
}

/// A queued proposal's share of the budget, given back (and uncounted) once its batch goes to
/// openraft.
struct Room {
    _permit: OwnedSemaphorePermit,
    size: usize,
    queued: Arc<Gauge>,
}

impl Drop for Room {
    fn drop(&mut self) {
        self.queued.sub(self.size);
    }
}

pub struct Proposer {
    /// Unbounded as a channel; what it holds is bounded by `room` ([`MAX_QUEUED_BYTES`]).
    tx: mpsc::UnboundedSender<Proposal>,
    room: Arc<Semaphore>,
    budget: usize,
    /// Bytes of proposals queued now, and the most ever.
    queued: Arc<Gauge>,
}

impl Proposer {
    /// Starts the batching task; a batch never exceeds `max_batch_bytes` unless one command does.
    pub fn start(raft: Raft, max_batch_bytes: u64) -> Proposer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx, max_batch_bytes as usize));
        let budget = MAX_QUEUED_BYTES.max(max_batch_bytes as usize).min(Semaphore::MAX_PERMITS);
        Proposer { tx, room: Arc::new(Semaphore::new(budget)), budget, queued: Arc::default() }
    }

    /// Commits `data` and returns (log index, the state machine's response). `pass` is given back
    /// once openraft has answered the batch, whether or not the caller still waits.
    pub async fn propose(&self, data: Vec<u8>, pass: Pass) -> Result<(u64, Vec<u8>)> {
        // Every proposal takes at least one permit, so even empty ones are counted.
        let size = data.len().clamp(1, self.budget);
        let permit =
            self.room.clone().acquire_many_owned(size as u32).await.map_err(|_| Error::Shutdown(String::new()))?;
        self.queued.add(size);
        let room = Room { _permit: permit, size, queued: self.queued.clone() };
        let (reply, rx) = oneshot::channel();
        self.tx.send(Proposal { data, reply, _room: room, pass }).map_err(|_| Error::Shutdown(String::new()))?;
        rx.await.map_err(|_| Error::Shutdown(String::new()))?
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Proposal>, max_bytes: usize) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carry: Option<Proposal> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        // Waiting for a slot is what lets the next batch fill up.
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let mut bytes = first.data.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS {
            match rx.try_recv() {
                Ok(p) if bytes + p.data.len() > max_bytes => {
                    carry = Some(p);
                    break;
                }
                Ok(p) => {
                    bytes += p.data.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let mut commands = Vec::with_capacity(batch.len());
            let mut replies = Vec::with_capacity(batch.len());
            let mut passes = Vec::with_capacity(batch.len());
            for p in batch {
                commands.push(serde_bytes::ByteBuf::from(p.data));
                replies.push(p.reply);
                passes.push(p.pass);
            }
            crate::probe::mark(crate::probe::Point::ClientWrite, commands.len() as u64);
            match raft.client_write(Payload(commands)).await {
                Ok(resp) => {
                    let index = resp.log_id.index;
                    crate::probe::mark(crate::probe::Point::Committed, index);
                    let mut out = resp.data.0.into_iter();
                    for reply in replies {
                        let data = out.next().map(|b| b.into_vec()).unwrap_or_default();
                        let _ = reply.send(Ok((index, data)));
                    }
                }
                Err(e) => {
                    let e = Error::from(e);
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(passes);
            drop(permit);
        });
    }
}

#[cfg(test)]
#[path = "proposer_tests.rs"]
mod tests;
