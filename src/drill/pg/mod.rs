//! [`LocalPgCluster`]: a throwaway PostgreSQL primary with streaming
//! standbys, started from the locally installed server binaries, with fault
//! injection per node.
//!
//! Layout: one temporary directory per cluster (in `/dev/shm` when it has
//! room, see [`process::default_base_dir`](super::process::default_base_dir))
//! holding a directory per node (`pg0` is the first primary, `pg1`, `pg2`,
//! ... the standbys), each with a `data` directory and a `postgres.log`;
//! the Unix sockets live in the cluster directory, TCP listens on
//! 127.0.0.1 only. Node settings live in `data/drill_node.conf`, which
//! `postgresql.conf` includes.
//!
//! Start-up cost is kept low by running `initdb` once and caching the result
//! as a template in the system temporary directory
//! (`failover-pool-pg-template-<uid>-<hash>`, keyed by the server version
//! and bin dir, shared by all processes of the same user); each new primary
//! is a copy of it, and each standby a `pg_basebackup` of its primary.
//!
//! The cluster's state is defined here; its operations are split by
//! concern: start-up, snapshots and tear-down (`cluster.rs`), faults and
//! role changes (`faults.rs`), SQL helpers (`queries.rs`), a node's
//! configuration, process and readiness (`server.rs`), and the cached
//! `initdb` template (`template.rs`). [`PgClusterOptions`], [`PgNode`] and
//! [`PgRole`] are in `options.rs`.

mod api;
mod cluster;
mod faults;
mod options;
mod queries;
mod server;
mod template;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::Duration;

pub use self::api::PgCluster;
pub(crate) use self::api::pg_url;
pub use self::options::{PgClusterOptions, PgNode, PgRole};
#[cfg_attr(not(feature = "testcontainers"), allow(unused_imports))]
pub(crate) use self::queries::promote_at;
use super::ClusterError;
// A running server: the postmaster and its watchdog.
use super::process::{ServerProcess as Server, ServerUser};

/// A PostgreSQL write-ahead-log position (re-exported from
/// `tokio-postgres`); `Display`s and parses as `16/B374D848`.
pub use tokio_postgres::types::PgLsn;

/// The database user every node is initialised with (`initdb -U postgres`,
/// trust authentication).
const DB_USER: &str = "postgres";
/// The file, inside a data directory, that holds the node's settings.
const NODE_CONF: &str = "drill_node.conf";
/// How often readiness conditions are polled.
const POLL: Duration = Duration::from_millis(20);

/// A local PostgreSQL cluster (one primary, N streaming standbys) for
/// tests and failover drills; see the [module docs](self).
///
/// All methods take `&self`, so the cluster can be shared (e.g. in an
/// `Arc`) between a workload and a fault injector. Dropping it kills every
/// server (`SIGKILL` to each postmaster and its children), reaps them and
/// deletes the directory; [`shutdown`](Self::shutdown) stops them
/// gracefully first.
#[derive(Debug)]
pub struct LocalPgCluster {
    opts: PgClusterOptions,
    bin_dir: PathBuf,
    user: ServerUser,
    root: PathBuf,
    inner: Mutex<Inner>,
    started_in: Duration,
    /// Removes the directory if this process dies without dropping us.
    janitor: Option<Child>,
    // Dropped (deleted) after `Drop::drop` has killed the servers.
    _dir: tempfile::TempDir,
}

/// One node: its files, its role and its server process.
#[derive(Debug)]
struct NodeState {
    name: String,
    port: u16,
    node_dir: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    role: PgRole,
    server: Option<Server>,
    frozen: bool,
    /// Whether its configuration names synchronous standbys.
    sync_names: bool,
}

/// The cluster's mutable state, behind its lock.
#[derive(Debug)]
struct Inner {
    nodes: Vec<NodeState>,
    /// The node the cluster currently treats as primary.
    primary: usize,
}

impl Inner {
    /// Node `index`, or [`ClusterError::NoSuchNode`].
    fn node_mut(&mut self, index: usize) -> Result<&mut NodeState, ClusterError> {
        let count = self.nodes.len();
        self.nodes
            .get_mut(index)
            .ok_or(ClusterError::NoSuchNode { index, count })
    }
}

/// Paths and port of a node, copied out of the lock.
#[derive(Debug, Clone)]
struct NodeInfo {
    index: usize,
    name: String,
    port: u16,
    node_dir: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
}

/// Removes the file at `path` if it exists.
fn remove_if_exists(path: &Path) -> Result<(), ClusterError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ClusterError::io(
            format!("could not remove {}", path.display()),
            e,
        )),
        _ => Ok(()),
    }
}
