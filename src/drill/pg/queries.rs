//! SQL helpers of a [`LocalPgCluster`]: connecting to a node, running
//! statements under the query timeout, asking for its role, timeline and
//! WAL position, and waiting for standbys to replay.

use std::time::Duration;

use tokio_postgres::types::FromSqlOwned;
use tokio_postgres::{Client, NoTls};

use super::{ClusterError, DB_USER, LocalPgCluster, PgLsn, PgRole};

impl LocalPgCluster {
    /// Opens a connection to node `index` (tokio-postgres, no TLS); the
    /// connection task is spawned on the current runtime.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Query`] or [`ClusterError::QueryTimeout`] (after the
    /// query timeout).
    pub async fn connect(&self, index: usize) -> Result<Client, ClusterError> {
        let info = self.info(index)?;
        connect_port(&info.name, info.port, self.opts.query_timeout).await
    }

    /// Runs `sql` (one or more statements, simple query protocol) on node
    /// `index`.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Query`] or [`ClusterError::QueryTimeout`].
    pub async fn exec(&self, index: usize, sql: &str) -> Result<(), ClusterError> {
        let info = self.info(index)?;
        exec_at(&info.name, info.port, self.opts.query_timeout, sql).await
    }

    /// Runs `sql` on node `index` and returns the first column of its only
    /// row, e.g. `query_scalar::<bool>(1, "SELECT pg_is_in_recovery()")`.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Query`] (also for a row count other than one or a
    /// type mismatch) or [`ClusterError::QueryTimeout`].
    pub async fn query_scalar<T: FromSqlOwned>(
        &self,
        index: usize,
        sql: &str,
    ) -> Result<T, ClusterError> {
        let info = self.info(index)?;
        scalar_at(&info.name, info.port, self.opts.query_timeout, sql).await
    }

    /// Runs a `SELECT count(*) ...`-like query on node `index` and returns
    /// the number.
    ///
    /// # Errors
    ///
    /// As for [`query_scalar`](Self::query_scalar).
    pub async fn count(&self, index: usize, sql: &str) -> Result<i64, ClusterError> {
        self.query_scalar(index, sql).await
    }

    /// Whether node `index` is in recovery (a standby), asked live.
    ///
    /// # Errors
    ///
    /// As for [`query_scalar`](Self::query_scalar).
    pub async fn is_in_recovery(&self, index: usize) -> Result<bool, ClusterError> {
        self.query_scalar(index, "SELECT pg_is_in_recovery()").await
    }

    /// The timeline node `index` writes (a primary) or last checkpointed
    /// on (a standby: its last restartpoint's timeline).
    ///
    /// # Errors
    ///
    /// As for [`query_scalar`](Self::query_scalar).
    pub async fn timeline(&self, index: usize) -> Result<i64, ClusterError> {
        self.query_scalar(index, TIMELINE_SQL).await
    }

    /// The current WAL position of node `index`: the insert position on a
    /// primary, the replayed position on a standby.
    ///
    /// # Errors
    ///
    /// As for [`query_scalar`](Self::query_scalar).
    pub async fn current_lsn(&self, index: usize) -> Result<PgLsn, ClusterError> {
        self.query_scalar(
            index,
            "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
             ELSE pg_current_wal_lsn() END",
        )
        .await
    }

    /// Waits until standby `index` has replayed WAL up to `lsn`.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NotReady`] after the start-up timeout.
    pub async fn wait_for_replay(&self, index: usize, lsn: PgLsn) -> Result<(), ClusterError> {
        let info = self.info(index)?;
        let what = format!("replay of {lsn}");
        let info = &info;
        self.poll_until(info, &what, || async move {
            let client = connect_port(&info.name, info.port, self.opts.query_timeout).await?;
            let sql = "SELECT coalesce(pg_last_wal_replay_lsn() >= $1, false)";
            let timeout = self.opts.query_timeout;
            let row = timed(&info.name, sql, timeout, client.query_one(sql, &[&lsn])).await?;
            Ok(row.get::<_, bool>(0))
        })
        .await
    }

    /// Waits until every running standby that follows the current primary
    /// has replayed the primary's current WAL position.
    ///
    /// # Errors
    ///
    /// As for [`current_lsn`](Self::current_lsn) and
    /// [`wait_for_replay`](Self::wait_for_replay).
    pub async fn wait_caught_up(&self) -> Result<(), ClusterError> {
        let primary = self.primary_index();
        let lsn = self.current_lsn(primary).await?;
        let followers: Vec<usize> = self
            .nodes()
            .into_iter()
            .filter(|n| n.running && n.role == PgRole::Standby { upstream: primary })
            .map(|n| n.index)
            .collect();
        let waits = followers.into_iter().map(|i| self.wait_for_replay(i, lsn));
        futures_util::future::try_join_all(waits).await?;
        Ok(())
    }
}

/// The timeline a node writes (primary) or last checkpointed on (standby).
pub(crate) const TIMELINE_SQL: &str = "SELECT CASE WHEN pg_is_in_recovery() \
     THEN (SELECT timeline_id::bigint FROM pg_control_checkpoint()) \
     ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint END";

/// How long the server waits for a promotion to finish (`pg_promote`'s
/// second argument, seconds).
const PROMOTE_WAIT_SECS: u64 = 60;

/// Promotes the standby `name` at `port` (`SELECT pg_promote(true, 60)`;
/// the client waits 10 s longer than the server, whatever `timeout` is:
/// a standby whose primary's host vanished may take its
/// `wal_receiver_timeout` to let go), then runs a `CHECKPOINT` so that its
/// control file shows the new timeline (which `pg_rewind` and
/// `pg_control_checkpoint()` read).
pub(crate) async fn promote_at(
    name: &str,
    port: u16,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let sql = format!("SELECT pg_promote(true, {PROMOTE_WAIT_SECS})");
    let wait = Duration::from_secs(PROMOTE_WAIT_SECS + 10).max(timeout);
    let done: bool = scalar_at(name, port, wait, &sql).await?;
    if !done {
        return Err(ClusterError::InvalidState {
            node: name.to_owned(),
            operation: "promote".to_owned(),
            reason: format!(
                "pg_promote() returned false (not finished within {PROMOTE_WAIT_SECS} s)"
            ),
        });
    }
    exec_at(name, port, timeout, "CHECKPOINT").await
}

/// Runs `sql` (simple query protocol) on the server `name` at `port`.
pub(crate) async fn exec_at(
    name: &str,
    port: u16,
    timeout: Duration,
    sql: &str,
) -> Result<(), ClusterError> {
    let client = connect_port(name, port, timeout).await?;
    timed(name, sql, timeout, client.batch_execute(sql)).await
}

/// Runs `sql` on the server `name` at `port` and returns the first column
/// of its only row.
pub(crate) async fn scalar_at<T: FromSqlOwned>(
    name: &str,
    port: u16,
    timeout: Duration,
    sql: &str,
) -> Result<T, ClusterError> {
    let client = connect_port(name, port, timeout).await?;
    let row = timed(name, sql, timeout, client.query_one(sql, &[])).await?;
    row.try_get(0).map_err(|source| ClusterError::Query {
        node: name.to_owned(),
        sql: sql.to_owned(),
        source,
    })
}

/// `fut` (a query on `node`) under `timeout`, its errors named.
pub(crate) async fn timed<T>(
    node: &str,
    sql: &str,
    timeout: Duration,
    fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(ClusterError::Query {
            node: node.to_owned(),
            sql: sql.to_owned(),
            source,
        }),
        Err(_) => Err(ClusterError::QueryTimeout {
            node: node.to_owned(),
            sql: sql.to_owned(),
            timeout,
        }),
    }
}

pub(crate) async fn connect_port(
    name: &str,
    port: u16,
    timeout: Duration,
) -> Result<Client, ClusterError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(DB_USER)
        .dbname("postgres")
        .application_name("failover-pool-drill")
        .connect_timeout(timeout);
    match tokio::time::timeout(timeout, config.connect(NoTls)).await {
        Ok(Ok((client, connection))) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(client)
        }
        Ok(Err(source)) => Err(ClusterError::Query {
            node: name.to_owned(),
            sql: "connect".to_owned(),
            source,
        }),
        Err(_) => Err(ClusterError::QueryTimeout {
            node: name.to_owned(),
            sql: "connect".to_owned(),
            timeout,
        }),
    }
}
