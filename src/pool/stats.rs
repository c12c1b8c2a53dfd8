//! A pool's counters ([`PoolStats`]) and the names of the metrics it
//! records through the [`metrics`] facade ([`names`]).

use crate::core::stats::{LatencyHistogram, LatencySummary};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Metric names recorded by a [`FailoverPool`](crate::pool::FailoverPool).
/// Every metric carries a `manager` label (the pool's name); per-node
/// metrics also a `node` label.
///
/// | name | kind | labels | meaning |
/// |---|---|---|---|
/// | `failover_pool_writer_changes_total` | counter | manager | the writer changed (first discovery and switchovers included) |
/// | `failover_pool_failovers_total` | counter | manager | failovers completed: writer lost, then found |
/// | `failover_pool_promotions_total` | counter | manager, node | promotions this pool performed |
/// | `failover_pool_fenced_total` | counter | manager, node | nodes fenced (split brain, stale primary) |
/// | `failover_pool_split_brain_total` | counter | manager | split brains detected |
/// | `failover_pool_acquire_wait_seconds` | histogram | manager, route | how long callers that had to wait for a node waited |
/// | `failover_pool_epoch` | gauge | manager | topology epoch |
/// | `failover_pool_node_up` | gauge | manager, node | 1 while the node answers probes |
/// | `failover_pool_nodes` | gauge | manager | nodes in the pool |
pub mod names {
    /// Counter: the writer changed to another node (including the first
    /// discovery of a writer and a planned switchover).
    pub const POOL_WRITER_CHANGES_TOTAL: &str = "failover_pool_writer_changes_total";
    /// Counter: failovers completed (a writer lost, then a writer found again).
    pub const POOL_FAILOVERS_TOTAL: &str = "failover_pool_failovers_total";
    /// Counter: promotions this pool performed, per `node`.
    pub const POOL_PROMOTIONS_TOTAL: &str = "failover_pool_promotions_total";
    /// Counter: times a node was fenced, per `node`.
    pub const POOL_FENCED_TOTAL: &str = "failover_pool_fenced_total";
    /// Counter: split brains detected (two unfenced primaries at once).
    pub const POOL_SPLIT_BRAIN_TOTAL: &str = "failover_pool_split_brain_total";
    /// Histogram (seconds): how long callers that had to wait for a node
    /// waited, per `route` (`writer`, `reader`, `after`).
    pub const POOL_ACQUIRE_WAIT_SECONDS: &str = "failover_pool_acquire_wait_seconds";
    /// Gauge: the topology epoch.
    pub const POOL_EPOCH: &str = "failover_pool_epoch";
    /// Gauge: 1 while a node answers its probes, else 0, per `node`.
    pub const POOL_NODE_UP: &str = "failover_pool_node_up";
    /// Gauge: how many nodes the pool has (the topology source may change it).
    pub const POOL_NODES: &str = "failover_pool_nodes";
}

#[derive(Debug, Default)]
pub(crate) struct PoolCounters {
    pub(crate) writer_changes: AtomicU64,
    pub(crate) failovers: AtomicU64,
    pub(crate) last_failover_us: AtomicU64,
    pub(crate) promotions: AtomicU64,
    pub(crate) fenced: AtomicU64,
    pub(crate) split_brains: AtomicU64,
    pub(crate) waits: LatencyHistogram,
}

/// A snapshot of a pool's counters ([`FailoverPool::stats`](crate::pool::FailoverPool::stats)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    /// Topology epoch.
    pub epoch: u64,
    /// Current writer.
    pub writer: Option<Arc<str>>,
    /// Number of nodes.
    pub nodes: usize,
    /// Times the writer changed (including the first discovery).
    pub writer_changes: u64,
    /// Completed failovers (writer lost, then a new one found).
    pub failovers: u64,
    /// Duration of the last failover, writer lost → writer found.
    pub last_failover: Option<Duration>,
    /// Promotions this pool performed.
    pub promotions: u64,
    /// Times a node was fenced.
    pub fenced: u64,
    /// Split brains detected.
    pub split_brains: u64,
    /// How long callers that had to wait for a node waited (writers and readers).
    pub waits: LatencySummary,
}

impl PoolCounters {
    pub(crate) fn snapshot(&self, epoch: u64, writer: Option<Arc<str>>, nodes: usize) -> PoolStats {
        PoolStats {
            epoch,
            writer,
            nodes,
            writer_changes: self.writer_changes.load(Relaxed),
            failovers: self.failovers.load(Relaxed),
            last_failover: match self.last_failover_us.load(Relaxed) {
                0 => None,
                us => Some(Duration::from_micros(us)),
            },
            promotions: self.promotions.load(Relaxed),
            fenced: self.fenced.load(Relaxed),
            split_brains: self.split_brains.load(Relaxed),
            waits: self.waits.summary(),
        }
    }
}
