//! The shared state of a pool and the steps that change it: the node slots
//! and their pool generations, the published routing snapshot, a probe
//! round (probe → reconcile → publish → maybe promote) and retirement of
//! stale connections. Everything that changes the node set or the topology
//! holds the reconciler's lock, so changes are serialized; callers only
//! ever read the published snapshot (lock-free).

use crate::core::Classify;
use crate::core::events::{EventBus, EventKind};
use crate::core::redact::redact_url;
use crate::error::{Error, Result};
use crate::pool::backend::Backend;
use crate::pool::config::PoolConfig;
use crate::pool::node::{NodeSpec, PoolGeneration};
use crate::pool::reconcile::{Outcome, ProbeResult, Reconciler};
use crate::pool::source::TopologySource;
use crate::pool::stats::{PoolCounters, names};
use crate::pool::topology::Topology;
use arc_swap::ArcSwap;
use metrics::SharedString;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// After a failed automatic promotion, the next attempt waits this long.
const PROMOTION_RETRY_PAUSE: Duration = Duration::from_secs(2);

/// One generation of a node's connection pool.
#[derive(Debug)]
pub(crate) struct Live<P> {
    pub(crate) pool: P,
    pub(crate) generation: PoolGeneration,
}

/// One node of the pool: its spec, the backend's node state and the
/// current generation of its connection pool.
pub(crate) struct Slot<B: Backend> {
    pub(crate) spec: NodeSpec,
    pub(crate) node: B::Node,
    pub(crate) live: ArcSwap<Live<B::Pool>>,
    up_gauge: metrics::Gauge,
}

impl<B: Backend> Slot<B> {
    /// The node left the pool: its reachability gauge says so.
    pub(crate) fn mark_removed(&self) {
        self.up_gauge.set(0.0);
    }
}

impl<B: Backend> fmt::Debug for Slot<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("id", &self.spec.id)
            .field("generation", &self.live.load().generation.id())
            .finish()
    }
}

/// What callers route by: the topology and the node slots it indexes,
/// published together so an index always names the right slot.
pub(crate) struct Routing<B: Backend> {
    pub(crate) topology: Arc<Topology>,
    pub(crate) slots: Arc<[Arc<Slot<B>>]>,
}

pub(crate) struct Inner<B: Backend> {
    pub(crate) name: Arc<str>,
    pub(crate) label: SharedString,
    pub(crate) backend: B,
    pub(crate) config: PoolConfig,
    pub(crate) routing: ArcSwap<Routing<B>>,
    /// Bumped after every probe round and every change a waiter may care about.
    pub(crate) rounds: watch::Sender<u64>,
    pub(crate) probe_now: Arc<Notify>,
    /// Serializes every change of the topology and the node set.
    pub(crate) reconciler: tokio::sync::Mutex<Reconciler>,
    pub(crate) events: EventBus,
    pub(crate) read_rr: AtomicUsize,
    pub(crate) stats: PoolCounters,
    /// Switchovers in progress (writers are held back while > 0).
    pub(crate) paused: AtomicUsize,
    pub(crate) closed: AtomicBool,
    /// Background tasks (prober, topology source), aborted on drop.
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The topology source, for a switchover its orchestrator runs.
    pub(crate) source: Option<Arc<dyn TopologySource>>,
    /// Probe rounds started, and the latest one applied (under the
    /// reconciler's lock): an older round's results are never applied
    /// after a newer one's.
    pub(crate) probe_rounds: AtomicU64,
    pub(crate) applied_round: AtomicU64,
}

impl<B: Backend> fmt::Debug for Inner<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverPool")
            .field("name", &self.name)
            .field("backend", &self.backend)
            .field("topology", &*self.routing.load().topology)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Drop for Inner<B> {
    fn drop(&mut self) {
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

impl<B: Backend> Inner<B> {
    pub(crate) fn new(
        backend: B,
        config: PoolConfig,
        slots: Vec<Arc<Slot<B>>>,
        reconciler: Reconciler,
        source: Option<Arc<dyn TopologySource>>,
    ) -> Self {
        let name: Arc<str> = Arc::from(config.name.as_str());
        let routing = Routing {
            topology: Arc::new(reconciler.topology()),
            slots: slots.into(),
        };
        Inner {
            label: SharedString::from(Arc::clone(&name)),
            events: EventBus::new(Arc::clone(&name), 1024),
            name,
            backend,
            config,
            routing: ArcSwap::from_pointee(routing),
            rounds: watch::channel(0).0,
            probe_now: Arc::new(Notify::new()),
            reconciler: tokio::sync::Mutex::new(reconciler),
            read_rr: AtomicUsize::new(0),
            stats: PoolCounters::default(),
            paused: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            source,
            probe_rounds: AtomicU64::new(0),
            applied_round: AtomicU64::new(0),
        }
    }

    /// Prepares a node: the backend's node state and its first pool generation.
    pub(crate) fn make_slot(backend: &B, name: &Arc<str>, spec: NodeSpec) -> Result<Arc<Slot<B>>> {
        let node = backend.node(&spec)?;
        let generation = PoolGeneration::first();
        let pool = backend.pool(&node, generation.clone())?;
        Ok(Arc::new(Slot {
            up_gauge: metrics::gauge!(names::POOL_NODE_UP, "manager" => SharedString::from(Arc::clone(name)), "node" => SharedString::from(Arc::clone(&spec.id))),
            spec,
            node,
            live: ArcSwap::from_pointee(Live { pool, generation }),
        }))
    }

    pub(crate) fn add_task(&self, task: JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }

    /// Wakes every caller waiting for a node (they look at the topology again).
    pub(crate) fn wake_waiters(&self) {
        self.rounds.send_modify(|r| *r += 1);
    }

    /// Asks the prober for a round now (coalesced with other requests).
    pub(crate) fn request_probe(&self, node: &str) {
        tracing::debug!(pool = %self.name, %node, "failover-class error reported; re-probing");
        self.probe_now.notify_one();
    }

    /// Probes every node, applies the rules, publishes the topology and, if
    /// the automatic policy says so, promotes. Returns when the next
    /// promotion decision is due (so the prober can wake up exactly then).
    pub(crate) async fn probe_round(this: &Arc<Self>) -> Option<Instant> {
        if this.closed.load(Relaxed) {
            return None;
        }
        // Probed without the reconciler's lock: a node that hangs until the
        // probe timeout must not hold back a topology source's view (an
        // orchestrator naming the new writer) or a promotion meanwhile.
        let slots = Arc::clone(&this.routing.load().slots);
        let round = this.probe_rounds.fetch_add(1, AcqRel) + 1;
        let results = Self::probe_all(this, &slots).await;
        let mut reconciler = this.reconciler.lock().await;
        if this.closed.load(Relaxed) {
            return None;
        }
        if !Arc::ptr_eq(&this.routing.load().slots, &slots)
            || this.applied_round.load(Acquire) > round
        {
            // The node set changed, or a round started later was applied
            // first: these results are stale. Another round, at once.
            drop(reconciler);
            this.probe_now.notify_one();
            return None;
        }
        this.applied_round.store(round, Release);
        let out = reconciler.apply(&results, Instant::now());
        this.publish(&reconciler, &slots, &out);
        if let Some(candidate) = out.promote {
            Self::promote_automatically(this, &mut reconciler, &slots, candidate).await;
        }
        let now = Instant::now();
        let due = if reconciler.suspect() {
            // A node that just timed out once is probed again right away.
            Some(now)
        } else {
            // A decision time already passed (e.g. no candidate within the
            // lag bound) needs no early wake-up: the normal rounds go on.
            reconciler.promotion_due().filter(|&d| d > now)
        };
        drop(reconciler);
        this.wake_waiters();
        due
    }

    async fn promote_automatically(
        this: &Arc<Self>,
        reconciler: &mut Reconciler,
        slots: &Arc<[Arc<Slot<B>>]>,
        candidate: usize,
    ) {
        let slot = &slots[candidate];
        tracing::warn!(pool = %this.name, node = %slot.spec.id, "promoting (automatic policy)");
        let promote = this.backend.promote(&slot.node);
        match Self::make_writer(this, reconciler, slots, candidate, "promotion", promote).await {
            Ok(()) => {
                // Re-probe only the promoted node and keep this round's
                // results for the others: a frozen old primary must not
                // delay publishing the new writer by another probe timeout.
                let fresh = Self::probe_one(this, slot).await;
                let out = reconciler.apply_one(candidate, &fresh, Instant::now());
                this.publish(reconciler, slots, &out);
            }
            Err(e) => {
                // Do not hammer a node that refuses (e.g. no permission for
                // pg_promote): try again after a pause.
                reconciler.promotion_failed(Instant::now() + PROMOTION_RETRY_PAUSE);
                tracing::error!(pool = %this.name, node = %slot.spec.id, error = %crate::error::chain(&e), pause = ?PROMOTION_RETRY_PAUSE, "automatic promotion failed");
            }
        }
    }

    pub(crate) async fn probe_one(this: &Arc<Self>, slot: &Slot<B>) -> ProbeResult {
        let timeout = this.config.probe_timeout;
        let started = Instant::now();
        let (probe, hard) =
            match tokio::time::timeout(timeout, this.backend.probe(&slot.node)).await {
                Ok(Ok(p)) => (Ok(p), false),
                // Refused, reset, closed: the node is gone. An error the server
                // answered with (e.g. too many clients) is soft.
                Ok(Err(e)) => {
                    let class = e.classify();
                    let err = Error::backend(&*slot.spec.id, class, e).during("probe");
                    (
                        Err(redact_url(&crate::error::chain(&err)).into_owned()),
                        class.is_failover(),
                    )
                }
                Err(_) => (Err(format!("probe timed out after {timeout:?}")), false),
            };
        ProbeResult {
            probe,
            rtt: started.elapsed(),
            hard,
        }
    }

    async fn probe_all(this: &Arc<Self>, slots: &[Arc<Slot<B>>]) -> Vec<ProbeResult> {
        let handles: Vec<_> = slots
            .iter()
            .map(|slot| {
                let inner = Arc::clone(this);
                let slot = Arc::clone(slot);
                tokio::spawn(async move { Self::probe_one(&inner, &slot).await })
            })
            .collect();
        let mut results = Vec::with_capacity(handles.len());
        for h in handles {
            results.push(h.await.unwrap_or_else(|e| ProbeResult {
                probe: Err(format!("probe task failed: {e}")),
                rtt: Duration::ZERO,
                hard: false,
            }));
        }
        results
    }

    /// Publishes the reconciler's topology with `slots`, records what the
    /// outcome says (counters, metrics, logs, events) and retires stale
    /// generations.
    pub(crate) fn publish(
        &self,
        reconciler: &Reconciler,
        slots: &Arc<[Arc<Slot<B>>]>,
        out: &Outcome,
    ) {
        let topology = reconciler.topology();
        for (slot, n) in slots.iter().zip(&topology.nodes) {
            slot.up_gauge.set(if n.up { 1.0 } else { 0.0 });
        }
        if out.writer_changed {
            self.stats.writer_changes.fetch_add(1, Relaxed);
            metrics::counter!(names::POOL_WRITER_CHANGES_TOTAL, "manager" => self.label.clone())
                .increment(1);
        }
        metrics::gauge!(names::POOL_EPOCH, "manager" => self.label.clone())
            .set(topology.epoch as f64);
        for e in &out.events {
            self.record(e);
        }
        self.routing.store(Arc::new(Routing {
            topology: Arc::new(topology),
            slots: Arc::clone(slots),
        }));
        // Retire only after the new topology is visible, so nobody picks
        // the retired node from the old topology with the new generation.
        for &i in &out.retire {
            self.retire(&slots[i]);
        }
        for e in &out.events {
            self.events.emit(e.clone());
        }
    }

    /// Counters, metrics and logs for one event.
    fn record(&self, e: &EventKind) {
        match e {
            EventKind::Fenced { node, reason } => {
                tracing::warn!(pool = %self.name, %node, %reason, "node fenced");
                self.stats.fenced.fetch_add(1, Relaxed);
                metrics::counter!(names::POOL_FENCED_TOTAL, "manager" => self.label.clone(), "node" => SharedString::from(Arc::clone(node))).increment(1);
            }
            EventKind::SplitBrainDetected { nodes, winner } => {
                tracing::error!(pool = %self.name, ?nodes, %winner, "split brain detected");
                self.stats.split_brains.fetch_add(1, Relaxed);
                metrics::counter!(names::POOL_SPLIT_BRAIN_TOTAL, "manager" => self.label.clone())
                    .increment(1);
            }
            EventKind::FailoverStarted { old_writer, reason } => {
                tracing::warn!(pool = %self.name, ?old_writer, %reason, "writer lost; failover started");
            }
            EventKind::FailoverFinished {
                new_writer,
                duration,
            } => {
                tracing::warn!(pool = %self.name, %new_writer, ?duration, "failover finished");
                self.stats.failovers.fetch_add(1, Relaxed);
                self.stats
                    .last_failover_us
                    .store(duration.as_micros() as u64, Relaxed);
                metrics::counter!(names::POOL_FAILOVERS_TOTAL, "manager" => self.label.clone())
                    .increment(1);
            }
            _ => {}
        }
    }

    /// Starts a new pool generation for a node and closes the old one.
    pub(crate) fn retire(&self, slot: &Slot<B>) {
        let next = slot.live.load().generation.next();
        match self.backend.pool(&slot.node, next.clone()) {
            Ok(pool) => {
                let old = slot.live.swap(Arc::new(Live {
                    pool,
                    generation: next,
                }));
                tracing::debug!(pool = %self.name, node = %slot.spec.id, from = old.generation.id(), "retiring pooled connections");
                tokio::spawn(self.backend.close_pool(old.pool.clone()));
            }
            Err(e) => {
                tracing::error!(pool = %self.name, node = %slot.spec.id, error = %crate::error::chain(&e), "could not create a new pool generation");
            }
        }
    }

    /// Makes every other reachable replica follow the node at `leader`
    /// ([`Backend::follow`]), in the background, each bounded by the
    /// promotion timeout; failures are logged (the next probe shows where
    /// each replica points).
    fn repoint_replicas(
        this: &Arc<Self>,
        reconciler: &Reconciler,
        slots: &Arc<[Arc<Slot<B>>]>,
        leader: usize,
    ) {
        let topology = reconciler.topology();
        let leader_slot = Arc::clone(&slots[leader]);
        for (i, slot) in slots.iter().enumerate() {
            let n = &topology.nodes[i];
            if i == leader || !n.is_replica() || n.upstream.as_ref() == Some(&leader_slot.spec.id) {
                continue;
            }
            let (inner, slot, leader) =
                (Arc::clone(this), Arc::clone(slot), Arc::clone(&leader_slot));
            tokio::spawn(async move {
                let follow = inner.backend.follow(&slot.node, &leader.node);
                match tokio::time::timeout(inner.config.promotion_timeout, follow).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(pool = %inner.name, node = %slot.spec.id, leader = %leader.spec.id, error = %crate::error::chain(&e), "could not re-point a replica at the new writer")
                    }
                    Err(_) => {
                        tracing::warn!(pool = %inner.name, node = %slot.spec.id, leader = %leader.spec.id, "re-pointing a replica timed out")
                    }
                }
            });
        }
    }

    /// Runs a promotion or switchover (bounded by `promotion_timeout`), then
    /// records it: a counter, a metric and a `Promoted` event, and (also
    /// when it may have happened) the node is reserved the writer role until
    /// it reports itself primary, and wins ties from then on.
    pub(crate) async fn make_writer<E: Classify + std::error::Error + Send + Sync + 'static>(
        this: &Arc<Self>,
        reconciler: &mut Reconciler,
        slots: &Arc<[Arc<Slot<B>>]>,
        index: usize,
        what: &'static str,
        action: impl Future<Output = std::result::Result<(), E>>,
    ) -> Result<()> {
        let id = &slots[index].spec.id;
        let started = Instant::now();
        let timeout = this.config.promotion_timeout;
        let result = match tokio::time::timeout(timeout, action).await {
            Ok(Ok(())) => {
                Self::repoint_replicas(this, reconciler, slots, index);
                this.stats.promotions.fetch_add(1, Relaxed);
                metrics::counter!(names::POOL_PROMOTIONS_TOTAL, "manager" => this.label.clone(), "node" => SharedString::from(Arc::clone(id))).increment(1);
                this.events.emit(EventKind::Promoted {
                    node: Arc::clone(id),
                    duration: started.elapsed(),
                });
                Ok(())
            }
            Ok(Err(e)) => {
                let class = e.classify();
                Err(Error::backend(&**id, class, e).during(what))
            }
            Err(_) => Err(Error::Timeout {
                what,
                after: timeout,
                may_have_executed: true,
            }),
        };
        if result
            .as_ref()
            .map_or_else(Error::may_have_executed, |()| true)
        {
            // The node is (or may be) primary now, but nothing has demoted
            // the old writer yet: until the promoted node reports itself
            // primary, no other node gets writes. Published before the lock
            // is released, so no caller sees the old writer again.
            reconciler.promoted(index, Instant::now() + timeout);
            let mut out = reconciler.reevaluate(Instant::now());
            out.promote = None;
            this.publish(reconciler, slots, &out);
        }
        result
    }
}
