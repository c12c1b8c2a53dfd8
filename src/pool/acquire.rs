//! Getting a connection for a [`Route`]: resolve the route against the
//! published topology (lock-free), wait (bounded) while nothing fits, and
//! acquire from the chosen node's current pool generation, failing over to
//! another node when the acquire fails for a failover-class reason.
//!
//! The fast path (a node is known and its pool hands out a connection)
//! reads no clock, arms no timer, subscribes to nothing and allocates
//! nothing: two `arc-swap` loads and a few reference-count increments.

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

/// When a caller started waiting and until when it may (set lazily, so the
/// fast path reads no clock).
#[derive(Debug, Default)]
pub(crate) struct Wait {
    started: Option<(Instant, Instant)>,
}

impl Wait {
    fn start(&mut self, timeout: Duration) -> (Instant, Instant) {
        *self.started.get_or_insert_with(|| {
            let now = Instant::now();
            (now, now + timeout)
        })
    }
}

impl<B: Backend> Inner<B> {
    /// Acquires a connection on the node `route` picks. A failover-class
    /// failure to connect (nothing was sent) triggers a re-probe and another
    /// try, on another node when the topology offers one, until the acquire
    /// timeout; a busy node pool is waited for; an application error is
    /// returned at once.
    pub(crate) async fn acquire_route(&self, route: Route) -> Result<(B::Conn, NodeRef<B>)> {
        let mut wait = Wait::default();
        let mut avoid: Option<(Arc<Slot<B>>, u64)> = None;
        let mut last: Option<BoxError> = None;
        loop {
            let node = match self.wait_for(&mut wait, avoid.as_ref(), route).await {
                Ok(n) => n,
                Err(Error::NoNode {
                    wanted,
                    waited,
                    last: None,
                }) => {
                    return Err(Error::NoNode {
                        wanted,
                        waited,
                        last,
                    });
                }
                Err(e) => return Err(e),
            };
            match self.backend.acquire(&node.pool).await {
                Ok(conn) => {
                    if route.is_writer() && !self.still_writer(&node.slot) {
                        // The topology moved while we connected (the node was
                        // fenced or demoted): this connection must not carry writes.
                        continue;
                    }
                    return Ok((conn, node));
                }
                Err(e) => {
                    let class = e.classify();
                    if !class.is_failover() {
                        return Err(Error::backend(&**node.id(), class, e));
                    }
                    if B::is_exhausted(&e) {
                        // Busy, not broken: wait on the same node again.
                        avoid = None;
                    } else {
                        self.request_probe(node.id());
                        avoid = Some((Arc::clone(&node.slot), node.topology_epoch));
                    }
                    last = Some(Box::new(Error::backend(&**node.id(), class, e)));
                    let (started, deadline) = wait.start(self.config.acquire_timeout);
                    if Instant::now() >= deadline {
                        return Err(Error::NoNode {
                            wanted: route.wanted(),
                            waited: started.elapsed(),
                            last,
                        });
                    }
                }
            }
        }
    }

    /// Whether `slot` is still the published writer (one lock-free load).
    fn still_writer(&self, slot: &Arc<Slot<B>>) -> bool {
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
        wait: &mut Wait,
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
                if waited && let Some((started, _)) = wait.started {
                    self.record_wait(route, started.elapsed());
                }
                return Ok(node);
            }
            let (started, deadline) = wait.start(self.config.acquire_timeout);
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
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Closed),
                Err(_) => {
                    return Err(Error::NoNode {
                        wanted: route.wanted(),
                        waited: started.elapsed(),
                        last: None,
                    });
                }
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
