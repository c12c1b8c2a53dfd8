//! Postgres backends: the probe (role, timeline, WAL positions, lag), the
//! SQLSTATE classification, [`FailoverPgPool`] (sqlx) and
//! [`DeadpoolPostgres`] (deadpool-postgres).
//!
//! Both backends are thin: node ids, routing, read-your-writes, waiting,
//! retiring stale connections and the transaction outcome rules live once,
//! in [`FailoverPool`](crate::pool::FailoverPool). Each backend adds its
//! driver's idiom: sqlx gets `writer()`/`reader()` handles that are
//! `sqlx::Executor`s (as `&PgPool` is), deadpool gets checked-out
//! [`Pooled`](crate::pool::Pooled) objects that dereference to
//! `deadpool_postgres::Object`.
//!
//! # How a node is probed
//! One round trip: `pg_is_in_recovery()`; the timeline (on a primary from
//! `pg_walfile_name(pg_current_wal_lsn())`, on a standby from the WAL
//! receiver, else the last checkpoint); the current (primary) or replayed
//! (standby) LSN; the received LSN; and the replay delay (zero when
//! everything received is replayed). The timeline is the fencing epoch: it
//! grows with every promotion, so a primary on a lower timeline is stale.
//!
//! # Permissions
//! The probe needs no privilege, but a standby's exact timeline comes from
//! `pg_stat_wal_receiver`, whose columns only superusers and members of
//! `pg_read_all_stats` see; for other users it falls back to the last
//! restartpoint's timeline, which can lag behind a timeline switch (reads
//! with a read-your-writes token then go to the writer until it catches
//! up). Grant `pg_read_all_stats` to the pool's user for exact replica
//! timelines. Automatic promotion and switchover call `pg_promote()`, which
//! needs a superuser or an explicit `GRANT EXECUTE ON FUNCTION pg_promote`.

use crate::core::endpoint::Role;
use crate::error::ErrorClass;
use crate::pool::Probe;
use std::future::Future;
use std::time::Duration;

#[cfg(feature = "deadpool-postgres")]
pub mod deadpool;
#[cfg(feature = "sqlx")]
pub mod sqlx;

#[cfg(feature = "deadpool-postgres")]
pub use deadpool::{DeadpoolPostgres, PgDeadpoolError};
#[cfg(feature = "sqlx")]
pub use sqlx::{FailoverPgPool, SqlxPostgres};

/// The port a node URL without one means.
pub(crate) const DEFAULT_PORT: u16 = 5432;

/// The probe query. Columns: `in_recovery bool, timeline int8, position int8,
/// received int8 (null until a standby has streamed), lag_seconds float8
/// (null on a primary; 0 when everything received is replayed)`.
///
/// The standby's timeline comes from `pg_stat_wal_receiver`, whose columns
/// only superusers and members of `pg_read_all_stats` see; for other users
/// it falls back to the last restartpoint's timeline, which can lag behind a
/// timeline switch (reads with a read-your-writes token then go to the
/// writer until it catches up). Grant `pg_read_all_stats` to the pool's
/// user for exact replica timelines.
pub(crate) const PROBE_SQL: &str = "SELECT pg_is_in_recovery() AS in_recovery, \
 (CASE WHEN pg_is_in_recovery() \
   THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver WHERE received_tli > 0), \
                 (SELECT timeline_id FROM pg_control_checkpoint())) \
   ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8 END)::int8 AS timeline, \
 ((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END) - '0/0'::pg_lsn)::int8 AS position, \
 (pg_last_wal_receive_lsn() - '0/0'::pg_lsn)::int8 AS received, \
 (CASE WHEN NOT pg_is_in_recovery() THEN NULL \
   WHEN COALESCE(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) <= pg_last_wal_replay_lsn() THEN 0 \
   ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END)::float8 AS lag_seconds";

/// Asks a standby to promote itself without waiting: `pg_promote(true)`
/// polls for the end of recovery only ten times a second, so the backends
/// poll [`IN_RECOVERY_SQL`] every [`PROMOTE_POLL`] instead (≈ 90 ms saved).
pub(crate) const PROMOTE_SQL: &str = "SELECT pg_promote(false)";

/// Whether the node is still in recovery.
pub(crate) const IN_RECOVERY_SQL: &str = "SELECT pg_is_in_recovery()";

/// How often a promotion's end is polled.
const PROMOTE_POLL: Duration = Duration::from_millis(5);

/// The writer's current WAL position and timeline, for read-your-writes tokens.
pub(crate) const POSITION_SQL: &str = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8, \
 ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int8";

/// After [`PROMOTE_SQL`], polls `in_recovery` (which runs [`IN_RECOVERY_SQL`]
/// on the backend's connection) every [`PROMOTE_POLL`] until the node has
/// left recovery. The pool bounds the whole promotion with its
/// `promotion_timeout`.
pub(crate) async fn wait_promoted<C, E, F>(conn: &mut C, mut in_recovery: F) -> Result<(), E>
where
    F: for<'a> FnMut(
        &'a mut C,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<bool, E>> + Send + 'a>>,
{
    while in_recovery(conn).await? {
        tokio::time::sleep(PROMOTE_POLL).await;
    }
    Ok(())
}

/// A read-your-writes token from the columns of [`POSITION_SQL`].
pub(crate) fn token_from_row(position: i64, timeline: i64) -> crate::pool::WriteToken {
    crate::pool::WriteToken {
        position: position.max(0) as u64,
        epoch: timeline.max(0) as u64,
    }
}

/// Builds a [`Probe`] from the columns of [`PROBE_SQL`].
pub(crate) fn probe_from_row(
    in_recovery: bool,
    timeline: i64,
    position: i64,
    received: Option<i64>,
    lag_seconds: Option<f64>,
) -> Probe {
    Probe {
        role: if in_recovery {
            Role::Replica
        } else {
            Role::Primary
        },
        epoch: timeline.max(0) as u64,
        position: position.max(0) as u64,
        received: received.map(|r| r.max(0) as u64),
        lag: lag_seconds.map(|s| Duration::from_secs_f64(s.max(0.0))),
        lineage: None,
        upstream: None,
    }
}

/// Classifies a SQLSTATE: which codes mean "this node can't serve you"
/// (failover-class) and which are the application's.
///
/// | SQLSTATE | meaning | class |
/// |---|---|---|
/// | 57P01 admin_shutdown, 57P02 crash_shutdown | the session was killed | failover, may have executed |
/// | 57P03 cannot_connect_now | starting up / shutting down | failover, not executed |
/// | 25006 read_only_sql_transaction | a write reached a standby or a demoted primary | failover, not executed |
/// | 08001, 08004 | connection could not be made / was rejected | failover, not executed |
/// | other 08xxx | connection failure | failover, may have executed |
/// | anything else | constraint violation, syntax, serialization, … | application |
pub fn classify_sqlstate(code: &str) -> ErrorClass {
    match code {
        "57P01" | "57P02" => ErrorClass::maybe_executed(),
        "57P03" | "25006" | "08001" | "08004" => ErrorClass::not_executed(),
        c if c.starts_with("08") => ErrorClass::maybe_executed(),
        _ => ErrorClass::Application,
    }
}

/// SQLSTATE 55000 (object_not_in_prerequisite_state) from `pg_promote()`
/// means "recovery is not in progress": the node is already a primary.
pub(crate) fn already_primary(code: Option<&str>) -> bool {
    code == Some("55000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates() {
        assert_eq!(classify_sqlstate("57P01"), ErrorClass::maybe_executed());
        assert_eq!(classify_sqlstate("25006"), ErrorClass::not_executed());
        assert_eq!(classify_sqlstate("08006"), ErrorClass::maybe_executed());
        assert_eq!(classify_sqlstate("08001"), ErrorClass::not_executed());
        assert_eq!(classify_sqlstate("23505"), ErrorClass::Application);
        assert_eq!(classify_sqlstate("42601"), ErrorClass::Application);
        assert_eq!(classify_sqlstate("40001"), ErrorClass::Application);
    }

    #[test]
    fn probe_rows() {
        let p = probe_from_row(true, 2, 100, Some(120), Some(0.5));
        assert_eq!(p.role, Role::Replica);
        assert_eq!(p.epoch, 2);
        assert_eq!(p.lag, Some(Duration::from_millis(500)));
        let p = probe_from_row(false, 1, 5, None, None);
        assert_eq!(p.role, Role::Primary);
        assert_eq!(p.received, None);
    }
}
