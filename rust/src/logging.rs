//! Log records from the consensus threads, handed over without ever blocking them.
//!
//! A tracing layer formats each event and pushes it into a bounded queue with `try_send`: when
//! the consumer (the Python forwarder, which needs the GIL) falls behind, records are dropped and
//! counted rather than stalling a heartbeat.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Records buffered for the consumer before new ones are dropped.
const QUEUE_RECORDS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Record {
    pub level: Level,
    pub target: String,
    pub message: String,
}

static MAX_LEVEL: AtomicUsize = AtomicUsize::new(level_rank(Level::INFO));
static DROPPED: AtomicU64 = AtomicU64::new(0);
static SENDER: OnceLock<SyncSender<Record>> = OnceLock::new();

const fn level_rank(level: Level) -> usize {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// Parses "error" | "warn" | "info" | "debug" | "trace".
pub fn parse_level(s: &str) -> Option<Level> {
    s.parse().ok()
}

/// Records dropped so far because the consumer fell behind.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

struct QueueLayer;

struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }
}

fn wanted(level: &Level, target: &str) -> bool {
    let max = MAX_LEVEL.load(Ordering::Relaxed);
    let rank = level_rank(*level);
    // openraft narrates every vote and replication step at INFO; below DEBUG only its warnings
    // and errors come through, while our own events follow the chosen level.
    if target.starts_with("warren_raft") || max >= level_rank(Level::DEBUG) {
        rank <= max
    } else {
        rank <= level_rank(Level::WARN)
    }
}

impl<S: Subscriber> Layer<S> for QueueLayer {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        wanted(metadata.level(), metadata.target())
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if !wanted(meta.level(), meta.target()) {
            return;
        }
        let Some(tx) = SENDER.get() else { return };
        let mut f = Fields { message: String::new(), rest: String::new() };
        event.record(&mut f);
        let record = Record { level: *meta.level(), target: meta.target().to_string(), message: f.message + &f.rest };
        if let Err(TrySendError::Full(_)) = tx.try_send(record) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Wakes the consumer with an empty record (empty target), e.g. so it can notice it must stop.
pub fn wake() {
    if let Some(tx) = SENDER.get() {
        let _ = tx.try_send(Record { level: Level::TRACE, target: String::new(), message: String::new() });
    }
}

/// Installs the layer (once per process) and returns the receiving end of the queue; later calls
/// only change the level and return None.
pub fn install(level: Level) -> Option<Receiver<Record>> {
    MAX_LEVEL.store(level_rank(level), Ordering::Relaxed);
    if SENDER.get().is_some() {
        return None;
    }
    let (tx, rx) = sync_channel(QUEUE_RECORDS);
    if SENDER.set(tx).is_err() {
        return None;
    }
    let _ = tracing_subscriber::registry().with(QueueLayer).try_init();
    Some(rx)
}
