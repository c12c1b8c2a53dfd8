//! The [`Backend`] trait: what a data store implements to be driven by a
//! [`FailoverPool`](crate::pool::FailoverPool).
//!
//! A backend knows how to make a connection pool for one node, how to ask a
//! node what it is ([`Backend::probe`]), how to promote one, and how to
//! classify its own errors. The pool knows everything else (topology,
//! fencing, promotion policy, routing, waiting) and knows the store only
//! through this trait: Postgres answers with `pg_is_in_recovery()` and its
//! timeline, Redis with `ROLE`, and the same core handles both.

use crate::core::endpoint::Role;
use crate::error::{ErrorClass, Result};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// One node as configured: an id and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Unique id (defaults to `host:port`).
    pub id: Arc<str>,
    /// Connection URL (`postgres://…`, `redis://…`).
    pub url: String,
}

/// What a node said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The role the server reports.
    pub role: Role,
    /// A fencing epoch that only grows across promotions: the Postgres
    /// timeline. Backends without one (Redis) report 0 and the pool falls
    /// back to "the node this pool promoted or followed last wins".
    pub epoch: u64,
    /// On a primary its current write position; on a replica its replayed
    /// position (Postgres LSN, Redis replication offset).
    pub position: u64,
    /// On a replica, the position received (may be ahead of `position`).
    pub received: Option<u64>,
    /// On a replica, the replay delay the server reports (zero when caught up).
    pub lag: Option<Duration>,
}

/// A data store that a [`FailoverPool`](crate::pool::FailoverPool) can drive.
///
/// Methods that talk to the server return futures; the pool applies its own
/// timeouts around them. Implementations keep per-node state (connect
/// options, a probe connection) in [`Backend::Node`].
pub trait Backend: Send + Sync + fmt::Debug + Sized + 'static {
    /// Per-node state (connect options, cached probe connection, …).
    type Node: Send + Sync + fmt::Debug + 'static;
    /// A connection pool for one node. Cloning must be cheap (an `Arc`).
    type Pool: Clone + Send + Sync + fmt::Debug + 'static;
    /// A pooled connection.
    type Conn: Send + 'static;
    /// The store's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Short name of the store ("postgres", "redis").
    fn kind(&self) -> &'static str;

    /// Prepares a node from its spec (parses the URL; does not connect).
    fn node(&self, spec: &NodeSpec) -> Result<Self::Node>;

    /// A new connection pool for the node, created lazily (no connection is
    /// opened until needed). `epoch` identifies this pool generation: a
    /// backend whose driver supports it should refuse to hand out or recycle
    /// connections once `current_epoch()` no longer equals `epoch`.
    fn pool(&self, node: &Self::Node, epoch: u64, current_epoch: EpochCheck) -> Result<Self::Pool>;

    /// Retires a pool: no new connections; idle ones close now, busy ones
    /// when they are returned.
    fn close_pool(&self, pool: Self::Pool) -> impl Future<Output = ()> + Send + 'static;

    /// Acquires a connection from one node's pool.
    fn acquire(
        &self,
        pool: &Self::Pool,
    ) -> impl Future<Output = std::result::Result<Self::Conn, Self::Error>> + Send;

    /// Asks the node what it is, over a short-lived or cached connection.
    fn probe<'a>(&'a self, node: &'a Self::Node)
    -> impl Future<Output = Result<Probe>> + Send + 'a;

    /// Promotes a replica to primary. Must be idempotent: promoting a node
    /// that is already primary succeeds.
    fn promote<'a>(&'a self, node: &'a Self::Node) -> impl Future<Output = Result<()>> + Send + 'a;

    /// A planned switch of the writer from `from` to `to`, called by
    /// [`FailoverPool::switchover`](crate::pool::FailoverPool::switchover)
    /// once `to` has caught up and writers are held back. The default
    /// promotes `to` (the old writer is then fenced by the new epoch); a
    /// store with a coordinated command (Redis `FAILOVER`) overrides it.
    fn switchover<'a>(
        &'a self,
        from: &'a Self::Node,
        to: &'a Self::Node,
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        let _ = from;
        self.promote(to)
    }

    /// Whether an acquire error only means the node's pool had no free
    /// connection in time (back-pressure, not a node failure): the pool then
    /// keeps waiting on the same node, without a re-probe. Default: `false`
    /// (the error is handled by its class).
    fn is_exhausted(error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// Whether an error is failover-class (the node or path failed) or the
    /// application's own.
    fn classify(error: &Self::Error) -> ErrorClass;
}

/// Tells a pool generation whether it is still current (see [`Backend::pool`]).
#[derive(Clone)]
pub struct EpochCheck(pub(crate) Arc<dyn Fn(u64) -> bool + Send + Sync>);

impl EpochCheck {
    /// Whether connections of pool generation `epoch` may still be used.
    pub fn is_current(&self, epoch: u64) -> bool {
        (self.0)(epoch)
    }

    /// A check that accepts every generation (for pools used outside a `FailoverPool`).
    pub fn always() -> Self {
        EpochCheck(Arc::new(|_| true))
    }
}

impl fmt::Debug for EpochCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EpochCheck")
    }
}
