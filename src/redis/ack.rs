//! Acknowledged writes: [`FailoverRedis::acknowledged`] gives a handle whose
//! commands return only once `WAIT` says enough replicas have them, and
//! fail with [`UNCONFIRMED`](super::UNCONFIRMED) ("written on the master, not confirmed on
//! replicas") when they do not in time.
//!
//! `WAIT` blocks the connection it is sent on, so these commands use a
//! second multiplexed connection per node (opened on first use, with no
//! response timeout of its own: each request is bounded by the response
//! timeout plus the `WAIT` timeout instead); the shared connection of
//! every other caller never waits for replicas.

use super::backend::RedisBackend;
use super::client::FailoverRedis;
use super::send::{Ack, Request, many, one, send};
use crate::pool::{FailoverPool, Route};
use ::redis::aio::ConnectionLike;
use ::redis::{Cmd, Pipeline, RedisFuture, Value};
use std::time::Duration;

/// A handle whose commands go to the current master and return only once
/// `replicas` replicas have confirmed them (`WAIT`), else fail with an
/// [`UNCONFIRMED`](super::UNCONFIRMED) error. Commands the old master refused during a failover
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
        self.ack.replicas()
    }

    /// How long each write waits for them.
    pub fn timeout(&self) -> Duration {
        self.ack.timeout()
    }
}

impl FailoverPool<RedisBackend> {
    /// A handle for writes that must reach `replicas` replicas within
    /// `timeout` (see [`Acknowledged`]).
    pub fn acknowledged(&self, replicas: u32, timeout: Duration) -> Acknowledged {
        Acknowledged {
            pool: self.clone(),
            ack: Ack::new(replicas, timeout),
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
