//! Topology sources: where a pool's node set comes from, and how an
//! orchestrator's view of the writer reaches it.
//!
//! A [`TopologySource`] is pull-style: the first [`TopologySource::next_view`]
//! returns the initial [`TopologyView`], each later call waits for the next
//! one. A view is the complete node set (the pool adds what is new, removes
//! what is gone, and leaves every other node, its connections and its
//! callers alone) plus, optionally, the writer an orchestrator names
//! (Sentinel's master, Patroni's leader, a Kubernetes or Consul tag).
//!
//! Whatever a source says, roles still come from the nodes: a named writer
//! gets writes only once it reports itself primary in its own probe, other
//! primaries get none while it is named, and fencing still applies. Nodes a
//! source adds get traffic only after their first successful probe.
//!
//! Built in: [`StaticTopology`] (the configured list, the default),
//! [`ManualTopology`] (driven through a [`TopologyHandle`]: your own
//! orchestrator integration, or a test's script) and
//! [`DiscoveredTopology`](crate::pool::DiscoveredTopology) (any endpoint
//! `Discovery`).

use crate::core::events::EventKind;
use crate::error::Result;
use crate::pool::backend::Backend;
use crate::pool::inner::{Inner, Slot};
use crate::pool::node::{NodeSpec, check_unique};
use crate::pool::stats::names;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// One complete view of the cluster from a [`TopologySource`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopologyView {
    /// Every node the pool should have, in order.
    pub nodes: Vec<NodeSpec>,
    /// The writer an orchestrator names (by node id), if the source knows one.
    pub writer: Option<Arc<str>>,
}

impl TopologyView {
    /// A view of `nodes` that names no writer.
    pub fn new(nodes: Vec<NodeSpec>) -> Self {
        TopologyView {
            nodes,
            writer: None,
        }
    }

    /// The same view naming `writer` (a node id) as the writer.
    pub fn with_writer(mut self, writer: impl Into<Arc<str>>) -> Self {
        self.writer = Some(writer.into());
        self
    }
}

/// The future [`TopologySource::next_view`] returns.
pub type TopologyFuture<'a> = Pin<Box<dyn Future<Output = Result<TopologyView>> + Send + 'a>>;

/// Where a pool's node set (and an orchestrator's writer) comes from.
///
/// The first call of [`TopologySource::next_view`] returns the initial view
/// promptly; later calls wait until something changes. An error means this
/// attempt failed: the pool keeps its current nodes, backs off and calls
/// again. The future must be cancel-safe.
pub trait TopologySource: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs ("static", "sentinel", "consul", …).
    fn name(&self) -> &str;

    /// The next view (the initial one on the first call).
    fn next_view(&self) -> TopologyFuture<'_>;
}

/// A fixed node list: answers once, then never changes.
#[derive(Debug)]
pub struct StaticTopology {
    view: Mutex<Option<TopologyView>>,
}

impl StaticTopology {
    /// A source that always has these nodes.
    pub fn new(nodes: Vec<NodeSpec>) -> Self {
        StaticTopology {
            view: Mutex::new(Some(TopologyView::new(nodes))),
        }
    }
}

impl TopologySource for StaticTopology {
    fn name(&self) -> &str {
        "static"
    }

    fn next_view(&self) -> TopologyFuture<'_> {
        let first = self.view.lock().unwrap_or_else(|e| e.into_inner()).take();
        Box::pin(async move {
            match first {
                Some(view) => Ok(view),
                None => std::future::pending().await,
            }
        })
    }
}

/// A source you drive through its [`TopologyHandle`]: wire your own
/// orchestrator's notifications to it, or script a topology in a test.
///
/// ```
/// use failover_pool::pool::{ManualTopology, NodeSpec, TopologyView};
/// let (source, handle) = ManualTopology::new(TopologyView::new(vec![
///     NodeSpec::from_url("postgres://app@db-a/app", 5432).unwrap(),
/// ]));
/// handle.add(NodeSpec::from_url("postgres://app@db-b/app", 5432).unwrap());
/// handle.set_writer(Some("db-b:5432"));
/// assert_eq!(handle.view().nodes.len(), 2);
/// # drop(source);
/// ```
#[derive(Debug)]
pub struct ManualTopology {
    rx: tokio::sync::Mutex<watch::Receiver<TopologyView>>,
}

/// Changes the view of a [`ManualTopology`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TopologyHandle {
    tx: Arc<watch::Sender<TopologyView>>,
}

impl ManualTopology {
    /// A source starting with `view`, and the handle that changes it.
    pub fn new(view: TopologyView) -> (Self, TopologyHandle) {
        let (tx, mut rx) = watch::channel(view);
        rx.mark_changed();
        (
            ManualTopology {
                rx: tokio::sync::Mutex::new(rx),
            },
            TopologyHandle { tx: Arc::new(tx) },
        )
    }
}

impl TopologySource for ManualTopology {
    fn name(&self) -> &str {
        "manual"
    }

    fn next_view(&self) -> TopologyFuture<'_> {
        Box::pin(async move {
            let mut rx = self.rx.lock().await;
            if rx.changed().await.is_err() {
                // Every handle is gone: the view can no longer change.
                std::future::pending::<()>().await;
            }
            Ok(rx.borrow_and_update().clone())
        })
    }
}

impl TopologyHandle {
    /// The current view.
    pub fn view(&self) -> TopologyView {
        self.tx.borrow().clone()
    }

    /// Replaces the whole view.
    pub fn set(&self, view: TopologyView) {
        self.tx.send_replace(view);
    }

    /// Adds a node (or replaces the one with its id).
    pub fn add(&self, node: NodeSpec) {
        self.tx.send_modify(|v| {
            v.nodes.retain(|n| n.id != node.id);
            v.nodes.push(node);
        });
    }

    /// Removes a node by id.
    pub fn remove(&self, id: &str) {
        self.tx.send_modify(|v| v.nodes.retain(|n| &*n.id != id));
    }

    /// Names the writer (or, with `None`, leaves it to the nodes' own answers).
    pub fn set_writer(&self, writer: Option<&str>) {
        self.tx.send_modify(|v| v.writer = writer.map(Arc::from));
    }
}

/// How long the pool waits before asking a failed source again: doubling
/// from 200 ms up to 10 s.
fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(6);
    Duration::from_millis(200 << exp).min(Duration::from_secs(10))
}

/// Follows a source in the background, applying every view to the pool.
pub(crate) async fn follow<B: Backend>(inner: Weak<Inner<B>>, source: Arc<dyn TopologySource>) {
    let mut failures = 0u32;
    loop {
        let view = source.next_view().await;
        let Some(this) = inner.upgrade() else {
            return;
        };
        match view {
            Ok(view) => {
                failures = 0;
                if let Err(e) = Inner::apply_view(&this, view).await {
                    tracing::warn!(pool = %this.name, source = source.name(), error = %e, "topology view rejected; keeping the current nodes");
                }
            }
            Err(e) => {
                failures += 1;
                let pause = backoff(failures);
                tracing::warn!(pool = %this.name, source = source.name(), error = %crate::error::chain(&e), ?pause, "topology source failed; keeping the current nodes");
                drop(this);
                tokio::time::sleep(pause).await;
            }
        }
    }
}

impl<B: Backend> Inner<B> {
    /// Applies a view: new nodes get a slot (and no traffic until probed),
    /// nodes that are gone (or whose URL changed) are removed and their
    /// pools closed, the claimed writer is recorded, and a probe round is
    /// requested. Nodes that stay keep their slot, connections and callers.
    pub(crate) async fn apply_view(this: &Arc<Self>, view: TopologyView) -> Result<()> {
        check_unique(&view.nodes)?;
        let mut reconciler = this.reconciler.lock().await;
        let current = Arc::clone(&this.routing.load().slots);
        let mut events = Vec::new();
        let now = Instant::now();
        let mut slots: Vec<Arc<Slot<B>>> = Vec::with_capacity(view.nodes.len());
        let mut removed = Vec::new();
        let mut lost_writer = false;
        for slot in current.iter() {
            if view.nodes.contains(&slot.spec) {
                slots.push(Arc::clone(slot));
            } else {
                // The reconciler's node list is aligned with `slots` so far.
                lost_writer |= reconciler.remove(slots.len(), now, &mut events);
                removed.push(Arc::clone(slot));
            }
        }
        let mut added = Vec::new();
        for spec in &view.nodes {
            if slots.iter().any(|s| s.spec.id == spec.id) {
                continue;
            }
            match Self::make_slot(&this.backend, &this.name, spec.clone()) {
                Ok(slot) => {
                    reconciler.add(Arc::clone(&spec.id));
                    added.push(Arc::clone(&spec.id));
                    slots.push(slot);
                }
                Err(e) => {
                    tracing::error!(pool = %this.name, node = %spec.id, error = %e, "node from the topology source skipped");
                }
            }
        }
        let claim_changed = reconciler.set_claim(view.writer.clone());
        let set_changed = !added.is_empty() || !removed.is_empty();
        if !set_changed && !claim_changed {
            return Ok(());
        }
        if set_changed {
            let removed_ids: Vec<Arc<str>> =
                removed.iter().map(|s| Arc::clone(&s.spec.id)).collect();
            tracing::info!(pool = %this.name, ?added, removed = ?removed_ids, "topology source changed the node set");
            reconciler.node_set_changed(&mut events);
            events.push(EventKind::EndpointsChanged {
                added,
                removed: removed_ids,
                updated: Vec::new(),
            });
            metrics::gauge!(names::POOL_NODES, "manager" => this.label.clone())
                .set(slots.len() as f64);
        }
        if claim_changed {
            tracing::info!(pool = %this.name, writer = ?view.writer, "topology source names a writer");
        }
        // The rules run again at once (a claim may take the writer away);
        // the probe round requested below brings the new nodes' roles.
        let mut out = reconciler.reevaluate(now);
        events.append(&mut out.events);
        out.events = events;
        out.promote = None;
        out.writer_changed |= lost_writer;
        let slots: Arc<[Arc<Slot<B>>]> = slots.into();
        this.publish(&reconciler, &slots, &out);
        for slot in removed {
            slot.mark_removed();
            tokio::spawn(this.backend.close_pool(slot.live.load().pool.clone()));
        }
        drop(reconciler);
        this.wake_waiters();
        this.probe_now.notify_one();
        Ok(())
    }
}
