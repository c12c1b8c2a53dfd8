//! Getting a connection for a [`Route`]: resolve the route against the
//! published topology (lock-free), wait (bounded) while nothing fits, and
//! acquire from the chosen node's current pool generation, failing over to
//! another node when the acquire fails for a failover-class reason.
//!
//! The fast path (a node is known and its pool hands out a connection)
//! subscribes to nothing and allocates nothing: one clock read, two
//! `arc-swap` loads, a few reference-count increments, and a timer entry
//! only if the node pool's acquire has to wait. The acquire timeout counts
//! from the call and bounds every attempt.

use crate::core::Classify;
use crate::error::{BoxError, Error, Result};
use crate::pool::backend::Backend;
use crate::pool::inner::{Inner, Slot};
use crate::pool::route::Route;
use crate::pool::stats::names;
use std::sync::Arc;
use std::sync::atomic::Ordering::*;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// One node's current pool generation, as handed to a caller.
pub(crate) struct NodeRef<B: Backend> {
    pub(crate) slot: Arc<Slot<B>>,
    /// Topology epoch when this was handed out.
    pub(crate) topology_epoch: u64,
    /// The node's connection pool (the generation current at hand-out).
    pub(crate) pool: B::Pool,
}

impl<B: Backend> Clone for NodeRef<B> {
    fn clone(&self) -> Self {
        NodeRef {
            slot: Arc::clone(&self.slot),
            topology_epoch: self.topology_epoch,
            pool: self.pool.clone(),
        }
    }
}

impl<B: Backend> NodeRef<B> {
    pub(crate) fn id(&self) -> &Arc<str> {
        &self.slot.spec.id
    }
}

/// When a caller started and until when it may wait: one clock read per
/// call (no timer is armed unless the caller has to wait or retry).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wait {
    started: Instant,
    deadline: Instant,
}

impl Wait {
    pub(crate) fn new(timeout: Duration) -> Self {
        let started = Instant::now();
        Wait {
            started,
            deadline: started + timeout,
        }
    }

    fn no_node(&self, route: Route, last: Option<BoxError>) -> Error {
        Error::NoNode {
            wanted: route.wanted(),
            waited: self.started.elapsed(),
            last,
        }
    }
}

impl<B: Backend> Inner<B> {
    /// Acquires a connection on the node `route` picks. A failover-class
    /// failure to connect (nothing was sent) triggers a re-probe and another
    /// try, on another node when the topology offers one, until the acquire
    /// timeout; a busy node pool is waited for; an application error is
    /// returned at once.
    pub(crate) async fn acquire_route(&self, route: Route) -> Result<(B::Conn, NodeRef<B>)> {
        let wait = Wait::new(self.config.acquire_timeout);
        let mut avoid: Option<(Arc<Slot<B>>, u64)> = None;
        let mut last: Option<BoxError> = None;
        loop {
            let node = match self.wait_for(&wait, avoid.as_ref(), route).await {
                Ok(n) => n,
                Err(Error::NoNode { .. }) => return Err(wait.no_node(route, last)),
                Err(e) => return Err(e),
            };
            // Every attempt is bounded by the caller's deadline: a node pool
            // may spend several connect timeouts on one acquire (a recycle
            // check, then a new connection, on a frozen node).
            let attempt = self.backend.acquire(&node.pool);
            let result = match tokio::time::timeout_at(wait.deadline, attempt).await {
                Ok(r) => r,
                Err(_) => return Err(wait.no_node(route, last)),
            };
            match result {
                Ok(conn) => {
                    if route.is_writer() && !self.still_writer(&node.slot) {
                        // The topology moved while we connected (the node was
                        // fenced or demoted, or a switchover began): this
                        // connection must not carry writes.
                        continue;
                    }
                    return Ok((conn, node));
                }
                Err(e) => {
                    let class = e.classify();
                    if !class.is_failover() {
                        // Refused by the server (bad password, unknown
                        // database, …): nothing of the caller's was sent.
                        return Err(Error::backend(&**node.id(), class, e)
                            .during("connect")
                            .unapplied());
                    }
                    if B::is_exhausted(&e) {
                        // Busy, not broken: wait on the same node again.
                        avoid = None;
                    } else {
                        self.request_probe(node.id());
                        avoid = Some((Arc::clone(&node.slot), node.topology_epoch));
                    }
                    last = Some(Box::new(Error::backend(&**node.id(), class, e)));
                    if Instant::now() >= wait.deadline {
                        return Err(wait.no_node(route, last));
                    }
                }
            }
        }
    }

    /// Whether `slot` is still the published writer and no switchover holds
    /// writers back (two lock-free loads).
    fn still_writer(&self, slot: &Arc<Slot<B>>) -> bool {
        if self.paused.load(Acquire) > 0 {
            return false;
        }
        let routing = self.routing.load();
        routing
            .topology
            .writer
            .is_some_and(|w| Arc::ptr_eq(&routing.slots[w], slot))
    }

    /// Waits until `route` picks a node in the topology (skipping `avoid`
    /// until the topology moves past its epoch, and holding writers back
    /// during a switchover), or the acquire timeout passes.
    pub(crate) async fn wait_for(
        &self,
        wait: &Wait,
        avoid: Option<&(Arc<Slot<B>>, u64)>,
        route: Route,
    ) -> Result<NodeRef<B>> {
        let mut rounds: Option<watch::Receiver<u64>> = None;
        let mut waited = false;
        loop {
            if self.closed.load(Relaxed) {
                return Err(Error::Closed);
            }
            if let Some(node) = self.pick(route, avoid, waited) {
                if waited {
                    self.record_wait(route, wait.started.elapsed());
                }
                return Ok(node);
            }
            let Some(rx) = rounds.as_mut() else {
                // Subscribe, then look once more: a round that finished in
                // between is not missed.
                rounds = Some(self.rounds.subscribe());
                continue;
            };
            if !waited {
                // One request per waiter: the prober coalesces them, and
                // later rounds come at the (fast) probe interval anyway.
                self.probe_now.notify_one();
            }
            waited = true;
            match tokio::time::timeout_at(wait.deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Closed),
                Err(_) => return Err(wait.no_node(route, None)),
            }
        }
    }

    /// The node `route` picks in the published topology, if any (and if it
    /// is not the one to avoid, unless the topology moved on or we waited).
    fn pick(
        &self,
        route: Route,
        avoid: Option<&(Arc<Slot<B>>, u64)>,
        waited: bool,
    ) -> Option<NodeRef<B>> {
        // A switchover holds writers back; readers go on.
        if route.is_writer() && self.paused.load(Acquire) > 0 {
            return None;
        }
        let routing = self.routing.load();
        let i = route.pick(&routing.topology, &self.read_rr)?;
        let slot = &routing.slots[i];
        let epoch = routing.topology.epoch;
        if avoid.is_some_and(|(s, e)| Arc::ptr_eq(s, slot) && epoch <= *e && !waited) {
            return None;
        }
        Some(NodeRef {
            slot: Arc::clone(slot),
            topology_epoch: epoch,
            pool: slot.live.load().pool.clone(),
        })
    }

    fn record_wait(&self, route: Route, waited: Duration) {
        self.stats.waits.record(waited);
        let label = match route {
            Route::Writer => "writer",
            Route::Reader(_) => "reader",
            Route::After(_) => "after",
        };
        metrics::histogram!(names::POOL_ACQUIRE_WAIT_SECONDS, "manager" => self.label.clone(), "route" => label)
            .record(waited.as_secs_f64());
    }
}
