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

use super::ack::Ack;
use super::backend::{RedisBackend, RedisConn};
use super::classify;
use crate::error::{Error, ErrorClass, Result};
use crate::pool::{FailoverPool, PoolConfig, Pooled, ReadPreference, Route, Routed, WriteToken};
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
pub(crate) enum Request<'a> {
    One(&'a Cmd),
    Many(&'a Pipeline, usize, usize),
}

pub(crate) enum Reply {
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

/// A refusal hidden in a pipeline's replies (pipelines return their
/// commands' errors as values): the first failover-class error, and whether
/// the whole pipeline was refused: every reply an error that certainly did
/// not execute (or the `EXECABORT` of a transaction they aborted), so that
/// nothing ran and it may be sent again.
fn refusal(values: &[Value]) -> Option<(RedisError, bool)> {
    let mut first: Option<RedisError> = None;
    let mut all_refused = !values.is_empty();
    for v in values {
        let Value::ServerError(e) = v else {
            all_refused = false;
            continue;
        };
        let e = RedisError::from(e.clone());
        let class = classify(&e);
        let aborted = e.code() == Some("EXECABORT") && first.is_some();
        all_refused &= class == ErrorClass::not_executed() || aborted;
        if class.is_failover() && first.is_none() {
            first = Some(e);
        }
    }
    first.map(|e| (e, all_refused))
}

/// How one attempt ended, when it did not succeed.
enum Failed {
    /// Certainly not executed: send it again to the node the route picks next.
    Refused(RedisError),
    /// The caller's answer.
    Final(RedisError),
}

/// One attempt on the connection the route picked (on its node's
/// acknowledged-writes connection with `ack`).
async fn attempt(
    conn: &mut Pooled<RedisBackend>,
    request: Request<'_>,
    ack: Option<Ack>,
) -> std::result::Result<Reply, Failed> {
    let judge = |conn: &Pooled<RedisBackend>, e: RedisError| {
        if conn.report(&e) == ErrorClass::not_executed() {
            Failed::Refused(e)
        } else {
            Failed::Final(e)
        }
    };
    let mut acked = match ack {
        Some(_) => Some(conn.acknowledged().await.map_err(|e| judge(conn, e))?),
        None => None,
    };
    let sent = match (ack, acked.as_mut()) {
        (Some(ack), Some(target)) => {
            let sent = ack.bounded(request.send(target)).await;
            if matches!(&sent, Err(e) if e.is_timeout()) {
                target.invalidate();
            }
            sent
        }
        _ => request.send(conn).await,
    };
    let reply = match sent {
        Ok(Reply::Many(values)) => match refusal(&values) {
            Some((e, true)) => return Err(judge(conn, e)),
            Some((e, false)) => {
                // Some commands ran: the replies go back as they are.
                conn.report(&e);
                Reply::Many(values)
            }
            None => Reply::Many(values),
        },
        Ok(reply) => reply,
        Err(e) => return Err(judge(conn, e)),
    };
    match (ack, acked) {
        (Some(ack), Some(mut acked)) => ack.confirm(&mut acked, reply).await.map_err(Failed::Final),
        _ => Ok(reply),
    }
}

/// Sends `request` on the node `route` picks and, with `ack`, waits for
/// replicas to confirm it. A failure that certainly did not execute (the
/// node refused: `READONLY`, `MASTERDOWN`, …; a pipeline all of whose
/// commands were refused) is reported and the request sent again, after a
/// short pause, to whichever node the route picks then, until the acquire
/// timeout; anything else is returned.
pub(crate) async fn send(
    pool: &FailoverRedis,
    route: Route,
    request: Request<'_>,
    ack: Option<Ack>,
) -> std::result::Result<Reply, RedisError> {
    let mut deadline = None;
    let mut pause = Duration::from_millis(2);
    loop {
        let mut conn = pool.checkout(route).await.map_err(to_redis)?;
        let refused = match attempt(&mut conn, request, ack).await {
            Ok(reply) => return Ok(reply),
            Err(Failed::Final(e)) => return Err(e),
            Err(Failed::Refused(e)) => e,
        };
        drop(conn);
        let deadline =
            *deadline.get_or_insert_with(|| Instant::now() + pool.config().acquire_timeout);
        if Instant::now() + pause >= deadline {
            return Err(refused);
        }
        // Give the re-probe a moment: the topology still names this node.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

pub(crate) fn one(reply: Reply) -> Value {
    match reply {
        Reply::One(v) => v,
        Reply::Many(mut v) => v.pop().unwrap_or(Value::Nil),
    }
}

pub(crate) fn many(reply: Reply) -> Vec<Value> {
    match reply {
        Reply::Many(v) => v,
        Reply::One(v) => vec![v],
    }
}

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
