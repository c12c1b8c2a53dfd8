//! The engine under every Redis handle: one request (a command or a
//! pipeline) sent on the connection a route picks, refusals (`READONLY`,
//! `MASTERDOWN`, …, or a pipeline all of whose commands were refused) sent
//! again to the new master, and, for acknowledged writes, the `WAIT` that
//! confirms them on replicas. [`FailoverRedis`](super::FailoverRedis),
//! [`Routed`](crate::pool::Routed) Redis handles and
//! [`Acknowledged`](super::Acknowledged) are thin `ConnectionLike` facades
//! over [`send`].

use super::backend::{RESPONSE_TIMEOUT, RedisBackend, RedisConn};
use super::classify;
use crate::error::{Error, ErrorClass};
use crate::pool::{FailoverPool, Pooled, Route};
use ::redis::{Arg, Cmd, ErrorKind, Pipeline, RedisError, Value};
use std::time::Duration;
use tokio::time::Instant;

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
    pub(crate) fn new(replicas: u32, timeout: Duration) -> Self {
        Ack { replicas, timeout }
    }

    pub(crate) fn replicas(self) -> u32 {
        self.replicas
    }

    pub(crate) fn timeout(self) -> Duration {
        self.timeout
    }

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

/// Commands that only read: one cut off in flight (a reset, a timeout, a
/// connection the server closed, as Sentinel does on a replica it
/// promotes) is sent again like a refused one, since running it twice
/// changes nothing.
const READS: &[&str] = &[
    "BITCOUNT",
    "BITPOS",
    "DBSIZE",
    "ECHO",
    "EXISTS",
    "EXPIRETIME",
    "GET",
    "GETBIT",
    "GETRANGE",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HSCAN",
    "HSTRLEN",
    "HVALS",
    "KEYS",
    "LINDEX",
    "LLEN",
    "LPOS",
    "LRANGE",
    "MGET",
    "PEXPIRETIME",
    "PFCOUNT",
    "PING",
    "PTTL",
    "RANDOMKEY",
    "SCAN",
    "SCARD",
    "SISMEMBER",
    "SMEMBERS",
    "SMISMEMBER",
    "SRANDMEMBER",
    "SSCAN",
    "STRLEN",
    "TTL",
    "TYPE",
    "XLEN",
    "XRANGE",
    "XREVRANGE",
    "ZCARD",
    "ZCOUNT",
    "ZMSCORE",
    "ZRANGE",
    "ZRANGEBYSCORE",
    "ZRANK",
    "ZREVRANGE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
];

fn reads_only(cmd: &Cmd) -> bool {
    match cmd.args_iter().next() {
        Some(Arg::Simple(name)) => READS
            .iter()
            .any(|r| r.as_bytes().eq_ignore_ascii_case(name)),
        _ => false,
    }
}

impl Request<'_> {
    /// Whether every command of the request only reads (a transaction
    /// never counts: `MULTI`/`EXEC` is not in the list).
    fn reads_only(self) -> bool {
        match self {
            Request::One(cmd) => reads_only(cmd),
            Request::Many(p, ..) => !p.is_transaction() && p.cmd_iter().all(reads_only),
        }
    }

    async fn send(self, conn: &mut RedisConn) -> std::result::Result<Reply, RedisError> {
        match self {
            Request::One(cmd) => conn.send_one(cmd).await.map(Reply::One),
            Request::Many(p, offset, count) => {
                conn.send_many(p, offset, count).await.map(Reply::Many)
            }
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
    // A read cut off in flight changed nothing: it may be sent again too.
    let reads_only = ack.is_none() && request.reads_only();
    let judge = |conn: &Pooled<RedisBackend>, e: RedisError| {
        let class = conn.report(&e);
        if class == ErrorClass::not_executed() || (reads_only && class.is_failover()) {
            Failed::Refused(e)
        } else {
            Failed::Final(e)
        }
    };
    let (sent, acked) = match ack {
        // Rare and with a large future: boxed, to keep every plain
        // command's future small.
        Some(ack) => match Box::pin(send_acknowledged(conn, request, ack)).await {
            Ok((sent, acked)) => (sent, Some(acked)),
            Err(e) => return Err(judge(conn, e)),
        },
        None => (request.send(conn).await, None),
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
        // A single command's error may come back as a value too.
        Ok(Reply::One(Value::ServerError(e))) => return Err(judge(conn, RedisError::from(e))),
        Ok(reply) => reply,
        Err(e) => return Err(judge(conn, e)),
    };
    match (ack, acked) {
        (Some(ack), Some(mut acked)) => Box::pin(ack.confirm(&mut acked, reply))
            .await
            .map_err(Failed::Final),
        _ => Ok(reply),
    }
}

/// Sends `request` on the node's acknowledged-writes connection (bounded;
/// a connection that stopped answering is forgotten); returns the outcome
/// and that connection, for the `WAIT`. `Err`: the connection could not be
/// had.
async fn send_acknowledged(
    conn: &RedisConn,
    request: Request<'_>,
    ack: Ack,
) -> std::result::Result<(std::result::Result<Reply, RedisError>, RedisConn), RedisError> {
    let mut target = conn.acknowledged().await?;
    let sent = ack.bounded(request.send(&mut target)).await;
    if matches!(&sent, Err(e) if e.is_timeout()) {
        target.invalidate();
    }
    Ok((sent, target))
}

/// Sends `request` on the node `route` picks and, with `ack`, waits for
/// replicas to confirm it. A failure that certainly did not execute (the
/// node refused: `READONLY`, `MASTERDOWN`, …; a pipeline all of whose
/// commands were refused), or any failover-class failure of a request
/// that only reads, is reported and the request sent again, after a short
/// pause, to whichever node the route picks then, until the acquire
/// timeout; anything else is returned.
pub(crate) async fn send(
    pool: &FailoverPool<RedisBackend>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn error(resp: &str) -> Value {
        ::redis::parse_redis_value(resp.as_bytes()).unwrap()
    }

    #[test]
    fn reads_are_recognised() {
        assert!(Request::One(&::redis::cmd("get")).reads_only());
        assert!(!Request::One(&::redis::cmd("SET")).reads_only());
        let mut p = ::redis::pipe();
        p.get("a").exists("b");
        assert!(Request::Many(&p, 0, 2).reads_only());
        p.atomic();
        assert!(!Request::Many(&p, 0, 2).reads_only());
        let mut p = ::redis::pipe();
        p.get("a").incr("b", 1);
        assert!(!Request::Many(&p, 0, 2).reads_only());
    }

    #[test]
    fn a_pipeline_all_refused_may_be_sent_again() {
        let replies = [
            error("-READONLY You can't write against a read only replica.\r\n"),
            error("-READONLY You can't write against a read only replica.\r\n"),
        ];
        let (e, all) = refusal(&replies).unwrap();
        assert_eq!(e.code(), Some("READONLY"));
        assert!(all);
    }

    #[test]
    fn a_transaction_aborted_by_a_refusal_may_be_sent_again() {
        let replies = [
            error("-READONLY You can't write against a read only replica.\r\n"),
            error("-EXECABORT Transaction discarded because of previous errors.\r\n"),
        ];
        assert!(refusal(&replies).unwrap().1);
    }

    #[test]
    fn a_pipeline_where_something_ran_is_not_sent_again() {
        // A read ran on the replica; the write was refused.
        let replies = [
            error("-READONLY You can't write against a read only replica.\r\n"),
            Value::Int(3),
        ];
        let (e, all) = refusal(&replies).unwrap();
        assert_eq!(e.code(), Some("READONLY"));
        assert!(!all);
        // The caller's own error is no refusal at all.
        let replies = [
            error("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
            Value::Okay,
        ];
        assert!(refusal(&replies).is_none());
        assert!(refusal(&[Value::Okay, Value::Int(1)]).is_none());
    }
}
