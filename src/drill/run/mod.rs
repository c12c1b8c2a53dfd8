//! Running a failover drill end to end: [`run_drill`] starts a local
//! primary with one streaming standby ([`LocalPgCluster`]), puts a
//! [workload](super::workload) on it through a failover pool, injects a
//! [`Fault`] into the primary, lets the pool (or a simulated orchestrator)
//! fail over, then checks what survived and returns a [`DrillReport`].
//!
//! # Sequence
//! 1. Start the cluster (asynchronous or synchronous replication), create
//!    the table, connect the pool (sqlx or deadpool-postgres) with
//!    [`PromotionPolicy::Automatic`](crate::pool::PromotionPolicy::Automatic)
//!    or [`PromotionPolicy::External`](crate::pool::PromotionPolicy::External),
//!    and subscribe to its events. For [`Fault::Blackhole`] the pool
//!    reaches every node through its own [`FaultProxy`].
//! 2. Run the workload; at `fault_at` inject the fault into the primary
//!    (`pg0`). With external promotion the drill also plays the
//!    orchestrator: it checks the primary every 100 ms through the same
//!    network path as the application and runs `pg_promote()` on the
//!    standby once the primary has been unreachable for `external_delay`.
//! 3. At `duration` stop the workload, heal the fault (thaw, reopen the
//!    proxy, restart a crashed or stopped old primary, which comes back as
//!    a primary on the old timeline), wait a second for buffered work and
//!    the pool's probes, find the surviving primary (the pool's writer,
//!    else the node out of recovery on the highest timeline), read every id
//!    from it and from every other primary, and compute the report.
//!
//! [`run_drill`] reads as that sequence; each step is a named function
//! here or in a private submodule: the options and errors
//! ([`DrillOptions`], [`DrillError`]), the progress loop ([`Progress`]),
//! the pool's events as a timeline, the fault injection and the simulated
//! orchestrator, the final checks, and the output files
//! ([`write_outputs`]).

mod check;
mod events;
mod inject;
mod options;
mod output;
mod progress;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::check::{Times, build_report, read_final_data};
use self::events::{Names, PoolEvents};
use self::inject::{heal, inject, orchestrate};
use self::options::cluster_err;
pub use self::options::{DrillError, DrillOptions};
pub use self::output::write_outputs;
use self::progress::observe;
pub use self::progress::{Phase, Progress};
use self::state::DrillState;
use super::proxy::FaultProxy;
use super::report::DrillReport;
use super::scenario::DrillBackend;
pub use super::scenario::{DrillReadPreference, Fault, Promotion};
use super::workload::{DrillDriver, TABLE_SQL, Workload, writer_id};
use super::{LocalPgCluster, PgClusterOptions};
use crate::core::events::Event;
use crate::pool::FailoverPool;
use crate::postgres::{DeadpoolPostgres, SqlxPostgres};

/// Pause after healing the fault, before the final checks.
const SETTLE: Duration = Duration::from_secs(1);
/// How long the pool may take to find the writer after connecting.
const WRITER_WAIT: Duration = Duration::from_secs(10);

/// Runs one drill (see the [module docs](self)) and returns its report.
/// `progress` is called about four times a second while the workload
/// runs, when `opts.progress` is true.
///
/// # Errors
///
/// [`DrillError`] when the drill could not run: invalid options, no
/// PostgreSQL binaries, a cluster that does not start, a fault that cannot
/// be injected. Missed goals are in the report, not errors.
pub async fn run_drill(
    opts: &DrillOptions,
    progress: impl FnMut(&Progress),
) -> Result<DrillReport, DrillError> {
    opts.validate()?;
    match opts.backend {
        DrillBackend::Sqlx => run_with::<SqlxPostgres>(opts, progress).await,
        DrillBackend::Deadpool => run_with::<DeadpoolPostgres>(opts, progress).await,
    }
}

/// [`run_drill`] through a pool of backend `B`.
async fn run_with<B: DrillDriver>(
    opts: &DrillOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<DrillReport, DrillError> {
    let mut report_progress = |p: &Progress| {
        if opts.progress {
            progress(p)
        }
    };
    report_progress(&Progress::status(Phase::Starting, opts.duration));

    let cluster = start_cluster(opts.sync).await?;
    let network = Network::open(&cluster, opts.fault).await?;
    let (pool, rx) = connect_pool::<B>(opts, &network.urls).await?;

    let state = Arc::new(DrillState::new(cluster));
    let mut pool_events = PoolEvents::new(rx, network.names);
    let workload = Workload::start(pool.clone(), opts.workload_config(), state.t0);
    let mut injector = tokio::spawn(inject(
        Arc::clone(&state),
        network.proxies.first().cloned(),
        opts.fault,
        opts.fault_at,
        opts.confirmation,
    ));
    let orchestrator = (opts.promotion == Promotion::External).then(|| {
        tokio::spawn(orchestrate(
            Arc::clone(&state),
            network.urls[0].clone(),
            opts.external_delay,
        ))
    });
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
    if let Some(o) = &orchestrator {
        o.abort();
    }
    let fault_at = match injection_outcome(injected, injector, &state).await {
        Ok(at) => at,
        Err(e) => {
            pool.close().await;
            return Err(e);
        }
    };
    let mut notes = heal(&state, opts.fault, network.proxies.first()).await;
    let writer = settle(&pool, &mut pool_events).await;
    notes.extend(pool_events.lagged_note());
    let data = read_final_data(&state.cluster, writer, &mut notes).await?;
    let times = Times {
        stopped_at,
        fault_at,
        fault_done: state.fault_done().unwrap_or(fault_at),
    };
    let events = state.timeline(pool_events.into_events());
    Ok(build_report(opts, &records, times, &data, events, notes))
}

/// Starts a primary with one standby, creates the drill's table and waits
/// until the standby has it.
async fn start_cluster(sync: bool) -> Result<LocalPgCluster, DrillError> {
    let cluster = LocalPgCluster::start(PgClusterOptions::new().standbys(1).synchronous(sync))
        .await
        .map_err(cluster_err("could not start the PostgreSQL cluster"))?;
    cluster
        .exec(0, TABLE_SQL)
        .await
        .map_err(cluster_err("could not create the drill table"))?;
    cluster
        .wait_caught_up()
        .await
        .map_err(cluster_err("the standby did not catch up"))?;
    Ok(cluster)
}

/// How the pool reaches the nodes: directly, or (for
/// [`Fault::Blackhole`]) each through its own [`FaultProxy`].
#[derive(Debug)]
struct Network {
    /// Node names by server and proxy address.
    names: Names,
    /// The proxies, by node index (empty without a proxy).
    proxies: Vec<Arc<FaultProxy>>,
    /// The URLs the pool connects to, by node index.
    urls: Vec<String>,
}

impl Network {
    /// Starts the proxies `fault` needs in front of `cluster`'s nodes.
    async fn open(cluster: &LocalPgCluster, fault: Fault) -> Result<Network, DrillError> {
        let mut names = Names::default();
        let mut proxies = Vec::new();
        for n in &cluster.nodes() {
            names.add(n.port, &n.name);
            if fault == Fault::Blackhole {
                let target = SocketAddr::from(([127, 0, 0, 1], n.port));
                let proxy =
                    FaultProxy::start(target)
                        .await
                        .map_err(|source| DrillError::Proxy {
                            node: n.name.clone(),
                            source,
                        })?;
                names.add(proxy.port(), &n.name);
                proxies.push(Arc::new(proxy));
            }
        }
        let urls: Vec<String> = if proxies.is_empty() {
            cluster.urls()
        } else {
            proxies
                .iter()
                .map(|p| format!("postgres://postgres@127.0.0.1:{}/postgres", p.port()))
                .collect()
        };
        Ok(Network {
            names,
            proxies,
            urls,
        })
    }
}

/// Connects the failover pool to `urls`, subscribes to its events and
/// waits until it has found the writer.
async fn connect_pool<B: DrillDriver>(
    opts: &DrillOptions,
    urls: &[String],
) -> Result<(FailoverPool<B>, broadcast::Receiver<Event>), DrillError> {
    let pool = FailoverPool::<B>::connect_with(urls, opts.pool_config())
        .await
        .map_err(DrillError::Pool)?;
    let rx = pool.subscribe();
    let writer_deadline = Instant::now() + WRITER_WAIT;
    while writer_id(&pool).is_none() {
        if Instant::now() >= writer_deadline {
            pool.close().await;
            return Err(DrillError::NoPrimary(
                "the pool found no writer within 10s of connecting".into(),
            ));
        }
        pool.refresh().await;
    }
    Ok((pool, rx))
}

/// When the fault was injected, once the injection task has finished
/// (`injected`: its result, when [`observe`] already saw it finish).
async fn injection_outcome(
    injected: Option<Result<(), DrillError>>,
    injector: JoinHandle<Result<(), DrillError>>,
    state: &DrillState,
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
/// writer at the end, by node index.
async fn settle<B: DrillDriver>(pool: &FailoverPool<B>, events: &mut PoolEvents) -> Option<usize> {
    tokio::time::sleep(SETTLE).await;
    let topology = pool.refresh().await;
    events.drain();
    pool.close().await;
    topology.writer
}
