//! [`RedisCluster`]: the cluster API a Redis drill or test is written
//! against, implemented by [`LocalRedisCluster`] (local processes) and by
//! `ContainerRedisCluster` (containers, feature `testcontainers`), so the
//! same test runs unchanged on either.

use std::time::Duration;

use ::redis::{FromRedisValue, Value};

use super::options::url;
use super::queries::{command_on, keys_at, role_at, wait_replicas_caught_up};
use super::sentinel::wait_majority_failover;
use super::{ClusterError, LocalRedisCluster, RedisRole};
use crate::drill::scenario::ClusterKind;

/// A throwaway Redis cluster: a master with replicas and optionally three
/// Sentinels, on 127.0.0.1, with the faults a failover drill injects.
///
/// Node 0 is the first master. Nodes and sentinels are reached on
/// `127.0.0.1` at their [`port`](Self::port) without a password. Write a
/// test once against this trait and run it on [`LocalRedisCluster`] and
/// on `ContainerRedisCluster`:
///
/// ```no_run
/// use std::time::Duration;
/// use failover_pool::drill::{ClusterError, RedisCluster};
///
/// async fn sentinels_promote(cluster: &impl RedisCluster) -> Result<(), ClusterError> {
///     cluster.exec(0, &["SET", "k", "v"]).await?;
///     cluster.wait_caught_up().await?;
///     let old = cluster.port(0);
///     cluster.kill(0).await?;
///     let new = cluster.wait_sentinel_failover(old, Duration::from_secs(30)).await?;
///     assert!(cluster.role(new).await?.is_master());
///     Ok(())
/// }
/// ```
///
/// On [`LocalRedisCluster`], `kill`, `freeze` and `thaw` also exist as
/// synchronous inherent methods (a signal); the trait's are `async`
/// because a container engine is asked over its API.
pub trait RedisCluster: Send + Sync + 'static {
    /// Where the servers run.
    fn kind(&self) -> ClusterKind;

    /// Number of data nodes (master plus replicas).
    fn len(&self) -> usize;

    /// Always false: a cluster has at least its master.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Node `index`'s name (`redis0`, `redis1`, ...).
    ///
    /// # Panics
    ///
    /// When `index` is out of range, like slice indexing.
    fn name(&self, index: usize) -> String;

    /// The port node `index` is reached on at 127.0.0.1.
    ///
    /// # Panics
    ///
    /// When `index` is out of range.
    fn port(&self, index: usize) -> u16;

    /// Whether node `index`'s server runs (possibly frozen).
    fn is_running(&self, index: usize) -> bool;

    /// Whether node `index` is frozen.
    fn is_frozen(&self, index: usize) -> bool;

    /// The time limit of each command and connection attempt.
    fn query_timeout(&self) -> Duration;

    /// The time limit of the waits ([`wait_caught_up`](Self::wait_caught_up)).
    fn startup_timeout(&self) -> Duration;

    /// The name the sentinels monitor the master by.
    fn master_name(&self) -> String;

    /// Number of sentinels (3 or 0).
    fn sentinel_count(&self) -> usize;

    /// The port sentinel `index` is reached on at 127.0.0.1.
    ///
    /// # Panics
    ///
    /// When `index` is out of range.
    fn sentinel_port(&self, index: usize) -> u16;

    /// Whether sentinel `index` runs and is not frozen.
    fn sentinel_is_up(&self, index: usize) -> bool;

    /// `redis://127.0.0.1:<port>/` for node `index`.
    fn url(&self, index: usize) -> String {
        url(self.port(index))
    }

    /// The URLs of all nodes, by index.
    fn urls(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.url(i)).collect()
    }

    /// The URLs of all sentinels, by index; empty without sentinels.
    fn sentinel_urls(&self) -> Vec<String> {
        (0..self.sentinel_count())
            .map(|k| url(self.sentinel_port(k)))
            .collect()
    }

    /// The node reached on `port`, if any.
    fn index_of_port(&self, port: u16) -> Option<usize> {
        (0..self.len()).find(|&i| self.port(i) == port)
    }

    /// Crashes node `index` (`SIGKILL`).
    fn kill(&self, index: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Hangs node `index` (`SIGSTOP`, or the engine's `pause`).
    fn freeze(&self, index: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Undoes [`freeze`](Self::freeze).
    fn thaw(&self, index: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Stops node `index` (`SIGTERM`; nothing is saved) and waits for it
    /// to exit.
    fn stop_graceful(&self, index: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Starts a stopped node `index` again, as a master, empty (no
    /// persistence) and with a fresh replication id.
    fn restart(&self, index: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Makes node `index` a master (`REPLICAOF NO ONE`).
    fn promote(&self, index: usize) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Makes node `index` a replica of node `master`.
    fn replicaof(
        &self,
        index: usize,
        master: usize,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Runs the command `args` (name first) on node `index`.
    fn exec(
        &self,
        index: usize,
        args: &[&str],
    ) -> impl Future<Output = Result<Value, ClusterError>> + Send {
        self.query(index, args)
    }

    /// Runs the command `args` on node `index` and converts the reply.
    fn query<T: FromRedisValue + Send>(
        &self,
        index: usize,
        args: &[&str],
    ) -> impl Future<Output = Result<T, ClusterError>> + Send {
        async move {
            command_on(
                &self.name(index),
                self.port(index),
                args,
                self.query_timeout(),
            )
            .await
        }
    }

    /// Node `index`'s replication role as it reports it now.
    fn role(&self, index: usize) -> impl Future<Output = Result<RedisRole, ClusterError>> + Send {
        async move { role_at(&self.name(index), self.port(index), self.query_timeout()).await }
    }

    /// Every key on node `index` that starts with `prefix`, sorted.
    fn keys_with_prefix(
        &self,
        index: usize,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, ClusterError>> + Send {
        async move {
            keys_at(
                &self.name(index),
                self.port(index),
                self.query_timeout(),
                prefix,
            )
            .await
        }
    }

    /// The master address sentinel `index` gives out now; `None` when it
    /// does not know the master name.
    fn sentinel_master_addr(
        &self,
        index: usize,
    ) -> impl Future<Output = Result<Option<(String, u16)>, ClusterError>> + Send {
        async move {
            let name = self.master_name();
            let args = ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name.as_str()];
            let node = format!("sentinel{index}");
            command_on(
                &node,
                self.sentinel_port(index),
                &args,
                self.query_timeout(),
            )
            .await
        }
    }

    /// Waits until every live replica has caught up with its live master
    /// (roles asked live).
    fn wait_caught_up(&self) -> impl Future<Output = Result<(), ClusterError>> + Send {
        wait_replicas_caught_up(self)
    }

    /// Waits until a majority of the live sentinels name the same master,
    /// on a port other than `from_port`, and returns its node index.
    fn wait_sentinel_failover(
        &self,
        from_port: u16,
        timeout: Duration,
    ) -> impl Future<Output = Result<usize, ClusterError>> + Send {
        wait_majority_failover(self, from_port, timeout, |_| String::new())
    }
}

impl RedisCluster for LocalRedisCluster {
    fn kind(&self) -> ClusterKind {
        ClusterKind::Local
    }

    fn len(&self) -> usize {
        LocalRedisCluster::len(self)
    }

    fn name(&self, index: usize) -> String {
        self.node(index).name
    }

    fn port(&self, index: usize) -> u16 {
        LocalRedisCluster::port(self, index)
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

    fn startup_timeout(&self) -> Duration {
        self.opts.startup_timeout
    }

    fn master_name(&self) -> String {
        LocalRedisCluster::master_name(self).to_owned()
    }

    fn sentinel_count(&self) -> usize {
        LocalRedisCluster::sentinel_count(self)
    }

    fn sentinel_port(&self, index: usize) -> u16 {
        self.sentinel(index).port
    }

    fn sentinel_is_up(&self, index: usize) -> bool {
        let s = self.sentinel(index);
        s.running && !s.frozen
    }

    fn index_of_port(&self, port: u16) -> Option<usize> {
        LocalRedisCluster::index_of_port(self, port)
    }

    async fn kill(&self, index: usize) -> Result<(), ClusterError> {
        LocalRedisCluster::kill(self, index)
    }

    async fn freeze(&self, index: usize) -> Result<(), ClusterError> {
        LocalRedisCluster::freeze(self, index)
    }

    async fn thaw(&self, index: usize) -> Result<(), ClusterError> {
        LocalRedisCluster::thaw(self, index)
    }

    async fn stop_graceful(&self, index: usize) -> Result<(), ClusterError> {
        LocalRedisCluster::stop_graceful(self, index).await
    }

    async fn restart(&self, index: usize) -> Result<(), ClusterError> {
        LocalRedisCluster::restart(self, index).await
    }

    async fn promote(&self, index: usize) -> Result<(), ClusterError> {
        LocalRedisCluster::promote(self, index).await
    }

    async fn replicaof(&self, index: usize, master: usize) -> Result<(), ClusterError> {
        LocalRedisCluster::replicaof(self, index, master).await
    }

    async fn wait_sentinel_failover(
        &self,
        from_port: u16,
        timeout: Duration,
    ) -> Result<usize, ClusterError> {
        LocalRedisCluster::wait_sentinel_failover(self, from_port, timeout).await
    }
}
