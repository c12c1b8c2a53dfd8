//! [`ContainerPgCluster`]: a PostgreSQL primary and streaming standbys in
//! containers, behind [`PgCluster`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::ContainerSettings;
use super::fleet::{Fleet, Member, Spec, wait_until};
use super::scripts::{self, PgStart};
use crate::drill::pg::promote_at;
use crate::drill::process::free_ports;
use crate::drill::scenario::ClusterKind;
use crate::drill::{Cluster, ClusterError, PgCluster, PgClusterOptions, PgLsn};

/// A PostgreSQL primary with `standbys` streaming standbys, each in its
/// own container; the twin of [`LocalPgCluster`](crate::drill::LocalPgCluster)
/// behind [`PgCluster`]. See the [module docs](super) for the network
/// modes and the clean-up.
///
/// Of [`PgClusterOptions`] it uses `standbys`, `synchronous`,
/// `query_timeout`, `startup_timeout` (for each server to answer, on top
/// of [`ContainerSettings::startup_timeout`] for the container) and
/// `settings`; the binary and directory options are for local clusters.
#[derive(Debug)]
pub struct ContainerPgCluster {
    opts: PgClusterOptions,
    nodes: Vec<Member>,
    /// The node each standby streams from (`None` for a primary).
    upstream: Mutex<Vec<Option<usize>>>,
    primary: AtomicUsize,
    started_in: Duration,
    // Dropped after the members: the engine client.
    fleet: Fleet,
}

impl ContainerPgCluster {
    /// Starts the primary, then the standbys (cloned with
    /// `pg_basebackup`, in parallel), and waits until every standby
    /// streams.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Engine`] when the engine cannot be reached or a
    /// container cannot start (a missing image that cannot be pulled, a
    /// port taken), [`ClusterError::NotReady`] (with the container's
    /// output) when a server does not answer in time.
    pub async fn start(
        opts: PgClusterOptions,
        settings: ContainerSettings,
    ) -> Result<Self, ClusterError> {
        let began = Instant::now();
        let fleet = Fleet::new(settings).await?;
        let ports = free_ports(opts.standbys + 1)?;
        let primary = run_node(&fleet, &opts, &ports, 0, PgStart::Primary).await?;
        let mut cluster = ContainerPgCluster {
            upstream: Mutex::new(vec![None]),
            nodes: vec![primary],
            primary: AtomicUsize::new(0),
            started_in: Duration::ZERO,
            opts: opts.clone(),
            fleet,
        };
        cluster.wait_ready(0).await?;
        let host = cluster.fleet.peer_host("pg0");
        let standbys = (1..=opts.standbys).map(|i| {
            let start = PgStart::Standby {
                host: &host,
                port: ports[0],
            };
            run_node(&cluster.fleet, &opts, &ports, i, start)
        });
        let standbys = futures_util::future::join_all(standbys).await;
        for standby in standbys {
            cluster.nodes.push(standby?);
            cluster
                .upstream
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .push(Some(0));
        }
        let waits = (1..cluster.nodes.len()).map(|i| cluster.wait_streaming(i));
        futures_util::future::try_join_all(waits).await?;
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

    /// Node `index`, or [`ClusterError::NoSuchNode`].
    fn member(&self, index: usize) -> Result<&Member, ClusterError> {
        self.nodes.get(index).ok_or(ClusterError::NoSuchNode {
            index,
            count: self.nodes.len(),
        })
    }

    /// Node `index`, panicking like slice indexing.
    fn at(&self, index: usize) -> &Member {
        let count = self.nodes.len();
        self.nodes
            .get(index)
            .unwrap_or_else(|| panic!("no node {index}: the cluster has {count} nodes"))
    }

    /// Waits until node `index` answers `SELECT 1`.
    async fn wait_ready(&self, index: usize) -> Result<(), ClusterError> {
        let m = self.member(index)?;
        wait_until(
            m,
            "it to accept connections",
            self.opts.startup_timeout,
            || async move { self.exec(index, "SELECT 1").await.map(|()| true) },
        )
        .await
    }

    /// Waits until standby `index` is in recovery and streams WAL.
    async fn wait_streaming(&self, index: usize) -> Result<(), ClusterError> {
        let m = self.member(index)?;
        let sql = "SELECT pg_is_in_recovery() AND EXISTS \
                   (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')";
        wait_until(
            m,
            "it to stream from its primary",
            self.opts.startup_timeout,
            || async move { self.query_scalar::<bool>(index, sql).await },
        )
        .await
    }
}

/// Starts the container of node `i` on `ports[i]`.
async fn run_node(
    fleet: &Fleet,
    opts: &PgClusterOptions,
    ports: &[u16],
    i: usize,
    start: PgStart<'_>,
) -> Result<Member, ClusterError> {
    let name = format!("pg{i}");
    let script = scripts::postgres(
        &name,
        fleet.bind_addr(),
        ports[i],
        &start,
        opts.synchronous,
        &opts.settings,
    );
    let image = fleet.settings().pg_image.clone();
    let spec = Spec {
        name: &name,
        image: &image,
        user: "postgres",
        script,
        port: ports[i],
    };
    fleet.run(spec).await
}

impl Cluster for ContainerPgCluster {
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

    /// `SIGINT` to the postmaster (fast shutdown).
    async fn stop_graceful(&self, index: usize) -> Result<(), ClusterError> {
        let m = self.member(index)?;
        self.fleet
            .stop(m, "SIGINT", self.opts.startup_timeout)
            .await
    }

    async fn restart(&self, index: usize) -> Result<(), ClusterError> {
        self.fleet.restart(self.member(index)?).await?;
        self.wait_ready(index).await
    }

    /// `SELECT pg_promote(true, 60)`, then a `CHECKPOINT` (so the control
    /// file shows the new timeline); the cluster treats it as the primary
    /// from then on.
    async fn promote(&self, index: usize) -> Result<(), ClusterError> {
        promote_at(&self.name(index), self.port(index), self.opts.query_timeout).await?;
        self.upstream.lock().unwrap_or_else(|e| e.into_inner())[index] = None;
        self.primary.store(index, Ordering::SeqCst);
        Ok(())
    }
}

impl PgCluster for ContainerPgCluster {
    fn primary_index(&self) -> usize {
        self.primary.load(Ordering::SeqCst)
    }

    async fn wait_caught_up(&self) -> Result<(), ClusterError> {
        let primary = self.primary_index();
        let lsn: PgLsn = self
            .query_scalar(
                primary,
                "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                 ELSE pg_current_wal_lsn() END",
            )
            .await?;
        let followers: Vec<usize> = {
            let upstream = self.upstream.lock().unwrap_or_else(|e| e.into_inner());
            (0..self.nodes.len())
                .filter(|&i| upstream[i] == Some(primary) && self.is_running(i))
                .collect()
        };
        let sql = format!("SELECT coalesce(pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn, false)");
        let waits = followers.into_iter().map(|i| {
            let sql = sql.as_str();
            let what = format!("replay of {lsn}");
            async move {
                wait_until(self.at(i), &what, self.opts.startup_timeout, || {
                    self.query_scalar::<bool>(i, sql)
                })
                .await
            }
        });
        futures_util::future::try_join_all(waits).await?;
        Ok(())
    }
}
