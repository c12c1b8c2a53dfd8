//! [`FailoverPool<B>`]: one generic core over a primary and its secondaries
//! for any [`Backend`] (Postgres through sqlx or deadpool, Redis).
//!
//! It gets its nodes from a [`TopologySource`] (the configured list by
//! default), probes every node for its real role ([`Backend::probe`]),
//! keeps the [`Topology`] in a lock-free snapshot, routes writes to the one
//! node that reports itself primary and is not fenced, splits reads by
//! [`ReadPreference`], makes callers wait (bounded) during a failover
//! instead of failing, and promotes according to the [`PromotionPolicy`].
//!
//! # The rules it keeps
//! 1. **Roles are discovered, never assumed.** A node's role comes from the
//!    server (Postgres `pg_is_in_recovery()`, its timeline and WAL
//!    positions), probed every `probe_interval` and at once after a
//!    failover-class error. A configured or orchestrator-named writer is
//!    only a hint.
//! 2. **Never two writers.** Writes go only to a node that reports itself
//!    primary. If two do, the higher epoch (timeline) wins, then the current
//!    writer, then the node this pool promoted or followed last; the other is
//!    *fenced* (no writes, an event, a metric) until it reports itself a replica.
//! 3. **Promotion policy**: `External` (follow an orchestrator; never
//!    promote), `Manual` ([`FailoverPool::promote`],
//!    [`FailoverPool::switchover`]) or `Automatic` (after the writer has been
//!    unreachable for a confirmation window, promote the most advanced
//!    replica within a lag bound; idempotent, so several application
//!    instances do not race into two writers).
//! 4. **Failover-class errors** (refused, reset, timed out, shutting down,
//!    read-only) trigger a re-probe; application errors never do.
//! 5. **Stale connections die.** A node whose role, fencing, writer status
//!    or reachability changes gets a new pool generation and the old one is
//!    closed, so nobody writes to a demoted primary through an old connection.
//! 6. **Waiting beats failing.** A caller asking for a node while none fits
//!    waits (up to `acquire_timeout`) for the failover to finish.
//! 7. **Read/write splitting** by [`ReadPreference`], lag-bounded, with
//!    read-your-writes [`WriteToken`]s.
//! 8. **Transactions** stay on one connection and are never replayed.
//!
//! # Shape
//! Every backend gets the same surface from this type: [`FailoverPool::checkout`]
//! (a [`Pooled`] connection for a [`Route`]), [`FailoverPool::route`] (a
//! [`Routed`] handle that picks the node per call), [`FailoverPool::write_token`],
//! topology, events, stats, promotion. The backend modules add only their
//! driver's idiom on top (`writer()`/`reader()` returning the driver's types).

mod acquire;
pub mod backend;
mod builder;
pub mod config;
mod discovered;
mod follow;
mod handle;
mod inner;
pub mod mock;
mod node;
mod prober;
mod promotion;
mod reconcile;
mod route;
pub mod source;
mod stats;
pub mod topology;

pub use backend::{Backend, Probe};
pub use builder::{PoolBuilder, PoolSpec};
pub use config::{PoolConfig, PromotionPolicy, ReadPreference};
pub use discovered::DiscoveredTopology;
pub use handle::{Pooled, Reporter, Routed};
pub use node::{NodeSpec, PoolGeneration};
pub use route::{Route, WriteToken};
pub use source::{
    ManualTopology, StaticTopology, SwitchFuture, TopologyFuture, TopologyHandle, TopologySource,
    TopologyView,
};
pub use stats::{PoolStats, names};
pub use topology::{Lineage, NodeStatus, Topology};

use crate::core::events::Event;
use crate::error::{Error, Result};
use inner::Inner;
use reconcile::{Reconciler, Rules};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// A failover pool over the nodes of one replicated store. Cheap to clone.
///
/// Dropping the last clone (and every [`Pooled`] connection) stops the
/// background tasks.
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

impl<B: Backend> FailoverPool<B> {
    /// Builds a pool over `nodes` (any order: the first is not assumed to be
    /// the primary), probes every node once (bounded by the probe timeout)
    /// and starts the background prober. Needs a Tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration, no nodes, duplicate
    /// node ids or a URL the backend cannot parse.
    pub async fn new(backend: B, nodes: Vec<NodeSpec>, config: PoolConfig) -> Result<Self> {
        if nodes.is_empty() {
            return Err(Error::Config(
                "a failover pool needs at least one node".into(),
            ));
        }
        Self::start(backend, TopologyView::new(nodes), None, config).await
    }

    /// Connects to the nodes at `urls` (any order; roles are discovered),
    /// with a backend made from `config`. Node ids are `host:port`.
    pub async fn connect_with<S: AsRef<str>>(urls: &[S], config: PoolConfig) -> Result<Self> {
        let nodes = NodeSpec::from_urls(urls, B::DEFAULT_PORT)?;
        Self::new(B::from_config(&config), nodes, config).await
    }

    /// Builds a pool whose nodes come from `source` (its first view is
    /// awaited, bounded by the acquire timeout; it may be empty: callers
    /// then wait for nodes). The source's later views add and remove nodes
    /// while the pool runs.
    pub async fn with_source(
        backend: B,
        source: impl TopologySource,
        config: PoolConfig,
    ) -> Result<Self> {
        Self::with_source_arc(backend, Arc::new(source), config).await
    }

    pub(crate) async fn with_source_arc(
        backend: B,
        source: Arc<dyn TopologySource>,
        config: PoolConfig,
    ) -> Result<Self> {
        let first = tokio::time::timeout(config.acquire_timeout, source.next_view())
            .await
            .map_err(|_| Error::Timeout {
                what: "the topology source's first view",
                after: config.acquire_timeout,
                may_have_executed: false,
            })??;
        Self::start(backend, first, Some(source), config).await
    }

    /// A builder: node URLs or a topology source, plus the settings.
    pub fn builder() -> PoolBuilder<B> {
        PoolBuilder::default()
    }

    /// Connects from a serde configuration (node URLs and settings).
    pub async fn from_config(spec: PoolSpec) -> Result<Self> {
        let urls: Vec<&str> = spec
            .urls
            .iter()
            .map(crate::core::redact::Redacted::expose)
            .collect();
        Self::connect_with(&urls, spec.pool).await
    }

    async fn start(
        backend: B,
        view: TopologyView,
        source: Option<Arc<dyn TopologySource>>,
        config: PoolConfig,
    ) -> Result<Self> {
        config.validate()?;
        node::check_unique(&view.nodes)?;
        let name: Arc<str> = Arc::from(config.name.as_str());
        let ids: Vec<Arc<str>> = view.nodes.iter().map(|n| Arc::clone(&n.id)).collect();
        let slots = view
            .nodes
            .into_iter()
            .map(|spec| Inner::make_slot(&backend, &name, spec))
            .collect::<Result<Vec<_>>>()?;
        let mut reconciler = Reconciler::new(&ids, Rules::of(&config), Instant::now());
        reconciler.set_claim(view.writer);
        let inner = Arc::new(Inner::new(
            backend,
            config,
            slots,
            reconciler,
            source.clone(),
        ));
        metrics::gauge!(names::POOL_NODES, "manager" => inner.label.clone()).set(ids.len() as f64);
        let _ = Inner::probe_round(&inner).await;
        let prober = prober::Prober {
            inner: Arc::downgrade(&inner),
            probe_now: Arc::clone(&inner.probe_now),
        };
        inner.add_task(tokio::spawn(prober.run()));
        if let Some(source) = source {
            inner.add_task(tokio::spawn(follow::follow(Arc::downgrade(&inner), source)));
        }
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
        Arc::clone(&self.inner.routing.load().topology)
    }

    /// Subscribes to the pool's events (failover started/finished, promoted,
    /// fenced, split brain, node up/down, nodes added/removed, topology changed).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// A connection checked out on the node `route` picks now, waiting
    /// (up to the acquire timeout) while none fits. A node that refuses the
    /// connection is re-probed and another one tried; nothing is sent
    /// anywhere before a connection is established.
    ///
    /// # Errors
    /// [`Error::NoNode`] after the acquire timeout (with the last failure
    /// seen), [`Error::Closed`] after [`FailoverPool::close`], or the
    /// backend's application-class error.
    pub async fn checkout(&self, route: Route) -> Result<Pooled<B>> {
        let (conn, node) = self.inner.acquire_route(route).await?;
        Ok(Pooled::new(conn, node, Arc::clone(&self.inner)))
    }

    /// A handle bound to `route` that picks the node anew for every call.
    pub fn route(&self, route: Route) -> Routed<B> {
        Routed::new(self.clone(), route)
    }

    /// The route of the pool's default read preference.
    pub fn default_read_route(&self) -> Route {
        Route::Reader(self.inner.config.read_preference)
    }

    /// A read-your-writes token: the writer's position now (after your
    /// committed writes). Reads routed with [`Route::After`] go only to a
    /// node that has replayed it, else to the writer.
    pub async fn write_token(&self) -> Result<WriteToken> {
        let mut conn = self.checkout(Route::Writer).await?;
        match B::write_token(&mut conn).await {
            Ok(token) => Ok(token),
            Err(e) => Err(conn.observe(e).during("write token")),
        }
    }

    /// The current pool generation of a node, for inspection (idle counts,
    /// closed state). Queries through it bypass routing and failover.
    pub fn node_pool(&self, id: &str) -> Option<B::Pool> {
        let routing = self.inner.routing.load();
        let slot = routing.slots.iter().find(|s| &*s.spec.id == id)?;
        Some(slot.live.load().pool.clone())
    }

    /// Probes every node now and returns the new topology.
    pub async fn refresh(&self) -> Arc<Topology> {
        let _ = Inner::probe_round(&self.inner).await;
        self.topology()
    }

    /// Counters and timings of this pool (failovers, promotions, fencing,
    /// split brains, how long callers waited for a node).
    pub fn stats(&self) -> PoolStats {
        let routing = self.inner.routing.load();
        let topo = &routing.topology;
        self.inner.stats.snapshot(
            topo.epoch,
            topo.writer_status().map(|w| Arc::clone(&w.id)),
            topo.nodes.len(),
        )
    }

    /// Stops the background tasks and closes every node pool; calls
    /// waiting for a node get [`Error::Closed`]. Every pool stops handing
    /// out connections at once; like `PgPool::close`, this returns when the
    /// connections checked out now have been returned.
    pub async fn close(&self) {
        self.inner.closed.store(true, Relaxed);
        self.inner.wake_waiters();
        for task in self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
        // Under the reconciler's lock: no probe round retires a node (and
        // opens a new generation) while the pools are being closed.
        let _reconciler = self.inner.reconciler.lock().await;
        let slots = Arc::clone(&self.inner.routing.load().slots);
        let closing: Vec<_> = slots
            .iter()
            .map(|s| self.inner.backend.close_pool(s.live.load().pool.clone()))
            .collect();
        futures_join_all(closing).await;
    }

    /// Whether [`FailoverPool::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Relaxed)
    }
}

/// Awaits every future, concurrently, without a dependency on `futures`.
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(futures: Vec<F>) {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}
