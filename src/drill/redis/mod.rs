//! [`LocalRedisCluster`]: a throwaway Redis master with replicas, and
//! optionally three Sentinels, started from the locally installed
//! `redis-server`, with fault injection per node and per sentinel; the
//! Redis twin of [`LocalPgCluster`](super::LocalPgCluster).
//!
//! Layout: one temporary directory per cluster (in `/dev/shm` when it has
//! room, see [`process::default_base_dir`](super::process::default_base_dir))
//! holding a directory per node (`redis0` is the first master, `redis1`,
//! ... its replicas) and per sentinel (`sentinel0` to `sentinel2`), each
//! with a `redis.conf` (or `sentinel.conf`), a log file and whatever the
//! server writes there. Every server listens on its own free port on
//! 127.0.0.1 only. No persistence unless [`RedisClusterOptions::aof`] is
//! set (`save ""`), replication is diskless, and no credentials are used.
//! Sentinels run as `redis-server <config> --sentinel` (which is all that
//! `redis-sentinel` is).
//!
//! The cluster's state is defined here; its operations are split by
//! concern: start-up, snapshots and tear-down (`cluster.rs`), a server's
//! configuration, process and readiness (`server.rs`), commands and
//! replication queries (`queries.rs`), faults and role changes
//! (`faults.rs`) and everything about sentinels (`sentinel.rs`).
//! [`RedisClusterOptions`], [`RedisNodeInfo`] and [`RedisRole`] are in
//! `options.rs`.

mod api;
mod cluster;
mod faults;
mod options;
mod queries;
mod sentinel;
mod server;

use std::path::PathBuf;
use std::process::Child;
use std::sync::Mutex;
use std::time::Duration;

pub use self::api::RedisCluster;
pub use self::options::{RedisClusterOptions, RedisNodeInfo, RedisRole};
#[cfg_attr(not(feature = "testcontainers"), allow(unused_imports))]
pub(crate) use self::queries::command_on;
use super::ClusterError;
use super::process::ServerProcess;

/// How often readiness conditions are polled.
const POLL: Duration = Duration::from_millis(20);
/// The number of sentinels started with [`RedisClusterOptions::sentinels`].
pub(crate) const SENTINELS: usize = 3;
/// Their quorum.
pub(crate) const QUORUM: usize = 2;

/// A local Redis cluster (one master, N replicas, optionally three
/// sentinels) for tests and failover drills; see the [module docs](self).
///
/// All methods take `&self`, so the cluster can be shared (e.g. in an
/// `Arc`) between a workload and a fault injector. Dropping it kills every
/// server and sentinel (`SIGKILL`), reaps them and deletes the directory,
/// also when a test panics; if this process dies without dropping it, a
/// watchdog per server and a janitor for the directory clean up.
#[derive(Debug)]
pub struct LocalRedisCluster {
    opts: RedisClusterOptions,
    server_bin: PathBuf,
    root: PathBuf,
    inner: Mutex<Inner>,
    started_in: Duration,
    /// A loopback port bound but never listened on, so connecting to it is
    /// refused and nothing else can take it: where
    /// [`pause_replication`](Self::pause_replication) points a replica.
    _parking: tokio::net::TcpSocket,
    parking_port: u16,
    /// Removes the directory if this process dies without dropping us.
    janitor: Option<Child>,
    // Dropped (deleted) after `Drop::drop` has killed the servers.
    _dir: tempfile::TempDir,
}

/// A node or a sentinel, as addressed inside the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Data node `n`.
    Node(usize),
    /// Sentinel `n`.
    Sentinel(usize),
}

/// One server (node or sentinel): its files, what the cluster made it,
/// and its process.
#[derive(Debug)]
struct Proc {
    name: String,
    port: u16,
    dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    /// The node it was last made a replica of (always `None` for sentinels).
    replica_of: Option<usize>,
    /// Whether it points at the parking port.
    paused: bool,
    server: Option<ServerProcess>,
    frozen: bool,
}

/// The cluster's mutable state, behind its lock.
#[derive(Debug)]
struct Inner {
    nodes: Vec<Proc>,
    sentinels: Vec<Proc>,
}

impl Inner {
    /// The node or sentinel `target`, or [`ClusterError::NoSuchNode`] /
    /// [`ClusterError::NoSuchSentinel`].
    fn get_mut(&mut self, target: Target) -> Result<&mut Proc, ClusterError> {
        match target {
            Target::Node(index) => {
                let count = self.nodes.len();
                self.nodes
                    .get_mut(index)
                    .ok_or(ClusterError::NoSuchNode { index, count })
            }
            Target::Sentinel(index) => {
                let count = self.sentinels.len();
                self.sentinels
                    .get_mut(index)
                    .ok_or(ClusterError::NoSuchSentinel { index, count })
            }
        }
    }
}

/// Name, port and paths of a server, copied out of the lock.
#[derive(Debug, Clone)]
struct ProcInfo {
    target: Target,
    name: String,
    port: u16,
    log_path: PathBuf,
}
