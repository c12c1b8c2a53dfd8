//! Starting a [`LocalPgCluster`], snapshots of its nodes, and tearing it
//! down: gracefully with [`shutdown`](LocalPgCluster::shutdown), or by
//! killing every server when it is dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{
    ClusterError, Inner, LocalPgCluster, NodeInfo, NodeState, PgClusterOptions, PgNode, PgRole,
};
use crate::drill::process::{self, ProcessGroup, ServerUser};

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
        let dir = create_cluster_dir(opts.base_dir.as_deref(), &user)?;
        let root = dir.path().to_path_buf();
        let count = opts.standbys + 1;
        let nodes = create_node_dirs(&root, &user, count)?;
        let janitor = start_janitor(&root, &nodes);
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

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn info(&self, index: usize) -> Result<NodeInfo, ClusterError> {
        let mut inner = self.lock();
        let n = inner.node_mut(index)?;
        Ok(NodeInfo {
            index,
            name: n.name.clone(),
            port: n.port,
            node_dir: n.node_dir.clone(),
            data_dir: n.data_dir.clone(),
            log_path: n.log_path.clone(),
        })
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

/// Creates the cluster's temporary directory in `base` (else the
/// [default](process::default_base_dir)) and hands it to `user`.
fn create_cluster_dir(
    base: Option<&Path>,
    user: &ServerUser,
) -> Result<tempfile::TempDir, ClusterError> {
    let base = base.map_or_else(process::default_base_dir, Path::to_path_buf);
    let dir = tempfile::Builder::new()
        .prefix("failover-pool-pg-")
        .tempdir_in(&base)
        .map_err(|e| {
            ClusterError::io(
                format!("could not create a directory in {}", base.display()),
                e,
            )
        })?;
    user.chown(dir.path())?;
    Ok(dir)
}

/// Picks a free port per node and creates the node directories in `root`:
/// `pg0` the primary, the others its standbys. Nothing runs yet.
fn create_node_dirs(
    root: &Path,
    user: &ServerUser,
    count: usize,
) -> Result<Vec<NodeState>, ClusterError> {
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
    Ok(nodes)
}

/// Starts the janitor that cleans `root` up if this process dies without
/// dropping the cluster (a warning, not an error, when it cannot start).
fn start_janitor(root: &Path, nodes: &[NodeState]) -> Option<Child> {
    let pid_files: Vec<PathBuf> = nodes
        .iter()
        .map(|n| n.data_dir.join("postmaster.pid"))
        .collect();
    match process::spawn_janitor(root, &pid_files) {
        Ok(j) => Some(j),
        Err(e) => {
            tracing::warn!(error = %e, "could not start the cluster janitor");
            None
        }
    }
}

/// The System V shared memory id recorded in `postmaster.pid`, if any.
fn leftover_shmid(data_dir: &Path) -> Option<i64> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let line = text.lines().nth(6)?;
    let id: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    (id >= 0).then_some(id)
}
