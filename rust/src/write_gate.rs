//! Closes a leader to new proposals for a leadership hand-over, and tells when the ones it had
//! already admitted are done (committed or failed).
//!
//! A hand-over's target must hold every entry the leader will ever write in its term: an entry
//! appended after the target caught up makes the target's log the shorter one, the leader refuses
//! it the vote, and the hand-over falls back to an election timeout. Each admitted proposal holds a
//! [`Pass`] until openraft has answered its batch, so "drained" covers proposals still queued in the
//! proposer as well as the batch in flight.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Default)]
pub struct WriteGate {
    closed: AtomicBool,
    admitted: AtomicUsize,
    drained: Notify,
}

/// One admitted proposal; dropping it lets the gate drain.
pub struct Pass(Arc<WriteGate>);

impl Drop for Pass {
    fn drop(&mut self) {
        if self.0.admitted.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

impl WriteGate {
    /// A pass for one proposal, or None while the gate is closed. Counting first and checking
    /// second (both SeqCst) means a proposal either sees the gate closed or is waited for by
    /// [`WriteGate::drained`].
    pub fn enter(self: &Arc<Self>) -> Option<Pass> {
        self.admitted.fetch_add(1, Ordering::SeqCst);
        let pass = Pass(self.clone());
        if self.closed.load(Ordering::SeqCst) {
            return None; // `pass` drops here and uncounts itself
        }
        Some(pass)
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    pub fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
    }

    /// Returns once no admitted proposal is left.
    pub async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.admitted.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_closed_gate_admits_nothing_and_drains_when_the_last_pass_drops() {
        let gate = Arc::new(WriteGate::default());
        let first = gate.enter().expect("an open gate admits");
        let second = gate.enter().expect("an open gate admits");
        gate.close();
        assert!(gate.enter().is_none());
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.drained().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one pass is still out");
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("drained").unwrap();
        gate.open();
        assert!(gate.enter().is_some());
    }

    #[tokio::test]
    async fn an_idle_gate_is_drained_at_once() {
        let gate = Arc::new(WriteGate::default());
        drop(gate.enter());
        gate.close();
        tokio::time::timeout(Duration::from_secs(5), gate.drained()).await.expect("drained");
    }
}
