//! Starting a [`LocalRedisCluster`], snapshots and addresses of its nodes
//! and sentinels, and tearing it down: gracefully with
//! [`shutdown`](LocalRedisCluster::shutdown), or by killing every server
//! when it is dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::options::url;
use super::{
    ClusterError, Inner, LocalRedisCluster, Proc, ProcInfo, RedisClusterOptions, RedisNodeInfo,
    SENTINELS, Target,
};
use crate::drill::process;

impl LocalRedisCluster {
    /// Starts a master (node 0) and `opts.replicas` replicas of it, and
    /// waits until every replica's link to the master is up and the master
    /// streams its writes to it; with
    /// `opts.sentinels`, then starts three sentinels (quorum 2) monitoring
    /// node 0 and waits until each one knows every replica and the other
    /// two sentinels.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoServerBinaries`] when `redis-server` is not
    /// installed, or a server that does not start or become ready (with
    /// the tail of its log). Whatever was started is cleaned up.
    pub async fn start(opts: RedisClusterOptions) -> Result<LocalRedisCluster, ClusterError> {
        let began = Instant::now();
        let server_bin = process::find_redis_server(opts.bin_dir.as_deref())?;
        let dir = create_cluster_dir(opts.base_dir.as_deref())?;
        let root = dir.path().to_path_buf();
        let node_count = opts.replicas + 1;
        let sentinel_count = if opts.sentinels { SENTINELS } else { 0 };
        let mut ports = process::free_ports(node_count + sentinel_count)?;
        let sentinel_ports = ports.split_off(node_count);
        let nodes = create_dirs(&root, "redis", "redis.conf", &ports)?;
        let sentinels = create_dirs(&root, "sentinel", "sentinel.conf", &sentinel_ports)?;
        let (parking, parking_port) = bind_parking_port()?;
        let janitor = start_janitor(&root);
        let mut cluster = LocalRedisCluster {
            opts,
            server_bin,
            root,
            inner: Mutex::new(Inner { nodes, sentinels }),
            started_in: Duration::ZERO,
            _parking: parking,
            parking_port,
            janitor,
            _dir: dir,
        };
        // From here on, an early return drops `cluster`, which kills
        // whatever was started.
        cluster.start_nodes().await?;
        if sentinel_count > 0 {
            cluster.start_sentinels().await?;
        }
        cluster.started_in = began.elapsed();
        tracing::debug!(
            nodes = node_count,
            sentinels = sentinel_count,
            elapsed = ?cluster.started_in,
            "local Redis cluster started"
        );
        Ok(cluster)
    }

    /// Starts node 0 as the master, then every replica (in parallel), and
    /// waits until each replica's link is up.
    async fn start_nodes(&self) -> Result<(), ClusterError> {
        self.write_node_conf(0)?;
        self.start_fresh(Target::Node(0), None, || self.write_node_conf(0))
            .await?;
        let master_port = self.port(0);
        let replicas = (1..self.len()).map(|i| async move {
            self.lock().nodes[i].replica_of = Some(0);
            self.write_node_conf(i)?;
            self.start_fresh(Target::Node(i), Some(master_port), || {
                self.write_node_conf(i)
            })
            .await?;
            self.wait_link_up(i).await
        });
        futures_util::future::try_join_all(replicas).await?;
        if self.len() > 1 {
            // A link that is up does not mean the master streams to the
            // replica yet: after a diskless transfer it waits for the
            // replica's first ACK, and one that arrives before the master
            // has seen the transfer end is ignored (Redis 7.0), which
            // delays the stream until the next ACK, a second later. A
            // published message moves the master's offset without
            // touching the keyspace, so catching up with it proves the
            // stream flows.
            self.exec(0, &["PUBLISH", "failover-pool-drill", "started"])
                .await?;
            self.wait_caught_up().await?;
        }
        Ok(())
    }

    /// How long [`start`](Self::start) took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Number of data nodes (master plus replicas; sentinels not counted).
    pub fn len(&self) -> usize {
        self.lock().nodes.len()
    }

    /// Always false: a cluster has at least its master.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name the sentinels monitor the master under.
    pub fn master_name(&self) -> &str {
        &self.opts.master_name
    }

    /// A snapshot of node `index`.
    ///
    /// # Panics
    ///
    /// When `index` is out of range, like slice indexing.
    pub fn node(&self, index: usize) -> RedisNodeInfo {
        self.snapshot_of(Target::Node(index))
    }

    /// Snapshots of all nodes.
    pub fn nodes(&self) -> Vec<RedisNodeInfo> {
        (0..self.len()).map(|i| self.node(i)).collect()
    }

    /// The port of node `index`.
    ///
    /// # Panics
    ///
    /// When `index` is out of range.
    pub fn port(&self, index: usize) -> u16 {
        self.node(index).port
    }

    /// The URL of node `index`: `redis://127.0.0.1:<port>/`.
    ///
    /// # Panics
    ///
    /// When `index` is out of range.
    pub fn url(&self, index: usize) -> String {
        url(self.port(index))
    }

    /// The URLs of all nodes, by index.
    pub fn urls(&self) -> Vec<String> {
        self.nodes().iter().map(RedisNodeInfo::url).collect()
    }

    /// The index of the node listening on `port`, if any.
    pub fn index_of_port(&self, port: u16) -> Option<usize> {
        self.lock().nodes.iter().position(|n| n.port == port)
    }

    /// Number of sentinels (3 or 0).
    pub fn sentinel_count(&self) -> usize {
        self.lock().sentinels.len()
    }

    /// A snapshot of sentinel `index`.
    ///
    /// # Panics
    ///
    /// When `index` is out of range.
    pub fn sentinel(&self, index: usize) -> RedisNodeInfo {
        self.snapshot_of(Target::Sentinel(index))
    }

    /// The URLs of all sentinels (`redis://127.0.0.1:<port>/`), by index;
    /// empty without sentinels.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.lock().sentinels.iter().map(|s| url(s.port)).collect()
    }

    /// Stops every running node gracefully (see
    /// [`stop_graceful`](Self::stop_graceful)), then drops the cluster,
    /// which kills the sentinels and deletes the directory.
    ///
    /// # Errors
    ///
    /// The first error from stopping a node; every node is stopped or
    /// killed regardless.
    pub async fn shutdown(self) -> Result<(), ClusterError> {
        let running: Vec<usize> = (0..self.len()).filter(|&i| self.node(i).running).collect();
        let stops = running.into_iter().map(|i| self.stop_graceful(i));
        let results = futures_util::future::join_all(stops).await;
        drop(self);
        results.into_iter().collect()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn proc_info(&self, target: Target) -> Result<ProcInfo, ClusterError> {
        let mut inner = self.lock();
        let p = inner.get_mut(target)?;
        Ok(ProcInfo {
            target,
            name: p.name.clone(),
            port: p.port,
            log_path: p.log_path.clone(),
        })
    }

    fn snapshot_of(&self, target: Target) -> RedisNodeInfo {
        let mut inner = self.lock();
        let (index, p) = match inner.get_mut(target) {
            Ok(p) => (target_index(target), p),
            Err(e) => panic!("{e}"),
        };
        RedisNodeInfo {
            index,
            name: p.name.clone(),
            port: p.port,
            dir: p.dir.clone(),
            config_path: p.config_path.clone(),
            log_path: p.log_path.clone(),
            replica_of: p.replica_of,
            replication_paused: p.paused,
            running: p.server.is_some(),
            frozen: p.frozen,
            pid: p.server.as_ref().map(|s| s.child.id()),
        }
    }
}

impl Drop for LocalRedisCluster {
    fn drop(&mut self) {
        if let Some(mut janitor) = self.janitor.take() {
            let _ = janitor.kill();
            let _ = janitor.wait();
        }
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        for proc in inner.nodes.iter_mut().chain(inner.sentinels.iter_mut()) {
            if let Some(mut server) = proc.server.take() {
                let _ = server.kill_and_reap(Duration::from_secs(5));
            }
        }
        // `_parking` is closed, and `_dir` (the TempDir) deleted, after this.
    }
}

fn target_index(target: Target) -> usize {
    match target {
        Target::Node(i) | Target::Sentinel(i) => i,
    }
}

/// Creates the cluster's temporary directory in `base` (else the
/// [default](process::default_base_dir)).
fn create_cluster_dir(base: Option<&Path>) -> Result<tempfile::TempDir, ClusterError> {
    let base = base.map_or_else(process::default_base_dir, Path::to_path_buf);
    tempfile::Builder::new()
        .prefix("failover-pool-redis-")
        .tempdir_in(&base)
        .map_err(|e| {
            ClusterError::io(
                format!("could not create a directory in {}", base.display()),
                e,
            )
        })
}

/// Creates a directory `<prefix><i>` in `root` per port; nothing runs yet.
fn create_dirs(
    root: &Path,
    prefix: &str,
    config_name: &str,
    ports: &[u16],
) -> Result<Vec<Proc>, ClusterError> {
    let mut procs = Vec::with_capacity(ports.len());
    for (index, &port) in ports.iter().enumerate() {
        let name = format!("{prefix}{index}");
        let dir: PathBuf = root.join(&name);
        std::fs::create_dir(&dir)
            .map_err(|e| ClusterError::io(format!("could not create {}", dir.display()), e))?;
        procs.push(Proc {
            config_path: dir.join(config_name),
            log_path: dir.join(format!("{prefix}.log")),
            dir,
            name,
            port,
            replica_of: None,
            paused: false,
            server: None,
            frozen: false,
        });
    }
    Ok(procs)
}

/// Binds a loopback port without listening on it (see
/// `LocalRedisCluster::parking`).
fn bind_parking_port() -> Result<(tokio::net::TcpSocket, u16), ClusterError> {
    let context = "could not bind the parking port on 127.0.0.1";
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| ClusterError::io(context, e))?;
    socket
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .map_err(|e| ClusterError::io(context, e))?;
    let port = socket
        .local_addr()
        .map_err(|e| ClusterError::io(context, e))?
        .port();
    Ok((socket, port))
}

/// Starts the janitor that deletes `root` if this process dies without
/// dropping the cluster (a warning, not an error, when it cannot start).
fn start_janitor(root: &Path) -> Option<Child> {
    match process::spawn_janitor(root, &[]) {
        Ok(j) => Some(j),
        Err(e) => {
            tracing::warn!(error = %e, "could not start the cluster janitor");
            None
        }
    }
}
