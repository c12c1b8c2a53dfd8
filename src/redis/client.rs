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

use super::backend::{RedisBackend, RedisConn};
use crate::error::{Error, ErrorClass, Result};
use crate::pool::{FailoverPool, PoolConfig, ReadPreference, Route, Routed, WriteToken};
use ::redis::aio::ConnectionLike;
use ::redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};
use std::time::Duration;
use tokio::time::Instant;

/// A failover pool over Redis nodes: writes go to the current master.
/// `ConnectionLike`, cheap to clone.
pub type FailoverRedis = FailoverPool<RedisBackend>;

/// What the Redis surface returns for this crate's errors: the error a
/// `ConnectionManager` caller would see for an unreachable server (I/O:
/// timed out or not connected), the driver's own error unwrapped.
pub(crate) fn to_redis(e: Error) -> RedisError {
    use std::io::{Error as Io, ErrorKind as IoKind};
    match e {
        Error::Backend { source, .. } if source.is::<RedisError>() => {
            match source.downcast::<RedisError>() {
                Ok(e) => *e,
                Err(_) => unreachable!("checked with `is`"),
            }
        }
        Error::NoNode { .. } | Error::Timeout { .. } => {
            RedisError::from(Io::new(IoKind::TimedOut, e))
        }
        Error::Closed => RedisError::from(Io::new(IoKind::NotConnected, e)),
        Error::Config(_) => RedisError::from((
            ErrorKind::InvalidClientConfig,
            "invalid configuration",
            e.to_string(),
        )),
        other => RedisError::from(Io::other(other)),
    }
}

/// One request on a connection: a command or a slice of a pipeline.
#[derive(Clone, Copy)]
enum Request<'a> {
    One(&'a Cmd),
    Many(&'a Pipeline, usize, usize),
}

enum Reply {
    One(Value),
    Many(Vec<Value>),
}

impl Request<'_> {
    async fn send(self, conn: &mut RedisConn) -> std::result::Result<Reply, RedisError> {
        match self {
            Request::One(cmd) => conn.req_packed_command(cmd).await.map(Reply::One),
            Request::Many(p, offset, count) => conn
                .req_packed_commands(p, offset, count)
                .await
                .map(Reply::Many),
        }
    }
}

/// Sends `request` on the node `route` picks. A failure that certainly did
/// not execute (the node refused: `READONLY`, `MASTERDOWN`, …) is reported
/// and the request sent again, after a short pause, to whichever node the
/// route picks then, until the acquire timeout; anything else is returned.
async fn send(
    pool: &FailoverRedis,
    route: Route,
    request: Request<'_>,
) -> std::result::Result<Reply, RedisError> {
    let mut deadline = None;
    let mut pause = Duration::from_millis(2);
    loop {
        let mut conn = pool.checkout(route).await.map_err(to_redis)?;
        let err = match request.send(&mut conn).await {
            Ok(reply) => return Ok(reply),
            Err(e) => e,
        };
        let class = conn.report(&err);
        drop(conn);
        let deadline =
            *deadline.get_or_insert_with(|| Instant::now() + pool.config().acquire_timeout);
        if class != ErrorClass::not_executed() || Instant::now() + pause >= deadline {
            return Err(err);
        }
        // Give the re-probe a moment: the topology still names this node.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn one(reply: Reply) -> Value {
    match reply {
        Reply::One(v) => v,
        Reply::Many(mut v) => v.pop().unwrap_or(Value::Nil),
    }
}

fn many(reply: Reply) -> Vec<Value> {
    match reply {
        Reply::Many(v) => v,
        Reply::One(v) => vec![v],
    }
}

impl ConnectionLike for FailoverRedis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move { send(self, Route::Writer, Request::One(cmd)).await.map(one) })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            send(self, Route::Writer, Request::Many(pipeline, offset, count))
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
            send(self.pool(), self.route(), Request::One(cmd))
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
