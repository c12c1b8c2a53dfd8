//! [`DeadpoolRedis`]: the deadpool-redis backend of a [`FailoverPool`].
//! `writer()`/`reader()` give deadpool-redis connections (through
//! [`Pooled`]); the node-level commands are [`RedisNode`]'s, shared with
//! [`RedisBackend`](super::RedisBackend).
//!
//! deadpool-redis recycles a connection with a `PING`, which a demoted
//! master answers happily, so its callers then get `READONLY` (deadpool#372).
//! Here every node pool is a generation: when the node's role, fencing or
//! writer status changes, the pool is replaced and the old generation's
//! `pre_recycle` hook refuses to hand its connections out again.
//!
//! ```no_run
//! use failover_pool::pool::{FailoverPool, PoolConfig};
//! use failover_pool::redis::DeadpoolRedis;
//! use redis::AsyncCommands;
//!
//! # async fn demo() -> failover_pool::Result<()> {
//! let pool = FailoverPool::<DeadpoolRedis>::connect_with(
//!     &["redis://cache-a/", "redis://cache-b/"],
//!     PoolConfig::default(),
//! )
//! .await?;
//! let mut conn = pool.writer().await?; // dereferences to a deadpool_redis::Connection
//! if let Err(e) = conn.set::<_, _, ()>("k", "v").await {
//!     return Err(conn.observe(e)); // a failover-class error re-probes at once
//! }
//! # Ok(()) }
//! ```

use super::node::{RedisNode, write_token};
use super::{DEFAULT_PORT, backend::RESPONSE_TIMEOUT};
use crate::core::Classify;
use crate::error::{Error, ErrorClass, Result};
use crate::pool::{
    Backend, FailoverPool, NodeSpec, PoolConfig, PoolGeneration, Pooled, Probe, ReadPreference,
    Route, WriteToken,
};
use ::redis::{AsyncConnectionConfig, RedisError};
use deadpool_redis::{Connection, Hook, HookError, Manager, Pool, PoolError, Runtime};
use std::time::Duration;

/// An error of the deadpool-redis backend: from the node's pool, or from a
/// command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisDeadpoolError {
    /// Getting a connection from the node's pool failed.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A command failed.
    #[error(transparent)]
    Redis(#[from] RedisError),
}

impl Classify for RedisDeadpoolError {
    fn classify(&self) -> ErrorClass {
        match self {
            RedisDeadpoolError::Pool(PoolError::Backend(e)) => super::classify(e),
            RedisDeadpoolError::Pool(PoolError::NoRuntimeSpecified) => ErrorClass::Application,
            // Timeouts, a closed pool, a failed hook: nothing was sent.
            RedisDeadpoolError::Pool(_) => ErrorClass::not_executed(),
            RedisDeadpoolError::Redis(e) => super::classify(e),
        }
    }
}

/// The deadpool-redis backend: per-node `deadpool_redis::Pool`s.
#[derive(Debug, Clone)]
pub struct DeadpoolRedis {
    max_connections: usize,
    connect_timeout: Duration,
    /// The `TIMEOUT` of a `FAILOVER TO` (see [`failover_timeout`](super::node::failover_timeout)).
    failover_timeout: Duration,
}

impl Backend for DeadpoolRedis {
    type Node = RedisNode;
    type Pool = Pool;
    type Conn = Connection;
    type Error = RedisDeadpoolError;

    const DEFAULT_PORT: u16 = DEFAULT_PORT;

    fn from_config(config: &PoolConfig) -> Self {
        DeadpoolRedis {
            max_connections: config.max_connections as usize,
            connect_timeout: config.connect_timeout,
            failover_timeout: super::node::failover_timeout(config),
        }
    }

    fn node(&self, spec: &NodeSpec) -> Result<RedisNode> {
        RedisNode::new(spec, connection_config(self.connect_timeout))
    }

    fn pool(&self, node: &RedisNode, generation: PoolGeneration) -> Result<Pool> {
        let manager = Manager::new_with_config(
            node.client().get_connection_info().clone(),
            connection_config(self.connect_timeout),
        )
        .map_err(|e| Error::Config(format!("deadpool-redis manager: {e}")))?;
        Pool::builder(manager)
            .max_size(self.max_connections)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(self.connect_timeout))
            .wait_timeout(Some(self.connect_timeout))
            .recycle_timeout(Some(self.connect_timeout))
            .pre_recycle(Hook::sync_fn(move |_, _| {
                if generation.is_current() {
                    Ok(())
                } else {
                    Err(HookError::Message(
                        "connection from a retired pool generation".into(),
                    ))
                }
            }))
            .build()
            .map_err(|e| Error::Config(format!("deadpool-redis pool: {e}")))
    }

    #[allow(clippy::manual_async_fn)] // the future must not borrow `self`
    fn close_pool(&self, pool: Pool) -> impl Future<Output = ()> + Send + 'static {
        pool.close();
        async {}
    }

    async fn acquire(&self, pool: &Pool) -> std::result::Result<Connection, RedisDeadpoolError> {
        Ok(pool.get().await?)
    }

    fn is_exhausted(error: &RedisDeadpoolError) -> bool {
        matches!(
            error,
            RedisDeadpoolError::Pool(PoolError::Timeout(deadpool_redis::TimeoutType::Wait))
        )
    }

    async fn probe(&self, node: &RedisNode) -> std::result::Result<Probe, RedisDeadpoolError> {
        Ok(node.probe().await?)
    }

    async fn promote(&self, node: &RedisNode) -> std::result::Result<(), RedisDeadpoolError> {
        Ok(node.promote().await?)
    }

    async fn switchover(
        &self,
        from: &RedisNode,
        to: &RedisNode,
    ) -> std::result::Result<(), RedisDeadpoolError> {
        Ok(from.failover_to(to, self.failover_timeout).await?)
    }

    async fn follow(
        &self,
        node: &RedisNode,
        leader: &RedisNode,
    ) -> std::result::Result<(), RedisDeadpoolError> {
        Ok(node.follow(leader).await?)
    }

    async fn write_token(
        conn: &mut Connection,
    ) -> std::result::Result<WriteToken, RedisDeadpoolError> {
        Ok(write_token(conn).await?)
    }
}

fn connection_config(connect_timeout: Duration) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
}

/// The deadpool facade: checked-out connections for each route, on top of
/// the generic [`FailoverPool`] surface.
impl FailoverPool<DeadpoolRedis> {
    /// A pooled connection to the master (waits during a failover, bounded
    /// by the acquire timeout). It dereferences to a `deadpool_redis::Connection`.
    pub async fn writer(&self) -> Result<Pooled<DeadpoolRedis>> {
        self.checkout(Route::Writer).await
    }

    /// A pooled connection for reading, per the configured read preference.
    pub async fn reader(&self) -> Result<Pooled<DeadpoolRedis>> {
        self.checkout(self.default_read_route()).await
    }

    /// A pooled connection for reading with an explicit preference.
    pub async fn reader_with(&self, pref: ReadPreference) -> Result<Pooled<DeadpoolRedis>> {
        self.checkout(Route::Reader(pref)).await
    }

    /// A pooled connection on a replica that has processed `token`, else
    /// the master: read-your-writes.
    pub async fn reader_after(&self, token: WriteToken) -> Result<Pooled<DeadpoolRedis>> {
        self.checkout(Route::After(token)).await
    }
}
