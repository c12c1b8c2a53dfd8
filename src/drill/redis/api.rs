//! [`RedisCluster`]: the cluster API a Redis drill or test is written
//! against, implemented by [`LocalRedisCluster`] (local processes) and by
//! `ContainerRedisCluster` (containers, feature `testcontainers`), so the
//! same test runs unchanged on either.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ::redis::{FromRedisValue, Value};

use super::options::url;
use super::queries::{command_on, keys_at, role_at};
use super::server::log_excerpt;
use super::{ClusterError, LocalRedisCluster, POLL, RedisRole};
use crate::drill::Cluster;
use crate::drill::scenario::ClusterKind;

/// A throwaway Redis cluster: a master with replicas and optionally three
/// Sentinels, on 127.0.0.1, with the faults a failover drill injects.
///
/// Node 0 is the first master. Nodes and sentinels are reached on
/// `127.0.0.1` at their [`port`](Cluster::port) without a password. Write a
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
/// The nodes and their faults (`kill`, `freeze`, `thaw`, `stop_graceful`,
/// `restart`, `promote`) come from the supertrait [`Cluster`], common to
/// both stores.
pub trait RedisCluster: Cluster {
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

impl Cluster for LocalRedisCluster {
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
}

impl RedisCluster for LocalRedisCluster {
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

/// The waits of a [`LocalRedisCluster`] that hold for any cluster.
impl LocalRedisCluster {
    /// Waits until every live replica has caught up with its master: for
    /// each node that is running, not frozen and reports itself a replica
    /// of another running, unfrozen node of the cluster, until its link is
    /// up and its offset has reached the offset its master had when this
    /// was called. Replicas whose master is down, frozen or not a node of
    /// the cluster (a [paused](Self::pause_replication) replica) are
    /// skipped. Roles are asked live, so this holds after a sentinel has
    /// re-pointed replicas too.
    ///
    /// # Errors
    ///
    /// As for [`exec`](Self::exec) (asking the roles), and as for
    /// [`wait_link_up`](Self::wait_link_up).
    pub async fn wait_caught_up(&self) -> Result<(), ClusterError> {
        wait_replicas_caught_up(self).await
    }

    /// Waits until a majority of the live sentinels (running, not frozen)
    /// name the same master, on a port other than `from_port`, and returns
    /// that master's node index. A sentinel that does not answer counts as
    /// not naming it. Sentinels switch the address they give out at the end
    /// of a failover, once the promoted replica reports itself a master.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NotReady`] (with the answers last seen and the
    /// sentinels' log tails) when it has not happened within `timeout`;
    /// [`ClusterError::InvalidState`] when no sentinel is live.
    pub async fn wait_sentinel_failover(
        &self,
        from_port: u16,
        timeout: Duration,
    ) -> Result<usize, ClusterError> {
        wait_majority_failover(self, from_port, timeout, |k| {
            log_excerpt(&self.sentinel(k).log_path)
        })
        .await
    }
}

/// [`RedisCluster::wait_caught_up`] for any cluster: every live replica
/// of a live master waits until its link is up and its offset has reached
/// the offset its master had when this was called.
async fn wait_replicas_caught_up<C: RedisCluster + ?Sized>(
    cluster: &C,
) -> Result<(), ClusterError> {
    let live: Vec<usize> = (0..cluster.len())
        .filter(|&i| cluster.is_running(i) && !cluster.is_frozen(i))
        .collect();
    let roles = futures_util::future::try_join_all(live.iter().map(|&i| cluster.role(i))).await?;
    let offset_of_port: HashMap<u16, i64> = live
        .iter()
        .zip(&roles)
        .map(|(&i, role)| (cluster.port(i), role.offset()))
        .collect();
    let waits = live.iter().zip(&roles).filter_map(|(&i, role)| match role {
        RedisRole::Replica { master_port, .. } => offset_of_port
            .get(master_port)
            .map(|&target| wait_replica_at(cluster, i, target)),
        RedisRole::Master { .. } => None,
    });
    futures_util::future::try_join_all(waits).await?;
    Ok(())
}

/// Waits until node `index` is a replica with its link up at `offset`.
async fn wait_replica_at<C: RedisCluster + ?Sized>(
    cluster: &C,
    index: usize,
    offset: i64,
) -> Result<(), ClusterError> {
    let began = Instant::now();
    let timeout = cluster.startup_timeout();
    loop {
        let last = match cluster.role(index).await {
            Ok(RedisRole::Replica {
                link_up: true,
                offset: at,
                ..
            }) if at >= offset => return Ok(()),
            Ok(role) => format!("{role:?}"),
            Err(e) => crate::error::chain(&e),
        };
        if began.elapsed() >= timeout {
            return Err(ClusterError::NotReady {
                node: cluster.name(index),
                what: format!("its replication link to be up and at offset {offset}"),
                waited: began.elapsed(),
                last_error: last,
                log_tail: String::new(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`RedisCluster::wait_sentinel_failover`] for any cluster;
/// `log_tail(k)` is shown for each live sentinel `k` when it times out.
async fn wait_majority_failover<C: RedisCluster + ?Sized>(
    cluster: &C,
    from_port: u16,
    timeout: Duration,
    log_tail: impl Fn(usize) -> String,
) -> Result<usize, ClusterError> {
    let began = Instant::now();
    loop {
        let live: Vec<usize> = (0..cluster.sentinel_count())
            .filter(|&k| cluster.sentinel_is_up(k))
            .collect();
        if live.is_empty() {
            return Err(ClusterError::InvalidState {
                node: "the sentinels".to_owned(),
                operation: "wait for a failover by".to_owned(),
                reason: "none is running and unfrozen".to_owned(),
            });
        }
        let asks = live.iter().map(|&k| cluster.sentinel_master_addr(k));
        let answers = futures_util::future::join_all(asks).await;
        let mut votes: HashMap<u16, usize> = HashMap::new();
        for (_, port) in answers.iter().flatten().flatten() {
            if *port != from_port {
                *votes.entry(*port).or_default() += 1;
            }
        }
        let leader = votes.iter().max_by_key(|(_, n)| **n);
        let mut last = format!("answers of sentinels {live:?}: {answers:?}");
        if let Some((&port, &n)) = leader
            && n * 2 > live.len()
        {
            match cluster.index_of_port(port) {
                Some(index) => return Ok(index),
                None => last = format!("a majority names port {port}, not a node of this cluster"),
            }
        }
        if began.elapsed() >= timeout {
            let log_tail = live.iter().map(|&k| log_tail(k)).collect::<Vec<_>>();
            return Err(ClusterError::NotReady {
                node: "the sentinels".to_owned(),
                what: format!(
                    "a majority of the live sentinels to name a master other than port {from_port}"
                ),
                waited: began.elapsed(),
                last_error: last,
                log_tail: log_tail.join("\n"),
            });
        }
        tokio::time::sleep(POLL * 5).await;
    }
}
