//! [`DrillCluster`] for [`LocalRedisCluster`]: a master with `--replicas`
//! replicas (and three Sentinels for Sentinel promotion), the `drill:<id>`
//! keys, and the master found by its replication offset. The drill talks
//! to the servers through the `redis` crate only, never through the
//! crate's Redis backends it exercises.

use std::collections::BTreeSet;
use std::time::Duration;

use ::redis::{AsyncConnectionConfig, Client};

use super::DrillCluster;
use crate::drill::run::options::{DrillError, DrillOptions, cluster_err};
use crate::drill::scenario::{Promotion, Store};
use crate::drill::workload::{KEY_PREFIX, id_of_key};
use crate::drill::{ClusterError, LocalRedisCluster, RedisClusterOptions, RedisRole};

/// The sentinels' `down-after-milliseconds` in Sentinel drills.
const SENTINEL_DOWN_AFTER: Duration = Duration::from_secs(1);

impl DrillCluster for LocalRedisCluster {
    const STORE: Store = Store::Redis;
    const GRACEFUL: &'static str = "shutdown (SIGTERM, nothing saved)";
    const RESTART: &'static str = "empty, with a fresh replication id: no persistence";
    const RESTART_TO_READ: bool = false;
    const RANK: &'static str = "highest replication offset";

    async fn start(opts: &DrillOptions) -> Result<Self, DrillError> {
        let options = RedisClusterOptions::new()
            .replicas(opts.replicas)
            .sentinels(opts.promotion == Promotion::Sentinel)
            .down_after(SENTINEL_DOWN_AFTER);
        LocalRedisCluster::start(options)
            .await
            .map_err(cluster_err("could not start the Redis cluster"))
    }

    fn node_count(&self) -> usize {
        self.len()
    }

    fn name(&self, i: usize) -> String {
        self.node(i).name
    }

    fn port(&self, i: usize) -> u16 {
        LocalRedisCluster::port(self, i)
    }

    fn is_running(&self, i: usize) -> bool {
        self.node(i).running
    }

    fn is_frozen(&self, i: usize) -> bool {
        self.node(i).frozen
    }

    fn process_tree(&self, i: usize) -> String {
        self.name(i)
    }

    fn url_at(port: u16) -> String {
        format!("redis://127.0.0.1:{port}/")
    }

    fn kill(&self, i: usize) -> Result<(), ClusterError> {
        LocalRedisCluster::kill(self, i)
    }

    fn freeze(&self, i: usize) -> Result<(), ClusterError> {
        LocalRedisCluster::freeze(self, i)
    }

    fn thaw(&self, i: usize) -> Result<(), ClusterError> {
        LocalRedisCluster::thaw(self, i)
    }

    async fn stop_graceful(&self, i: usize) -> Result<(), ClusterError> {
        LocalRedisCluster::stop_graceful(self, i).await
    }

    async fn restart(&self, i: usize) -> Result<(), ClusterError> {
        LocalRedisCluster::restart(self, i).await
    }

    /// `REPLICAOF NO ONE` on node `i`, then `REPLICAOF` it on every other
    /// running replica (not node 0, the faulted master).
    async fn promote(&self, i: usize) -> Result<(), ClusterError> {
        LocalRedisCluster::promote(self, i).await?;
        for j in 1..self.len() {
            if j != i && self.is_up(j) {
                self.replicaof(j, i).await?;
            }
        }
        Ok(())
    }

    async fn answers(url: &str, timeout: Duration) -> bool {
        let Ok(client) = Client::open(url) else {
            return false;
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let check = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .ok()?;
            ::redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        };
        matches!(tokio::time::timeout(timeout, check).await, Ok(Some(_)))
    }

    async fn primary_rank(&self, i: usize) -> Result<Option<i64>, ClusterError> {
        Ok(match self.role(i).await? {
            RedisRole::Master { offset } => Some(offset),
            RedisRole::Replica { .. } => None,
        })
    }

    async fn ids_on(&self, i: usize) -> Result<BTreeSet<i64>, DrillError> {
        let keys = self
            .keys_with_prefix(i, KEY_PREFIX)
            .await
            .map_err(cluster_err(format!(
                "could not read the keys of {}",
                self.name(i)
            )))?;
        Ok(keys.iter().filter_map(|k| id_of_key(k)).collect())
    }

    fn sentinels(&self) -> Option<(String, Vec<String>)> {
        (self.sentinel_count() > 0).then(|| (self.master_name().to_owned(), self.sentinel_urls()))
    }

    async fn sentinel_master_ports(&self) -> Vec<Option<u16>> {
        let asks = (0..self.sentinel_count()).map(|k| async move {
            let s = self.sentinel(k);
            if !s.running || s.frozen {
                return None;
            }
            let addr = self.sentinel_master_addr(k).await.ok().flatten();
            addr.map(|(_, port)| port)
        });
        futures_util::future::join_all(asks).await
    }

    fn index_of_port(&self, port: u16) -> Option<usize> {
        LocalRedisCluster::index_of_port(self, port)
    }
}
