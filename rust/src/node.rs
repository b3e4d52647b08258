//! A Raft member: durable log, state-machine bridge and transport wired into openraft, plus the
//! operations an application needs (propose, read barrier, membership, leadership transfer).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use openraft::error::RaftError;
use openraft::{ChangeMembers, ServerState};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::log_store::LogStore;
use crate::network::{self, Contacts, Network, Peers};
use crate::proposer::{Answer, Proposer};
use crate::state_machine::{StateMachine, Work};
use crate::tls::{Fingerprint, Tls, TlsIdentity};
use crate::types::{NodeId, NodeInfo, Raft};
use crate::write_gate::WriteGate;

/// What a node reports about itself; see `Metrics` in warren_raft.pyi for the meaning of each field.
#[derive(Debug, Clone)]
pub struct MetricsView {
    pub id: NodeId,
    pub role: &'static str,
    pub term: u64,
    pub leader_id: Option<NodeId>,
    pub leader_addr: Option<String>,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub last_log_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// Leader only: per follower, (matched index, seconds since it last answered).
    pub peers: BTreeMap<NodeId, (Option<u64>, Option<f64>)>,
    pub last_leader_contact_s: Option<f64>,
    pub millis_since_quorum_ack: Option<u64>,
    pub elections_total: u64,
    /// Log records dropped because the Python side consumed them too slowly.
    pub log_records_dropped: u64,
    /// Whether the transport is mutual TLS.
    pub tls: bool,
    /// Failed TLS handshakes since the node opened, inbound and outbound.
    pub tls_handshake_failures: u64,
    /// Why consensus stopped on its own (a storage fault: operation, file, errno); None while it
    /// runs, and after a requested shutdown.
    pub fatal_error: Option<String>,
}

pub struct Node {
    id: NodeId,
    addr: String,
    config: Config,
    raft: Raft,
    log: LogStore,
    sm: StateMachine,
    pub(crate) proposer: Proposer,
    work: tokio::sync::Mutex<mpsc::UnboundedReceiver<Work>>,
    peers: Arc<Peers>,
    contacts: Arc<Contacts>,
    tls: Option<Arc<Tls>>,
    stop: Arc<watch::Sender<bool>>,
    fatal: Arc<OnceLock<String>>,
    /// Closed while leadership is handed over (see [`crate::write_gate`]).
    writes: Arc<WriteGate>,
    elections: Arc<AtomicU64>,
}

impl Node {
    /// Opens the node in `data_dir` and starts serving Raft on `listen_addr`, over mutual TLS when
    /// `tls` is given, plain TCP otherwise. Must run inside the tokio runtime that will drive
    /// consensus.
    pub async fn open(
        data_dir: &Path,
        id: NodeId,
        listen_addr: &str,
        advertise_addr: Option<&str>,
        config: Config,
        tls: Option<TlsIdentity>,
    ) -> Result<Arc<Node>> {
        let raft_config = Arc::new(config.to_openraft()?);
        let tls = tls.as_ref().map(Tls::new).transpose()?;
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::Storage(format!("cannot create {}: {e}", data_dir.display())))?;
        let log = LogStore::open(data_dir)?;
        let (sm, work) = StateMachine::open(data_dir)?;
        let listener = TcpListener::bind(listen_addr)
            .await
            .map_err(|e| Error::Invalid(format!("cannot listen for raft on {listen_addr}: {e}")))?;
        let bound = listener.local_addr().map_err(|e| Error::Invalid(e.to_string()))?;
        let addr = match advertise_addr {
            Some(a) => a.to_string(),
            None => bound.to_string(),
        };
        let contacts = Arc::new(Contacts::default());
        let peers = Peers::new(config.max_frame_bytes, config.rpc_timeout(), contacts.clone(), tls.clone());
        let raft = Raft::new(id, raft_config, Network { peers: peers.clone() }, log.clone(), sm.clone())
            .await
            .map_err(|e| Error::Storage(format!("cannot start raft: {e}")))?;
        let (stop, stop_rx) = watch::channel(false);
        let stop = Arc::new(stop);
        tokio::spawn(network::serve(
            listener,
            raft.clone(),
            config.max_frame_bytes,
            contacts.clone(),
            tls.clone(),
            stop_rx,
        ));
        let proposer = Proposer::start(raft.clone(), config.max_entry_bytes);
        let elections = Arc::new(AtomicU64::new(0));
        tokio::spawn(watch_events(raft.clone(), elections.clone()));
        let fatal = Arc::new(OnceLock::new());
        tokio::spawn(stop_on_fatal(raft.clone(), log.clone(), sm.clone(), stop.clone(), fatal.clone()));
        tracing::info!(node = id, addr = %addr, dir = %data_dir.display(), tls = tls.is_some(), "raft node started");
        Ok(Arc::new(Node {
            id,
            addr,
            config,
            raft,
            log,
            proposer,
            sm,
            work: tokio::sync::Mutex::new(work),
            peers,
            contacts,
            tls,
            stop,
            fatal,
            writes: Arc::default(),
            elections,
        }))
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub async fn is_initialized(&self) -> Result<bool> {
        Ok(self.raft.is_initialized().await?)
    }

    /// Starts a new cluster made of `members` (this node alone when empty).
    pub async fn bootstrap(&self, members: BTreeMap<NodeId, NodeInfo>, meta: &str) -> Result<()> {
        let mut members = members;
        if members.is_empty() {
            members.insert(self.id, NodeInfo { addr: self.addr.clone(), meta: meta.to_string() });
        }
        self.raft.initialize(members).await.map_err(|e| match e {
            RaftError::APIError(api) => Error::Invalid(format!("cannot bootstrap: {api}")),
            RaftError::Fatal(f) => f.into(),
        })
    }

    pub async fn propose(&self, data: Vec<u8>) -> Result<(u64, Vec<u8>)> {
        let pass = self.admit(&data)?;
        self.proposer.propose(data, pass).await
    }

    /// [`Node::propose`] without waiting, from any thread: `answer` gets the outcome. Hands the
    /// proposal back when the proposer's queue is full; then [`Node::propose_with`] waits for room.
    pub fn submit(&self, data: Vec<u8>, answer: Answer) -> Option<(Vec<u8>, Answer)> {
        match self.admit(&data) {
            Ok(pass) => self.proposer.submit(data, answer, pass).map(|(data, answer, _pass)| (data, answer)),
            Err(e) => {
                answer(Err(e));
                None
            }
        }
    }

    /// [`Node::propose`], answered through `answer`.
    pub async fn propose_with(&self, data: Vec<u8>, answer: Answer) {
        match self.admit(&data) {
            Ok(pass) => self.proposer.propose_with(data, answer, pass).await,
            Err(e) => answer(Err(e)),
        }
    }

    /// Checks a proposal and lets it through the write gate.
    fn admit(&self, data: &[u8]) -> Result<crate::write_gate::Pass> {
        if data.len() as u64 > self.config.max_entry_bytes {
            return Err(Error::Invalid(format!(
                "entry of {} bytes exceeds max_entry_bytes ({})",
                data.len(),
                self.config.max_entry_bytes
            )));
        }
        self.writes.enter().ok_or(Error::NotLeader { leader_id: None, leader_addr: None })
    }

    pub async fn read_barrier(&self) -> Result<u64> {
        match self.raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map(|l| l.index).unwrap_or(0)),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => Err(f.into()),
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::QuorumNotEnough(q))) => {
                Err(Error::Timeout(format!("no quorum confirmed this node's leadership: {q}")))
            }
            Err(RaftError::Fatal(f)) => Err(f.into()),
        }
    }

    pub async fn add_learner(&self, id: NodeId, info: NodeInfo, blocking: bool) -> Result<u64> {
        let resp = self.raft.add_learner(id, info, blocking).await.map_err(Error::from)?;
        tracing::info!(node = self.id, term = resp.log_id.leader_id.term, learner = id, "member added as learner");
        Ok(resp.log_id.index)
    }

    pub async fn change_membership(&self, voters: BTreeSet<NodeId>, retain: bool) -> Result<u64> {
        let resp = self.raft.change_membership(voters.clone(), retain).await.map_err(Error::from)?;
        tracing::info!(node = self.id, term = resp.log_id.leader_id.term, voters = ?voters, "voter set changed");
        Ok(resp.log_id.index)
    }

    /// Adds `id` as a learner, waits until it has caught up, then makes it a voter.
    pub async fn add_voter(&self, id: NodeId, info: NodeInfo) -> Result<u64> {
        self.add_learner(id, info, true).await?;
        let resp =
            self.raft.change_membership(ChangeMembers::AddVoterIds([id].into()), false).await.map_err(Error::from)?;
        tracing::info!(node = self.id, term = resp.log_id.leader_id.term, voter = id, "learner promoted to voter");
        Ok(resp.log_id.index)
    }

    pub async fn remove_node(&self, id: NodeId) -> Result<u64> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let is_voter = membership.membership().voter_ids().any(|v| v == id);
        let is_member = membership.membership().get_node(&id).is_some();
        if !is_member {
            return Err(Error::Membership(format!("node {id} is not a member")));
        }
        let change =
            if is_voter { ChangeMembers::RemoveVoters([id].into()) } else { ChangeMembers::RemoveNodes([id].into()) };
        let resp = self.raft.change_membership(change, false).await.map_err(Error::from)?;
        tracing::info!(node = self.id, term = resp.log_id.leader_id.term, removed = id, "member removed");
        Ok(resp.log_id.index)
    }

    /// Hands leadership to `to` (default: the most caught-up voter) and waits until it leads.
    ///
    /// openraft 0.9 has no TimeoutNow, so this is built from its public controls: stop accepting
    /// proposals and sending heartbeats, let the target catch up, then ask the target to start an
    /// election at once. The followers still refuse to vote while their leader lease runs, but this
    /// leader does not: its own lease dates from its election, not from its heartbeats, so once it
    /// has led for `election_timeout_max` it grants the vote (the target's log is at least as long)
    /// and steps down. With 3 voters, the target's own vote and this one are a majority: the hand-over
    /// costs a vote round trip. With 5, or a leader elected moments ago, the target's first campaign
    /// may fall short and its next one, an election timeout later, wins once the followers' leases
    /// have run out (heartbeats stopped at the start of the transfer).
    pub async fn transfer_leadership(&self, to: Option<NodeId>, timeout: Duration) -> Result<NodeId> {
        let deadline = Instant::now() + timeout;
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            return Err(self.not_leader());
        }
        let voters: Vec<NodeId> =
            metrics.membership_config.membership().voter_ids().filter(|v| *v != self.id).collect();
        let target = match to {
            Some(t) if t == self.id => return Ok(self.id),
            Some(t) if voters.contains(&t) => t,
            Some(t) => return Err(Error::Membership(format!("node {t} is not a voter"))),
            None => *voters
                .iter()
                .max_by_key(|v| matched_index(&metrics, **v))
                .ok_or_else(|| Error::Membership("there is no other voter to hand leadership to".into()))?,
        };
        let addr = metrics
            .membership_config
            .membership()
            .get_node(&target)
            .map(|n| n.addr.clone())
            .ok_or_else(|| Error::Membership(format!("node {target} has no address")))?;
        tracing::info!(node = self.id, to = target, term = metrics.current_term, "transferring leadership");
        self.writes.close();
        self.raft.runtime_config().heartbeat(false);
        let result = self.finish_transfer(target, &addr, deadline).await;
        self.raft.runtime_config().heartbeat(true);
        self.writes.open();
        result.map(|()| target)
    }

    async fn finish_transfer(&self, target: NodeId, addr: &str, deadline: Instant) -> Result<()> {
        let timed_out = || Error::Timeout(format!("leadership did not move to node {target} in time"));
        let mut rx = self.raft.metrics();
        // 1. Every proposal admitted before the gate closed is done: the log grows no more.
        tokio::time::timeout_at(deadline.into(), self.writes.drained()).await.map_err(|_| timed_out())?;
        // 2. The target has every entry this leader has.
        loop {
            let caught_up = {
                let m = rx.borrow();
                m.state == ServerState::Leader && matched_index(&m, target) >= m.last_log_index
            };
            if caught_up {
                break;
            }
            if rx.borrow().state != ServerState::Leader {
                return Err(self.not_leader());
            }
            tokio::time::timeout_at(deadline.into(), rx.changed()).await.map_err(|_| timed_out())?.ok();
        }
        // 3. The target campaigns; wait until it is the leader everybody follows.
        self.peers.timeout_now(addr).await.map_err(|e| Error::Timeout(format!("node {target}: {e}")))?;
        loop {
            if rx.borrow().current_leader == Some(target) {
                tracing::info!(node = self.id, leader = target, "leadership transferred");
                return Ok(());
            }
            tokio::time::timeout_at(deadline.into(), rx.changed()).await.map_err(|_| timed_out())?.ok();
        }
    }

    fn not_leader(&self) -> Error {
        let m = self.raft.metrics().borrow().clone();
        Error::NotLeader { leader_id: m.current_leader, leader_addr: leader_addr(&m) }
    }

    fn tls(&self) -> Result<&Tls> {
        self.tls.as_deref().ok_or_else(|| Error::Invalid("this node was opened without tls".into()))
    }

    /// New connections, both directions, use `identity` from now on; open ones keep going, so a
    /// certificate renewal costs no downtime. Only for a node opened with TLS.
    pub fn update_tls(&self, identity: &TlsIdentity) -> Result<()> {
        self.tls()?.update(identity)
    }

    /// Replaces the set of revoked certificates (SHA-256 of their DER): a peer presenting one is
    /// refused at handshake, and open connections with such a peer close. Only with TLS.
    pub fn set_revoked(&self, fingerprints: Vec<Fingerprint>) -> Result<()> {
        self.tls()?.set_revoked(fingerprints);
        Ok(())
    }

    pub async fn trigger_snapshot(&self) -> Result<()> {
        Ok(self.raft.trigger().snapshot().await?)
    }

    /// The next item for the application's state machine; None once the node has shut down (or
    /// consensus stopped on a fatal error: see [`Node::fatal_error`]).
    pub async fn next_work(&self) -> Option<Work> {
        self.work.lock().await.recv().await
    }

    /// Why consensus stopped on its own (e.g. the log's first failed write or fsync, naming the
    /// file and errno); None while it runs and after a requested shutdown.
    pub fn fatal_error(&self) -> Option<String> {
        self.fatal.get().cloned()
    }

    /// Waits until this node's role, term or leader differs from `(role, term, leader)` (what
    /// [`Node::metrics`] reported last), then returns the metrics; returns at once when they differ
    /// already, and once consensus has stopped (role "shutdown", or unchanged after a fatal error).
    ///
    /// It sleeps on openraft's server-metrics channel, which changes only with the vote, role,
    /// leader or membership, not on every heartbeat as the full metrics do: an idle node wakes
    /// nobody. openraft publishes the server metrics just before the full ones, and the term there
    /// is the persisted vote's: while the two disagree it waits for the full metrics instead.
    pub async fn wait_role_change(&self, role: &str, term: u64, leader: Option<NodeId>) -> MetricsView {
        let mut full = self.raft.metrics();
        let mut server = self.raft.server_metrics();
        loop {
            let (now, settling) = {
                let f = full.borrow_and_update();
                let s = server.borrow_and_update();
                let now = (role_name(f.state), f.current_term, f.current_leader);
                (now, (role_name(s.state), s.vote.leader_id().get_term(), s.current_leader) != now)
            };
            if now != (role, term, leader) {
                break;
            }
            let closed = if settling { full.changed().await.is_err() } else { server.changed().await.is_err() };
            if closed {
                break; // the core has stopped: its last metrics say how
            }
        }
        self.metrics()
    }

    pub fn metrics(&self) -> MetricsView {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let now = Instant::now();
        let ago = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t).as_secs_f64());
        let role = role_name(m.state);
        let peers = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(id, _)| **id != self.id)
                    .map(|(id, l)| (*id, (l.map(|l| l.index), ago(self.contacts.peer(*id)))))
                    .collect()
            })
            .unwrap_or_default();
        MetricsView {
            id: self.id,
            role,
            term: m.current_term,
            leader_id: m.current_leader,
            leader_addr: leader_addr(&m),
            commit_index: self.log.committed().map(|l| l.index),
            applied_index: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            nodes: membership.nodes().map(|(id, n)| (*id, n.clone())).collect(),
            peers,
            last_leader_contact_s: if m.state == ServerState::Leader { Some(0.0) } else { ago(self.contacts.leader()) },
            millis_since_quorum_ack: m.millis_since_quorum_ack,
            elections_total: self.elections.load(Ordering::Relaxed),
            log_records_dropped: crate::logging::dropped(),
            tls: self.tls.is_some(),
            tls_handshake_failures: self.tls.as_ref().map_or(0, |t| t.failures()),
            fatal_error: self.fatal_error(),
        }
    }

    /// Stops consensus and the server, makes the log durable, and ends the work queue. Idempotent.
    pub async fn shutdown(&self) -> Result<()> {
        let _ = self.stop.send(true);
        let _ = self.raft.shutdown().await;
        self.sm.close();
        self.log.close().await.map_err(|e| Error::Storage(e.to_string()))?;
        tracing::info!(node = self.id, "raft node stopped");
        Ok(())
    }
}

type RaftMetrics = openraft::RaftMetrics<NodeId, NodeInfo>;

/// The role as [`MetricsView::role`] names it.
fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Follower => "follower",
        ServerState::Shutdown => "shutdown",
    }
}

/// The index a follower is known to hold (leader only).
fn matched_index(m: &RaftMetrics, id: NodeId) -> Option<u64> {
    m.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map(|l| l.index)
}

/// The current leader's Raft address, when a leader is known and is a member.
fn leader_addr(m: &RaftMetrics) -> Option<String> {
    m.current_leader.and_then(|l| m.membership_config.membership().get_node(&l).map(|n| n.addr.clone()))
}

/// Logs the events an operator cares about (one line each) and counts elections. It follows the
/// server metrics (vote, role, leader, membership), which change only with those: the full metrics
/// are published on every turn of the core's loop, several times per heartbeat.
async fn watch_events(raft: Raft, elections: Arc<AtomicU64>) {
    let mut rx = raft.server_metrics();
    let mut last = rx.borrow().clone();
    while rx.changed().await.is_ok() {
        let m = rx.borrow().clone();
        let term = m.vote.leader_id().get_term();
        if m.state != last.state {
            match m.state {
                ServerState::Candidate => {
                    elections.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(node = m.id, term, "election started");
                }
                ServerState::Leader => tracing::info!(node = m.id, term, "election won: now leader"),
                _ if last.state == ServerState::Leader => {
                    tracing::info!(node = m.id, term, state = ?m.state, "leadership lost")
                }
                _ => {}
            }
        }
        if m.current_leader != last.current_leader {
            tracing::info!(node = m.id, term, leader = ?m.current_leader, "leader changed");
        }
        if m.membership_config.log_id() != last.membership_config.log_id() {
            tracing::info!(node = m.id, term, membership = %m.membership_config.membership(), "membership changed");
        }
        last = m;
    }
}

/// When openraft's core stops on an error of its own (a StorageError from the log or the snapshot
/// store; it stops rather than go on with state it could not persist), the node stops too: it
/// records why, stops serving peers (so it is plainly gone, and the others elect a leader among
/// themselves) and ends the work queue, after which the application's `next_work` reports the cause.
async fn stop_on_fatal(
    raft: Raft,
    log: LogStore,
    sm: StateMachine,
    stop: Arc<watch::Sender<bool>>,
    fatal: Arc<OnceLock<String>>,
) {
    // The core drops its metrics senders when it stops, after publishing why in the full metrics:
    // wait for that on the server metrics, which (unlike the full ones) do not change per heartbeat.
    let mut rx = raft.server_metrics();
    while rx.changed().await.is_ok() {}
    let running = raft.metrics().borrow().running_state.clone();
    let cause = match running {
        Err(openraft::error::Fatal::Stopped) | Ok(()) => return,
        Err(e) => e,
    };
    // The log's own record names the operation, file and errno; openraft's wraps the same text.
    let why = log.failure().unwrap_or_else(|| format!("raft stopped on a fatal error: {cause}"));
    tracing::error!(node = raft.metrics().borrow().id, error = %why, "raft node stopped on a fatal error");
    let _ = fatal.set(why);
    let _ = stop.send(true);
    sm.close();
}
