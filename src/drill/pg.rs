//! [`LocalPgCluster`]: a throwaway PostgreSQL primary with streaming
//! standbys, started from the locally installed server binaries, with fault
//! injection per node.
//!
//! Layout: one temporary directory per cluster (in `/dev/shm` when it has
//! room, see [`process::default_base_dir`]) holding a directory per node
//! (`pg0` is the first primary, `pg1`, `pg2`, ... the standbys), each with a
//! `data` directory and a `postgres.log`; the Unix sockets live in the
//! cluster directory, TCP listens on 127.0.0.1 only. Node settings live in
//! `data/drill_node.conf`, which `postgresql.conf` includes.
//!
//! Start-up cost is kept low by running `initdb` once and caching the result
//! as a template in the system temporary directory
//! (`failover-pool-pg-template-<uid>-<hash>`, keyed by the server version
//! and bin dir, shared by all processes of the same user); each new primary
//! is a copy of it, and each standby a `pg_basebackup` of its primary.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio_postgres::types::FromSqlOwned;
use tokio_postgres::{Client, NoTls};

use super::ClusterError;
use super::process::{self, ProcessGroup, ServerUser};

/// A PostgreSQL write-ahead-log position (re-exported from
/// `tokio-postgres`); `Display`s and parses as `16/B374D848`.
pub use tokio_postgres::types::PgLsn;

/// The database user every node is initialised with (`initdb -U postgres`,
/// trust authentication).
const DB_USER: &str = "postgres";
/// The file, inside a data directory, that holds the node's settings.
const NODE_CONF: &str = "drill_node.conf";
/// Marks a finished template data directory.
const TEMPLATE_MARKER: &str = "failover_pool_template";
/// Bumped whenever what the template contains changes.
const TEMPLATE_FORMAT: &str = "failover-pool template v1";
/// How often readiness conditions are polled.
const POLL: Duration = Duration::from_millis(20);

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

/// Options for [`LocalPgCluster::start`]. Construct with
/// [`PgClusterOptions::new`] (or `default()`) and the builder methods.
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
    /// finds them (see [`process::find_bin_dir`]).
    pub bin_dir: Option<PathBuf>,
    /// Directory to create the cluster's temporary directory in; `None`
    /// (the default) uses [`process::default_base_dir`]: `/dev/shm` when it
    /// has room (much faster), else the system temporary directory.
    pub base_dir: Option<PathBuf>,
    /// Reuse a cached `initdb` template (default true). With false every
    /// cluster runs `initdb` itself (about a second slower).
    pub reuse_template: bool,
    /// How long a node may take to start, to catch up with its primary or
    /// to replay a position (default 30 s); also the limit for `initdb`,
    /// `pg_basebackup` and `pg_rewind`.
    pub startup_timeout: Duration,
    /// Client-side limit for the SQL helpers such as
    /// [`LocalPgCluster::exec`] (default 10 s), so that a frozen node makes
    /// them fail instead of hang.
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

/// A snapshot of one node of a [`LocalPgCluster`].
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
    /// Whether it is frozen by [`LocalPgCluster::freeze`].
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

fn conninfo(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user={DB_USER} dbname=postgres")
}

/// A running server: the postmaster and its watchdog.
#[derive(Debug)]
struct Server {
    child: Child,
    watchdog: Option<Child>,
}

impl Server {
    /// Kills and reaps the watchdog, so that it can never fire.
    fn disarm(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

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

#[derive(Debug)]
struct Inner {
    nodes: Vec<NodeState>,
    /// The node the cluster currently treats as primary.
    primary: usize,
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

impl LocalPgCluster {
    /// Starts a primary and `opts.standbys` streaming standbys and waits
    /// until all accept connections and every standby streams from the
    /// primary (as a synchronous candidate when `opts.synchronous`).
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoServerBinaries`], [`ClusterError::NoServerUser`],
    /// a failing `initdb`/`pg_basebackup`, or a node that does not become
    /// ready (with the tail of its log). Whatever was started is cleaned up.
    pub async fn start(opts: PgClusterOptions) -> Result<LocalPgCluster, ClusterError> {
        let began = Instant::now();
        let bin_dir = process::find_bin_dir(opts.bin_dir.as_deref())?;
        let user = ServerUser::detect()?;
        let base = opts
            .base_dir
            .clone()
            .unwrap_or_else(process::default_base_dir);
        let dir = tempfile::Builder::new()
            .prefix("failover-pool-pg-")
            .tempdir_in(&base)
            .map_err(|e| {
                ClusterError::io(
                    format!("could not create a directory in {}", base.display()),
                    e,
                )
            })?;
        let root = dir.path().to_path_buf();
        user.chown(&root)?;

        let count = opts.standbys + 1;
        let ports = process::free_ports(count)?;
        let mut nodes = Vec::with_capacity(count);
        for (index, port) in ports.into_iter().enumerate() {
            let name = format!("pg{index}");
            let node_dir = root.join(&name);
            user.create_dir(&node_dir)?;
            nodes.push(NodeState {
                data_dir: node_dir.join("data"),
                log_path: node_dir.join("postgres.log"),
                node_dir,
                name,
                port,
                role: if index == 0 {
                    PgRole::Primary
                } else {
                    PgRole::Standby { upstream: 0 }
                },
                server: None,
                frozen: false,
                sync_names: false,
            });
        }
        let pid_files: Vec<PathBuf> = nodes
            .iter()
            .map(|n| n.data_dir.join("postmaster.pid"))
            .collect();
        let janitor = match process::spawn_janitor(&root, &pid_files) {
            Ok(j) => Some(j),
            Err(e) => {
                tracing::warn!(error = %e, "could not start the cluster janitor");
                None
            }
        };
        let mut cluster = LocalPgCluster {
            opts,
            bin_dir,
            user,
            root,
            inner: Mutex::new(Inner { nodes, primary: 0 }),
            started_in: Duration::ZERO,
            janitor,
            _dir: dir,
        };
        // From here on, an early return drops `cluster`, which kills
        // whatever was started.
        cluster.init_primary().await?;
        cluster.start_fresh(0, Some(false)).await?;
        let standbys = (1..count).map(|i| cluster.create_standby(i));
        futures_util::future::try_join_all(standbys).await?;
        cluster.started_in = began.elapsed();
        tracing::debug!(
            nodes = count,
            synchronous = cluster.opts.synchronous,
            elapsed = ?cluster.started_in,
            "local PostgreSQL cluster started"
        );
        Ok(cluster)
    }

    /// How long [`start`](Self::start) took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The cluster's directory (node directories and Unix sockets).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The server binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Number of nodes (primary plus standbys).
    pub fn len(&self) -> usize {
        self.lock().nodes.len()
    }

    /// Always false: a cluster has at least its primary.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index of the node the cluster currently treats as primary: 0
    /// initially, then the last node [`promote`](Self::promote)d.
    pub fn primary_index(&self) -> usize {
        self.lock().primary
    }

    /// A snapshot of node `index`.
    ///
    /// # Panics
    ///
    /// When `index` is out of range, like slice indexing.
    pub fn node(&self, index: usize) -> PgNode {
        let inner = self.lock();
        let count = inner.nodes.len();
        let Some(n) = inner.nodes.get(index) else {
            panic!("no node {index}: the cluster has {count} nodes");
        };
        snapshot(index, n)
    }

    /// Snapshots of all nodes.
    pub fn nodes(&self) -> Vec<PgNode> {
        let inner = self.lock();
        inner
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| snapshot(i, n))
            .collect()
    }

    /// Connection URLs of all nodes, by index.
    pub fn urls(&self) -> Vec<String> {
        self.nodes().iter().map(PgNode::url).collect()
    }

    // ----- faults -------------------------------------------------------

    /// Crashes node `index`: `SIGKILL` to its postmaster and all of its
    /// children (no shutdown checkpoint, connections are reset, new ones
    /// refused). The postmaster is reaped before this returns.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoSuchNode`], [`ClusterError::InvalidState`] when it
    /// is not running, [`ClusterError::Signal`].
    pub fn kill(&self, index: usize) -> Result<(), ClusterError> {
        let mut inner = self.lock();
        let node = node_mut(&mut inner, index)?;
        let name = node.name.clone();
        let Some(mut server) = node.server.take() else {
            return Err(not_running(&name, "kill"));
        };
        node.frozen = false;
        server.disarm();
        let group = ProcessGroup::of(&server.child);
        let result = group.signal_tree(Signal::SIGKILL);
        process::wait_blocking(&mut server.child, Duration::from_secs(10));
        result.map_err(|source| signal_error(&name, Signal::SIGKILL, group, source))
    }

    /// Hangs node `index`: `SIGSTOP` to its postmaster and all of its
    /// children. The kernel still completes TCP handshakes (up to the listen
    /// backlog) but nothing answers, and open connections stall.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoSuchNode`], [`ClusterError::InvalidState`] when it
    /// is not running, [`ClusterError::Signal`].
    pub fn freeze(&self, index: usize) -> Result<(), ClusterError> {
        self.signal_node(index, Signal::SIGSTOP, "freeze", Some(true))
    }

    /// Undoes [`freeze`](Self::freeze): `SIGCONT` to the postmaster and its
    /// children.
    ///
    /// # Errors
    ///
    /// As for [`freeze`](Self::freeze).
    pub fn thaw(&self, index: usize) -> Result<(), ClusterError> {
        self.signal_node(index, Signal::SIGCONT, "thaw", Some(false))
    }

    /// Sends an arbitrary `signal` to node `index`'s postmaster and all of
    /// its children (see [`ProcessGroup::signal_tree`]).
    ///
    /// # Errors
    ///
    /// As for [`freeze`](Self::freeze).
    pub fn signal(&self, index: usize, signal: Signal) -> Result<(), ClusterError> {
        self.signal_node(index, signal, "signal", None)
    }

    fn signal_node(
        &self,
        index: usize,
        signal: Signal,
        operation: &str,
        frozen: Option<bool>,
    ) -> Result<(), ClusterError> {
        let mut inner = self.lock();
        let node = node_mut(&mut inner, index)?;
        let Some(server) = &node.server else {
            return Err(not_running(&node.name, operation));
        };
        let group = ProcessGroup::of(&server.child);
        group
            .signal_tree(signal)
            .map_err(|source| signal_error(&node.name, signal, group, source))?;
        if let Some(frozen) = frozen {
            node.frozen = frozen;
        }
        Ok(())
    }

    /// Stops node `index` with a fast shutdown (`SIGINT`: active
    /// transactions are rolled back, a shutdown checkpoint is written) and
    /// waits for the postmaster to exit. A frozen node is thawed first.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoSuchNode`], [`ClusterError::InvalidState`] when it
    /// is not running, [`ClusterError::CommandTimeout`] when it has not
    /// exited within the start-up timeout (it is then killed).
    pub async fn stop_graceful(&self, index: usize) -> Result<(), ClusterError> {
        {
            let mut inner = self.lock();
            let node = node_mut(&mut inner, index)?;
            let frozen = node.frozen;
            let name = node.name.clone();
            let Some(server) = node.server.as_mut() else {
                return Err(not_running(&name, "stop"));
            };
            server.disarm();
            let group = ProcessGroup::of(&server.child);
            if frozen {
                group
                    .signal_tree(Signal::SIGCONT)
                    .map_err(|source| signal_error(&name, Signal::SIGCONT, group, source))?;
            }
            nix::sys::signal::kill(group.pid(), Signal::SIGINT)
                .map_err(|source| signal_error(&name, Signal::SIGINT, group, source))?;
            node.frozen = false;
        }
        self.wait_exit(index, self.opts.startup_timeout).await
    }

    /// Waits until node `index`'s postmaster has exited and reaps it; kills
    /// it after `timeout`. The child stays in the node state while waiting,
    /// so a cancelled wait still leaves it to `Drop`.
    async fn wait_exit(&self, index: usize, timeout: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut inner = self.lock();
                let node = node_mut(&mut inner, index)?;
                let Some(server) = node.server.as_mut() else {
                    return Ok(());
                };
                let exited = !matches!(server.child.try_wait(), Ok(None));
                if exited {
                    node.server = None;
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    let mut server = node.server.take().expect("checked above");
                    let name = node.name.clone();
                    let _ = ProcessGroup::of(&server.child).signal_tree(Signal::SIGKILL);
                    process::wait_blocking(&mut server.child, Duration::from_secs(10));
                    return Err(ClusterError::CommandTimeout {
                        command: format!("fast shutdown of {name}"),
                        timeout,
                    });
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Starts node `index` again from its existing data directory on the
    /// same port (after [`kill`](Self::kill) or
    /// [`stop_graceful`](Self::stop_graceful)) and waits until it accepts
    /// connections. Its configuration is left as it was: a former primary
    /// whose standby was promoted meanwhile comes back as a second primary
    /// on the old timeline (split brain).
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidState`] when it is running, otherwise as for
    /// start-up.
    pub async fn restart(&self, index: usize) -> Result<(), ClusterError> {
        {
            let mut inner = self.lock();
            let node = node_mut(&mut inner, index)?;
            if node.server.is_some() {
                return Err(ClusterError::InvalidState {
                    node: node.name.clone(),
                    operation: "restart".to_owned(),
                    reason: "it is running; kill or stop it first".to_owned(),
                });
            }
        }
        self.spawn_server(index)?;
        self.wait_ready(index, None).await
    }

    /// Promotes standby `index` (`SELECT pg_promote(true, 60)`), then runs a
    /// `CHECKPOINT` on it so that its control file shows the new timeline
    /// (which `pg_rewind` and `pg_control_checkpoint()` read). The cluster
    /// treats it as the primary from then on. Other standbys keep following
    /// their old upstream; see [`follow`](Self::follow).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Query`] (e.g. when it is not in recovery),
    /// [`ClusterError::InvalidState`] when promotion did not finish.
    pub async fn promote(&self, index: usize) -> Result<(), ClusterError> {
        let done: bool = self
            .query_scalar(index, "SELECT pg_promote(true, 60)")
            .await?;
        if !done {
            return Err(ClusterError::InvalidState {
                node: self.info(index)?.name,
                operation: "promote".to_owned(),
                reason: "pg_promote() returned false (not finished within 60 s)".to_owned(),
            });
        }
        self.exec(index, "CHECKPOINT").await?;
        let mut inner = self.lock();
        inner.nodes[index].role = PgRole::Primary;
        inner.primary = index;
        Ok(())
    }

    /// Turns node `index` (typically a former primary) into a standby of
    /// `new_primary`: stops it if running, runs `pg_rewind` against the new
    /// primary (which also performs crash recovery first if the node was
    /// killed), writes `standby.signal` and a `primary_conninfo` pointing at
    /// the new primary, starts it and waits until it is in recovery and
    /// streaming from the new primary.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidState`] when `index == new_primary`,
    /// [`ClusterError::CommandFailed`] when `pg_rewind` fails, otherwise as
    /// for start-up.
    pub async fn rejoin_as_standby(
        &self,
        index: usize,
        new_primary: usize,
    ) -> Result<(), ClusterError> {
        let info = self.info(index)?;
        let source = self.info(new_primary)?;
        if index == new_primary {
            return Err(ClusterError::InvalidState {
                node: info.name,
                operation: "rejoin".to_owned(),
                reason: "a node cannot follow itself".to_owned(),
            });
        }
        if self.node(index).running {
            self.stop_graceful(index).await?;
        }
        // pg_rewind reads the source's timeline from its control file.
        self.exec(new_primary, "CHECKPOINT").await?;
        // pg_rewind's crash recovery runs a single-user server, which
        // refuses standby mode.
        for signal_file in ["standby.signal", "recovery.signal"] {
            remove_if_exists(&info.data_dir.join(signal_file))?;
        }
        let rewind = self.bin_dir.join("pg_rewind");
        let mut cmd = self.user.command(&rewind, &info.node_dir);
        cmd.arg("--target-pgdata")
            .arg(&info.data_dir)
            .arg("--source-server")
            .arg(conninfo(source.port))
            .arg("--no-sync");
        process::run(cmd, self.opts.startup_timeout).await?;
        self.lock().nodes[index].role = PgRole::Standby {
            upstream: new_primary,
        };
        self.write_node_conf(index)?;
        self.spawn_server(index)?;
        self.wait_ready(index, Some(true)).await?;
        self.wait_streaming(new_primary, index).await
    }

    /// Points standby `index` at `new_primary` (rewrites its
    /// `primary_conninfo` and reloads the configuration) and waits until it
    /// streams from it. The standby must not be ahead of the new primary's
    /// timeline fork (otherwise use
    /// [`rejoin_as_standby`](Self::rejoin_as_standby)).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Query`], or [`ClusterError::NotReady`] when it does
    /// not start streaming.
    pub async fn follow(&self, index: usize, new_primary: usize) -> Result<(), ClusterError> {
        self.info(new_primary)?;
        {
            let mut inner = self.lock();
            node_mut(&mut inner, index)?.role = PgRole::Standby {
                upstream: new_primary,
            };
        }
        self.write_node_conf(index)?;
        let _: bool = self.query_scalar(index, "SELECT pg_reload_conf()").await?;
        self.wait_streaming(new_primary, index).await
    }

    /// Stops every node gracefully (fast shutdown, in parallel) and deletes
    /// the cluster directory. Nodes that do not stop in time are killed.
    ///
    /// # Errors
    ///
    /// The first error from stopping a node; every node is stopped or
    /// killed regardless.
    pub async fn shutdown(self) -> Result<(), ClusterError> {
        let running: Vec<usize> = self
            .nodes()
            .into_iter()
            .filter(|n| n.running)
            .map(|n| n.index)
            .collect();
        let stops = running.into_iter().map(|i| self.stop_graceful(i));
        let results = futures_util::future::join_all(stops).await;
        drop(self);
        results.into_iter().collect()
    }

    // ----- SQL helpers --------------------------------------------------

    /// Opens a connection to node `index` (tokio-postgres, no TLS); the
    /// connection task is spawned on the current runtime.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Query`] or [`ClusterError::QueryTimeout`] (after the
    /// query timeout).
    pub async fn connect(&self, index: usize) -> Result<Client, ClusterError> {
        let info = self.info(index)?;
        connect_port(&info.name, info.port, self.opts.query_timeout).await
    }

    /// Runs `sql` (one or more statements, simple query protocol) on node
    /// `index`.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Query`] or [`ClusterError::QueryTimeout`].
    pub async fn exec(&self, index: usize, sql: &str) -> Result<(), ClusterError> {
        let client = self.connect(index).await?;
        let name = self.info(index)?.name;
        self.timed(&name, sql, client.batch_execute(sql)).await
    }

    /// Runs `sql` on node `index` and returns the first column of its only
    /// row, e.g. `query_scalar::<bool>(1, "SELECT pg_is_in_recovery()")`.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Query`] (also for a row count other than one or a
    /// type mismatch) or [`ClusterError::QueryTimeout`].
    pub async fn query_scalar<T: FromSqlOwned>(
        &self,
        index: usize,
        sql: &str,
    ) -> Result<T, ClusterError> {
        let client = self.connect(index).await?;
        let name = self.info(index)?.name;
        let row = self.timed(&name, sql, client.query_one(sql, &[])).await?;
        row.try_get(0).map_err(|source| ClusterError::Query {
            node: name,
            sql: sql.to_owned(),
            source,
        })
    }

    /// Runs a `SELECT count(*) ...`-like query on node `index` and returns
    /// the number.
    ///
    /// # Errors
    ///
    /// As for [`query_scalar`](Self::query_scalar).
    pub async fn count(&self, index: usize, sql: &str) -> Result<i64, ClusterError> {
        self.query_scalar(index, sql).await
    }

    /// Whether node `index` is in recovery (a standby), asked live.
    ///
    /// # Errors
    ///
    /// As for [`query_scalar`](Self::query_scalar).
    pub async fn is_in_recovery(&self, index: usize) -> Result<bool, ClusterError> {
        self.query_scalar(index, "SELECT pg_is_in_recovery()").await
    }

    /// The timeline node `index` writes (a primary) or last checkpointed
    /// on (a standby: its last restartpoint's timeline).
    ///
    /// # Errors
    ///
    /// As for [`query_scalar`](Self::query_scalar).
    pub async fn timeline(&self, index: usize) -> Result<i64, ClusterError> {
        self.query_scalar(
            index,
            "SELECT CASE WHEN pg_is_in_recovery() \
             THEN (SELECT timeline_id::bigint FROM pg_control_checkpoint()) \
             ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint END",
        )
        .await
    }

    /// The current WAL position of node `index`: the insert position on a
    /// primary, the replayed position on a standby.
    ///
    /// # Errors
    ///
    /// As for [`query_scalar`](Self::query_scalar).
    pub async fn current_lsn(&self, index: usize) -> Result<PgLsn, ClusterError> {
        self.query_scalar(
            index,
            "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
             ELSE pg_current_wal_lsn() END",
        )
        .await
    }

    /// Waits until standby `index` has replayed WAL up to `lsn`.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NotReady`] after the start-up timeout.
    pub async fn wait_for_replay(&self, index: usize, lsn: PgLsn) -> Result<(), ClusterError> {
        let info = self.info(index)?;
        let what = format!("replay of {lsn}");
        let info = &info;
        self.poll_until(info, &what, || async move {
            let client = connect_port(&info.name, info.port, self.opts.query_timeout).await?;
            let sql = "SELECT coalesce(pg_last_wal_replay_lsn() >= $1, false)";
            let row = self
                .timed(&info.name, sql, client.query_one(sql, &[&lsn]))
                .await?;
            Ok(row.get::<_, bool>(0))
        })
        .await
    }

    /// Waits until every running standby that follows the current primary
    /// has replayed the primary's current WAL position.
    ///
    /// # Errors
    ///
    /// As for [`current_lsn`](Self::current_lsn) and
    /// [`wait_for_replay`](Self::wait_for_replay).
    pub async fn wait_caught_up(&self) -> Result<(), ClusterError> {
        let primary = self.primary_index();
        let lsn = self.current_lsn(primary).await?;
        let followers: Vec<usize> = self
            .nodes()
            .into_iter()
            .filter(|n| n.running && n.role == PgRole::Standby { upstream: primary })
            .map(|n| n.index)
            .collect();
        let waits = followers.into_iter().map(|i| self.wait_for_replay(i, lsn));
        futures_util::future::try_join_all(waits).await?;
        Ok(())
    }

    // ----- internals ----------------------------------------------------

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn info(&self, index: usize) -> Result<NodeInfo, ClusterError> {
        let mut inner = self.lock();
        let n = node_mut(&mut inner, index)?;
        Ok(NodeInfo {
            index,
            name: n.name.clone(),
            port: n.port,
            node_dir: n.node_dir.clone(),
            data_dir: n.data_dir.clone(),
            log_path: n.log_path.clone(),
        })
    }

    async fn timed<T>(
        &self,
        node: &str,
        sql: &str,
        fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, ClusterError> {
        match tokio::time::timeout(self.opts.query_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(ClusterError::Query {
                node: node.to_owned(),
                sql: sql.to_owned(),
                source,
            }),
            Err(_) => Err(ClusterError::QueryTimeout {
                node: node.to_owned(),
                sql: sql.to_owned(),
                timeout: self.opts.query_timeout,
            }),
        }
    }

    /// Creates the first primary's data directory: a copy of the cached
    /// template, or a fresh `initdb`.
    async fn init_primary(&self) -> Result<(), ClusterError> {
        let info = self.info(0)?;
        if self.opts.reuse_template {
            let template =
                template_dir(&self.bin_dir, &self.user, self.opts.startup_timeout).await?;
            let mut cmd = self.user.command("cp", &info.node_dir);
            cmd.arg("-a").arg(&template).arg(&info.data_dir);
            process::run(cmd, self.opts.startup_timeout).await?;
            remove_if_exists(&info.data_dir.join(TEMPLATE_MARKER))?;
        } else {
            initdb(
                &self.bin_dir,
                &self.user,
                &info.data_dir,
                self.opts.startup_timeout,
            )
            .await?;
        }
        self.write_node_conf(0)
    }

    /// `pg_basebackup` of the primary into node `index`, then start it.
    async fn create_standby(&self, index: usize) -> Result<(), ClusterError> {
        let info = self.info(index)?;
        let primary = self.info(0)?;
        let mut cmd = self
            .user
            .command(self.bin_dir.join("pg_basebackup"), &info.node_dir);
        cmd.arg("-D")
            .arg(&info.data_dir)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                DB_USER,
            ])
            .args(["-X", "stream", "-c", "fast", "--no-sync"]);
        process::run(cmd, self.opts.startup_timeout).await?;
        self.write_node_conf(index)?;
        self.start_fresh(index, Some(true)).await?;
        self.wait_streaming(0, index).await
    }

    /// Starts a node for the first time; if its port was taken meanwhile
    /// (another process got it), picks a new one and tries again.
    async fn start_fresh(&self, index: usize, recovery: Option<bool>) -> Result<(), ClusterError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.spawn_server(index)?;
            match self.wait_ready(index, recovery).await {
                Err(ClusterError::ServerExited { log_tail, .. })
                    if attempt < 3
                        && (log_tail.contains("could not bind")
                            || log_tail.contains("could not create any TCP/IP sockets")) =>
                {
                    let port = process::free_port()?;
                    self.lock().nodes[index].port = port;
                    self.write_node_conf(index)?;
                }
                other => return other,
            }
        }
    }

    /// Writes `drill_node.conf` (and `standby.signal` for a standby) for
    /// node `index` from its current role and port.
    fn write_node_conf(&self, index: usize) -> Result<(), ClusterError> {
        let (name, port, role, data_dir, upstream_port) = {
            let inner = self.lock();
            let n = &inner.nodes[index];
            let upstream_port = match n.role {
                PgRole::Standby { upstream } => Some(inner.nodes[upstream].port),
                PgRole::Primary => None,
            };
            (
                n.name.clone(),
                n.port,
                n.role,
                n.data_dir.clone(),
                upstream_port,
            )
        };
        let socket_dir = self.root.to_string_lossy();
        // Unix socket paths are limited to ~107 bytes; TCP is what matters.
        let socket_dir = if socket_dir.len() > 80 {
            ""
        } else {
            &socket_dir
        };
        let mut settings: Vec<(&str, String)> = vec![
            ("listen_addresses", "127.0.0.1".into()),
            ("port", port.to_string()),
            ("unix_socket_directories", socket_dir.into()),
            ("cluster_name", name.clone()),
            ("max_connections", "60".into()),
            ("shared_buffers", "16MB".into()),
            ("dynamic_shared_memory_type", "mmap".into()),
            ("wal_level", "replica".into()),
            ("max_wal_senders", "10".into()),
            ("max_replication_slots", "10".into()),
            ("wal_keep_size", "256MB".into()),
            ("hot_standby", "on".into()),
            ("hot_standby_feedback", "on".into()),
            ("wal_log_hints", "on".into()),
            ("full_page_writes", "on".into()),
            ("fsync", "off".into()),
            ("wal_receiver_status_interval", "1s".into()),
            ("wal_retrieve_retry_interval", "500ms".into()),
            ("wal_receiver_timeout", "10s".into()),
            ("wal_sender_timeout", "10s".into()),
            ("recovery_target_timeline", "latest".into()),
            ("logging_collector", "off".into()),
            ("log_line_prefix", "%m [%p] %q%a ".into()),
            ("log_checkpoints", "off".into()),
        ];
        let sync_names = role == PgRole::Primary && self.opts.synchronous;
        if sync_names {
            settings.push(("synchronous_standby_names", "ANY 1 (*)".into()));
        }
        if let Some(up) = upstream_port {
            settings.push((
                "primary_conninfo",
                format!("{} application_name={name} connect_timeout=5", conninfo(up)),
            ));
        }
        let mut text = String::from("# Written by failover-pool's LocalPgCluster.\n");
        for (k, v) in settings {
            text.push_str(&format!("{k} = {}\n", quote_setting(&v)));
        }
        for (k, v) in &self.opts.settings {
            text.push_str(&format!("{k} = {}\n", quote_setting(v)));
        }
        self.user.write_file(&data_dir.join(NODE_CONF), text)?;
        self.lock().nodes[index].sync_names = sync_names;
        if upstream_port.is_some() {
            self.user.write_file(&data_dir.join("standby.signal"), "")?;
        }
        Ok(())
    }

    /// Spawns `postgres -D <data>` for node `index` in its own process
    /// group, logging to the node's log file, plus its watchdog.
    fn spawn_server(&self, index: usize) -> Result<(), ClusterError> {
        let mut inner = self.lock();
        let node = node_mut(&mut inner, index)?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(|e| {
                ClusterError::io(format!("could not open {}", node.log_path.display()), e)
            })?;
        self.user.chown(&node.log_path)?;
        let log_err = log.try_clone().map_err(|e| {
            ClusterError::io(format!("could not open {}", node.log_path.display()), e)
        })?;
        let mut cmd = self
            .user
            .command(self.bin_dir.join("postgres"), &node.node_dir);
        cmd.arg("-D")
            .arg(&node.data_dir)
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let command = process::describe(&cmd);
        let child = cmd
            .spawn()
            .map_err(|source| ClusterError::Spawn { command, source })?;
        let watchdog = match process::spawn_watchdog(child.id()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(node = %node.name, error = %e, "could not start the server watchdog");
                None
            }
        };
        node.server = Some(Server { child, watchdog });
        node.frozen = false;
        Ok(())
    }

    /// Polls until node `index` answers a query (and, with `recovery`, its
    /// `pg_is_in_recovery()` matches).
    async fn wait_ready(&self, index: usize, recovery: Option<bool>) -> Result<(), ClusterError> {
        let info = self.info(index)?;
        let what = match recovery {
            Some(true) => "it to accept connections in recovery",
            Some(false) => "it to accept connections as a primary",
            None => "it to accept connections",
        };
        let timeout = self.opts.query_timeout.min(Duration::from_secs(2));
        let info = &info;
        self.poll_until(info, what, || async move {
            let client = connect_port(&info.name, info.port, timeout).await?;
            let row = client
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await
                .map_err(|source| ClusterError::Query {
                    node: info.name.clone(),
                    sql: "SELECT pg_is_in_recovery()".into(),
                    source,
                })?;
            let in_recovery: bool = row.get(0);
            Ok(recovery.is_none_or(|want| want == in_recovery))
        })
        .await
    }

    /// Polls the primary until it shows `standby` streaming in
    /// `pg_stat_replication` (as sync or quorum candidate when the cluster
    /// is synchronous and `primary` has synchronous_standby_names).
    async fn wait_streaming(&self, primary: usize, standby: usize) -> Result<(), ClusterError> {
        let standby_info = self.info(standby)?;
        let primary_info = self.info(primary)?;
        let want_sync = self.lock().nodes[primary].sync_names;
        let what = format!(
            "{} to show it {} in pg_stat_replication",
            primary_info.name,
            if want_sync {
                "as a synchronous standby"
            } else {
                "streaming"
            }
        );
        let sql = if want_sync {
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 \
             AND state = 'streaming' AND sync_state IN ('sync', 'quorum')"
        } else {
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 \
             AND state = 'streaming'"
        };
        let (standby_info, primary_info) = (&standby_info, &primary_info);
        self.poll_until(standby_info, &what, || async move {
            let client = connect_port(
                &primary_info.name,
                primary_info.port,
                self.opts.query_timeout,
            )
            .await?;
            let row = self
                .timed(
                    &primary_info.name,
                    sql,
                    client.query_one(sql, &[&standby_info.name]),
                )
                .await?;
            Ok(row.get::<_, i64>(0) > 0)
        })
        .await
    }

    /// Repeats `check` until it returns true, the node's postmaster exits
    /// ([`ClusterError::ServerExited`]) or the start-up timeout passes
    /// ([`ClusterError::NotReady`] with the last error and the log tail).
    async fn poll_until<F, Fut>(
        &self,
        info: &NodeInfo,
        what: &str,
        mut check: F,
    ) -> Result<(), ClusterError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool, ClusterError>>,
    {
        let began = Instant::now();
        let timeout = self.opts.startup_timeout;
        let mut last_error: String;
        loop {
            if let Some(status) = self.exit_status(info.index) {
                return Err(ClusterError::ServerExited {
                    node: info.name.clone(),
                    status,
                    log_tail: log_excerpt(&info.log_path),
                });
            }
            match check().await {
                Ok(true) => return Ok(()),
                Ok(false) => last_error = "condition not met yet".to_owned(),
                Err(e) => last_error = crate::error::chain(&e),
            }
            if began.elapsed() >= timeout {
                return Err(ClusterError::NotReady {
                    node: info.name.clone(),
                    what: what.to_owned(),
                    waited: began.elapsed(),
                    last_error,
                    log_tail: log_excerpt(&info.log_path),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// If node `index`'s postmaster has exited: reaps it, clears the node's
    /// server and returns the exit status as text.
    fn exit_status(&self, index: usize) -> Option<String> {
        let mut inner = self.lock();
        let node = inner.nodes.get_mut(index)?;
        let server = node.server.as_mut()?;
        let status = match server.child.try_wait() {
            Ok(None) => return None,
            Ok(Some(status)) => status.to_string(),
            Err(e) => format!("unknown status: {e}"),
        };
        let mut server = node.server.take()?;
        server.disarm();
        Some(status)
    }
}

impl Drop for LocalPgCluster {
    fn drop(&mut self) {
        if let Some(mut janitor) = self.janitor.take() {
            let _ = janitor.kill();
            let _ = janitor.wait();
        }
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        let mut servers = Vec::new();
        for node in &mut inner.nodes {
            if let Some(mut server) = node.server.take() {
                server.disarm();
                let group = ProcessGroup::of(&server.child);
                let _ = group.signal_tree(Signal::SIGCONT);
                let _ = group.signal_tree(Signal::SIGKILL);
                servers.push(server);
            }
        }
        for server in &mut servers {
            process::wait_blocking(&mut server.child, Duration::from_secs(5));
        }
        // A killed postmaster leaves its small System V shared-memory
        // segment behind; its id is on line 7 of postmaster.pid.
        for node in &inner.nodes {
            if let Some(shmid) = leftover_shmid(&node.data_dir) {
                let _ = std::process::Command::new("ipcrm")
                    .args(["-m", &shmid.to_string()])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        // `_dir` (the TempDir) is dropped after this, deleting everything.
    }
}

fn snapshot(index: usize, n: &NodeState) -> PgNode {
    PgNode {
        index,
        name: n.name.clone(),
        port: n.port,
        data_dir: n.data_dir.clone(),
        log_path: n.log_path.clone(),
        role: n.role,
        running: n.server.is_some(),
        frozen: n.frozen,
        pid: n.server.as_ref().map(|s| s.child.id()),
    }
}

fn node_mut(inner: &mut Inner, index: usize) -> Result<&mut NodeState, ClusterError> {
    let count = inner.nodes.len();
    inner
        .nodes
        .get_mut(index)
        .ok_or(ClusterError::NoSuchNode { index, count })
}

fn not_running(name: &str, operation: &str) -> ClusterError {
    ClusterError::InvalidState {
        node: name.to_owned(),
        operation: operation.to_owned(),
        reason: "it is not running".to_owned(),
    }
}

fn signal_error(
    name: &str,
    signal: Signal,
    group: ProcessGroup,
    source: nix::Error,
) -> ClusterError {
    ClusterError::Signal {
        node: name.to_owned(),
        signal: signal.as_str().to_owned(),
        pid: group.pid().as_raw(),
        source,
    }
}

/// The last lines of a server log, headed by its path.
fn log_excerpt(path: &Path) -> String {
    format!(
        "last lines of {}:\n{}",
        path.display(),
        process::log_tail(path, 20)
    )
}

fn remove_if_exists(path: &Path) -> Result<(), ClusterError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ClusterError::io(
            format!("could not remove {}", path.display()),
            e,
        )),
        _ => Ok(()),
    }
}

/// A `postgresql.conf` value: single-quoted, with quotes and backslashes
/// escaped.
fn quote_setting(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// The System V shared memory id recorded in `postmaster.pid`, if any.
fn leftover_shmid(data_dir: &Path) -> Option<i64> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let line = text.lines().nth(6)?;
    let id: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    (id >= 0).then_some(id)
}

async fn connect_port(name: &str, port: u16, timeout: Duration) -> Result<Client, ClusterError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(DB_USER)
        .dbname("postgres")
        .application_name("failover-pool-drill")
        .connect_timeout(timeout);
    match tokio::time::timeout(timeout, config.connect(NoTls)).await {
        Ok(Ok((client, connection))) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(client)
        }
        Ok(Err(source)) => Err(ClusterError::Query {
            node: name.to_owned(),
            sql: "connect".to_owned(),
            source,
        }),
        Err(_) => Err(ClusterError::QueryTimeout {
            node: name.to_owned(),
            sql: "connect".to_owned(),
            timeout,
        }),
    }
}

async fn initdb(
    bin_dir: &Path,
    user: &ServerUser,
    data_dir: &Path,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let cwd = data_dir.parent().unwrap_or(Path::new("/"));
    let mut cmd = user.command(bin_dir.join("initdb"), cwd);
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-A", "trust", "-U", DB_USER, "-E", "UTF8", "--locale=C"])
        .args(["--no-sync", "--no-instructions"]);
    process::run(cmd, timeout).await?;
    // Settings go to drill_node.conf; replication from loopback is trusted
    // (initdb's defaults already allow it; this keeps that explicit).
    append(
        &data_dir.join("postgresql.conf"),
        &format!("\ninclude_if_exists = '{NODE_CONF}'\n"),
    )?;
    append(
        &data_dir.join("pg_hba.conf"),
        "\nhost replication all 127.0.0.1/32 trust\n",
    )
}

fn append(path: &Path, text: &str) -> Result<(), ClusterError> {
    use std::io::Write;
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| ClusterError::io(format!("could not append to {}", path.display()), e))
}

/// The cached template data directory for `bin_dir`, created on first use
/// (once per process, and shared between processes through a fixed path
/// in the system temporary directory, published with an atomic rename).
async fn template_dir(
    bin_dir: &Path,
    user: &ServerUser,
    timeout: Duration,
) -> Result<PathBuf, ClusterError> {
    type Cells = Mutex<HashMap<(PathBuf, u32), Arc<tokio::sync::OnceCell<PathBuf>>>>;
    static CELLS: OnceLock<Cells> = OnceLock::new();
    let cell = CELLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry((bin_dir.to_path_buf(), user.uid))
        .or_default()
        .clone();
    let dir = cell
        .get_or_try_init(|| create_template(bin_dir, user, timeout))
        .await?;
    if dir.join(TEMPLATE_MARKER).exists() {
        Ok(dir.clone())
    } else {
        // Removed meanwhile (say by a temp-file cleaner): make it again.
        create_template(bin_dir, user, timeout).await
    }
}

async fn create_template(
    bin_dir: &Path,
    user: &ServerUser,
    timeout: Duration,
) -> Result<PathBuf, ClusterError> {
    let tmp = std::env::temp_dir();
    let mut cmd = user.command(bin_dir.join("postgres"), &tmp);
    cmd.arg("--version");
    let version = process::run(cmd, timeout).await?;
    let key = fnv1a(&[
        TEMPLATE_FORMAT.as_bytes(),
        &version.stdout,
        bin_dir.as_os_str().as_encoded_bytes(),
    ]);
    let dir = tmp.join(format!("failover-pool-pg-template-{}-{key:016x}", user.uid));
    if dir.join(TEMPLATE_MARKER).exists() {
        return Ok(dir);
    }
    let began = Instant::now();
    let staging = tempfile::Builder::new()
        .prefix(".failover-pool-pg-template-")
        .tempdir_in(&tmp)
        .map_err(|e| {
            ClusterError::io(
                format!("could not create a directory in {}", tmp.display()),
                e,
            )
        })?;
    user.chown(staging.path())?;
    let data = staging.path().join("data");
    initdb(bin_dir, user, &data, timeout).await?;
    user.write_file(&data.join(TEMPLATE_MARKER), TEMPLATE_FORMAT)?;
    match fs::rename(&data, &dir) {
        Ok(()) => {}
        // Another process published one first: use that.
        Err(_) if dir.join(TEMPLATE_MARKER).exists() => {}
        Err(e) => {
            return Err(ClusterError::io(
                format!("could not move the template to {}", dir.display()),
                e,
            ));
        }
    }
    tracing::debug!(dir = %dir.display(), elapsed = ?began.elapsed(), "created PostgreSQL template");
    Ok(dir)
}

/// FNV-1a over several byte strings (stable across Rust versions, unlike
/// `DefaultHasher`).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_quoted() {
        assert_eq!(quote_setting("ANY 1 (*)"), "'ANY 1 (*)'");
        assert_eq!(quote_setting("it's"), "'it''s'");
        assert_eq!(quote_setting(r"a\b"), r"'a\\b'");
    }

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

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(&[b"a"]), fnv1a(&[b"a"]));
        assert_ne!(fnv1a(&[b"a", b"b"]), fnv1a(&[b"ab"]));
    }
}
