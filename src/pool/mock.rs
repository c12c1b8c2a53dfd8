//! [`MockBackend`]: an in-memory [`Backend`] whose nodes a test scripts
//! through a [`MockCluster`] — role, epoch, position, crashes (refused),
//! hangs (frozen), busy pools — so the pool's rules (waiting for a writer,
//! retiring generations, fencing, switchover, cancellation) can be tested
//! under paused time, without a server. Your own tests can use it too, to
//! see what your code does when no writer is available.
//!
//! ```
//! use failover_pool::core::Role;
//! use failover_pool::pool::mock::{MockBackend, MockCluster};
//! use failover_pool::pool::{FailoverPool, PoolConfig, Route};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> failover_pool::Result<()> {
//! let cluster = MockCluster::new();
//! cluster.add("a", Role::Primary, 1);
//! cluster.add("b", Role::Replica, 1);
//! let config = PoolConfig::default();
//! let pool = FailoverPool::new(MockBackend::new(&cluster, &config), cluster.specs(), config).await?;
//! let mut conn = pool.checkout(Route::Writer).await?;
//! conn.write().expect("the primary takes writes");
//! assert_eq!(cluster.writes("a"), 1);
//! # Ok(()) }
//! ```

use crate::core::Classify;
use crate::core::endpoint::Role;
use crate::error::{ErrorClass, Result};
use crate::pool::backend::{Backend, Probe};
use crate::pool::config::PoolConfig;
use crate::pool::node::{NodeSpec, PoolGeneration};
use crate::pool::route::WriteToken;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How a scripted node behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockHealth {
    /// Answers.
    Up,
    /// Crashed: connections are refused, open ones are broken.
    Down,
    /// Frozen: probes and connects hang (until the caller's timeout).
    Frozen,
    /// Up, but its connection pool has no free connection (back-pressure).
    Busy,
}

#[derive(Debug, Clone)]
struct MockNode {
    role: Role,
    epoch: u64,
    position: u64,
    health: MockHealth,
    writes: u64,
    promotions: u64,
    acquires: u64,
}

/// The scripted state of every node, shared by a test and its
/// [`MockBackend`]. Cheap to clone.
#[derive(Clone, Default)]
pub struct MockCluster {
    nodes: Arc<Mutex<BTreeMap<Arc<str>, MockNode>>>,
}

impl fmt::Debug for MockCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.lock()
                    .iter()
                    .map(|(k, v)| (k.clone(), (v.role, v.epoch, v.health))),
            )
            .finish()
    }
}

impl MockCluster {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Arc<str>, MockNode>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with<T>(&self, id: &str, f: impl FnOnce(&mut MockNode) -> T) -> T {
        let mut nodes = self.lock();
        let node = nodes
            .get_mut(id)
            .unwrap_or_else(|| panic!("no mock node `{id}`"));
        f(node)
    }

    /// Adds a node that is up, with a role and an epoch.
    pub fn add(&self, id: &str, role: Role, epoch: u64) {
        self.lock().insert(
            Arc::from(id),
            MockNode {
                role,
                epoch,
                position: 0,
                health: MockHealth::Up,
                writes: 0,
                promotions: 0,
                acquires: 0,
            },
        );
    }

    /// The spec of a node (`mock://<id>`, id `<id>`).
    pub fn spec(&self, id: &str) -> NodeSpec {
        NodeSpec::new(id, format!("mock://{id}"))
    }

    /// The specs of every node, by id.
    pub fn specs(&self) -> Vec<NodeSpec> {
        self.lock().keys().map(|id| self.spec(id)).collect()
    }

    /// Sets how a node behaves.
    pub fn set_health(&self, id: &str, health: MockHealth) {
        self.with(id, |n| n.health = health);
    }

    /// Sets the role a node reports (a demotion, or a promotion done elsewhere).
    pub fn set_role(&self, id: &str, role: Role, epoch: u64) {
        self.with(id, |n| {
            n.role = role;
            n.epoch = epoch;
        });
    }

    /// Sets the position a node reports (write position on a primary,
    /// replayed position on a replica).
    pub fn set_position(&self, id: &str, position: u64) {
        self.with(id, |n| n.position = position);
    }

    /// Writes that reached a node.
    pub fn writes(&self, id: &str) -> u64 {
        self.with(id, |n| n.writes)
    }

    /// Promotions a node received.
    pub fn promotions(&self, id: &str) -> u64 {
        self.with(id, |n| n.promotions)
    }

    /// Connections handed out by a node's pools.
    pub fn acquires(&self, id: &str) -> u64 {
        self.with(id, |n| n.acquires)
    }

    fn health(&self, id: &str) -> MockHealth {
        self.with(id, |n| n.health)
    }
}

/// What went wrong in the mock; classified like a real driver's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockError {
    /// The node is down: refused before anything was sent.
    Refused,
    /// The connection broke after the request was sent.
    Reset,
    /// A write reached a node that is not primary.
    ReadOnly,
    /// The node's pool had no free connection in time.
    Exhausted,
    /// Connecting timed out (the node is frozen).
    ConnectTimeout,
    /// The pool generation was retired.
    PoolClosed,
}

impl fmt::Display for MockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MockError::Refused => "connection refused",
            MockError::Reset => "connection reset",
            MockError::ReadOnly => "cannot execute a write on a read-only node",
            MockError::Exhausted => "no free connection in the node's pool",
            MockError::ConnectTimeout => "connect timed out",
            MockError::PoolClosed => "pool closed",
        })
    }
}

impl std::error::Error for MockError {}

impl Classify for MockError {
    fn classify(&self) -> ErrorClass {
        match self {
            MockError::Reset => ErrorClass::maybe_executed(),
            _ => ErrorClass::not_executed(),
        }
    }
}

/// The in-memory backend over a [`MockCluster`].
#[derive(Debug, Clone)]
pub struct MockBackend {
    cluster: MockCluster,
    connect_timeout: Duration,
}

impl MockBackend {
    /// A backend over `cluster`, with the connect timeout of `config`.
    pub fn new(cluster: &MockCluster, config: &PoolConfig) -> Self {
        MockBackend {
            cluster: cluster.clone(),
            connect_timeout: config.connect_timeout,
        }
    }
}

/// A mock node: its id.
#[derive(Debug)]
pub struct MockNodeId(Arc<str>);

/// One generation of a mock node's pool.
#[derive(Debug, Clone)]
pub struct MockPool {
    id: Arc<str>,
    generation: PoolGeneration,
    closed: Arc<AtomicBool>,
}

impl MockPool {
    /// Whether this generation was closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }

    /// This pool's generation.
    pub fn generation(&self) -> u64 {
        self.generation.id()
    }
}

/// A connection to a mock node.
#[derive(Debug)]
pub struct MockConn {
    id: Arc<str>,
    cluster: MockCluster,
    generation: PoolGeneration,
}

impl MockConn {
    /// The node this connection is on.
    pub fn node(&self) -> &str {
        &self.id
    }

    /// Whether the connection's pool generation is still current.
    pub fn generation_is_current(&self) -> bool {
        self.generation.is_current()
    }

    /// Runs a write: counted on the node if it is up and primary.
    ///
    /// # Errors
    /// [`MockError::Reset`] when the node is down, [`MockError::ReadOnly`]
    /// when it is not primary.
    pub fn write(&mut self) -> Result<(), MockError> {
        self.cluster.with(&self.id, |n| match (n.health, n.role) {
            (MockHealth::Down, _) => Err(MockError::Reset),
            (_, Role::Replica) => Err(MockError::ReadOnly),
            (_, Role::Primary) => {
                n.writes += 1;
                n.position += 1;
                Ok(())
            }
        })
    }
}

impl Backend for MockBackend {
    type Node = MockNodeId;
    type Pool = MockPool;
    type Conn = MockConn;
    type Error = MockError;

    const DEFAULT_PORT: u16 = 1;

    fn from_config(config: &PoolConfig) -> Self {
        MockBackend::new(&MockCluster::new(), config)
    }

    fn node(&self, spec: &NodeSpec) -> Result<MockNodeId> {
        Ok(MockNodeId(Arc::clone(&spec.id)))
    }

    fn pool(&self, node: &MockNodeId, generation: PoolGeneration) -> Result<MockPool> {
        Ok(MockPool {
            id: Arc::clone(&node.0),
            generation,
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    #[allow(clippy::manual_async_fn)] // the future must not borrow `self`
    fn close_pool(&self, pool: MockPool) -> impl Future<Output = ()> + Send + 'static {
        async move { pool.closed.store(true, Release) }
    }

    async fn acquire(&self, pool: &MockPool) -> Result<MockConn, MockError> {
        if pool.is_closed() || !pool.generation.is_current() {
            return Err(MockError::PoolClosed);
        }
        match self.cluster.health(&pool.id) {
            MockHealth::Down => return Err(MockError::Refused),
            MockHealth::Frozen => {
                tokio::time::sleep(self.connect_timeout).await;
                return Err(MockError::ConnectTimeout);
            }
            MockHealth::Busy => {
                tokio::time::sleep(self.connect_timeout).await;
                return Err(MockError::Exhausted);
            }
            MockHealth::Up => {}
        }
        self.cluster.with(&pool.id, |n| n.acquires += 1);
        Ok(MockConn {
            id: Arc::clone(&pool.id),
            cluster: self.cluster.clone(),
            generation: pool.generation.clone(),
        })
    }

    fn is_broken(conn: &MockConn) -> bool {
        conn.cluster.health(&conn.id) == MockHealth::Down
    }

    fn is_exhausted(error: &MockError) -> bool {
        *error == MockError::Exhausted
    }

    async fn probe(&self, node: &MockNodeId) -> Result<Probe, MockError> {
        match self.cluster.health(&node.0) {
            MockHealth::Down => Err(MockError::Refused),
            MockHealth::Frozen => std::future::pending().await,
            MockHealth::Up | MockHealth::Busy => Ok(self.cluster.with(&node.0, |n| Probe {
                role: n.role,
                epoch: n.epoch,
                position: n.position,
                received: (n.role == Role::Replica).then_some(n.position),
                lag: (n.role == Role::Replica).then_some(Duration::ZERO),
                lineage: None,
                upstream: None,
            })),
        }
    }

    async fn promote(&self, node: &MockNodeId) -> Result<(), MockError> {
        match self.cluster.health(&node.0) {
            MockHealth::Down => return Err(MockError::Refused),
            MockHealth::Frozen => std::future::pending().await,
            MockHealth::Up | MockHealth::Busy => {}
        }
        let next_epoch = self
            .cluster
            .lock()
            .values()
            .map(|n| n.epoch)
            .max()
            .unwrap_or(0)
            + 1;
        self.cluster.with(&node.0, |n| {
            if n.role == Role::Replica {
                n.role = Role::Primary;
                n.epoch = next_epoch;
                n.promotions += 1;
            }
        });
        Ok(())
    }

    async fn write_token(conn: &mut MockConn) -> Result<WriteToken, MockError> {
        conn.cluster.with(&conn.id, |n| match n.health {
            MockHealth::Down => Err(MockError::Reset),
            _ => Ok(WriteToken {
                epoch: n.epoch,
                position: n.position,
            }),
        })
    }
}
