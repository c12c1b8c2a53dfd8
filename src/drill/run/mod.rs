//! Running a failover drill end to end: [`run_drill`] starts a local
//! cluster (a PostgreSQL primary with one streaming standby, or a Redis
//! master with replicas and optionally three Sentinels), puts a
//! [workload](super::workload) on it through a failover pool, injects a
//! [`Fault`] into the primary, lets the pool (or an orchestrator) fail
//! over, then checks what survived and returns a [`DrillReport`].
//!
//! # Sequence
//! 1. Start the cluster (Postgres: asynchronous or synchronous
//!    replication and the drill's table; Redis: `--replicas` replicas, and
//!    Sentinels for [`Promotion::Sentinel`]), connect the pool (sqlx,
//!    deadpool-postgres, `FailoverRedis` or deadpool-redis) with
//!    [`PromotionPolicy::Automatic`](crate::pool::PromotionPolicy::Automatic)
//!    or [`PromotionPolicy::External`](crate::pool::PromotionPolicy::External)
//!    (with Sentinel: the sentinels are its topology source), and
//!    subscribe to its events. For [`Fault::Blackhole`] the pool reaches
//!    every node through its own [`FaultProxy`](super::FaultProxy).
//! 2. Run the workload; at `fault_at` inject the fault into the primary
//!    (node 0). With external promotion the drill also plays the
//!    orchestrator: it checks the primary every 100 ms through the same
//!    network path as the application and promotes node 1 once the primary
//!    has been unreachable for `external_delay`. With Sentinel promotion
//!    it polls the sentinels to record when they switched. With
//!    [`Fault::RestartOld`] it restarts the old primary a second after
//!    another node was promoted, and a fresh pool started then writes a
//!    few records.
//! 3. At `duration` stop the workload, heal the fault (thaw, reopen the
//!    proxy, restart a crashed or stopped old Postgres primary, which comes
//!    back as a primary on the old timeline), wait a second for buffered
//!    work and the pool's probes, find the surviving primary (the pool's
//!    writer, else the primary of the highest timeline or replication
//!    offset), read every id from it and from every other primary, and
//!    compute the report.
//!
//! [`run_drill`] reads as that sequence and is written once for both
//! stores and both cluster kinds (local processes, containers:
//! [`DrillOptions::cluster`]): what differs is behind the `DrillCluster`
//! trait (the cluster, its faults, the orchestrator's promotion, the final
//! reads; `cluster/`, implemented once per store over the public
//! [`PgCluster`](crate::drill::PgCluster) and
//! [`RedisCluster`](crate::drill::RedisCluster) traits)
//! and [`DrillDriver`] (the workload's two operations). Each step is a
//! named function here or in a private submodule: the options and errors
//! ([`DrillOptions`], [`DrillError`]), how the pool reaches the nodes, the
//! progress loop ([`Progress`]), the pool's events as a timeline, the fault
//! injection and the simulated orchestrator, the Sentinel watcher, the
//! fresh pool, the final checks, the notes, and the output files
//! ([`write_outputs`]).

mod check;
mod cluster;
mod events;
mod fresh;
mod inject;
mod network;
mod notes;
mod options;
mod output;
mod progress;
mod sentinel;
mod state;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use self::check::{Times, build_report, read_final_data};
use self::cluster::{DrillCluster, PgNodes, RedisNodes};
use self::events::PoolEvents;
use self::fresh::{FreshRun, fresh_pool_writes};
use self::inject::{Injection, heal, inject, orchestrate};
use self::network::{Network, connect_pool};
pub(crate) use self::options::cluster_err;
pub use self::options::{DrillError, DrillOptions};
pub use self::output::write_outputs;
pub(crate) use self::output::write_report_files;
use self::progress::observe;
pub use self::progress::{Phase, Progress};
use self::sentinel::watch_sentinels;
use self::state::DrillState;
use super::report::DrillReport;
use super::scenario::{ClusterKind, DrillBackend};
pub use super::scenario::{DrillReadPreference, Fault, Promotion, Store};
use super::workload::{DrillDriver, Workload};
use super::{LocalPgCluster, LocalRedisCluster};
use crate::pool::FailoverPool;
use crate::postgres::{DeadpoolPostgres, SqlxPostgres};
use crate::redis::{DeadpoolRedis, RedisBackend};

/// Pause after healing the fault, before the final checks.
const SETTLE: Duration = Duration::from_secs(1);
/// How long the fresh pool of `restart-old` may still take after the
/// workload stopped.
const FRESH_POOL_GRACE: Duration = Duration::from_secs(15);

/// Runs one drill (see the [module docs](self)) and returns its report.
/// `progress` is called about four times a second while the workload
/// runs, when `opts.progress` is true.
///
/// # Errors
///
/// [`DrillError`] when the drill could not run: invalid options, no
/// server binaries, a cluster that does not start, a fault that cannot be
/// injected. Missed goals are in the report, not errors.
pub async fn run_drill(
    opts: &DrillOptions,
    progress: impl FnMut(&Progress),
) -> Result<DrillReport, DrillError> {
    opts.validate()?;
    match opts.backend {
        DrillBackend::Sqlx => run_pg::<SqlxPostgres>(opts, progress).await,
        DrillBackend::Deadpool => run_pg::<DeadpoolPostgres>(opts, progress).await,
        DrillBackend::Redis => run_redis::<RedisBackend>(opts, progress).await,
        DrillBackend::DeadpoolRedis => run_redis::<DeadpoolRedis>(opts, progress).await,
    }
}

/// [`run_drill`] through a Postgres pool of backend `B`, on the cluster
/// kind `opts` names.
async fn run_pg<B: DrillDriver>(
    opts: &DrillOptions,
    progress: impl FnMut(&Progress),
) -> Result<DrillReport, DrillError> {
    match opts.cluster {
        ClusterKind::Local => run_with::<B, PgNodes<LocalPgCluster>>(opts, progress).await,
        #[cfg(feature = "testcontainers")]
        ClusterKind::Containers => {
            run_with::<B, PgNodes<super::containers::ContainerPgCluster>>(opts, progress).await
        }
        #[cfg(not(feature = "testcontainers"))]
        ClusterKind::Containers => Err(no_containers()),
    }
}

/// [`run_drill`] through a Redis pool of backend `B`, on the cluster kind
/// `opts` names.
async fn run_redis<B: DrillDriver>(
    opts: &DrillOptions,
    progress: impl FnMut(&Progress),
) -> Result<DrillReport, DrillError> {
    match opts.cluster {
        ClusterKind::Local => run_with::<B, RedisNodes<LocalRedisCluster>>(opts, progress).await,
        #[cfg(feature = "testcontainers")]
        ClusterKind::Containers => {
            run_with::<B, RedisNodes<super::containers::ContainerRedisCluster>>(opts, progress)
                .await
        }
        #[cfg(not(feature = "testcontainers"))]
        ClusterKind::Containers => Err(no_containers()),
    }
}

#[cfg(not(feature = "testcontainers"))]
fn no_containers() -> DrillError {
    DrillError::InvalidOptions(
        "--cluster containers needs failover-pool built with the `testcontainers` feature".into(),
    )
}

/// [`run_drill`] through a pool of backend `B` on a cluster `C`.
async fn run_with<B: DrillDriver, C: DrillCluster>(
    opts: &DrillOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<DrillReport, DrillError> {
    let mut report_progress = |p: &Progress| {
        if opts.progress {
            progress(p)
        }
    };
    report_progress(&Progress::status(Phase::Starting, opts.duration));

    let cluster = C::start(opts).await?;
    let network = Arc::new(Network::open(&cluster, opts.fault).await?);
    let (pool, rx) = connect_pool::<B, C>(opts, &network, &cluster).await?;

    let state = Arc::new(DrillState::new(cluster));
    let mut pool_events = PoolEvents::new(rx, network.names.clone());
    let workload = Workload::start(pool.clone(), opts.workload_config(), state.t0);
    let mut injector = tokio::spawn(inject(Arc::clone(&state), injection(opts, &network)));
    let helpers = Helpers::start::<B, C>(opts, &state, &network);
    let injected = observe(
        opts.duration,
        &state,
        &workload,
        &pool,
        &mut pool_events,
        &mut injector,
        &mut report_progress,
    )
    .await;
    let stopped_at = state.t0.elapsed();

    report_progress(&Progress::status(Phase::Checking, opts.duration));
    let records = workload.stop().await;
    let fault_at = match injection_outcome(injected, injector, &state).await {
        Ok(at) => at,
        Err(e) => {
            helpers.stop(&state).await;
            pool.close().await;
            return Err(e);
        }
    };
    let fresh = helpers.stop(&state).await;
    let mut notes = heal(&state, opts.fault, network.proxies.first()).await;
    let writer = settle(&pool, &mut pool_events).await;
    notes.extend(pool_events.lagged_note());
    let writer = writer.and_then(|id| network.index_of(&state.cluster, &id));
    let data = read_final_data(&state.cluster, writer, &mut notes).await?;
    let times = Times {
        stopped_at,
        fault_at,
        fault_done: state.fault_done().unwrap_or(fault_at),
    };
    let events = state.timeline(pool_events.into_events());
    Ok(build_report(
        opts, &records, times, &data, events, notes, fresh,
    ))
}

/// The fault injection `opts` asks for.
fn injection(opts: &DrillOptions, network: &Network) -> Injection {
    Injection {
        fault: opts.fault,
        at: opts.fault_at,
        until: opts.duration,
        confirmation: opts.confirmation,
        proxy: network.proxies.first().cloned(),
    }
}

/// The drill's background tasks besides the injector, as the scenario
/// needs them: the simulated orchestrator (external promotion), the
/// Sentinel watcher (Sentinel promotion) and the fresh pool
/// (`restart-old`).
#[derive(Debug)]
struct Helpers {
    orchestrator: Option<JoinHandle<()>>,
    sentinel_watch: Option<JoinHandle<()>>,
    fresh_pool: Option<JoinHandle<FreshRun>>,
}

impl Helpers {
    /// Starts the tasks `opts` needs.
    fn start<B: DrillDriver, C: DrillCluster>(
        opts: &DrillOptions,
        state: &Arc<DrillState<C>>,
        network: &Arc<Network>,
    ) -> Helpers {
        let orchestrator = (opts.promotion == Promotion::External).then(|| {
            tokio::spawn(orchestrate(
                Arc::clone(state),
                network.urls[0].clone(),
                opts.external_delay,
            ))
        });
        let sentinel_watch = (opts.promotion == Promotion::Sentinel)
            .then(|| tokio::spawn(watch_sentinels(Arc::clone(state))));
        let fresh_pool = (opts.fault == Fault::RestartOld).then(|| {
            tokio::spawn(fresh_pool_writes::<B, C>(
                Arc::clone(state),
                opts.clone(),
                Arc::clone(network),
            ))
        });
        Helpers {
            orchestrator,
            sentinel_watch,
            fresh_pool,
        }
    }

    /// Stops the orchestrator and the Sentinel watcher; lets the fresh
    /// pool finish when the old primary was restarted (else stops it), and
    /// returns what it did.
    async fn stop<C: DrillCluster>(self, state: &DrillState<C>) -> Option<FreshRun> {
        for task in [self.orchestrator, self.sentinel_watch]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        let mut task = self.fresh_pool?;
        let Some(restarted_at) = state.restarted_at() else {
            task.abort();
            return None;
        };
        let run = tokio::time::timeout(FRESH_POOL_GRACE, &mut task).await;
        task.abort();
        Some(match run {
            Ok(Ok(run)) => run,
            Ok(Err(e)) => FreshRun::failed(restarted_at, format!("its task failed: {e}")),
            Err(_) => FreshRun::failed(
                restarted_at,
                format!("it did not finish within {FRESH_POOL_GRACE:?} of the workload's end"),
            ),
        })
    }
}

/// When the fault was injected, once the injection task has finished
/// (`injected`: its result, when [`observe`] already saw it finish).
async fn injection_outcome<C: DrillCluster>(
    injected: Option<Result<(), DrillError>>,
    injector: JoinHandle<Result<(), DrillError>>,
    state: &DrillState<C>,
) -> Result<Duration, DrillError> {
    match injected {
        Some(r) => r,
        None => injector
            .await
            .unwrap_or_else(|e| Err(DrillError::Task("fault injection".into(), e))),
    }?;
    state
        .fault_at()
        .ok_or_else(|| DrillError::NoPrimary("the fault was never injected".into()))
}

/// Gives buffered work and the pool's probes a moment after healing,
/// collects the last events and closes the pool. Returns the pool's
/// writer at the end, by node id.
async fn settle<B: DrillDriver>(pool: &FailoverPool<B>, events: &mut PoolEvents) -> Option<String> {
    tokio::time::sleep(SETTLE).await;
    let topology = pool.refresh().await;
    events.drain();
    pool.close().await;
    topology.writer_status().map(|n| n.id.to_string())
}
