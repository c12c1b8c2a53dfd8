//! The cache's counters ([`CacheStats`], [`SideStats`]) and the names of
//! the metrics it records through the [`metrics`] facade ([`names`]).
//! Every figure is a relaxed atomic and a pre-registered metric handle: no
//! lock, no label formatting on the hot path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Metric names recorded by a [`FailoverCache`](super::FailoverCache).
/// Every metric carries a `manager` label (the cache's name); per-side
/// metrics also a `side` label (the side's name). Install the recorder
/// before building the cache: handles are registered once.
///
/// | name | kind | labels | meaning |
/// |---|---|---|---|
/// | `failover_cache_writes_total` | counter | manager, side, outcome (`acked`/`queued`/`failed`) | writes (sets, deletes) per side |
/// | `failover_cache_reads_total` | counter | manager, side, outcome (`hit`/`miss`/`error`) | reads per side |
/// | `failover_cache_fallback_reads_total` | counter | manager | reads answered by the side asked second |
/// | `failover_cache_backlog` | gauge | manager, side | keys queued for the side |
/// | `failover_cache_backlog_bytes` | gauge | manager, side | bytes queued for the side |
/// | `failover_cache_replayed_total` | counter | manager, side, outcome (`applied`/`superseded`/`rejected`) | queued entries replayed |
/// | `failover_cache_dropped_total` | counter | manager, side, reason (`overflow`/`divergent`/`expired`) | entries given up (overflow, while divergent) or whose value expired in the queue (still replayed as a removal of older entries) |
/// | `failover_cache_divergent` | gauge | manager, side | 1 while the side waits for a key scan |
/// | `failover_cache_divergences_total` | counter | manager, side | times the side became divergent |
/// | `failover_cache_reconciled_keys_total` | counter | manager, side | entries reconciliation copied onto the side |
/// | `failover_cache_reconciliations_total` | counter | manager | key scans completed |
/// | `failover_cache_side_up` | gauge | manager, side | 1 while the side is used |
/// | `failover_cache_read_repairs_total` | counter | manager, side | entries read repair copied onto the side |
/// | `failover_cache_fail_safe_hits_total` | counter | manager | reads served from the fail-safe |
/// | `failover_cache_loader_calls_total` | counter | manager | loader calls of `get_or_set_with` |
/// | `failover_cache_single_flight_waits_total` | counter | manager | callers that waited for another caller's loader |
pub mod names {
    /// Counter: writes per side, by outcome.
    pub const WRITES_TOTAL: &str = "failover_cache_writes_total";
    /// Counter: reads per side, by outcome.
    pub const READS_TOTAL: &str = "failover_cache_reads_total";
    /// Counter: reads answered by the side asked second.
    pub const FALLBACK_READS_TOTAL: &str = "failover_cache_fallback_reads_total";
    /// Gauge: keys queued for a side.
    pub const BACKLOG: &str = "failover_cache_backlog";
    /// Gauge: bytes queued for a side.
    pub const BACKLOG_BYTES: &str = "failover_cache_backlog_bytes";
    /// Counter: queued entries replayed, by outcome.
    pub const REPLAYED_TOTAL: &str = "failover_cache_replayed_total";
    /// Counter: queued entries given up, or expired in the queue, by reason.
    pub const DROPPED_TOTAL: &str = "failover_cache_dropped_total";
    /// Gauge: 1 while a side waits for a key scan.
    pub const DIVERGENT: &str = "failover_cache_divergent";
    /// Counter: times a side became divergent.
    pub const DIVERGENCES_TOTAL: &str = "failover_cache_divergences_total";
    /// Counter: entries reconciliation copied onto a side.
    pub const RECONCILED_KEYS_TOTAL: &str = "failover_cache_reconciled_keys_total";
    /// Counter: key scans completed.
    pub const RECONCILIATIONS_TOTAL: &str = "failover_cache_reconciliations_total";
    /// Gauge: 1 while a side is used.
    pub const SIDE_UP: &str = "failover_cache_side_up";
    /// Counter: entries read repair copied onto a side.
    pub const READ_REPAIRS_TOTAL: &str = "failover_cache_read_repairs_total";
    /// Counter: reads served from the fail-safe.
    pub const FAIL_SAFE_HITS_TOTAL: &str = "failover_cache_fail_safe_hits_total";
    /// Counter: loader calls.
    pub const LOADER_CALLS_TOTAL: &str = "failover_cache_loader_calls_total";
    /// Counter: callers that waited for another caller's loader.
    pub const SINGLE_FLIGHT_WAITS_TOTAL: &str = "failover_cache_single_flight_waits_total";
}

/// An atomic count mirrored into a metric counter.
#[derive(Debug)]
pub(crate) struct Tally {
    n: AtomicU64,
    metric: metrics::Counter,
}

impl Tally {
    fn new(metric: metrics::Counter) -> Self {
        Tally {
            n: AtomicU64::new(0),
            metric,
        }
    }

    pub(crate) fn add(&self, n: u64) {
        self.n.fetch_add(n, Relaxed);
        self.metric.increment(n);
    }

    pub(crate) fn inc(&self) {
        self.add(1);
    }

    pub(crate) fn get(&self) -> u64 {
        self.n.load(Relaxed)
    }
}

/// A side's counters and gauges.
#[derive(Debug)]
pub(crate) struct SideCounters {
    pub(crate) acked: Tally,
    pub(crate) queued: Tally,
    pub(crate) failed: Tally,
    pub(crate) hits: Tally,
    pub(crate) misses: Tally,
    pub(crate) read_errors: Tally,
    pub(crate) replayed: Tally,
    pub(crate) superseded: Tally,
    pub(crate) rejected: Tally,
    pub(crate) dropped_overflow: Tally,
    pub(crate) dropped_divergent: Tally,
    pub(crate) expired: Tally,
    pub(crate) divergences: Tally,
    pub(crate) reconciled: Tally,
    pub(crate) read_repairs: Tally,
    pub(crate) backlog: metrics::Gauge,
    pub(crate) backlog_bytes: metrics::Gauge,
    pub(crate) divergent: metrics::Gauge,
    pub(crate) up: metrics::Gauge,
}

impl SideCounters {
    pub(crate) fn new(manager: &Arc<str>, side: &Arc<str>) -> Self {
        let m = manager.to_string();
        let s = side.to_string();
        let c = |name: &'static str, key: &'static str, value: &'static str| {
            Tally::new(
                metrics::counter!(name, "manager" => m.clone(), "side" => s.clone(), key => value),
            )
        };
        let g =
            |name: &'static str| metrics::gauge!(name, "manager" => m.clone(), "side" => s.clone());
        use names::*;
        SideCounters {
            acked: c(WRITES_TOTAL, "outcome", "acked"),
            queued: c(WRITES_TOTAL, "outcome", "queued"),
            failed: c(WRITES_TOTAL, "outcome", "failed"),
            hits: c(READS_TOTAL, "outcome", "hit"),
            misses: c(READS_TOTAL, "outcome", "miss"),
            read_errors: c(READS_TOTAL, "outcome", "error"),
            replayed: c(REPLAYED_TOTAL, "outcome", "applied"),
            superseded: c(REPLAYED_TOTAL, "outcome", "superseded"),
            rejected: c(REPLAYED_TOTAL, "outcome", "rejected"),
            dropped_overflow: c(DROPPED_TOTAL, "reason", "overflow"),
            dropped_divergent: c(DROPPED_TOTAL, "reason", "divergent"),
            expired: c(DROPPED_TOTAL, "reason", "expired"),
            divergences: Tally::new(
                metrics::counter!(DIVERGENCES_TOTAL, "manager" => m.clone(), "side" => s.clone()),
            ),
            reconciled: Tally::new(
                metrics::counter!(RECONCILED_KEYS_TOTAL, "manager" => m.clone(), "side" => s.clone()),
            ),
            read_repairs: Tally::new(
                metrics::counter!(READ_REPAIRS_TOTAL, "manager" => m.clone(), "side" => s.clone()),
            ),
            backlog: g(BACKLOG),
            backlog_bytes: g(BACKLOG_BYTES),
            divergent: g(DIVERGENT),
            up: g(SIDE_UP),
        }
    }
}

/// The cache-wide counters.
#[derive(Debug)]
pub(crate) struct CacheCounters {
    pub(crate) fallback_reads: Tally,
    pub(crate) fail_safe_hits: Tally,
    pub(crate) loader_calls: Tally,
    pub(crate) single_flight_waits: Tally,
    pub(crate) reconciliations: Tally,
}

impl CacheCounters {
    pub(crate) fn new(manager: &Arc<str>) -> Self {
        let m = manager.to_string();
        let c = |name: &'static str| Tally::new(metrics::counter!(name, "manager" => m.clone()));
        CacheCounters {
            fallback_reads: c(names::FALLBACK_READS_TOTAL),
            fail_safe_hits: c(names::FAIL_SAFE_HITS_TOTAL),
            loader_calls: c(names::LOADER_CALLS_TOTAL),
            single_flight_waits: c(names::SINGLE_FLIGHT_WAITS_TOTAL),
            reconciliations: c(names::RECONCILIATIONS_TOTAL),
        }
    }
}

/// A side's figures in a [`CacheStats`] snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideStats {
    /// The side's name.
    pub name: Arc<str>,
    /// Whether the side is used now (not waiting for a health check).
    pub up: bool,
    /// Whether it waits for a key scan.
    pub divergent: bool,
    /// Keys queued for it.
    pub backlog: usize,
    /// Bytes queued for it.
    pub backlog_bytes: usize,
    /// Writes it acknowledged.
    pub acked_writes: u64,
    /// Writes queued for it (it failed or timed out, the other side had them).
    pub queued_writes: u64,
    /// Writes it failed that were not queued (the whole call failed and
    /// could not have been applied anywhere).
    pub failed_writes: u64,
    /// Queued entries replayed onto it and written.
    pub replayed: u64,
    /// Queued entries replayed but not written: it had them or newer ones.
    pub superseded: u64,
    /// Queued entries it refused (given up).
    pub rejected: u64,
    /// Queued entries given up when the queue overflowed.
    pub dropped_overflow: u64,
    /// Writes it missed while divergent, not queued (the key scan covers them).
    pub dropped_divergent: u64,
    /// Queued entries whose value expired before the replay (replayed as a
    /// removal of older entries).
    pub expired_in_queue: u64,
    /// Times it became divergent.
    pub divergences: u64,
    /// Entries reconciliation copied onto it.
    pub reconciled_keys: u64,
    /// Reads it answered with a value.
    pub read_hits: u64,
    /// Reads it answered with nothing (or a tombstone).
    pub read_misses: u64,
    /// Reads it failed.
    pub read_errors: u64,
    /// Entries read repair copied onto it.
    pub read_repairs: u64,
}

impl SideStats {
    /// Keys only a key scan can repair: dropped on overflow or missed while
    /// divergent.
    pub fn divergent_keys(&self) -> u64 {
        self.dropped_overflow + self.dropped_divergent
    }
}

/// A snapshot of a cache's counters ([`FailoverCache::stats`](super::FailoverCache::stats)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheStats {
    /// The primary's figures.
    pub primary: SideStats,
    /// The secondary's figures.
    pub secondary: SideStats,
    /// Reads answered by the side asked second.
    pub fallback_reads: u64,
    /// Reads served from the fail-safe.
    pub fail_safe_hits: u64,
    /// Loader calls of `get_or_set_with`.
    pub loader_calls: u64,
    /// Callers that waited for another caller's loader.
    pub single_flight_waits: u64,
    /// Key scans completed.
    pub reconciliations: u64,
}

impl CacheStats {
    /// Whether both sides are up, nothing is queued and neither is divergent.
    pub fn in_sync(&self) -> bool {
        [&self.primary, &self.secondary]
            .iter()
            .all(|s| s.up && s.backlog == 0 && !s.divergent)
    }
}

/// What a reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Keys looked at (a key on both sides is looked at twice).
    pub scanned: u64,
    /// Entries copied onto the primary.
    pub copied_to_primary: u64,
    /// Entries copied onto the secondary.
    pub copied_to_secondary: u64,
    /// Of those, tombstones (deletes the other side had missed).
    pub tombstones_copied: u64,
    /// Keys left alone because a side holds a foreign value there.
    pub foreign_skipped: u64,
    /// How long it took.
    pub duration: Duration,
}
