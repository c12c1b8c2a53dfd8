//! [`DrillDriver`]: the two operations of the workload in each client
//! library's own idiom, how writes are acknowledged ([`WriteAck`]), and the
//! helpers every driver shares (the pool's writer, the kind of one of the
//! crate's errors).

use std::time::Duration;

use crate::pool::{Backend, FailoverPool};

/// How a write is acknowledged beyond its primary: Redis's `WAIT` for
/// `replicas` replicas within `timeout` (through
/// [`FailoverRedis::acknowledged`](crate::redis::FailoverRedis::acknowledged)).
/// Postgres drivers ignore it: there the replication mode decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteAck {
    /// Replicas that must confirm each write.
    pub replicas: u32,
    /// How long a write waits for them.
    pub timeout: Duration,
}

/// The two operations the workload runs, in each driver's own idiom; the
/// rest of the drill (topology, events, refresh, close) is the generic
/// [`FailoverPool`] surface, the same for every backend.
pub trait DrillDriver: Backend {
    /// Writes record `id` for writer `writer` through the pool's writer
    /// (Postgres: a row of `drill_writes`; Redis: `SET drill:<id>
    /// <writer>`), waiting for replicas as `ack` says where the store
    /// supports it; an error is returned as its
    /// [kind](super#error-kinds), after a failover-class one was reported
    /// to the pool.
    fn insert(
        pool: &FailoverPool<Self>,
        id: i64,
        writer: i32,
        ack: Option<WriteAck>,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Whether record `id` exists, read from a node chosen by the pool's
    /// read preference (errors as in [`DrillDriver::insert`]).
    fn read_row(
        pool: &FailoverPool<Self>,
        id: i64,
    ) -> impl Future<Output = Result<bool, String>> + Send;
}

/// The pool's writer, by node id, if one is known.
pub fn writer_id<B: Backend>(pool: &FailoverPool<B>) -> Option<String> {
    pool.topology().writer_status().map(|n| n.id.to_string())
}

/// The kind of one of the crate's errors: its code.
pub fn crate_kind(e: &crate::Error) -> String {
    e.code().as_str().to_owned()
}
