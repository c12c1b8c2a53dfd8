//! [`RedisBackend`]: the `redis` crate's backend of a
//! [`FailoverPool`](crate::pool::FailoverPool). Each node has one
//! multiplexed connection per pool generation ([`RedisNodePool`]), opened on
//! first use and reopened after it broke; the node-level commands (probe,
//! promotion, re-pointing, switchover) are [`RedisNode`]'s, shared with the
//! deadpool-redis backend.

use super::DEFAULT_PORT;
use super::node::{RedisNode, write_token};
use super::watched;
use crate::error::Result;
use crate::pool::{Backend, NodeSpec, PoolConfig, PoolGeneration, Probe, WriteToken};
use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::{AsyncConnectionConfig, Client, Cmd, RedisError, RedisFuture, Value};
use arc_swap::ArcSwapOption;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::*};
use std::time::Duration;
use tokio::sync::Mutex;

/// How long a Redis command may wait for its answer (redis-rs's own default).
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

/// The Redis backend: multiplexed connections, probes by `INFO replication`,
/// promotion by `REPLICAOF NO ONE`, planned switches by `FAILOVER`.
#[derive(Debug, Clone)]
pub struct RedisBackend {
    connection: AsyncConnectionConfig,
    connect_timeout: Duration,
    /// The `TIMEOUT` of a `FAILOVER TO` (see [`failover_timeout`](super::node::failover_timeout)).
    failover_timeout: Duration,
    /// The database the node URLs select (the last one prepared).
    db: Arc<AtomicI64>,
}

impl RedisBackend {
    /// The database number the node URLs select (`redis://host/2` → 2).
    pub fn db(&self) -> i64 {
        self.db.load(Relaxed)
    }
}

struct Shared {
    id: u64,
    conn: MultiplexedConnection,
    /// Raised when the server closed the connection or it failed.
    dead: Arc<AtomicBool>,
}

impl Shared {
    fn is_dead(&self) -> bool {
        self.dead.load(Acquire)
    }
}

/// One shared multiplexed connection, opened on demand.
struct Slot {
    connection: AsyncConnectionConfig,
    current: ArcSwapOption<Shared>,
    connecting: Mutex<()>,
}

impl Slot {
    fn new(connection: AsyncConnectionConfig) -> Self {
        Slot {
            connection,
            current: ArcSwapOption::empty(),
            connecting: Mutex::new(()),
        }
    }
}

/// Which of a node pool's connections.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Use {
    /// Every caller's commands.
    Shared = 0,
    /// Writes that wait for replicas (`WAIT` blocks its whole connection,
    /// so it gets one of its own with no response timeout).
    Acknowledged = 1,
}

struct NodePoolInner {
    client: Client,
    generation: PoolGeneration,
    closed: AtomicBool,
    slots: [Slot; 2],
    next_id: AtomicU64,
    connect_timeout: Duration,
}

/// One pool generation of a Redis node: a multiplexed connection shared by
/// every caller, (re)opened on demand, and a second one for acknowledged
/// writes, opened on first use. Cheap to clone.
#[derive(Clone)]
pub struct RedisNodePool(Arc<NodePoolInner>);

impl fmt::Debug for RedisNodePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisNodePool")
            .field("generation", &self.0.generation)
            .field("closed", &self.is_closed())
            .field(
                "connected",
                &self.0.slots[Use::Shared as usize].current.load().is_some(),
            )
            .finish()
    }
}

impl RedisNodePool {
    /// Whether this generation was closed (a retired or removed node).
    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Acquire)
    }

    /// The slot's connection, opened if there is none (one connect at a
    /// time). The usual case (it is open) does not wait for anything; the
    /// connect, rare and with a large future, is boxed so that every
    /// command's future stays small.
    async fn connection(&self, slot: Use) -> std::result::Result<RedisConn, RedisError> {
        match self.open(slot)? {
            Some(conn) => Ok(conn),
            None => Box::pin(self.reconnect(slot)).await,
        }
    }

    /// The slot's connection if it is open.
    fn open(&self, slot: Use) -> std::result::Result<Option<RedisConn>, RedisError> {
        if self.is_closed() || !self.0.generation.is_current() {
            return Err(closed_error());
        }
        let s = &self.0.slots[slot as usize];
        Ok(s.current
            .load()
            .as_ref()
            .filter(|shared| !shared.is_dead())
            .map(|shared| self.conn(shared, slot)))
    }

    async fn reconnect(&self, slot: Use) -> std::result::Result<RedisConn, RedisError> {
        let s = &self.0.slots[slot as usize];
        let _connecting = s.connecting.lock().await;
        if let Some(conn) = self.open(slot)? {
            return Ok(conn);
        }
        // None yet, or it ended (a command sent on it could not run): a new one.
        let (conn, dead) =
            watched::connect(&self.0.client, &s.connection, self.0.connect_timeout).await?;
        let shared = Arc::new(Shared {
            id: self.0.next_id.fetch_add(1, Relaxed),
            conn,
            dead,
        });
        s.current.store(Some(Arc::clone(&shared)));
        Ok(self.conn(&shared, slot))
    }

    fn conn(&self, shared: &Shared, slot: Use) -> RedisConn {
        RedisConn {
            conn: shared.conn.clone(),
            dead: Arc::clone(&shared.dead),
            id: shared.id,
            slot,
            pool: self.clone(),
        }
    }

    /// Forgets the slot's connection `id` (it broke): the next caller opens a new one.
    fn invalidate(&self, slot: Use, id: u64) {
        let s = &self.0.slots[slot as usize];
        let current = s.current.load();
        if let Some(shared) = &*current
            && shared.id == id
        {
            s.current.compare_and_swap(&current, None);
        }
    }
}

fn closed_error() -> RedisError {
    RedisError::from((::redis::ErrorKind::Client, "not sent", RETIRED.to_owned()))
}

/// A connection to one Redis node: a clone of the node's multiplexed
/// connection. It is a `ConnectionLike`; a connection-level failure makes
/// the node pool open a new one for the next caller.
pub struct RedisConn {
    conn: MultiplexedConnection,
    dead: Arc<AtomicBool>,
    id: u64,
    slot: Use,
    pool: RedisNodePool,
}

impl fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConn").field("id", &self.id).finish()
    }
}

impl RedisConn {
    /// Forgets this connection in its node pool if `error` says it broke.
    pub(crate) fn note(&self, error: &RedisError) {
        if error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error() {
            self.pool.invalidate(self.slot, self.id);
        }
    }

    /// Forgets this connection in its node pool (it stopped answering).
    pub(crate) fn invalidate(&self) {
        self.pool.invalidate(self.slot, self.id);
    }

    /// The node's connection for acknowledged writes (see
    /// [`FailoverRedis::acknowledged`](super::FailoverRedis::acknowledged)).
    pub(crate) async fn acknowledged(&self) -> std::result::Result<RedisConn, RedisError> {
        self.pool.connection(Use::Acknowledged).await
    }
}

impl RedisConn {
    /// Refuses to send on a connection already known to have ended (the
    /// command certainly does not run; see [`not_sent`]).
    fn check_open(&self) -> std::result::Result<(), RedisError> {
        if self.dead.load(Acquire) {
            self.invalidate();
            return Err(not_sent());
        }
        Ok(())
    }
}

/// Why a command was not sent (the detail of a [`not_sent`] error).
const CONNECTION_ENDED: &str = "the connection had closed; the command was not sent";
const RETIRED: &str = "connection from a retired pool generation; the command was not sent";

/// The error of a command not sent because its connection had already
/// ended: certainly not executed, unlike the `broken pipe` of one cut off
/// in flight.
pub(crate) fn not_sent() -> RedisError {
    RedisError::from((
        ::redis::ErrorKind::Client,
        "not sent",
        CONNECTION_ENDED.to_owned(),
    ))
}

/// Whether `error` is this crate's refusal to send a command (see [`not_sent`]).
pub(crate) fn is_not_sent(error: &RedisError) -> bool {
    matches!(error.detail(), Some(CONNECTION_ENDED | RETIRED))
}

impl RedisConn {
    /// Sends one command (unboxed: the crate's own path).
    pub(crate) async fn send_one(&mut self, cmd: &Cmd) -> std::result::Result<Value, RedisError> {
        self.check_open()?;
        let r = self.conn.send_packed_command(cmd).await;
        if let Err(e) = &r {
            self.note(e);
        }
        r
    }

    /// Sends a slice of a pipeline (unboxed: the crate's own path).
    pub(crate) async fn send_many(
        &mut self,
        pipeline: &::redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> std::result::Result<Vec<Value>, RedisError> {
        self.check_open()?;
        let r = self
            .conn
            .send_packed_commands(pipeline, offset, count)
            .await;
        if let Err(e) = &r {
            self.note(e);
        }
        r
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.send_one(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a ::redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.send_many(pipeline, offset, count))
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

impl Backend for RedisBackend {
    type Node = RedisNode;
    type Pool = RedisNodePool;
    type Conn = RedisConn;
    type Error = RedisError;

    const DEFAULT_PORT: u16 = DEFAULT_PORT;

    fn from_config(config: &PoolConfig) -> Self {
        RedisBackend {
            connection: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(RESPONSE_TIMEOUT)),
            connect_timeout: config.connect_timeout,
            failover_timeout: super::node::failover_timeout(config),
            db: Arc::new(AtomicI64::new(0)),
        }
    }

    fn node(&self, spec: &NodeSpec) -> Result<RedisNode> {
        let node = RedisNode::new(spec, self.connection.clone())?;
        self.db.store(node.db(), Relaxed);
        Ok(node)
    }

    fn pool(&self, node: &RedisNode, generation: PoolGeneration) -> Result<RedisNodePool> {
        Ok(RedisNodePool(Arc::new(NodePoolInner {
            client: node.client().clone(),
            generation,
            closed: AtomicBool::new(false),
            slots: [
                Slot::new(self.connection.clone()),
                Slot::new(self.connection.clone().set_response_timeout(None)),
            ],
            next_id: AtomicU64::new(0),
            connect_timeout: self.connect_timeout,
        })))
    }

    #[allow(clippy::manual_async_fn)] // the future must not borrow `self`
    fn close_pool(&self, pool: RedisNodePool) -> impl Future<Output = ()> + Send + 'static {
        // Callers holding a clone of the connection finish their commands;
        // nobody gets it again.
        pool.0.closed.store(true, Release);
        for slot in &pool.0.slots {
            slot.current.store(None);
        }
        async {}
    }

    async fn acquire(&self, pool: &RedisNodePool) -> std::result::Result<RedisConn, RedisError> {
        pool.connection(Use::Shared).await
    }

    fn is_broken(conn: &RedisConn) -> bool {
        conn.pool.0.slots[conn.slot as usize]
            .current
            .load()
            .as_ref()
            .is_none_or(|s| s.id != conn.id || s.is_dead())
            && !conn.pool.is_closed()
    }

    async fn probe(&self, node: &RedisNode) -> std::result::Result<Probe, RedisError> {
        node.probe().await
    }

    async fn promote(&self, node: &RedisNode) -> std::result::Result<(), RedisError> {
        node.promote().await
    }

    async fn switchover(
        &self,
        from: &RedisNode,
        to: &RedisNode,
    ) -> std::result::Result<(), RedisError> {
        from.failover_to(to, self.failover_timeout).await
    }

    async fn follow(
        &self,
        node: &RedisNode,
        leader: &RedisNode,
    ) -> std::result::Result<(), RedisError> {
        node.follow(leader).await
    }

    async fn write_token(conn: &mut RedisConn) -> std::result::Result<WriteToken, RedisError> {
        write_token(&mut conn.conn).await
    }
}
