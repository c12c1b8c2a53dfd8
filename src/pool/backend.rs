//! The [`Backend`] trait: what a data store implements to be driven by a
//! [`FailoverPool`](crate::pool::FailoverPool).
//!
//! A backend knows how to make a connection pool for one node, how to ask a
//! node what it is ([`Backend::probe`]), how to promote one, how to read the
//! writer's position for read-your-writes, and how its errors classify
//! ([`Classify`]). The pool knows everything else (node set, topology,
//! fencing, promotion policy, routing, waiting, retiring stale connections)
//! and knows the store only through this trait: Postgres answers with
//! `pg_is_in_recovery()` and its timeline, Redis with `ROLE`, and the same
//! pool handles both.

use crate::core::Classify;
use crate::core::endpoint::Role;
use crate::error::Result;
use crate::pool::config::PoolConfig;
use crate::pool::node::{NodeSpec, PoolGeneration};
use crate::pool::route::WriteToken;
use crate::pool::topology::Lineage;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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
    /// The replication history the node reports, for stores whose fencing
    /// epoch is 0 (Redis: `master_replid` and `master_replid2`).
    pub lineage: Option<Lineage>,
    /// On a replica, the id (`host:port`) of the node it replicates from.
    pub upstream: Option<Arc<str>>,
}

impl Probe {
    /// A probe answer with a role, epoch and position, and nothing else known.
    pub fn new(role: Role, epoch: u64, position: u64) -> Self {
        Probe {
            role,
            epoch,
            position,
            received: None,
            lag: None,
            lineage: None,
            upstream: None,
        }
    }
}

/// A data store that a [`FailoverPool`](crate::pool::FailoverPool) can drive.
///
/// Methods that talk to the server return futures; the pool bounds them
/// with its own timeouts (`probe_timeout`, `promotion_timeout`,
/// `connect_timeout`), so implementations need none of their own.
pub trait Backend: Send + Sync + fmt::Debug + Sized + 'static {
    /// Per-node state (parsed connect options, a cached probe connection, …).
    type Node: Send + Sync + fmt::Debug + 'static;
    /// A connection pool for one node. Cloning must be cheap (an `Arc`).
    type Pool: Clone + Send + Sync + fmt::Debug + 'static;
    /// A pooled connection, as the driver hands it out.
    type Conn: Send + 'static;
    /// The driver's error type.
    type Error: Classify + std::error::Error + Send + Sync + 'static;

    /// The port a node URL means when it names none (Postgres 5432, Redis 6379).
    const DEFAULT_PORT: u16;

    /// A backend whose node pools follow `config` (sizes, connect timeout,
    /// connection checks).
    fn from_config(config: &PoolConfig) -> Self;

    /// Prepares a node from its spec (parses the URL; does not connect).
    fn node(&self, spec: &NodeSpec) -> Result<Self::Node>;

    /// A new connection pool for the node, created lazily (no connection is
    /// opened until needed). A backend whose driver supports it should
    /// refuse to hand out or recycle connections once
    /// `generation.is_current()` is false; the pool also closes a retired
    /// generation with [`Backend::close_pool`].
    fn pool(&self, node: &Self::Node, generation: PoolGeneration) -> Result<Self::Pool>;

    /// Retires a pool: no new connections; idle ones close now, busy ones
    /// when they are returned.
    fn close_pool(&self, pool: Self::Pool) -> impl Future<Output = ()> + Send + 'static;

    /// Acquires a connection from one node's pool (bounded by the pool's
    /// connect timeout).
    fn acquire(
        &self,
        pool: &Self::Pool,
    ) -> impl Future<Output = std::result::Result<Self::Conn, Self::Error>> + Send;

    /// Whether a connection is known to be dead without a round trip (its
    /// driver saw the server close it). A checked-out connection that is
    /// broken when it is returned makes the pool re-probe at once. Default: `false`.
    fn is_broken(conn: &Self::Conn) -> bool {
        let _ = conn;
        false
    }

    /// Whether an acquire error only means the node's pool had no free
    /// connection in time (back-pressure, not a node failure): the pool then
    /// keeps waiting on the same node, without a re-probe. Default: `false`.
    fn is_exhausted(error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// Asks the node what it is, over a short-lived or cached connection.
    fn probe<'a>(
        &'a self,
        node: &'a Self::Node,
    ) -> impl Future<Output = std::result::Result<Probe, Self::Error>> + Send + 'a;

    /// Promotes a replica to primary and returns once it accepts writes.
    /// Must be idempotent: promoting a node that is already primary succeeds.
    fn promote<'a>(
        &'a self,
        node: &'a Self::Node,
    ) -> impl Future<Output = std::result::Result<(), Self::Error>> + Send + 'a;

    /// A planned switch of the writer from `from` to `to`, called by
    /// [`FailoverPool::switchover`](crate::pool::FailoverPool::switchover)
    /// once `to` has caught up and writers are held back. The default
    /// promotes `to` (the old writer is then fenced by the new epoch); a
    /// store with a coordinated command (Redis `FAILOVER`) overrides it.
    fn switchover<'a>(
        &'a self,
        from: &'a Self::Node,
        to: &'a Self::Node,
    ) -> impl Future<Output = std::result::Result<(), Self::Error>> + Send + 'a {
        let _ = from;
        self.promote(to)
    }

    /// After this pool promoted `leader`, makes `node` (another replica)
    /// replicate from it. Default: nothing (Postgres standbys are re-pointed
    /// by their own configuration or an orchestrator; Redis replicas need
    /// `REPLICAOF`).
    fn follow<'a>(
        &'a self,
        node: &'a Self::Node,
        leader: &'a Self::Node,
    ) -> impl Future<Output = std::result::Result<(), Self::Error>> + Send + 'a {
        let _ = (node, leader);
        async { Ok(()) }
    }

    /// The writer's position now, on a connection to the writer: the token
    /// a read-your-writes read waits for (Postgres: the current WAL LSN and
    /// timeline).
    fn write_token(
        conn: &mut Self::Conn,
    ) -> impl Future<Output = std::result::Result<WriteToken, Self::Error>> + Send;
}
