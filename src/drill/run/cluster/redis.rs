//! [`DrillCluster`] for any [`RedisCluster`] ([`RedisNodes`]): a master
//! with `--replicas` replicas (and three Sentinels for Sentinel
//! promotion), the `drill:<id>` keys, and the master found by its
//! replication offset. The drill talks to the servers through the `redis`
//! crate only, never through the crate's Redis backends it exercises.

use std::collections::BTreeSet;
use std::time::Duration;

use ::redis::{AsyncConnectionConfig, Client};

use super::DrillCluster;
use crate::drill::run::options::{DrillError, DrillOptions, cluster_err};
use crate::drill::scenario::{ClusterKind, Promotion, Store};
use crate::drill::workload::{KEY_PREFIX, id_of_key};
use crate::drill::{ClusterError, LocalRedisCluster, RedisCluster, RedisClusterOptions, RedisRole};

/// The sentinels' `down-after-milliseconds` in Sentinel drills.
const SENTINEL_DOWN_AFTER: Duration = Duration::from_secs(1);

/// A Redis cluster of kind `C` as the drill sees it.
#[derive(Debug)]
pub(crate) struct RedisNodes<C>(pub(crate) C);

/// Starting a Redis cluster of this kind for a drill.
pub(crate) trait LaunchRedis: RedisCluster + Sized {
    /// Starts the cluster `redis` describes, where `opts` says.
    fn launch(
        opts: &DrillOptions,
        redis: RedisClusterOptions,
    ) -> impl Future<Output = Result<Self, ClusterError>> + Send;
}

impl LaunchRedis for LocalRedisCluster {
    async fn launch(_: &DrillOptions, redis: RedisClusterOptions) -> Result<Self, ClusterError> {
        LocalRedisCluster::start(redis).await
    }
}

#[cfg(feature = "testcontainers")]
impl LaunchRedis for crate::drill::containers::ContainerRedisCluster {
    async fn launch(opts: &DrillOptions, redis: RedisClusterOptions) -> Result<Self, ClusterError> {
        Self::start(redis, opts.container_settings()).await
    }
}

impl<C: LaunchRedis> DrillCluster for RedisNodes<C> {
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
        C::launch(opts, options)
            .await
            .map(RedisNodes)
            .map_err(cluster_err("could not start the Redis cluster"))
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
            ClusterKind::Local => self.name(i),
            ClusterKind::Containers => format!("{}'s container", self.name(i)),
        }
    }

    fn url_at(port: u16) -> String {
        format!("redis://127.0.0.1:{port}/")
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

    /// `REPLICAOF NO ONE` on node `i`, then `REPLICAOF` it on every other
    /// running replica (not node 0, the faulted master).
    async fn promote(&self, i: usize) -> Result<(), ClusterError> {
        self.0.promote(i).await?;
        for j in 1..self.0.len() {
            if j != i && self.is_up(j) {
                self.0.replicaof(j, i).await?;
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
        Ok(match self.0.role(i).await? {
            RedisRole::Master { offset } => Some(offset),
            RedisRole::Replica { .. } => None,
        })
    }

    async fn ids_on(&self, i: usize) -> Result<BTreeSet<i64>, DrillError> {
        let keys = self
            .0
            .keys_with_prefix(i, KEY_PREFIX)
            .await
            .map_err(cluster_err(format!(
                "could not read the keys of {}",
                self.name(i)
            )))?;
        Ok(keys.iter().filter_map(|k| id_of_key(k)).collect())
    }

    fn sentinels(&self) -> Option<(String, Vec<String>)> {
        (self.0.sentinel_count() > 0).then(|| (self.0.master_name(), self.0.sentinel_urls()))
    }

    async fn sentinel_master_ports(&self) -> Vec<Option<u16>> {
        let asks = (0..self.0.sentinel_count()).map(|k| async move {
            if !self.0.sentinel_is_up(k) {
                return None;
            }
            let addr = self.0.sentinel_master_addr(k).await.ok().flatten();
            addr.map(|(_, port)| port)
        });
        futures_util::future::join_all(asks).await
    }

    fn index_of_port(&self, port: u16) -> Option<usize> {
        self.0.index_of_port(port)
    }
}
