//! [`FailoverRedis`]: a `redis::aio::ConnectionLike` over a failover pool of
//! Redis nodes. `AsyncCommands`, `query_async`, pipelines and
//! `redis::Script` work on it as on a `ConnectionManager`; every command
//! goes to the current master, and one the old master refused (`READONLY`,
//! `MASTERDOWN`, `LOADING`, …: not executed) is sent again to the new one
//! once the pool has found it, within the acquire timeout.
//!
//! ```no_run
//! use failover_pool::redis::FailoverRedis;
//! use redis::AsyncCommands;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut redis = FailoverRedis::connect(&["redis://cache-a:6379/", "redis://cache-b:6379/"]).await?;
//! let _: () = redis.set("greeting", "hello").await?;
//! let mut replica = redis.reader().await?; // reads from a replica, lag-bounded
//! let v: Option<String> = replica.get("greeting").await?;
//! # let _ = v; Ok(()) }
//! ```

use super::backend::RedisBackend;
use super::send::{Request, many, one, send};
use crate::error::{Error, Result};
use crate::pool::{FailoverPool, PoolConfig, ReadPreference, Route, Routed, WriteToken};
use ::redis::aio::ConnectionLike;
use ::redis::{Cmd, Pipeline, RedisFuture, Value};

/// A failover pool over Redis nodes: writes go to the current master.
/// `ConnectionLike`, cheap to clone.
pub type FailoverRedis = FailoverPool<RedisBackend>;

impl ConnectionLike for FailoverRedis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            send(self, Route::Writer, Request::One(cmd), None)
                .await
                .map(one)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            send(
                self,
                Route::Writer,
                Request::Many(pipeline, offset, count),
                None,
            )
            .await
            .map(many)
        })
    }

    fn get_db(&self) -> i64 {
        self.backend().db()
    }
}

impl ConnectionLike for Routed<RedisBackend> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            send(self.pool(), self.route(), Request::One(cmd), None)
                .await
                .map(one)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            send(
                self.pool(),
                self.route(),
                Request::Many(pipeline, offset, count),
                None,
            )
            .await
            .map(many)
        })
    }

    fn get_db(&self) -> i64 {
        self.pool().backend().db()
    }
}

/// The Redis facade, on top of the generic [`FailoverPool`] surface.
impl FailoverPool<RedisBackend> {
    /// Connects with default settings (see [`PoolConfig`]): the node URLs in
    /// any order; roles are discovered.
    pub async fn connect(urls: &[&str]) -> Result<Self> {
        Self::connect_with(urls, PoolConfig::default()).await
    }

    /// A handle whose commands go to the current master (the pool itself
    /// is one too). Returns at once; each command picks the node anew.
    pub async fn writer(&self) -> Result<Routed<RedisBackend>> {
        self.routed(Route::Writer)
    }

    /// A handle whose commands go to a reader by the configured read
    /// preference (replicas within the lag bounds).
    pub async fn reader(&self) -> Result<Routed<RedisBackend>> {
        self.routed(self.default_read_route())
    }

    /// A reader handle with an explicit read preference.
    pub async fn reader_with(&self, pref: ReadPreference) -> Result<Routed<RedisBackend>> {
        self.routed(Route::Reader(pref))
    }

    /// A handle whose commands go only to a replica that has processed
    /// `token` (a master offset), else to the master.
    pub async fn reader_after(&self, token: WriteToken) -> Result<Routed<RedisBackend>> {
        self.routed(Route::After(token))
    }

    fn routed(&self, route: Route) -> Result<Routed<RedisBackend>> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        Ok(self.route(route))
    }
}
