//! [`DrillCluster`] for [`LocalPgCluster`]: a primary with one streaming
//! standby (asynchronous or synchronous), the `drill_writes` table, and
//! the primary found by its timeline.

use std::collections::BTreeSet;
use std::time::Duration;

use super::DrillCluster;
use crate::drill::run::options::{DrillError, DrillOptions, cluster_err};
use crate::drill::scenario::Store;
use crate::drill::workload::{ALL_IDS_SQL, TABLE_SQL};
use crate::drill::{ClusterError, LocalPgCluster, PgClusterOptions};

/// Limit of the final read of every id on a node.
const READ_ALL_TIMEOUT: Duration = Duration::from_secs(30);

impl DrillCluster for LocalPgCluster {
    const STORE: Store = Store::Postgres;
    const GRACEFUL: &'static str = "fast shutdown (SIGINT)";
    const RESTART: &'static str = "crash recovery";
    const RESTART_TO_READ: bool = true;
    const RANK: &'static str = "highest timeline";

    async fn start(opts: &DrillOptions) -> Result<Self, DrillError> {
        let cluster =
            LocalPgCluster::start(PgClusterOptions::new().standbys(1).synchronous(opts.sync))
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
        Ok(cluster)
    }

    fn node_count(&self) -> usize {
        self.len()
    }

    fn name(&self, i: usize) -> String {
        self.node(i).name
    }

    fn port(&self, i: usize) -> u16 {
        self.node(i).port
    }

    fn is_running(&self, i: usize) -> bool {
        self.node(i).running
    }

    fn is_frozen(&self, i: usize) -> bool {
        self.node(i).frozen
    }

    fn process_tree(&self, i: usize) -> String {
        format!("{} and its backends", self.name(i))
    }

    fn url_at(port: u16) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    }

    fn kill(&self, i: usize) -> Result<(), ClusterError> {
        LocalPgCluster::kill(self, i)
    }

    fn freeze(&self, i: usize) -> Result<(), ClusterError> {
        LocalPgCluster::freeze(self, i)
    }

    fn thaw(&self, i: usize) -> Result<(), ClusterError> {
        LocalPgCluster::thaw(self, i)
    }

    async fn stop_graceful(&self, i: usize) -> Result<(), ClusterError> {
        LocalPgCluster::stop_graceful(self, i).await
    }

    async fn restart(&self, i: usize) -> Result<(), ClusterError> {
        LocalPgCluster::restart(self, i).await
    }

    async fn promote(&self, i: usize) -> Result<(), ClusterError> {
        LocalPgCluster::promote(self, i).await
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
        if self.is_in_recovery(i).await? {
            return Ok(None);
        }
        self.timeline(i).await.map(Some)
    }

    async fn ids_on(&self, i: usize) -> Result<BTreeSet<i64>, DrillError> {
        let name = self.name(i);
        let context = format!("could not read the rows of {name}");
        let client = self.connect(i).await.map_err(cluster_err(&*context))?;
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
