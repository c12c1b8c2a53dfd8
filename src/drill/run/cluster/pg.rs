//! [`DrillCluster`] for any [`PgCluster`] ([`PgNodes`]): a primary with one
//! streaming standby (asynchronous or synchronous), the `drill_writes`
//! table, and the primary found by its timeline.

use std::collections::BTreeSet;
use std::time::Duration;

use super::DrillCluster;
use crate::drill::run::options::{DrillError, DrillOptions, cluster_err};
use crate::drill::scenario::{ClusterKind, Store};
use crate::drill::workload::{ALL_IDS_SQL, TABLE_SQL};
use crate::drill::{ClusterError, LocalPgCluster, PgCluster, PgClusterOptions};

/// Limit of the final read of every id on a node.
const READ_ALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A PostgreSQL cluster of kind `C` as the drill sees it.
#[derive(Debug)]
pub(crate) struct PgNodes<C>(pub(crate) C);

/// Starting a PostgreSQL cluster of this kind for a drill.
pub(crate) trait LaunchPg: PgCluster + Sized {
    /// Starts the cluster `pg` describes, where `opts` says.
    fn launch(
        opts: &DrillOptions,
        pg: PgClusterOptions,
    ) -> impl Future<Output = Result<Self, ClusterError>> + Send;
}

impl LaunchPg for LocalPgCluster {
    async fn launch(_: &DrillOptions, pg: PgClusterOptions) -> Result<Self, ClusterError> {
        LocalPgCluster::start(pg).await
    }
}

#[cfg(feature = "testcontainers")]
impl LaunchPg for crate::drill::containers::ContainerPgCluster {
    async fn launch(opts: &DrillOptions, pg: PgClusterOptions) -> Result<Self, ClusterError> {
        Self::start(pg, opts.container_settings()).await
    }
}

impl<C: LaunchPg> DrillCluster for PgNodes<C> {
    const STORE: Store = Store::Postgres;
    const GRACEFUL: &'static str = "fast shutdown (SIGINT)";
    const RESTART: &'static str = "crash recovery";
    const RESTART_TO_READ: bool = true;
    const RANK: &'static str = "highest timeline";

    async fn start(opts: &DrillOptions) -> Result<Self, DrillError> {
        let pg = PgClusterOptions::new().standbys(1).synchronous(opts.sync);
        let cluster = C::launch(opts, pg)
            .await
            .map_err(cluster_err("could not start the PostgreSQL cluster"))?;
        cluster
            .exec(0, TABLE_SQL)
            .await
            .map_err(cluster_err("could not create the drill table"))?;
        cluster
            .wait_caught_up()
            .await
            .map_err(cluster_err("the standby did not catch up"))?;
        Ok(PgNodes(cluster))
    }

    fn kind(&self) -> ClusterKind {
        self.0.kind()
    }

    fn node_count(&self) -> usize {
        self.0.len()
    }

    fn name(&self, i: usize) -> String {
        self.0.name(i)
    }

    fn port(&self, i: usize) -> u16 {
        self.0.port(i)
    }

    fn is_running(&self, i: usize) -> bool {
        self.0.is_running(i)
    }

    fn is_frozen(&self, i: usize) -> bool {
        self.0.is_frozen(i)
    }

    fn process_tree(&self, i: usize) -> String {
        match self.0.kind() {
            ClusterKind::Local => format!("{} and its backends", self.name(i)),
            ClusterKind::Containers => format!("{}'s container", self.name(i)),
        }
    }

    fn url_at(port: u16) -> String {
        crate::drill::pg::pg_url(port)
    }

    async fn kill(&self, i: usize) -> Result<(), ClusterError> {
        self.0.kill(i).await
    }

    async fn freeze(&self, i: usize) -> Result<(), ClusterError> {
        self.0.freeze(i).await
    }

    async fn thaw(&self, i: usize) -> Result<(), ClusterError> {
        self.0.thaw(i).await
    }

    async fn stop_graceful(&self, i: usize) -> Result<(), ClusterError> {
        self.0.stop_graceful(i).await
    }

    async fn restart(&self, i: usize) -> Result<(), ClusterError> {
        self.0.restart(i).await
    }

    async fn promote(&self, i: usize) -> Result<(), ClusterError> {
        self.0.promote(i).await
    }

    async fn answers(url: &str, timeout: Duration) -> bool {
        let Ok(mut config) = url.parse::<tokio_postgres::Config>() else {
            return false;
        };
        config.connect_timeout(timeout);
        let check = async {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await.ok()?;
            let conn = tokio::spawn(connection);
            let ok = client.simple_query("SELECT 1").await.is_ok();
            drop(client);
            conn.abort();
            Some(ok)
        };
        matches!(tokio::time::timeout(timeout, check).await, Ok(Some(true)))
    }

    async fn primary_rank(&self, i: usize) -> Result<Option<i64>, ClusterError> {
        if self.0.is_in_recovery(i).await? {
            return Ok(None);
        }
        self.0.timeline(i).await.map(Some)
    }

    async fn ids_on(&self, i: usize) -> Result<BTreeSet<i64>, DrillError> {
        let name = self.name(i);
        let context = format!("could not read the rows of {name}");
        let client = self.0.connect(i).await.map_err(cluster_err(&*context))?;
        let rows =
            match tokio::time::timeout(READ_ALL_TIMEOUT, client.query(ALL_IDS_SQL, &[])).await {
                Ok(Ok(rows)) => rows,
                Ok(Err(source)) => {
                    return Err(cluster_err(context)(ClusterError::Query {
                        node: name,
                        sql: ALL_IDS_SQL.to_owned(),
                        source,
                    }));
                }
                Err(_) => {
                    return Err(cluster_err(context)(ClusterError::QueryTimeout {
                        node: name,
                        sql: ALL_IDS_SQL.to_owned(),
                        timeout: READ_ALL_TIMEOUT,
                    }));
                }
            };
        Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect())
    }
}
