//! The public data of a [`LocalPgCluster`](super::LocalPgCluster): the
//! options it is started with ([`PgClusterOptions`]), a snapshot of a node
//! ([`PgNode`]) and the role the cluster configured it as ([`PgRole`]).

use std::path::PathBuf;
use std::time::Duration;

use super::DB_USER;

/// What a node was configured as by this cluster (not queried live: a node
/// configured as primary that was killed while a standby was promoted is
/// still `Primary` when restarted, which is the split-brain case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgRole {
    /// A read-write primary.
    Primary,
    /// A streaming standby of the node with index `upstream`.
    Standby {
        /// Index of the node it streams from.
        upstream: usize,
    },
}

/// Options for [`LocalPgCluster::start`](super::LocalPgCluster::start).
/// Construct with [`PgClusterOptions::new`] (or `default()`) and the
/// builder methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PgClusterOptions {
    /// Number of streaming standbys (default 1).
    pub standbys: usize,
    /// Synchronous replication (default false): the primary gets
    /// `synchronous_standby_names = 'ANY 1 (*)'`, so a commit waits until one
    /// standby has flushed it.
    pub synchronous: bool,
    /// Directory of the PostgreSQL server binaries; `None` (the default)
    /// finds them (see
    /// [`process::find_bin_dir`](crate::drill::process::find_bin_dir)).
    pub bin_dir: Option<PathBuf>,
    /// Directory to create the cluster's temporary directory in; `None`
    /// (the default) uses
    /// [`process::default_base_dir`](crate::drill::process::default_base_dir):
    /// `/dev/shm` when it has room (much faster), else the system temporary
    /// directory.
    pub base_dir: Option<PathBuf>,
    /// Reuse a cached `initdb` template (default true). With false every
    /// cluster runs `initdb` itself (about a second slower).
    pub reuse_template: bool,
    /// How long a node may take to start, to catch up with its primary or
    /// to replay a position (default 30 s); also the limit for `initdb`,
    /// `pg_basebackup` and `pg_rewind`.
    pub startup_timeout: Duration,
    /// Client-side limit for the SQL helpers such as
    /// [`LocalPgCluster::exec`](super::LocalPgCluster::exec) (default
    /// 10 s), so that a frozen node makes them fail instead of hang.
    pub query_timeout: Duration,
    /// Extra `postgresql.conf` settings for every node, as (name, value);
    /// values are quoted as needed.
    pub settings: Vec<(String, String)>,
}

impl Default for PgClusterOptions {
    fn default() -> Self {
        PgClusterOptions {
            standbys: 1,
            synchronous: false,
            bin_dir: None,
            base_dir: None,
            reuse_template: true,
            startup_timeout: Duration::from_secs(30),
            query_timeout: Duration::from_secs(10),
            settings: Vec::new(),
        }
    }
}

impl PgClusterOptions {
    /// The defaults: one asynchronous standby.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the number of standbys.
    pub fn standbys(mut self, standbys: usize) -> Self {
        self.standbys = standbys;
        self
    }

    /// Sets synchronous (true) or asynchronous (false) replication.
    pub fn synchronous(mut self, synchronous: bool) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Uses the server binaries in `dir`.
    pub fn bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// Creates the cluster's directory inside `dir`.
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// Whether to reuse the cached `initdb` template.
    pub fn reuse_template(mut self, reuse: bool) -> Self {
        self.reuse_template = reuse;
        self
    }

    /// Sets the start-up / wait limit.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Sets the client-side limit of the SQL helpers.
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// Adds a `postgresql.conf` setting for every node.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }
}

/// A snapshot of one node of a [`LocalPgCluster`](super::LocalPgCluster).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgNode {
    /// Index in the cluster (0 is the first primary).
    pub index: usize,
    /// Name: `pg0`, `pg1`, ...; also its `cluster_name` and, for standbys,
    /// the `application_name` it replicates under.
    pub name: String,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The server log file.
    pub log_path: PathBuf,
    /// What the cluster configured it as.
    pub role: PgRole,
    /// Whether its server process is running (possibly frozen).
    pub running: bool,
    /// Whether it is frozen by
    /// [`LocalPgCluster::freeze`](super::LocalPgCluster::freeze).
    pub frozen: bool,
    /// The postmaster's process id while running.
    pub pid: Option<u32>,
}

impl PgNode {
    /// A connection URL: `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://{DB_USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// A libpq key/value connection string for the node.
    pub fn conninfo(&self) -> String {
        conninfo(self.port)
    }
}

/// A libpq key/value connection string for the node listening on `port`.
pub(super) fn conninfo(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user={DB_USER} dbname=postgres")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_point_at_loopback() {
        let node = PgNode {
            index: 1,
            name: "pg1".into(),
            port: 40001,
            data_dir: PathBuf::new(),
            log_path: PathBuf::new(),
            role: PgRole::Standby { upstream: 0 },
            running: true,
            frozen: false,
            pid: None,
        };
        assert_eq!(node.url(), "postgres://postgres@127.0.0.1:40001/postgres");
        assert_eq!(
            node.conninfo(),
            "host=127.0.0.1 port=40001 user=postgres dbname=postgres"
        );
    }
}
