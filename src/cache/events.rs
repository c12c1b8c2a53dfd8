//! The cache's typed event stream ([`CacheEvent`]), for logs, alerts and
//! drills: sides going down and up, writes queued for a side, divergence,
//! reconciliation, read repair and fail-safe answers.

use super::stats::ReconcileReport;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;

/// Something that happened in a cache, with when.
#[derive(Debug, Clone)]
pub struct CacheEvent {
    /// Wall-clock time of the event.
    pub at: SystemTime,
    /// The cache's name.
    pub cache: Arc<str>,
    /// What happened.
    pub kind: CacheEventKind,
}

/// The kinds of [`CacheEvent`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CacheEventKind {
    /// A side failed a call; writes are queued for it until it answers a
    /// health check.
    SideDown {
        /// The side.
        side: Arc<str>,
        /// What failed.
        reason: String,
    },
    /// A side answered a health check again; its queue is replayed.
    SideUp {
        /// The side.
        side: Arc<str>,
        /// How long it was down.
        down_for: Duration,
    },
    /// A write succeeded on one side only and was queued for the other.
    WriteQueued {
        /// The side that missed it.
        side: Arc<str>,
        /// The key.
        key: String,
        /// Why it missed it.
        reason: String,
    },
    /// A side can no longer be repaired from its queue: only a key scan
    /// ([`reconcile`](super::FailoverCache::reconcile), started by the
    /// cache when the side is up) brings it back.
    Divergent {
        /// The side.
        side: Arc<str>,
        /// Why: the queue overflowed, or the side came back with another
        /// data set (restarted, or its master changed).
        reason: String,
        /// Queued entries given up (they are covered by the key scan).
        dropped: usize,
    },
    /// A side's queue was replayed to the end and it is not divergent.
    InSync {
        /// The side.
        side: Arc<str>,
    },
    /// A reconciliation (key scan of both sides) finished.
    Reconciled {
        /// What it did.
        report: ReconcileReport,
    },
    /// A side refused a replayed entry with an error about the command
    /// itself (e.g. out of memory); the entry was given up.
    ReplayRejected {
        /// The side.
        side: Arc<str>,
        /// The key (with the cache's prefix).
        key: String,
        /// The side's error.
        reason: String,
    },
    /// A read found the sides disagreeing and copied the newer entry.
    ReadRepaired {
        /// The side that was behind.
        side: Arc<str>,
        /// The key.
        key: String,
    },
    /// Both sides were down and the fail-safe served the last known value.
    FailSafeServed {
        /// The key.
        key: String,
        /// How long ago it was last read or written.
        age: Duration,
    },
}

/// Broadcasts events; costs one atomic load when nobody listens.
#[derive(Debug)]
pub(crate) struct EventBus {
    cache: Arc<str>,
    tx: broadcast::Sender<CacheEvent>,
}

impl EventBus {
    pub(crate) fn new(cache: Arc<str>) -> Self {
        EventBus {
            cache,
            tx: broadcast::channel(1024).0,
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<CacheEvent> {
        self.tx.subscribe()
    }

    /// Whether anyone listens (to skip building an event's text).
    pub(crate) fn listened(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    pub(crate) fn emit(&self, kind: CacheEventKind) {
        tracing::debug!(cache = %self.cache, event = ?kind, "cache event");
        if self.listened() {
            let _ = self.tx.send(CacheEvent {
                at: SystemTime::now(),
                cache: Arc::clone(&self.cache),
                kind,
            });
        }
    }
}
