//! A byte gauge with its high-water mark: what a bounded queue holds now, and the most it ever held.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Default, Debug)]
pub(crate) struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    pub(crate) fn add(&self, n: usize) {
        let now = self.now.fetch_add(n, Ordering::Relaxed) + n;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn sub(&self, n: usize) {
        self.now.fetch_sub(n, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn now(&self) -> usize {
        self.now.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}
