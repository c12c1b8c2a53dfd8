//! [`ContainerRedisCluster`]: a Redis master, replicas and optionally three
//! Sentinels in containers, behind [`RedisCluster`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A `SENTINEL REPLICAS` / `SENTINEL SENTINELS` entry.
type Entry = HashMap<String, String>;

use super::ContainerSettings;
use super::NetworkMode;
use super::fleet::{Fleet, Member, Spec, wait_until};
use super::scripts::{self, SentinelConf};
use crate::drill::process::free_ports;
use crate::drill::redis::{QUORUM, SENTINELS, command_on};
use crate::drill::scenario::ClusterKind;
use crate::drill::{Cluster, ClusterError, RedisCluster, RedisClusterOptions};

/// A Redis master with `replicas` replicas (and three Sentinels with
/// [`RedisClusterOptions::sentinels`]), each in its own container; the
/// twin of [`LocalRedisCluster`](crate::drill::LocalRedisCluster) behind
/// [`RedisCluster`]. See the [module docs](super) for the network modes
/// and the clean-up.
///
/// Of [`RedisClusterOptions`] it uses `replicas`, `sentinels`,
/// `master_name`, `down_after`, `failover_timeout`, `aof`, `settings`,
/// `query_timeout` and `startup_timeout`; the binary and directory options
/// are for local clusters.
#[derive(Debug)]
pub struct ContainerRedisCluster {
    opts: RedisClusterOptions,
    nodes: Vec<Member>,
    sentinels: Vec<Member>,
    started_in: Duration,
    // Dropped after the members: the engine client.
    fleet: Fleet,
}

impl ContainerRedisCluster {
    /// Starts the nodes (in parallel), makes nodes 1.. replicas of node 0
    /// and waits for their links, then starts the sentinels and waits until
    /// each knows every replica and the other sentinels.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Engine`] when the engine cannot be reached or a
    /// container cannot start, [`ClusterError::NotReady`] (with the
    /// container's output) when a server does not answer in time.
    pub async fn start(
        opts: RedisClusterOptions,
        settings: ContainerSettings,
    ) -> Result<Self, ClusterError> {
        let began = Instant::now();
        let fleet = Fleet::new(settings).await?;
        let sentinel_count = if opts.sentinels { SENTINELS } else { 0 };
        let ports = free_ports(opts.replicas + 1 + sentinel_count)?;
        let bind = fleet.bind_addr();
        let image = fleet.settings().redis_image.clone();
        let starts = (0..=opts.replicas).map(|i| {
            let name = format!("redis{i}");
            let script = scripts::redis(bind, ports[i], opts.aof, &opts.settings);
            let (fleet, image, port) = (&fleet, image.as_str(), ports[i]);
            async move {
                let spec = Spec {
                    name: &name,
                    image,
                    user: "redis",
                    script,
                    port,
                };
                fleet.run(spec).await
            }
        });
        let nodes = futures_util::future::try_join_all(starts).await?;
        let mut cluster = ContainerRedisCluster {
            opts: opts.clone(),
            nodes,
            sentinels: Vec::new(),
            started_in: Duration::ZERO,
            fleet,
        };
        let pings =
            (0..cluster.nodes.len()).map(|i| cluster.wait_ping(&cluster.nodes[i], cluster.port(i)));
        futures_util::future::try_join_all(pings).await?;
        for i in 1..cluster.nodes.len() {
            cluster.replicaof(i, 0).await?;
        }
        cluster.wait_caught_up().await?;
        if sentinel_count > 0 {
            cluster.start_sentinels(&ports[opts.replicas + 1..]).await?;
        }
        cluster.started_in = began.elapsed();
        Ok(cluster)
    }

    /// How long [`start`](Self::start) took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The settings the containers run with.
    pub fn settings(&self) -> &ContainerSettings {
        self.fleet.settings()
    }

    /// The container name of node `index` (for `docker logs`, say).
    ///
    /// # Panics
    ///
    /// When `index` is out of range.
    pub fn container_name(&self, index: usize) -> String {
        self.fleet.container_name(&self.at(index).name)
    }

    /// Crashes sentinel `index` (`SIGKILL` to its container).
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoSuchSentinel`], [`ClusterError::InvalidState`]
    /// when it is not running, [`ClusterError::Engine`].
    pub async fn kill_sentinel(&self, index: usize) -> Result<(), ClusterError> {
        self.fleet.kill(self.sentinel_member(index)?).await
    }

    /// Starts sentinel `index` again (its container, with the
    /// configuration it last rewrote) and waits until it answers `PING`.
    ///
    /// # Errors
    ///
    /// As for [`kill_sentinel`](Self::kill_sentinel), and
    /// [`ClusterError::NotReady`].
    pub async fn restart_sentinel(&self, index: usize) -> Result<(), ClusterError> {
        let m = self.sentinel_member(index)?;
        self.fleet.restart(m).await?;
        self.wait_ping(m, m.port).await
    }

    async fn start_sentinels(&mut self, ports: &[u16]) -> Result<(), ClusterError> {
        let master_host = self.nodes[0].ip();
        let announce_ip = match self.fleet.settings().network {
            NetworkMode::Host => Some("127.0.0.1"),
            NetworkMode::Bridge => None,
        };
        let conf = SentinelConf {
            master_name: &self.opts.master_name,
            master_host: &master_host,
            master_port: self.port(0),
            quorum: QUORUM,
            down_after: self.opts.down_after,
            failover_timeout: self.opts.failover_timeout,
            announce_ip,
        };
        let bind = self.fleet.bind_addr();
        let image = self.fleet.settings().redis_image.as_str();
        let starts = ports.iter().enumerate().map(|(k, &port)| {
            let name = format!("sentinel{k}");
            let script = scripts::sentinel(bind, port, &conf);
            let fleet = &self.fleet;
            async move {
                let spec = Spec {
                    name: &name,
                    image,
                    user: "redis",
                    script,
                    port,
                };
                fleet.run(spec).await
            }
        });
        let sentinels = futures_util::future::try_join_all(starts).await?;
        self.sentinels = sentinels;
        self.wait_sentinels_ready().await
    }

    /// Waits until each sentinel knows every replica and the others.
    async fn wait_sentinels_ready(&self) -> Result<(), ClusterError> {
        let name = self.opts.master_name.clone();
        let (replicas, count) = (self.nodes.len() - 1, self.sentinels.len());
        let ready =
            self.sentinels.iter().map(|m| {
                let name = name.as_str();
                let what = format!(
                    "it to know {replicas} replicas and {} other sentinels",
                    count - 1
                );
                async move {
                    wait_until(m, &what, self.opts.startup_timeout, || async move {
                        let timeout = self.opts.query_timeout;
                        let known: Vec<Entry> =
                            command_on(&m.name, m.port, &["SENTINEL", "REPLICAS", name], timeout)
                                .await?;
                        let peers: Vec<Entry> =
                            command_on(&m.name, m.port, &["SENTINEL", "SENTINELS", name], timeout)
                                .await?;
                        let plain = |entries: &[Entry], flags: &str| {
                            entries
                                .iter()
                                .filter(|e| e.get("flags").is_some_and(|f| f == flags))
                                .count()
                        };
                        Ok(plain(&known, "slave") >= replicas
                            && plain(&peers, "sentinel") + 1 >= count)
                    })
                    .await
                }
            });
        futures_util::future::try_join_all(ready).await?;
        Ok(())
    }

    /// Waits until `m` (on `port`) answers `PING`.
    async fn wait_ping(&self, m: &Member, port: u16) -> Result<(), ClusterError> {
        let timeout = self.opts.query_timeout;
        wait_until(
            m,
            "it to answer PING",
            self.opts.startup_timeout,
            || async move {
                let pong: String = command_on(&m.name, port, &["PING"], timeout).await?;
                Ok(pong == "PONG")
            },
        )
        .await
    }

    fn member(&self, index: usize) -> Result<&Member, ClusterError> {
        self.nodes.get(index).ok_or(ClusterError::NoSuchNode {
            index,
            count: self.nodes.len(),
        })
    }

    fn sentinel_member(&self, index: usize) -> Result<&Member, ClusterError> {
        self.sentinels
            .get(index)
            .ok_or(ClusterError::NoSuchSentinel {
                index,
                count: self.sentinels.len(),
            })
    }

    fn at(&self, index: usize) -> &Member {
        let count = self.nodes.len();
        self.nodes
            .get(index)
            .unwrap_or_else(|| panic!("no node {index}: the cluster has {count} nodes"))
    }
}

impl Cluster for ContainerRedisCluster {
    fn kind(&self) -> ClusterKind {
        ClusterKind::Containers
    }

    fn len(&self) -> usize {
        self.nodes.len()
    }

    fn name(&self, index: usize) -> String {
        self.at(index).name.clone()
    }

    fn port(&self, index: usize) -> u16 {
        self.at(index).port
    }

    fn is_running(&self, index: usize) -> bool {
        self.at(index).is_running()
    }

    fn is_frozen(&self, index: usize) -> bool {
        self.at(index).is_frozen()
    }

    fn query_timeout(&self) -> Duration {
        self.opts.query_timeout
    }

    async fn kill(&self, index: usize) -> Result<(), ClusterError> {
        self.fleet.kill(self.member(index)?).await
    }

    async fn freeze(&self, index: usize) -> Result<(), ClusterError> {
        self.fleet.freeze(self.member(index)?).await
    }

    async fn thaw(&self, index: usize) -> Result<(), ClusterError> {
        self.fleet.thaw(self.member(index)?).await
    }

    /// `SIGTERM` (Redis saves nothing: no persistence is configured).
    async fn stop_graceful(&self, index: usize) -> Result<(), ClusterError> {
        let m = self.member(index)?;
        self.fleet
            .stop(m, "SIGTERM", self.opts.startup_timeout)
            .await
    }

    async fn restart(&self, index: usize) -> Result<(), ClusterError> {
        let m = self.member(index)?;
        self.fleet.restart(m).await?;
        self.wait_ping(m, m.port).await
    }

    async fn promote(&self, index: usize) -> Result<(), ClusterError> {
        self.exec(index, &["REPLICAOF", "NO", "ONE"])
            .await
            .map(drop)
    }
}

impl RedisCluster for ContainerRedisCluster {
    fn startup_timeout(&self) -> Duration {
        self.opts.startup_timeout
    }

    fn master_name(&self) -> String {
        self.opts.master_name.clone()
    }

    fn sentinel_count(&self) -> usize {
        self.sentinels.len()
    }

    fn sentinel_port(&self, index: usize) -> u16 {
        self.sentinels[index].port
    }

    fn sentinel_is_up(&self, index: usize) -> bool {
        let s = &self.sentinels[index];
        s.is_running() && !s.is_frozen()
    }

    /// `REPLICAOF <host> <port>` with the master's address as the
    /// containers see it; returns without waiting for the link.
    async fn replicaof(&self, index: usize, master: usize) -> Result<(), ClusterError> {
        if index == master {
            return Err(ClusterError::InvalidState {
                node: self.name(index),
                operation: "make a replica of itself".to_owned(),
                reason: "a node cannot replicate itself".to_owned(),
            });
        }
        let host = self.member(master)?.ip();
        let port = self.port(master).to_string();
        self.exec(index, &["REPLICAOF", &host, &port])
            .await
            .map(drop)
    }
}
