//! [`FailoverPool<B>`]: one generic core over a primary and its secondaries
//! for any [`Backend`] (Postgres through sqlx or deadpool, Redis).
//!
//! It probes every node for its real role ([`Backend::probe`]), keeps the
//! [`Topology`] in a lock-free snapshot, routes writes to the one node that
//! reports itself primary and is not fenced, splits reads by
//! [`ReadPreference`], makes callers wait (bounded) during a failover instead
//! of failing, and promotes according to the [`PromotionPolicy`]. The rules
//! are in [`topology`]; DESIGN.md section 4 states them.

pub mod backend;
pub mod config;
pub mod topology;

pub use backend::{Backend, EpochCheck, NodeSpec, Probe};
pub use config::{PoolConfig, PromotionPolicy, ReadPreference};
pub use topology::{NodeStatus, Topology};

use crate::core::endpoint::Role;
use crate::core::events::{Event, EventBus, EventKind, names};
use crate::core::stats::{LatencyHistogram, LatencySummary};
use crate::error::{BoxError, Error, ErrorClass, Result};
use arc_swap::ArcSwap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, watch};
use tokio::time::Instant;
use topology::{ProbeResult, ReaderLimits, Reconciler};

/// How long a promotion or switchover may take.
const PROMOTION_TIMEOUT: Duration = Duration::from_secs(60);

/// A read-your-writes token: the writer's position after a write. A read
/// with it goes only to a node that has replayed that far (else the writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteToken {
    /// Fencing epoch (timeline) of the writer that produced the token.
    pub epoch: u64,
    /// Position on the writer (Postgres LSN, Redis offset).
    pub position: u64,
}

#[derive(Debug, Default)]
struct PoolCounters {
    writer_changes: AtomicU64,
    failovers: AtomicU64,
    last_failover_us: AtomicU64,
    promotions: AtomicU64,
    fenced: AtomicU64,
    split_brains: AtomicU64,
    waits: LatencyHistogram,
}

/// A snapshot of a pool's counters ([`FailoverPool::stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    /// Topology epoch.
    pub epoch: u64,
    /// Current writer.
    pub writer: Option<Arc<str>>,
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
    /// How long callers that had to wait for a node waited.
    pub waits: LatencySummary,
}

/// Holds writers back while alive; wakes them when dropped.
struct PauseGuard<'a, B: Backend>(&'a Inner<B>);

impl<'a, B: Backend> PauseGuard<'a, B> {
    fn new(inner: &'a Inner<B>) -> Self {
        inner.paused.fetch_add(1, AcqRel);
        PauseGuard(inner)
    }
}

impl<B: Backend> Drop for PauseGuard<'_, B> {
    fn drop(&mut self) {
        self.0.paused.fetch_sub(1, AcqRel);
        self.0.rounds.send_modify(|r| *r += 1);
    }
}

/// When a caller started waiting and until when it may (set lazily, so the
/// fast path reads no clock).
#[derive(Debug, Default)]
struct Wait {
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

/// One node's pool, as handed to a caller: which node, which generation.
#[derive(Debug)]
pub struct NodeRef<B: Backend> {
    /// Position of the node in the configuration.
    pub index: usize,
    /// The node's id.
    pub id: Arc<str>,
    /// Topology epoch when this was handed out.
    pub topology_epoch: u64,
    /// The node's connection pool (current generation).
    pub pool: B::Pool,
}

impl<B: Backend> Clone for NodeRef<B> {
    fn clone(&self) -> Self {
        NodeRef {
            index: self.index,
            id: Arc::clone(&self.id),
            topology_epoch: self.topology_epoch,
            pool: self.pool.clone(),
        }
    }
}

#[derive(Debug)]
struct Generation<P> {
    pool: P,
    epoch: u64,
}

struct Slot<B: Backend> {
    spec: NodeSpec,
    node: B::Node,
    generation: ArcSwap<Generation<B::Pool>>,
    current: Arc<AtomicU64>,
    up_gauge: metrics::Gauge,
}

impl<B: Backend> fmt::Debug for Slot<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("id", &self.spec.id)
            .field("generation", &self.current.load(Relaxed))
            .finish()
    }
}

struct Inner<B: Backend> {
    name: Arc<str>,
    backend: B,
    config: PoolConfig,
    slots: Box<[Slot<B>]>,
    topology: ArcSwap<Topology>,
    rounds: watch::Sender<u64>,
    probe_now: Arc<Notify>,
    reconciler: tokio::sync::Mutex<Reconciler>,
    events: EventBus,
    read_rr: AtomicUsize,
    stats: PoolCounters,
    /// Switchovers in progress (writers are held back while > 0).
    paused: AtomicUsize,
    closed: AtomicBool,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<B: Backend> fmt::Debug for Inner<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverPool")
            .field("name", &self.name)
            .field("backend", &self.backend)
            .field("topology", &**self.topology.load())
            .finish_non_exhaustive()
    }
}

/// A failover pool over the nodes of one replicated store. Cheap to clone.
///
/// Dropping the last clone stops the background prober.
pub struct FailoverPool<B: Backend> {
    inner: Arc<Inner<B>>,
}

impl<B: Backend> Clone for FailoverPool<B> {
    fn clone(&self) -> Self {
        FailoverPool {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<B: Backend> fmt::Debug for FailoverPool<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// Stops the prober when the last pool handle goes away.
struct ProberGuard<B: Backend> {
    inner: std::sync::Weak<Inner<B>>,
    probe_now: Arc<Notify>,
}

impl<B: Backend> FailoverPool<B> {
    /// Builds a pool over `nodes` (the first is only the first guess for the
    /// primary: roles are discovered), probes every node once (bounded by
    /// the probe timeout) and starts the background prober. Needs a Tokio runtime.
    pub async fn new(backend: B, nodes: Vec<NodeSpec>, config: PoolConfig) -> Result<Self> {
        config.validate()?;
        if nodes.is_empty() {
            return Err(Error::Config(
                "a failover pool needs at least one node".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for n in &nodes {
            if !seen.insert(n.id.clone()) {
                return Err(Error::Config(format!("duplicate node id `{}`", n.id)));
            }
        }
        let name: Arc<str> = Arc::from(config.name.as_str());
        let mut slots = Vec::with_capacity(nodes.len());
        for spec in nodes {
            let node = backend.node(&spec)?;
            let current = Arc::new(AtomicU64::new(1));
            let check = {
                let current = Arc::clone(&current);
                EpochCheck(Arc::new(move |e| current.load(Relaxed) == e))
            };
            let pool = backend.pool(&node, 1, check)?;
            slots.push(Slot {
                up_gauge: metrics::gauge!(names::POOL_NODE_UP, "manager" => metrics::SharedString::from(Arc::clone(&name)), "node" => metrics::SharedString::from(Arc::clone(&spec.id))),
                spec,
                node,
                generation: ArcSwap::from_pointee(Generation { pool, epoch: 1 }),
                current,
            });
        }
        let ids: Vec<Arc<str>> = slots.iter().map(|s| Arc::clone(&s.spec.id)).collect();
        let now = Instant::now();
        let reconciler = Reconciler::new(&ids, now).with_soft_limit(config.probe_timeouts_to_down);
        let inner = Arc::new(Inner {
            events: EventBus::new(Arc::clone(&name), 1024),
            name,
            topology: ArcSwap::from_pointee(reconciler.topology()),
            reconciler: tokio::sync::Mutex::new(reconciler),
            backend,
            config,
            slots: slots.into_boxed_slice(),
            rounds: watch::channel(0).0,
            probe_now: Arc::new(Notify::new()),
            read_rr: AtomicUsize::new(0),
            stats: PoolCounters::default(),
            paused: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        let _ = Inner::probe_round(&inner).await;
        let guard = ProberGuard {
            inner: Arc::downgrade(&inner),
            probe_now: Arc::clone(&inner.probe_now),
        };
        let handle = tokio::spawn(async move { guard.run().await });
        *inner.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok(FailoverPool { inner })
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.inner.backend
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// The pool's name.
    pub fn name(&self) -> &Arc<str> {
        &self.inner.name
    }

    /// The current topology (lock-free snapshot).
    pub fn topology(&self) -> Arc<Topology> {
        self.inner.topology.load_full()
    }

    /// Subscribes to the pool's events (failover started/finished, promoted,
    /// fenced, split brain, node up/down, topology changed).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The node spec of a node.
    pub fn node_spec(&self, index: usize) -> Option<&NodeSpec> {
        self.inner.slots.get(index).map(|s| &s.spec)
    }

    /// The writer's pool, waiting (up to the acquire timeout) while no
    /// writer is known.
    pub async fn writer_node(&self) -> Result<NodeRef<B>> {
        self.wait_for(&mut Wait::default(), None, true, |t| t.writer)
            .await
    }

    /// A reader's pool for the pool's default read preference.
    pub async fn reader_node(&self) -> Result<NodeRef<B>> {
        self.reader_node_with(self.inner.config.read_preference)
            .await
    }

    /// A reader's pool for an explicit read preference.
    pub async fn reader_node_with(&self, pref: ReadPreference) -> Result<NodeRef<B>> {
        let rr = &self.inner.read_rr;
        self.wait_for(&mut Wait::default(), None, false, |t| {
            pick_reader(t, pref, rr)
        })
        .await
    }

    /// A reader that has replayed `token` (read-your-writes), else the writer.
    pub async fn reader_node_after(&self, token: WriteToken) -> Result<NodeRef<B>> {
        let rr = &self.inner.read_rr;
        self.wait_for(&mut Wait::default(), None, false, |t| {
            let ok: Vec<usize> = t
                .readers
                .iter()
                .copied()
                .filter(|&i| {
                    t.nodes[i].epoch == token.epoch && t.nodes[i].position >= token.position
                })
                .collect();
            if ok.is_empty() {
                t.writer
            } else {
                Some(ok[rr.fetch_add(1, Relaxed) % ok.len()])
            }
        })
        .await
    }

    /// Acquires a connection from the writer. A failover-class failure to
    /// connect (nothing was sent) triggers a re-probe and another try, until
    /// the acquire timeout.
    pub async fn acquire_writer(&self) -> Result<(B::Conn, NodeRef<B>)> {
        self.acquire_where(true, |t, _| t.writer).await
    }

    /// Acquires a connection for reading with the default read preference.
    pub async fn acquire_reader(&self) -> Result<(B::Conn, NodeRef<B>)> {
        let pref = self.inner.config.read_preference;
        self.acquire_where(false, move |t, rr| pick_reader(t, pref, rr))
            .await
    }

    /// Acquires a connection with an explicit read preference.
    pub async fn acquire_reader_with(&self, pref: ReadPreference) -> Result<(B::Conn, NodeRef<B>)> {
        self.acquire_where(false, move |t, rr| pick_reader(t, pref, rr))
            .await
    }

    async fn acquire_where(
        &self,
        for_writer: bool,
        choose: impl Fn(&Topology, &AtomicUsize) -> Option<usize>,
    ) -> Result<(B::Conn, NodeRef<B>)> {
        // No clock read and no timer on the fast path: the wait state (and
        // the acquire-timeout clock) starts at the first failure or wait.
        // A node pool's own acquire is bounded by `connect_timeout`.
        let mut wait = Wait::default();
        let mut avoid: Option<(usize, u64)> = None;
        let mut last: Option<BoxError> = None;
        loop {
            let node = match self
                .wait_for(&mut wait, avoid, for_writer, |t| {
                    choose(t, &self.inner.read_rr)
                })
                .await
            {
                Ok(n) => n,
                Err(Error::NoWriter { waited, last: None }) => {
                    return Err(Error::NoWriter { waited, last });
                }
                Err(e) => return Err(e),
            };
            match self.inner.backend.acquire(&node.pool).await {
                Ok(conn) => {
                    // The topology may have moved while we connected (the
                    // node fenced or demoted): then this connection must not
                    // carry writes. One lock-free load on the fast path.
                    if for_writer && self.inner.topology.load().writer != Some(node.index) {
                        drop(conn);
                        continue;
                    }
                    return Ok((conn, node));
                }
                Err(e) => {
                    let class = B::classify(&e);
                    if !class.is_failover() {
                        return Err(Error::backend(&*node.id, class, e));
                    }
                    if B::is_exhausted(&e) {
                        // Busy, not broken: wait on the same node again.
                        avoid = None;
                    } else {
                        self.report_failure(&node);
                        avoid = Some((node.index, node.topology_epoch));
                    }
                    last = Some(Box::new(e));
                    let (started, deadline) = wait.start(self.inner.config.acquire_timeout);
                    if Instant::now() >= deadline {
                        return Err(Error::NoWriter {
                            waited: started.elapsed(),
                            last,
                        });
                    }
                }
            }
        }
    }

    /// Waits until `choose` finds a node in the topology (skipping `avoid`
    /// until the topology moves past its epoch, and holding writers back
    /// during a switchover), or the deadline passes.
    async fn wait_for(
        &self,
        wait: &mut Wait,
        avoid: Option<(usize, u64)>,
        for_writer: bool,
        choose: impl Fn(&Topology) -> Option<usize>,
    ) -> Result<NodeRef<B>> {
        let inner = &*self.inner;
        let mut rounds: Option<watch::Receiver<u64>> = None;
        let mut waited = false;
        loop {
            if inner.closed.load(Relaxed) {
                return Err(Error::Closed);
            }
            // A switchover holds writers back; readers go on.
            if !(for_writer && inner.paused.load(Acquire) > 0) {
                let topo = inner.topology.load();
                if let Some(i) = choose(&topo) {
                    let skip = avoid.is_some_and(|(ai, ae)| ai == i && topo.epoch <= ae && !waited);
                    if !skip {
                        let slot = &inner.slots[i];
                        let generation = slot.generation.load();
                        if waited && let Some((started, _)) = wait.started {
                            let waited_for = started.elapsed();
                            inner.stats.waits.record(waited_for);
                            metrics::histogram!(names::POOL_WRITER_WAIT_SECONDS, "manager" => metrics::SharedString::from(Arc::clone(&inner.name)))
                                .record(waited_for.as_secs_f64());
                        }
                        return Ok(NodeRef {
                            index: i,
                            id: Arc::clone(&slot.spec.id),
                            topology_epoch: topo.epoch,
                            pool: generation.pool.clone(),
                        });
                    }
                }
            }
            let (started, deadline) = wait.start(inner.config.acquire_timeout);
            let Some(rx) = rounds.as_mut() else {
                // Subscribe, then look once more: a round that finished in
                // between is not missed.
                rounds = Some(inner.rounds.subscribe());
                continue;
            };
            if !waited {
                // One request per waiter: the prober coalesces them, and
                // later rounds come at the (fast) probe interval anyway.
                inner.probe_now.notify_one();
            }
            waited = true;
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Closed),
                Err(_) => {
                    return Err(Error::NoWriter {
                        waited: started.elapsed(),
                        last: None,
                    });
                }
            }
        }
    }

    /// Tells the pool that an operation on `node` failed with a
    /// failover-class error: the topology is re-probed at once.
    pub fn report_failure(&self, node: &NodeRef<B>) {
        tracing::debug!(pool = %self.inner.name, node = %node.id, "failover-class error reported; re-probing");
        self.inner.probe_now.notify_one();
    }

    /// Classifies a backend error and, when it is failover-class, triggers a
    /// re-probe. Returns the class.
    pub fn report(&self, node: &NodeRef<B>, error: &B::Error) -> ErrorClass {
        let class = B::classify(error);
        if class.is_failover() {
            self.report_failure(node);
        }
        class
    }

    /// Probes every node now and waits for the new topology.
    pub async fn refresh(&self) -> Arc<Topology> {
        let _ = Inner::probe_round(&self.inner).await;
        self.topology()
    }

    /// Promotes a node by id (any policy; this is what `Manual` is for).
    /// Idempotent: promoting the current writer succeeds. Returns the new topology.
    pub async fn promote(&self, id: &str) -> Result<Arc<Topology>> {
        let index = self.topology().index_of(id).ok_or_else(|| {
            Error::Config(format!("no node `{id}` in pool `{}`", self.inner.name))
        })?;
        Inner::promote(&self.inner, index).await?;
        Ok(self.refresh().await)
    }

    /// A planned switchover: stops handing out the writer, waits (up to
    /// `timeout`) until the target replica (or, with `None`, the most
    /// advanced one) has replayed everything the writer wrote, promotes it,
    /// and resumes. The old primary is fenced by the new epoch; stop it or
    /// rejoin it as a replica. If the target does not catch up in time,
    /// nothing is promoted and writes resume on the old writer. Writers are
    /// released only once the new writer is published, and also when this
    /// future is dropped.
    ///
    /// What it cannot hold back: connections already checked out of this
    /// pool (an open transaction) and other application instances. A write
    /// they make on the old primary after the catch-up check is not on the
    /// new one. For a zero-loss switch with several instances, make the old
    /// primary read-only first (`ALTER SYSTEM SET default_transaction_read_only
    /// = on; SELECT pg_reload_conf()`) or let an orchestrator do it.
    pub async fn switchover(
        &self,
        target: Option<&str>,
        timeout: Duration,
    ) -> Result<Arc<Topology>> {
        let inner = &self.inner;
        let topo = self.refresh().await;
        let Some(old) = topo.writer else {
            return Err(Error::NoWriter {
                waited: Duration::ZERO,
                last: None,
            });
        };
        let target = match target {
            Some(id) => topo
                .index_of(id)
                .ok_or_else(|| Error::Config(format!("no node `{id}`")))?,
            None => *topo
                .readers
                .iter()
                .max_by_key(|&&i| topo.nodes[i].position)
                .ok_or_else(|| Error::Config("switchover needs a healthy replica".into()))?,
        };
        if target == old {
            return Ok(topo);
        }
        // Released on every exit, including when this future is dropped.
        let _pause = PauseGuard::new(inner);
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.refresh().await;
            let (w, r) = (&t.nodes[old], &t.nodes[target]);
            if !r.up || r.role != Some(Role::Replica) {
                return Err(Error::Config(format!(
                    "switchover target `{}` is not a reachable replica",
                    r.id
                )));
            }
            if w.up && r.position >= w.position {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: "switchover catch-up",
                    after: timeout,
                    may_have_executed: false,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Inner::switch(inner, old, target).await?;
        // Writers stay held back until the published topology has the new
        // writer (and the old one fenced): releasing them earlier would send
        // them to the old primary, which still accepts writes.
        loop {
            let t = self.refresh().await;
            if t.writer == Some(target) {
                return Ok(t);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: "switchover: waiting for the new writer to report itself primary",
                    after: timeout,
                    may_have_executed: true,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the prober; calls waiting for a node get [`Error::Closed`].
    pub async fn close(&self) {
        self.inner.closed.store(true, Relaxed);
        self.inner.rounds.send_modify(|r| *r += 1);
        if let Some(h) = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            h.abort();
        }
        for s in self.inner.slots.iter() {
            let g = s.generation.load_full();
            self.inner.backend.close_pool(g.pool.clone()).await;
        }
    }

    /// Counters and timings of this pool (failovers, promotions, fencing,
    /// split brains, how long callers waited for a node).
    pub fn stats(&self) -> PoolStats {
        let s = &self.inner.stats;
        let topo = self.inner.topology.load();
        PoolStats {
            epoch: topo.epoch,
            writer: topo.writer_status().map(|w| Arc::clone(&w.id)),
            writer_changes: s.writer_changes.load(Relaxed),
            failovers: s.failovers.load(Relaxed),
            last_failover: match s.last_failover_us.load(Relaxed) {
                0 => None,
                us => Some(Duration::from_micros(us)),
            },
            promotions: s.promotions.load(Relaxed),
            fenced: s.fenced.load(Relaxed),
            split_brains: s.split_brains.load(Relaxed),
            waits: s.waits.summary(),
        }
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Relaxed)
    }
}

fn pick_reader(t: &Topology, pref: ReadPreference, rr: &AtomicUsize) -> Option<usize> {
    let replica =
        || (!t.readers.is_empty()).then(|| t.readers[rr.fetch_add(1, Relaxed) % t.readers.len()]);
    match pref {
        ReadPreference::Primary => t.writer,
        ReadPreference::Replica => replica(),
        ReadPreference::PreferReplica => replica().or(t.writer),
        ReadPreference::Nearest => t
            .readers
            .iter()
            .copied()
            .chain(t.writer)
            .min_by_key(|&i| t.nodes[i].rtt.unwrap_or(Duration::MAX)),
    }
}

impl<B: Backend> ProberGuard<B> {
    async fn run(self) {
        let mut last_round = Instant::now();
        let mut due: Option<Instant> = None;
        loop {
            let Some(inner) = self.inner.upgrade() else {
                return;
            };
            let fast = inner.topology.load().writer.is_none();
            let interval = inner.config.probe_interval;
            let mut wait = if fast {
                interval.min(Duration::from_millis(100))
            } else {
                interval
            };
            // Re-probes asked for by failing callers are coalesced: at most
            // one round per `gap`, however many errors arrive.
            let gap = (interval / 4).min(Duration::from_millis(25));
            // Wake up exactly when the confirmation window ends, or at once
            // (after the coalescing gap) when a node needs another look.
            if let Some(d) = due {
                let until = d.saturating_duration_since(Instant::now());
                wait = wait.min(until.max(gap));
            }
            // Hold only a weak reference while sleeping, so dropping the
            // pool stops this task.
            drop(inner);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.probe_now.notified() => {
                    tokio::time::sleep_until(last_round + gap).await;
                }
            }
            let Some(inner) = self.inner.upgrade() else {
                return;
            };
            if inner.closed.load(Relaxed) {
                return;
            }
            due = Inner::probe_round(&inner).await;
            last_round = Instant::now();
        }
    }
}

impl<B: Backend> Drop for Inner<B> {
    fn drop(&mut self) {
        if let Some(h) = self
            .task
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            h.abort();
        }
    }
}

impl<B: Backend> Inner<B> {
    /// Probes every node, applies the rules, publishes the topology and, if
    /// the automatic policy says so, promotes. Returns when the next
    /// promotion decision is due (so the prober can wake up exactly then).
    async fn probe_round(this: &Arc<Self>) -> Option<Instant> {
        let mut reconciler = this.reconciler.lock().await;
        let mut results = Self::probe_all(this).await;
        let now = Instant::now();
        let limits = ReaderLimits {
            max_lag: this.config.max_replica_lag,
            max_lag_bytes: this.config.max_replica_lag_bytes,
        };
        let out = reconciler.apply(&results, now, &this.config.promotion, limits);
        this.publish(&reconciler, &out);
        if let Some(candidate) = out.promote {
            let id = Arc::clone(&this.slots[candidate].spec.id);
            tracing::warn!(pool = %this.name, node = %id, "promoting (automatic policy)");
            match Self::promote_locked(this, &mut reconciler, candidate).await {
                Ok(()) => {
                    // Re-probe only the promoted node and keep this round's
                    // results for the others: a frozen old primary must not
                    // delay publishing the new writer by another probe timeout.
                    results[candidate] = Self::probe_one(this, candidate).await;
                    let out =
                        reconciler.apply(&results, Instant::now(), &this.config.promotion, limits);
                    this.publish(&reconciler, &out);
                }
                Err(e) => {
                    // Do not hammer a node that refuses (e.g. no permission
                    // for pg_promote): try again after a pause.
                    let pause = Duration::from_secs(2);
                    reconciler.promotion_failed(Instant::now() + pause);
                    tracing::error!(pool = %this.name, node = %id, error = %e, ?pause, "automatic promotion failed");
                }
            }
        }
        // A node that just timed out once is probed again right away.
        let now = Instant::now();
        let due = if reconciler.suspect() {
            Some(now)
        } else {
            // A decision time already passed (e.g. no candidate within the
            // lag bound) needs no early wake-up: the normal rounds go on.
            reconciler
                .promotion_due(&this.config.promotion)
                .filter(|&d| d > now)
        };
        drop(reconciler);
        this.rounds.send_modify(|r| *r += 1);
        due
    }

    async fn probe_one(this: &Arc<Self>, i: usize) -> ProbeResult {
        let timeout = this.config.probe_timeout;
        let started = Instant::now();
        let (probe, hard) =
            match tokio::time::timeout(timeout, this.backend.probe(&this.slots[i].node)).await {
                Ok(Ok(p)) => (Ok(p), false),
                // Refused, reset, closed: the node is gone. An error the
                // server answered with (e.g. too many clients) is soft.
                Ok(Err(e)) => (Err(crate::error::chain(&e)), e.is_failover()),
                Err(_) => (Err(format!("probe timed out after {timeout:?}")), false),
            };
        ProbeResult {
            probe,
            rtt: started.elapsed(),
            hard,
        }
    }

    async fn probe_all(this: &Arc<Self>) -> Vec<ProbeResult> {
        let handles: Vec<_> = (0..this.slots.len())
            .map(|i| {
                let inner = Arc::clone(this);
                tokio::spawn(async move { Self::probe_one(&inner, i).await })
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

    fn publish(&self, reconciler: &Reconciler, out: &topology::Outcome) {
        let manager = metrics::SharedString::from(Arc::clone(&self.name));
        let topo = reconciler.topology();
        for (slot, n) in self.slots.iter().zip(&topo.nodes) {
            slot.up_gauge.set(if n.up { 1.0 } else { 0.0 });
        }
        if out.writer_changed {
            self.stats.writer_changes.fetch_add(1, Relaxed);
            metrics::counter!(names::POOL_FAILOVERS_TOTAL, "manager" => manager.clone())
                .increment(1);
        }
        metrics::gauge!(names::POOL_EPOCH, "manager" => manager.clone()).set(topo.epoch as f64);
        for e in &out.events {
            match e {
                EventKind::Fenced { node, reason } => {
                    tracing::warn!(pool = %self.name, %node, %reason, "node fenced");
                    self.stats.fenced.fetch_add(1, Relaxed);
                    metrics::counter!(names::POOL_FENCED_TOTAL, "manager" => manager.clone(), "node" => metrics::SharedString::from(Arc::clone(node))).increment(1);
                }
                EventKind::SplitBrainDetected { nodes, winner } => {
                    tracing::error!(pool = %self.name, ?nodes, %winner, "split brain detected");
                    self.stats.split_brains.fetch_add(1, Relaxed);
                    metrics::counter!(names::POOL_SPLIT_BRAIN_TOTAL, "manager" => manager.clone())
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
                }
                _ => {}
            }
        }
        self.topology.store(Arc::new(topo));
        // Retire only after the new topology is visible, so nobody picks
        // the retired node from the old topology with the new generation.
        for &i in &out.retire {
            self.retire(i);
        }
        for e in &out.events {
            self.events.emit(e.clone());
        }
    }

    /// Starts a new pool generation for a node and closes the old one.
    fn retire(&self, index: usize) {
        let slot = &self.slots[index];
        let epoch = slot.current.fetch_add(1, AcqRel) + 1;
        let check = {
            let current = Arc::clone(&slot.current);
            EpochCheck(Arc::new(move |e| current.load(Relaxed) == e))
        };
        match self.backend.pool(&slot.node, epoch, check) {
            Ok(pool) => {
                let old = slot.generation.swap(Arc::new(Generation { pool, epoch }));
                tracing::debug!(pool = %self.name, node = %slot.spec.id, from = old.epoch, to = epoch, "retiring pooled connections");
                tokio::spawn(self.backend.close_pool(old.pool.clone()));
            }
            Err(e) => {
                tracing::error!(pool = %self.name, node = %slot.spec.id, error = %e, "could not create a new pool generation");
            }
        }
    }

    async fn promote(this: &Arc<Self>, index: usize) -> Result<()> {
        let mut reconciler = this.reconciler.lock().await;
        Self::promote_locked(this, &mut reconciler, index).await
    }

    async fn promote_locked(
        this: &Arc<Self>,
        reconciler: &mut Reconciler,
        index: usize,
    ) -> Result<()> {
        let promote = this.backend.promote(&this.slots[index].node);
        Self::make_writer(this, reconciler, index, "promotion", promote).await
    }

    /// A planned switch through [`Backend::switchover`].
    async fn switch(this: &Arc<Self>, from: usize, to: usize) -> Result<()> {
        let mut reconciler = this.reconciler.lock().await;
        let switch = this
            .backend
            .switchover(&this.slots[from].node, &this.slots[to].node);
        Self::make_writer(this, &mut reconciler, to, "switchover", switch).await
    }

    /// Runs a promotion or switchover (bounded), then records it: the node
    /// wins ties from now on, a counter, a metric and a `Promoted` event.
    async fn make_writer(
        this: &Arc<Self>,
        reconciler: &mut Reconciler,
        index: usize,
        what: &'static str,
        action: impl Future<Output = Result<()>>,
    ) -> Result<()> {
        let slot = &this.slots[index];
        let started = Instant::now();
        let timeout = PROMOTION_TIMEOUT;
        match tokio::time::timeout(timeout, action).await {
            Ok(Ok(())) => {
                reconciler.set_preferred(index);
                this.stats.promotions.fetch_add(1, Relaxed);
                metrics::counter!(names::POOL_PROMOTIONS_TOTAL, "manager" => metrics::SharedString::from(Arc::clone(&this.name)), "node" => metrics::SharedString::from(Arc::clone(&slot.spec.id))).increment(1);
                this.events.emit(EventKind::Promoted {
                    node: Arc::clone(&slot.spec.id),
                    duration: started.elapsed(),
                });
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Timeout {
                what,
                after: timeout,
                may_have_executed: true,
            }),
        }
    }
}
