//! The public data of a [`LocalRedisCluster`](super::LocalRedisCluster):
//! the options it is started with ([`RedisClusterOptions`]), a snapshot of
//! a node or sentinel ([`RedisNodeInfo`]) and a node's live replication
//! role ([`RedisRole`]).

use std::path::PathBuf;
use std::time::Duration;

/// Options for [`LocalRedisCluster::start`](super::LocalRedisCluster::start).
/// Construct with [`RedisClusterOptions::new`] (or `default()`) and the
/// builder methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisClusterOptions {
    /// Number of replicas of node 0 (default 1).
    pub replicas: usize,
    /// Whether to start three sentinels (quorum 2) monitoring node 0
    /// (default false).
    pub sentinels: bool,
    /// The name the sentinels monitor the master under (default
    /// `mymaster`).
    pub master_name: String,
    /// The sentinels' `down-after-milliseconds`: how long a node must be
    /// unreachable before a sentinel considers it down (default 1 s).
    pub down_after: Duration,
    /// The sentinels' `failover-timeout` (default 3 s). Besides bounding a
    /// failover's steps, a sentinel waits twice this long before it tries
    /// again after a failed attempt (a split vote, say), so the default of
    /// 3 minutes would stall a drill; 3 s leaves a promotion ample time on
    /// loopback.
    pub failover_timeout: Duration,
    /// `appendonly yes` on every node (default false: no persistence at
    /// all, so a restarted node comes back empty).
    pub aof: bool,
    /// Directory holding `redis-server`; `None` (the default) finds it (see
    /// [`process::find_redis_server`](crate::drill::process::find_redis_server)).
    pub bin_dir: Option<PathBuf>,
    /// Directory to create the cluster's temporary directory in; `None`
    /// (the default) uses
    /// [`process::default_base_dir`](crate::drill::process::default_base_dir).
    pub base_dir: Option<PathBuf>,
    /// How long a node may take to start or to catch up, and the limit of
    /// the other waits (default 30 s).
    pub startup_timeout: Duration,
    /// Client-side limit for connecting and for each command of the query
    /// helpers such as [`exec`](super::LocalRedisCluster::exec) (default
    /// 5 s), so that a frozen node makes them fail instead of hang.
    pub query_timeout: Duration,
    /// Extra `redis.conf` directives for every data node (not the
    /// sentinels), as (name, value); the value is written verbatim.
    pub settings: Vec<(String, String)>,
}

impl Default for RedisClusterOptions {
    fn default() -> Self {
        RedisClusterOptions {
            replicas: 1,
            sentinels: false,
            master_name: "mymaster".to_owned(),
            down_after: Duration::from_secs(1),
            failover_timeout: Duration::from_secs(3),
            aof: false,
            bin_dir: None,
            base_dir: None,
            startup_timeout: Duration::from_secs(30),
            query_timeout: Duration::from_secs(5),
            settings: Vec::new(),
        }
    }
}

impl RedisClusterOptions {
    /// The defaults: a master with one replica, no sentinels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the number of replicas.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// Starts three sentinels (quorum 2), or none.
    pub fn sentinels(mut self, sentinels: bool) -> Self {
        self.sentinels = sentinels;
        self
    }

    /// Sets the name the sentinels monitor the master under.
    pub fn master_name(mut self, name: &str) -> Self {
        self.master_name = name.to_owned();
        self
    }

    /// Sets the sentinels' `down-after-milliseconds`.
    pub fn down_after(mut self, after: Duration) -> Self {
        self.down_after = after;
        self
    }

    /// Sets the sentinels' `failover-timeout`.
    pub fn failover_timeout(mut self, timeout: Duration) -> Self {
        self.failover_timeout = timeout;
        self
    }

    /// Turns the append-only file on or off.
    pub fn aof(mut self, aof: bool) -> Self {
        self.aof = aof;
        self
    }

    /// Uses the `redis-server` in `dir`.
    pub fn bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// Creates the cluster's directory inside `dir`.
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// Sets the start-up / wait limit.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Sets the client-side limit of the query helpers.
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// Adds a `redis.conf` directive for every data node.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }
}

/// A snapshot of one node (or sentinel) of a
/// [`LocalRedisCluster`](super::LocalRedisCluster).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisNodeInfo {
    /// Index among the nodes (0 is the first master) or the sentinels.
    pub index: usize,
    /// Name: `redis0`, `redis1`, ... or `sentinel0`, `sentinel1`, ...
    pub name: String,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Its directory (working directory, data files).
    pub dir: PathBuf,
    /// Its configuration file.
    pub config_path: PathBuf,
    /// Its log file.
    pub log_path: PathBuf,
    /// The node the cluster last made it a replica of (at start-up or with
    /// [`replicaof`](super::LocalRedisCluster::replicaof)); `None` for a
    /// node started, restarted or promoted as a master, and for
    /// sentinels. This is what the cluster configured, not a live answer
    /// (sentinels re-point replicas behind its back): ask
    /// [`role`](super::LocalRedisCluster::role) for that.
    pub replica_of: Option<usize>,
    /// Whether its replication is paused by
    /// [`pause_replication`](super::LocalRedisCluster::pause_replication).
    pub replication_paused: bool,
    /// Whether its server process is running (possibly frozen).
    pub running: bool,
    /// Whether it is frozen (`SIGSTOP`).
    pub frozen: bool,
    /// The server's process id while running.
    pub pid: Option<u32>,
}

impl RedisNodeInfo {
    /// A connection URL: `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        url(self.port)
    }
}

/// The connection URL of the server listening on `port`.
pub(super) fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}/")
}

/// A data node's replication role as it reports it itself (`INFO
/// replication`), from [`LocalRedisCluster::role`](super::LocalRedisCluster::role).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedisRole {
    /// A master.
    Master {
        /// Its replication offset (`master_repl_offset`).
        offset: i64,
    },
    /// A replica.
    Replica {
        /// The port of the master it replicates from (or tries to).
        master_port: u16,
        /// Whether its link to that master is up (`master_link_status:up`).
        link_up: bool,
        /// The offset it has processed (`slave_repl_offset`).
        offset: i64,
    },
}

impl RedisRole {
    /// Whether it is a master.
    pub fn is_master(&self) -> bool {
        matches!(self, RedisRole::Master { .. })
    }

    /// Its replication offset, either way.
    pub fn offset(&self) -> i64 {
        match *self {
            RedisRole::Master { offset } | RedisRole::Replica { offset, .. } => offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_point_at_loopback() {
        assert_eq!(url(40001), "redis://127.0.0.1:40001/");
    }

    #[test]
    fn role_offsets() {
        assert_eq!(RedisRole::Master { offset: 7 }.offset(), 7);
        let replica = RedisRole::Replica {
            master_port: 1,
            link_up: false,
            offset: 3,
        };
        assert_eq!(replica.offset(), 3);
        assert!(!replica.is_master());
    }
}
