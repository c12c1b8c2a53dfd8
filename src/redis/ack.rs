//! Acknowledged writes: [`FailoverRedis::acknowledged`] gives a handle whose
//! commands return only once `WAIT` says enough replicas have them, and
//! fail with [`UNCONFIRMED`] ("written on the master, not confirmed on
//! replicas") when they do not in time.
//!
//! `WAIT` blocks the connection it is sent on, so these commands use a
//! second multiplexed connection per node (opened on first use, with no
//! response timeout of its own: each request is bounded by the response
//! timeout plus the `WAIT` timeout instead); the shared connection of
//! every other caller never waits for replicas.

use super::backend::{RESPONSE_TIMEOUT, RedisBackend, RedisConn};
use super::client::{FailoverRedis, Reply, Request, many, one, send};
use crate::pool::{FailoverPool, Route};
use ::redis::aio::ConnectionLike;
use ::redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use std::time::Duration;

/// The error code of a write the master applied but too few replicas
/// confirmed in time: it is not lost yet, but a failover now could lose it.
/// Test for it with [`is_unconfirmed`].
pub const UNCONFIRMED: &str = "UNCONFIRMED";

/// Whether `error` says "written on the master, not confirmed on replicas"
/// (an acknowledged write whose `WAIT` fell short or failed).
pub fn is_unconfirmed(error: &RedisError) -> bool {
    error.code() == Some(UNCONFIRMED)
}

fn unconfirmed(detail: String) -> RedisError {
    ::redis::make_extension_error(
        UNCONFIRMED.to_owned(),
        Some(format!(
            "written on the master, not confirmed on replicas: {detail}"
        )),
    )
}

/// How many replicas must confirm, and how long to wait for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ack {
    replicas: u32,
    timeout: Duration,
}

impl Ack {
    /// Runs one request on the acknowledged-writes connection within the
    /// response timeout plus the `WAIT` timeout.
    pub(crate) async fn bounded<T>(
        self,
        request: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        match tokio::time::timeout(RESPONSE_TIMEOUT + self.timeout, request).await {
            Ok(r) => r,
            Err(_) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer from the node",
            ))),
        }
    }

    /// Sends `WAIT` after the request on the same connection; `reply` goes
    /// back if enough replicas confirm.
    pub(crate) async fn confirm(
        self,
        conn: &mut RedisConn,
        reply: Reply,
    ) -> Result<Reply, RedisError> {
        let millis = u64::try_from(self.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut wait = ::redis::cmd("WAIT");
        wait.arg(self.replicas).arg(millis);
        match self.bounded(wait.query_async::<i64>(&mut *conn)).await {
            Ok(n) if n >= i64::from(self.replicas) => Ok(reply),
            Ok(n) => Err(unconfirmed(format!(
                "{n} of {} replicas within {:?}",
                self.replicas, self.timeout
            ))),
            Err(e) => {
                if e.is_timeout() {
                    conn.invalidate();
                }
                Err(unconfirmed(format!("WAIT failed: {e}")))
            }
        }
    }
}

/// A handle whose commands go to the current master and return only once
/// `replicas` replicas have confirmed them (`WAIT`), else fail with an
/// [`UNCONFIRMED`] error. Commands the old master refused during a failover
/// are sent again to the new one, as with [`FailoverRedis`]. Cheap to clone.
///
/// ```no_run
/// use failover_pool::redis::{FailoverRedis, is_unconfirmed};
/// use redis::AsyncCommands;
/// use std::time::Duration;
///
/// # async fn demo(redis: FailoverRedis) -> redis::RedisResult<()> {
/// let mut durable = redis.acknowledged(1, Duration::from_millis(200));
/// match durable.set::<_, _, ()>("order:42", "paid").await {
///     Ok(()) => {}                                     // on the master and one replica
///     Err(e) if is_unconfirmed(&e) => { /* applied, but a failover could lose it */ }
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Acknowledged {
    pool: FailoverRedis,
    ack: Ack,
}

impl Acknowledged {
    /// The replicas each write waits for.
    pub fn replicas(&self) -> u32 {
        self.ack.replicas
    }

    /// How long each write waits for them.
    pub fn timeout(&self) -> Duration {
        self.ack.timeout
    }
}

impl FailoverPool<RedisBackend> {
    /// A handle for writes that must reach `replicas` replicas within
    /// `timeout` (see [`Acknowledged`]).
    pub fn acknowledged(&self, replicas: u32, timeout: Duration) -> Acknowledged {
        Acknowledged {
            pool: self.clone(),
            ack: Ack { replicas, timeout },
        }
    }
}

impl ConnectionLike for Acknowledged {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            send(&self.pool, Route::Writer, Request::One(cmd), Some(self.ack))
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
            let request = Request::Many(pipeline, offset, count);
            send(&self.pool, Route::Writer, request, Some(self.ack))
                .await
                .map(many)
        })
    }

    fn get_db(&self) -> i64 {
        self.pool.backend().db()
    }
}
