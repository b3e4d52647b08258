//! Proposal batching: concurrent proposals share one log entry.
//!
//! openraft 0.9 writes (and fsyncs) the log once per client write and waits for that flush
//! before taking the next, so one entry per proposal caps a node at one commit per fsync. Here
//! proposals queue up while earlier batches are being committed and go out together; each
//! proposer still gets its own response (the state machine answers every command).
//!
//! A proposer is answered by the apply of its entry, not by openraft's `client_write`: the entry
//! carries its proposers' [`Answer`]s in memory ([`Waiting`], never serialized), and when the
//! application completes the apply of the entry, each is answered with its response right there
//! (for Python: on the event loop's thread, in the call that completes the apply). The entry is
//! committed by then (openraft applies nothing else), so what a proposer learns is the same; it
//! only skips the trip back through openraft's state-machine worker, core and `client_write`.
//! When the write fails instead (leadership lost, the node stopping), `client_write` says so and
//! the proposer answers whoever the apply did not.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};
use crate::gauge::Gauge;
use crate::types::{Payload, Raft};
use crate::write_gate::Pass;

/// Batches handed to openraft at once. One: while it commits, the next batch fills up. Measured
/// with `python -m benches --only commit_latency`: 2 and 4 gave no more throughput, only smaller
/// batches (4: 17,500/s on one node against 29,400/s with 1; issue 18, 3 and 5 nodes: 2 no better).
const MAX_IN_FLIGHT: usize = 1;
/// Most commands in one log entry.
const MAX_BATCH_COMMANDS: usize = 4096;
/// Bytes of proposals queued and not yet handed to openraft (bytes; raised to the largest entry
/// if that is bigger). Proposals come from API clients; beyond this a proposer waits for room (its
/// caller's write timeout still applies), so a burst of writes cannot grow the queue without bound.
const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// Where a proposal's outcome goes, (log index, the state machine's response) or why it failed:
/// called exactly once, on whichever thread learns the outcome first.
pub type Answer = Box<dyn FnOnce(Result<(u64, Vec<u8>)>) + Send>;

/// The answers of an entry's commands, in command order, shared by every copy of the entry in
/// this process (the log keeps one, the state machine is handed another). Taken once: by the
/// apply of the entry, or by the proposer when openraft fails the write. Empty on entries that
/// came from elsewhere (another leader, the disk).
#[derive(Clone, Default)]
pub struct Waiting(Option<Arc<Mutex<Option<Vec<Answer>>>>>);

impl Waiting {
    fn new(answers: Vec<Answer>) -> Waiting {
        Waiting(Some(Arc::new(Mutex::new(Some(answers)))))
    }

    /// Whether someone in this process may still wait for the entry's commands.
    pub(crate) fn is_some(&self) -> bool {
        self.0.is_some()
    }

    /// The answers, once; None if they were taken already or there never were any.
    pub(crate) fn take(&self) -> Option<Vec<Answer>> {
        self.0.as_ref().and_then(|slot| slot.lock().unwrap().take())
    }
}

struct Proposal {
    data: Vec<u8>,
    answer: Answer,
    _room: Room,
    /// Held until openraft has answered the batch (see [`crate::write_gate`]), even when the apply
    /// answered the proposer first.
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
        let (tx, rx) = oneshot::channel();
        self.propose_with(data, Box::new(move |outcome| drop(tx.send(outcome))), pass).await;
        rx.await.map_err(|_| Error::Shutdown(String::new()))?
    }

    /// Queues `data` for commit; `answer` gets the outcome. Waits only while the queue is full.
    pub async fn propose_with(&self, data: Vec<u8>, answer: Answer, pass: Pass) {
        // Every proposal takes at least one permit, so even empty ones are counted.
        let size = data.len().clamp(1, self.budget);
        match self.room.clone().acquire_many_owned(size as u32).await {
            Ok(permit) => self.enqueue(data, answer, pass, permit, size),
            Err(_) => answer(Err(Error::Shutdown(String::new()))),
        }
    }

    /// [`Proposer::propose_with`] without waiting, from any thread: the proposal is queued, or,
    /// when the queue is full, handed back to go through `propose_with`.
    pub fn submit(&self, data: Vec<u8>, answer: Answer, pass: Pass) -> Option<(Vec<u8>, Answer, Pass)> {
        let size = data.len().clamp(1, self.budget);
        match self.room.clone().try_acquire_many_owned(size as u32) {
            Ok(permit) => {
                self.enqueue(data, answer, pass, permit, size);
                None
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => Some((data, answer, pass)),
            Err(tokio::sync::TryAcquireError::Closed) => {
                answer(Err(Error::Shutdown(String::new())));
                None
            }
        }
    }

    fn enqueue(&self, data: Vec<u8>, answer: Answer, pass: Pass, permit: OwnedSemaphorePermit, size: usize) {
        self.queued.add(size);
        let room = Room { _permit: permit, size, queued: self.queued.clone() };
        if let Err(mpsc::error::SendError(p)) = self.tx.send(Proposal { data, answer, _room: room, pass }) {
            (p.answer)(Err(Error::Shutdown(String::new())));
        }
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
            let mut answers = Vec::with_capacity(batch.len());
            let mut passes = Vec::with_capacity(batch.len());
            for p in batch {
                commands.push(serde_bytes::ByteBuf::from(p.data));
                answers.push(p.answer);
                passes.push(p.pass);
            }
            crate::probe::mark(crate::probe::Point::ClientWrite, commands.len() as u64);
            let waiting = Waiting::new(answers);
            let result = raft.client_write(Payload(commands, waiting.clone())).await;
            // Normally the apply has answered everyone already; these are the rest.
            if let Some(answers) = waiting.take() {
                match result {
                    Ok(resp) => {
                        let index = resp.log_id.index;
                        crate::probe::mark(crate::probe::Point::Committed, index);
                        let mut out = resp.data.0.into_iter();
                        for answer in answers {
                            answer(Ok((index, out.next().map(|b| b.into_vec()).unwrap_or_default())));
                        }
                    }
                    Err(e) => {
                        let e = Error::from(e);
                        for answer in answers {
                            answer(Err(e.clone()));
                        }
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

#[cfg(test)]
pub(crate) mod tests_support {
    use super::{Answer, Waiting};

    pub(crate) fn waiting(answers: Vec<Answer>) -> Waiting {
        Waiting::new(answers)
    }
}
