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

use crate::error::Result;
use crate::pool::node::NodeSpec;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

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

/// What [`TopologySource::switchover`] returns: a planned switch started by
/// the source's own orchestrator.
pub type SwitchFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

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

    /// A planned switchover away from the writer `from` (towards `to`, the
    /// replica the pool chose), run by the orchestrator behind this source
    /// (Redis Sentinel: `SENTINEL FAILOVER`), or `None` (the default) to let
    /// the pool switch the nodes itself through its backend. Going around an
    /// orchestrator would have it undo the switch. The orchestrator may pick
    /// another replica than `to`: the pool follows whichever node it promotes.
    fn switchover(&self, from: &str, to: &str) -> Option<SwitchFuture<'_>> {
        let _ = (from, to);
        None
    }
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
