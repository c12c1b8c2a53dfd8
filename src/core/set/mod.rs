//! The live endpoint set: an [`arc_swap`] snapshot of [`LiveEndpoint`]s that
//! discovery replaces atomically, each with its live state in atomics.
//!
//! Readers (every pick, every call) load the snapshot without a lock and
//! without allocating; writers (discovery, `upsert`, `remove`) build a new
//! snapshot and swap it in. An endpoint whose id and address survive a
//! replacement keeps its live state (health, latency, breaker, counters).
//!
//! The per-endpoint live state is in `live.rs`.

mod live;

pub use live::{
    DEFAULT_DECAY, DEFAULT_RTT, EndpointMetrics, InFlightGuard, LiveEndpoint, PeakEwma,
};

use crate::core::breaker::BreakerConfig;
use crate::core::endpoint::Endpoint;
use crate::error::{Error, Result};
use arc_swap::{ArcSwap, Guard};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};

/// One immutable version of the endpoint list.
#[derive(Debug)]
pub struct Snapshot {
    version: u64,
    endpoints: Box<[Arc<LiveEndpoint>]>,
    by_id: HashMap<Arc<str>, usize>,
}

impl Snapshot {
    /// Monotonic version; changes with every replacement.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The endpoints, in configured order (priority order for active-passive).
    pub fn endpoints(&self) -> &[Arc<LiveEndpoint>] {
        &self.endpoints
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Position of an endpoint by id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// An endpoint by id.
    pub fn get(&self, id: &str) -> Option<&Arc<LiveEndpoint>> {
        self.index_of(id).map(|i| &self.endpoints[i])
    }
}

/// What a replacement of the set changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetChange {
    /// Ids that are new.
    pub added: Vec<Arc<str>>,
    /// Ids that are gone.
    pub removed: Vec<Arc<str>>,
    /// Ids whose description changed (they keep their live state only if the
    /// address and port stayed the same).
    pub updated: Vec<Arc<str>>,
}

impl SetChange {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.updated.is_empty()
    }
}

/// The live, atomically replaceable set of endpoints.
#[derive(Debug)]
pub struct EndpointSet {
    current: ArcSwap<Snapshot>,
    breaker: Arc<BreakerConfig>,
    next_version: AtomicU64,
    panic: AtomicBool,
}

impl EndpointSet {
    /// A set of the given endpoints; ids must be unique.
    pub fn new(endpoints: Vec<Endpoint>, breaker: Arc<BreakerConfig>) -> Result<Self> {
        check_unique(&endpoints)?;
        let live = endpoints
            .into_iter()
            .map(|e| Arc::new(LiveEndpoint::new(e, Arc::clone(&breaker))))
            .collect();
        Ok(EndpointSet {
            current: ArcSwap::from_pointee(build_snapshot(1, live)),
            breaker,
            next_version: AtomicU64::new(2),
            panic: AtomicBool::new(false),
        })
    }

    /// The current snapshot; lock-free and allocation-free. Hold it only
    /// briefly (use [`EndpointSet::load_full`] to keep it).
    pub fn snapshot(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The endpoint with this id in the current snapshot.
    pub fn get(&self, id: &str) -> Option<Arc<LiveEndpoint>> {
        self.snapshot().get(id).cloned()
    }

    /// Replaces the whole list (what discovery does). Endpoints whose id,
    /// address and port are unchanged keep their live state.
    pub fn replace(&self, endpoints: Vec<Endpoint>) -> Result<SetChange> {
        check_unique(&endpoints)?;
        let mut change = SetChange::default();
        self.current.rcu(|old| {
            change = SetChange::default();
            let mut live = Vec::with_capacity(endpoints.len());
            for e in &endpoints {
                match old.get(&e.id) {
                    Some(prev) if prev.endpoint() == e => live.push(Arc::clone(prev)),
                    Some(prev) => {
                        change.updated.push(Arc::clone(&e.id));
                        live.push(Arc::new(self.carry_over(prev, e.clone())));
                    }
                    None => {
                        change.added.push(Arc::clone(&e.id));
                        live.push(Arc::new(LiveEndpoint::new(
                            e.clone(),
                            Arc::clone(&self.breaker),
                        )));
                    }
                }
            }
            for prev in old.endpoints() {
                if !endpoints.iter().any(|e| e.id == prev.endpoint().id) {
                    change.removed.push(Arc::clone(&prev.endpoint().id));
                }
            }
            build_snapshot(self.next_version.fetch_add(1, Relaxed), live)
        });
        Ok(change)
    }

    fn carry_over(&self, prev: &LiveEndpoint, e: Endpoint) -> LiveEndpoint {
        LiveEndpoint::succeeding(prev, e, Arc::clone(&self.breaker))
    }

    /// Adds an endpoint or replaces the one with the same id.
    pub fn upsert(&self, endpoint: Endpoint) -> Result<SetChange> {
        let mut list: Vec<Endpoint> = self
            .snapshot()
            .endpoints()
            .iter()
            .map(|l| l.endpoint().clone())
            .collect();
        match list.iter_mut().find(|e| e.id == endpoint.id) {
            Some(slot) => *slot = endpoint,
            None => list.push(endpoint),
        }
        self.replace(list)
    }

    /// Removes an endpoint by id; returns whether it was there.
    pub fn remove(&self, id: &str) -> Result<bool> {
        let list: Vec<Endpoint> = self
            .snapshot()
            .endpoints()
            .iter()
            .filter(|l| l.id() != id)
            .map(|l| l.endpoint().clone())
            .collect();
        Ok(!self.replace(list)?.removed.is_empty())
    }

    /// Whether panic routing is on (too few endpoints are healthy, so picks
    /// ignore health and ejection rather than fail).
    pub fn is_panic(&self) -> bool {
        self.panic.load(Relaxed)
    }

    /// Recomputes panic mode: on when the share of available endpoints is
    /// below `threshold` (0.0 disables panic routing). Returns the new state
    /// when it changed. Called by health checking and outlier detection after
    /// they change an endpoint, never per pick.
    pub fn refresh_panic(&self, threshold: f64, now: u64) -> Option<bool> {
        let snap = self.snapshot();
        let total = snap.len();
        let panic = if threshold <= 0.0 || total == 0 {
            false
        } else {
            let usable = snap
                .endpoints()
                .iter()
                .filter(|e| e.health().is_usable() && !e.is_ejected(now))
                .count();
            (usable as f64) / (total as f64) < threshold
        };
        let prev = self.panic.swap(panic, Relaxed);
        (prev != panic).then_some(panic)
    }
}

fn check_unique(endpoints: &[Endpoint]) -> Result<()> {
    let mut seen = std::collections::HashSet::with_capacity(endpoints.len());
    for e in endpoints {
        if !seen.insert(&*e.id) {
            return Err(Error::Config(format!("duplicate endpoint id `{}`", e.id)));
        }
    }
    Ok(())
}

fn build_snapshot(version: u64, live: Vec<Arc<LiveEndpoint>>) -> Snapshot {
    let by_id = live
        .iter()
        .enumerate()
        .map(|(i, l)| (Arc::clone(&l.endpoint().id), i))
        .collect();
    Snapshot {
        version,
        endpoints: live.into_boxed_slice(),
        by_id,
    }
}

#[cfg(test)]
mod tests;
