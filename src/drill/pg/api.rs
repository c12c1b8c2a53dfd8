//! [`PgCluster`]: the cluster API a PostgreSQL drill or test is written
//! against, implemented by [`LocalPgCluster`] (local processes) and by
//! `ContainerPgCluster` (containers, feature `testcontainers`), so the same
//! test runs unchanged on either.

use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::types::FromSqlOwned;

use super::queries::{TIMELINE_SQL, connect_port, exec_at, scalar_at};
use super::{ClusterError, LocalPgCluster};
use crate::drill::Cluster;
use crate::drill::scenario::ClusterKind;

/// A throwaway PostgreSQL cluster: a primary and streaming standbys on
/// 127.0.0.1, with the faults a failover drill injects.
///
/// Node 0 is the first primary. Every node is reachable on `127.0.0.1` at
/// [`port`](Cluster::port) as user `postgres` without a password (trust
/// authentication: these clusters are for tests). Write a test once
/// against this trait and run it on [`LocalPgCluster`] and on
/// `ContainerPgCluster`:
///
/// ```no_run
/// use failover_pool::drill::{ClusterError, LocalPgCluster, PgCluster, PgClusterOptions};
///
/// async fn survives_a_crash(cluster: &impl PgCluster) -> Result<(), ClusterError> {
///     cluster.exec(0, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)").await?;
///     cluster.wait_caught_up().await?;
///     cluster.kill(0).await?;
///     cluster.promote(1).await?;
///     assert_eq!(cluster.count(1, "SELECT count(*) FROM t").await?, 1);
///     Ok(())
/// }
///
/// # async fn demo() -> Result<(), ClusterError> {
/// let local = LocalPgCluster::start(PgClusterOptions::new().standbys(1)).await?;
/// survives_a_crash(&local).await?;
/// # Ok(()) }
/// ```
///
/// The nodes and their faults (`kill`, `freeze`, `thaw`, `stop_graceful`,
/// `restart`, `promote`) come from the supertrait [`Cluster`], common to
/// both stores.
pub trait PgCluster: Cluster {
    /// The node the cluster treats as primary: 0, then the last one
    /// [`promote`](Cluster::promote)d.
    fn primary_index(&self) -> usize;

    /// `postgres://postgres@127.0.0.1:<port>/postgres` for node `index`.
    fn url(&self, index: usize) -> String {
        pg_url(self.port(index))
    }

    /// The URLs of all nodes, by index.
    fn urls(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.url(i)).collect()
    }

    /// Waits until every running standby has replayed its primary's
    /// current WAL position.
    fn wait_caught_up(&self) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Opens a connection to node `index` (tokio-postgres, no TLS); the
    /// connection task is spawned on the current runtime.
    fn connect(&self, index: usize) -> impl Future<Output = Result<Client, ClusterError>> + Send {
        async move { connect_port(&self.name(index), self.port(index), self.query_timeout()).await }
    }

    /// Runs `sql` (one or more statements, simple query protocol) on node
    /// `index`.
    fn exec(
        &self,
        index: usize,
        sql: &str,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send {
        async move {
            exec_at(
                &self.name(index),
                self.port(index),
                self.query_timeout(),
                sql,
            )
            .await
        }
    }

    /// Runs `sql` on node `index` and returns the first column of its only
    /// row.
    fn query_scalar<T: FromSqlOwned + Send>(
        &self,
        index: usize,
        sql: &str,
    ) -> impl Future<Output = Result<T, ClusterError>> + Send {
        async move {
            scalar_at(
                &self.name(index),
                self.port(index),
                self.query_timeout(),
                sql,
            )
            .await
        }
    }

    /// Runs a `SELECT count(*) ...`-like query on node `index`.
    fn count(
        &self,
        index: usize,
        sql: &str,
    ) -> impl Future<Output = Result<i64, ClusterError>> + Send {
        self.query_scalar(index, sql)
    }

    /// Whether node `index` is in recovery (a standby), asked live.
    fn is_in_recovery(
        &self,
        index: usize,
    ) -> impl Future<Output = Result<bool, ClusterError>> + Send {
        self.query_scalar(index, "SELECT pg_is_in_recovery()")
    }

    /// The timeline node `index` writes (a primary) or last checkpointed
    /// on (a standby).
    fn timeline(&self, index: usize) -> impl Future<Output = Result<i64, ClusterError>> + Send {
        self.query_scalar(index, TIMELINE_SQL)
    }
}

/// The URL of a drill node on `port` of 127.0.0.1.
pub(crate) fn pg_url(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

impl Cluster for LocalPgCluster {
    fn kind(&self) -> ClusterKind {
        ClusterKind::Local
    }

    fn len(&self) -> usize {
        LocalPgCluster::len(self)
    }

    fn name(&self, index: usize) -> String {
        self.node(index).name
    }

    fn port(&self, index: usize) -> u16 {
        self.node(index).port
    }

    fn is_running(&self, index: usize) -> bool {
        self.node(index).running
    }

    fn is_frozen(&self, index: usize) -> bool {
        self.node(index).frozen
    }

    fn query_timeout(&self) -> Duration {
        self.opts.query_timeout
    }

    async fn kill(&self, index: usize) -> Result<(), ClusterError> {
        LocalPgCluster::kill(self, index)
    }

    async fn freeze(&self, index: usize) -> Result<(), ClusterError> {
        LocalPgCluster::freeze(self, index)
    }

    async fn thaw(&self, index: usize) -> Result<(), ClusterError> {
        LocalPgCluster::thaw(self, index)
    }

    async fn stop_graceful(&self, index: usize) -> Result<(), ClusterError> {
        LocalPgCluster::stop_graceful(self, index).await
    }

    async fn restart(&self, index: usize) -> Result<(), ClusterError> {
        LocalPgCluster::restart(self, index).await
    }

    async fn promote(&self, index: usize) -> Result<(), ClusterError> {
        LocalPgCluster::promote(self, index).await
    }
}

impl PgCluster for LocalPgCluster {
    fn primary_index(&self) -> usize {
        LocalPgCluster::primary_index(self)
    }

    async fn wait_caught_up(&self) -> Result<(), ClusterError> {
        LocalPgCluster::wait_caught_up(self).await
    }
}
