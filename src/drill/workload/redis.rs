//! The Redis drivers of the workload: the drill's keys (`drill:<id>`),
//! [`DrillDriver`] for [`FailoverRedis`] ([`RedisBackend`]) and for
//! deadpool-redis ([`DeadpoolRedis`]), and the kinds of their errors.
//!
//! A write is `SET drill:<id> <writer>` (through
//! [`FailoverRedis::acknowledged`] when the drill asks for acknowledged
//! writes); a read is `EXISTS drill:<id>` through a reader handle.

use ::redis::{AsyncCommands, ErrorKind, RedisError};

use super::driver::{DrillDriver, WriteAck, crate_kind};
use crate::pool::FailoverPool;
use crate::redis::{DeadpoolRedis, FailoverRedis, RedisBackend, is_unconfirmed};

/// The prefix of every key the drill writes.
pub const KEY_PREFIX: &str = "drill:";

/// The key of record `id`: `drill:<id>`.
pub fn redis_key(id: i64) -> String {
    format!("{KEY_PREFIX}{id}")
}

/// The record id of a drill key, if it is one.
pub fn id_of_key(key: &str) -> Option<i64> {
    key.strip_prefix(KEY_PREFIX)?.parse().ok()
}

impl DrillDriver for RedisBackend {
    async fn insert(
        pool: &FailoverRedis,
        id: i64,
        writer: i32,
        ack: Option<WriteAck>,
    ) -> Result<(), String> {
        let key = redis_key(id);
        let result: Result<(), RedisError> = match ack {
            Some(ack) if ack.replicas > 0 => {
                let mut durable = pool.acknowledged(ack.replicas, ack.timeout);
                durable.set(key, writer).await
            }
            _ => pool.clone().set(key, writer).await,
        };
        result.map_err(|e| redis_kind(&e))
    }

    async fn read_row(pool: &FailoverRedis, id: i64) -> Result<bool, String> {
        let mut reader = pool.reader().await.map_err(|e| crate_kind(&e))?;
        reader
            .exists(redis_key(id))
            .await
            .map_err(|e| redis_kind(&e))
    }
}

impl DrillDriver for DeadpoolRedis {
    async fn insert(
        pool: &FailoverPool<Self>,
        id: i64,
        writer: i32,
        _ack: Option<WriteAck>,
    ) -> Result<(), String> {
        let mut conn = pool.writer().await.map_err(|e| crate_kind(&e))?;
        let result: Result<(), RedisError> = conn.set(redis_key(id), writer).await;
        result.map_err(|e| {
            conn.report(&e);
            redis_kind(&e)
        })
    }

    async fn read_row(pool: &FailoverPool<Self>, id: i64) -> Result<bool, String> {
        let mut conn = pool.reader().await.map_err(|e| crate_kind(&e))?;
        let result: Result<bool, RedisError> = conn.exists(redis_key(id)).await;
        result.map_err(|e| {
            conn.report(&e);
            redis_kind(&e)
        })
    }
}

/// The kind of a Redis error (see the [workload docs](super#error-kinds)):
/// the crate's code when the pool refused (it travels inside an I/O
/// error, as a `ConnectionManager` caller would see an unreachable
/// server), `unconfirmed` for an acknowledged write whose `WAIT` fell
/// short, `timeout` for a response timeout, `redis:<CODE>` for an error
/// reply (`redis:READONLY`), `io` for a failed connection, else `redis`.
pub fn redis_kind(e: &RedisError) -> String {
    if let Some(e) = crate_error_in(e) {
        return crate_kind(e);
    }
    if is_unconfirmed(e) {
        return "unconfirmed".to_owned();
    }
    if e.is_timeout() {
        return "timeout".to_owned();
    }
    if let (ErrorKind::Server(_) | ErrorKind::Extension, Some(code)) = (e.kind(), e.code()) {
        return format!("redis:{code}");
    }
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        return "io".to_owned();
    }
    "redis".to_owned()
}

/// One of the crate's errors carried inside `e` (in an I/O error), if any.
/// The `redis` crate keeps an I/O error behind an `Arc<dyn Error>`, which
/// is what its `source()` returns.
fn crate_error_in(e: &RedisError) -> Option<&crate::Error> {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let source = std::error::Error::source(e)?;
    let io = match source.downcast_ref::<Shared>() {
        Some(shared) => shared.downcast_ref::<std::io::Error>(),
        None => source.downcast_ref::<std::io::Error>(),
    }?;
    io.get_ref()?.downcast_ref::<crate::Error>()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ::redis::ServerErrorKind;

    use super::*;

    #[test]
    fn keys_and_ids() {
        assert_eq!(redis_key(42), "drill:42");
        assert_eq!(id_of_key("drill:42"), Some(42));
        assert_eq!(id_of_key("drill:-3"), Some(-3));
        assert_eq!(id_of_key("other:1"), None);
    }

    #[test]
    fn error_kinds() {
        let pool_refused = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            crate::Error::NoNode {
                wanted: "writer",
                waited: Duration::from_secs(1),
                last: None,
            },
        ));
        assert_eq!(redis_kind(&pool_refused), "no_node");
        let readonly = RedisError::from((ErrorKind::Server(ServerErrorKind::ReadOnly), "READONLY"));
        assert_eq!(redis_kind(&readonly), "redis:READONLY");
        let unconfirmed = ::redis::make_extension_error("UNCONFIRMED".into(), None);
        assert_eq!(redis_kind(&unconfirmed), "unconfirmed");
        let reset = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(redis_kind(&reset), "io");
        let timed_out = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(redis_kind(&timed_out), "timeout");
    }
}
