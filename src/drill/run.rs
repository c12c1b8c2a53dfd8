//! Running a failover drill end to end: [`run_drill`] starts a local
//! primary with one streaming standby ([`LocalPgCluster`]), puts a
//! [workload](super::workload) on it through a failover pool, injects a
//! [`Fault`] into the primary, lets the pool (or a simulated orchestrator)
//! fail over, then checks what survived and returns a [`DrillReport`].
//!
//! # Sequence
//! 1. Start the cluster (asynchronous or synchronous replication), create
//!    the table, connect the pool (sqlx or deadpool-postgres) with
//!    [`PromotionPolicy::Automatic`] or [`PromotionPolicy::External`], and
//!    subscribe to its events. For [`Fault::Blackhole`] the pool reaches
//!    every node through its own [`FaultProxy`].
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

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio::time::Instant;

use super::proxy::{FaultProxy, ProxyMode};
use super::report::{DrillReport, ReportInput, TimelineEvent};
use super::scenario::DrillBackend;
pub use super::scenario::{DrillReadPreference, Fault, Promotion};
use super::svg::render_svg;
use super::workload::{ALL_IDS_SQL, DrillPool, TABLE_SQL, Workload, WorkloadConfig};
use super::{ClusterError, LocalPgCluster, PgClusterOptions};
use crate::core::events::{Event, EventKind};
use crate::pool::{PoolConfig, PromotionPolicy};

/// Largest replication lag a standby may have to be promoted automatically.
const MAX_LAG_BYTES: u64 = 64 * 1024 * 1024;
/// How often the progress callback is called.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How often the simulated orchestrator checks the primary.
const ORCHESTRATOR_EVERY: Duration = Duration::from_millis(100);
/// Time limit of one orchestrator check.
const ORCHESTRATOR_CHECK_TIMEOUT: Duration = Duration::from_millis(300);
/// Pause after healing the fault, before the final checks.
const SETTLE: Duration = Duration::from_secs(1);
/// Most worker tasks a drill may run (each may hold a connection per node;
/// the drill's servers allow 60).
const MAX_WORKERS: usize = 48;

/// Settings of a drill. `Default` gives the documented defaults; check
/// them with [`validate`](Self::validate) ([`run_drill`] does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DrillOptions {
    /// The fault (default crash).
    pub fault: Fault,
    /// Who promotes (default automatic).
    pub promotion: Promotion,
    /// Synchronous replication (default false).
    pub sync: bool,
    /// How long the workload runs (default 20 s).
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// When the fault is injected, since the workload's start (default 8 s).
    #[serde(with = "humantime_serde")]
    pub fault_at: Duration,
    /// Writer tasks (default 8, at least 1).
    pub writers: usize,
    /// Reader tasks (default 8).
    pub readers: usize,
    /// The client library (default sqlx).
    pub backend: DrillBackend,
    /// The readers' read preference (default prefer-replica).
    pub read_preference: DrillReadPreference,
    /// The automatic-promotion confirmation window (default 300 ms).
    #[serde(with = "humantime_serde")]
    pub confirmation: Duration,
    /// How long the simulated orchestrator waits with the primary
    /// unreachable before promoting (external promotion; default 1 s).
    #[serde(with = "humantime_serde")]
    pub external_delay: Duration,
    /// The pool's probe interval (default 100 ms).
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// The pool's probe timeout (default 300 ms).
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
    /// The pool's connect timeout per node (default 500 ms).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Client-side limit of one operation; also the pool's acquire timeout
    /// (default 2 s).
    #[serde(with = "humantime_serde")]
    pub op_timeout: Duration,
    /// Where to write the JSON report ([`write_outputs`]).
    pub json: Option<PathBuf>,
    /// Where to write the SVG chart ([`write_outputs`]).
    pub svg: Option<PathBuf>,
    /// Whether [`run_drill`] calls its progress callback.
    pub progress: bool,
}

impl Default for DrillOptions {
    fn default() -> Self {
        DrillOptions {
            fault: Fault::Crash,
            promotion: Promotion::Automatic,
            sync: false,
            duration: Duration::from_secs(20),
            fault_at: Duration::from_secs(8),
            writers: 8,
            readers: 8,
            backend: DrillBackend::Sqlx,
            read_preference: DrillReadPreference::PreferReplica,
            confirmation: Duration::from_millis(300),
            external_delay: Duration::from_secs(1),
            probe_interval: Duration::from_millis(100),
            probe_timeout: Duration::from_millis(300),
            connect_timeout: Duration::from_millis(500),
            op_timeout: Duration::from_secs(2),
            json: None,
            svg: None,
            progress: true,
        }
    }
}

impl DrillOptions {
    /// Checks the settings; the error names the offending option.
    ///
    /// # Errors
    ///
    /// [`DrillError::InvalidOptions`].
    pub fn validate(&self) -> Result<(), DrillError> {
        let bad = |m: String| Err(DrillError::InvalidOptions(m));
        let d = |d: Duration| humantime_serde::re::humantime::format_duration(d).to_string();
        if self.duration.is_zero() {
            return bad("--duration must be > 0".into());
        }
        if self.duration > Duration::from_secs(3600) {
            return bad(format!(
                "--duration ({}) must be at most 1h",
                d(self.duration)
            ));
        }
        if self.fault_at.is_zero() {
            return bad("--fault-at must be > 0 (the workload needs a baseline)".into());
        }
        if self.fault_at >= self.duration {
            return bad(format!(
                "--fault-at ({}) must be less than --duration ({})",
                d(self.fault_at),
                d(self.duration)
            ));
        }
        if self.writers == 0 {
            return bad("--writers must be at least 1".into());
        }
        if self.writers + self.readers > MAX_WORKERS {
            return bad(format!(
                "--writers + --readers ({}) must be at most {MAX_WORKERS}",
                self.writers + self.readers
            ));
        }
        for (name, value) in [
            ("--confirmation", self.confirmation),
            ("--probe-interval", self.probe_interval),
            ("--probe-timeout", self.probe_timeout),
            ("--connect-timeout", self.connect_timeout),
            ("--op-timeout", self.op_timeout),
        ] {
            if value.is_zero() {
                return bad(format!("{name} must be > 0"));
            }
        }
        Ok(())
    }

    fn pool_config(&self) -> PoolConfig {
        PoolConfig {
            name: "drill".into(),
            probe_interval: self.probe_interval,
            probe_timeout: self.probe_timeout,
            acquire_timeout: self.op_timeout,
            connect_timeout: self.connect_timeout,
            promotion: match self.promotion {
                Promotion::Automatic => PromotionPolicy::Automatic {
                    confirmation: self.confirmation,
                    max_lag_bytes: MAX_LAG_BYTES,
                },
                Promotion::External => PromotionPolicy::External,
            },
            read_preference: self.read_preference.into(),
            max_connections: (self.writers + self.readers) as u32,
            ..PoolConfig::default()
        }
    }
}

/// Errors that keep a drill from running (a drill that ran but missed a
/// goal is not an error: see [`DrillReport::goals`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DrillError {
    /// The options are inconsistent.
    #[error("invalid drill options: {0}")]
    InvalidOptions(String),
    /// Starting, controlling or querying the local cluster failed.
    #[error("{context}")]
    Cluster {
        /// What the drill was doing.
        context: String,
        /// The cluster's error.
        #[source]
        source: Box<ClusterError>,
    },
    /// The failover pool could not be created.
    #[error("could not create the failover pool")]
    Pool(#[source] crate::Error),
    /// A fault proxy could not be started.
    #[error("could not start the fault proxy for {node}")]
    Proxy {
        /// The node the proxy was for.
        node: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The pool found no primary to run the workload against, or none was
    /// left at the end.
    #[error("no primary: {0}")]
    NoPrimary(String),
    /// A drill task panicked.
    #[error("the drill's {0} task failed")]
    Task(String, #[source] tokio::task::JoinError),
    /// Writing an output file failed.
    #[error("could not write {}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn cluster_err(context: impl Into<String>) -> impl FnOnce(ClusterError) -> DrillError {
    let context = context.into();
    move |source| DrillError::Cluster {
        context,
        source: Box::new(source),
    }
}

/// Where a drill is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Starting the cluster and the pool.
    Starting,
    /// The workload runs; no fault yet.
    BeforeFault,
    /// The fault was injected; no write started since has been acknowledged.
    FailingOver,
    /// Writes are acknowledged again after the fault.
    AfterFault,
    /// The workload stopped; healing the fault and checking the data.
    Checking,
}

impl Phase {
    /// A short description.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::BeforeFault => "before fault",
            Phase::FailingOver => "failing over",
            Phase::AfterFault => "after fault",
            Phase::Checking => "checking",
        }
    }
}

/// A progress snapshot, given to [`run_drill`]'s callback about four
/// times a second while the workload runs (and once when starting and
/// when checking).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// Time since the workload started.
    pub elapsed: Duration,
    /// The workload's planned duration.
    pub duration: Duration,
    /// Successful operations (writes and reads) per second over the last second.
    pub ops_per_sec: f64,
    /// Acknowledged writes so far.
    pub ok_writes: u64,
    /// Successful reads so far.
    pub ok_reads: u64,
    /// Failed operations so far.
    pub errors: u64,
    /// The pool's current writer, by node name.
    pub writer: Option<String>,
    /// Where the drill is.
    pub phase: Phase,
}

impl Progress {
    fn status(phase: Phase, duration: Duration) -> Progress {
        Progress {
            elapsed: Duration::ZERO,
            duration,
            ops_per_sec: 0.0,
            ok_writes: 0,
            ok_reads: 0,
            errors: 0,
            writer: None,
            phase,
        }
    }

    /// One line for a terminal: elapsed, ops/s, errors, writer, phase.
    pub fn line(&self) -> String {
        match self.phase {
            Phase::Starting => "starting the cluster and the pool ...".to_owned(),
            Phase::Checking => {
                "workload stopped; healing the fault and checking the data ...".to_owned()
            }
            _ => format!(
                "{:>5.1}/{:.0}s  {:>6.0} ops/s  {:>6} errors  writer {:<4}  {}",
                self.elapsed.as_secs_f64(),
                self.duration.as_secs_f64(),
                self.ops_per_sec,
                self.errors,
                self.writer.as_deref().unwrap_or("none"),
                self.phase.as_str()
            ),
        }
    }
}

/// Node ids (`127.0.0.1:<port>`, proxies included) to names (`pg0`, ...).
#[derive(Debug, Clone, Default)]
struct Names {
    /// (id, name), longest id first.
    ids: Vec<(String, String)>,
}

impl Names {
    fn add(&mut self, port: u16, name: &str) {
        self.ids
            .push((format!("127.0.0.1:{port}"), name.to_owned()));
        self.ids
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    }

    fn name(&self, id: &str) -> String {
        self.ids
            .iter()
            .find(|(i, _)| i == id)
            .map_or_else(|| id.to_owned(), |(_, n)| n.clone())
    }

    fn rewrite(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (id, name) in &self.ids {
            text = text.replace(id.as_str(), name);
        }
        text
    }
}

/// State shared by the drill's tasks.
#[derive(Debug)]
struct Ctx {
    cluster: LocalPgCluster,
    t0: Instant,
    events: Mutex<Vec<TimelineEvent>>,
    fault_at: Mutex<Option<Duration>>,
    fault_done: Mutex<Option<Duration>>,
}

impl Ctx {
    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mark(&self, kind: &str, detail: String) {
        Self::lock(&self.events).push(TimelineEvent {
            t_ms: self.t0.elapsed().as_millis() as u64,
            kind: kind.to_owned(),
            detail,
            node: Some("pg0".to_owned()),
            source: "drill".to_owned(),
        });
    }

    fn fault_at(&self) -> Option<Duration> {
        *Self::lock(&self.fault_at)
    }

    /// Records the fault as happening at `at` (drill time taken just before
    /// the signal or mode change, so that a pool reacting while the fault
    /// is still being injected is not measured as reacting before it).
    fn set_fault(&self, at: Duration, kind: &str, detail: String) {
        *Self::lock(&self.fault_at) = Some(at);
        *Self::lock(&self.fault_done) = Some(self.t0.elapsed());
        Self::lock(&self.events).push(TimelineEvent {
            t_ms: at.as_millis() as u64,
            kind: kind.to_owned(),
            detail,
            node: Some("pg0".to_owned()),
            source: "drill".to_owned(),
        });
    }
}

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
    mut progress: impl FnMut(&Progress),
) -> Result<DrillReport, DrillError> {
    opts.validate()?;
    let mut report_progress = |p: &Progress| {
        if opts.progress {
            progress(p)
        }
    };
    report_progress(&Progress::status(Phase::Starting, opts.duration));

    let cluster = LocalPgCluster::start(PgClusterOptions::new().standbys(1).synchronous(opts.sync))
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

    let nodes = cluster.nodes();
    let mut names = Names::default();
    let mut proxies = Vec::new();
    for n in &nodes {
        names.add(n.port, &n.name);
        if opts.fault == Fault::Blackhole {
            let target = SocketAddr::from(([127, 0, 0, 1], n.port));
            let proxy = FaultProxy::start(target)
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
    let url_refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let pool = DrillPool::connect(opts.backend, &url_refs, opts.pool_config())
        .await
        .map_err(DrillError::Pool)?;
    let mut rx = pool.subscribe();
    let writer_deadline = Instant::now() + Duration::from_secs(10);
    while pool.writer_id().is_none() {
        if Instant::now() >= writer_deadline {
            pool.close().await;
            return Err(DrillError::NoPrimary(
                "the pool found no writer within 10s of connecting".into(),
            ));
        }
        pool.refresh().await;
    }

    let t0 = Instant::now();
    let t0_sys = SystemTime::now();
    let ctx = Arc::new(Ctx {
        cluster,
        t0,
        events: Mutex::new(Vec::new()),
        fault_at: Mutex::new(None),
        fault_done: Mutex::new(None),
    });
    let mut pool_events = Vec::new();
    let mut lagged = 0u64;
    let workload = Workload::start(
        pool.clone(),
        WorkloadConfig {
            writers: opts.writers,
            readers: opts.readers,
            op_timeout: opts.op_timeout,
        },
        t0,
    );
    let mut injector = tokio::spawn(inject(
        Arc::clone(&ctx),
        proxies.first().cloned(),
        opts.fault,
        opts.fault_at,
        opts.confirmation,
    ));
    let orchestrator = (opts.promotion == Promotion::External).then(|| {
        tokio::spawn(orchestrate(
            Arc::clone(&ctx),
            urls[0].clone(),
            opts.external_delay,
        ))
    });

    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut history: VecDeque<(Duration, u64)> = VecDeque::new();
    let mut injector_result: Option<Result<(), DrillError>> = None;
    let end = t0 + opts.duration;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(end) => {}
            r = &mut injector, if injector_result.is_none() => {
                let r = r.unwrap_or_else(|e| Err(DrillError::Task("fault injection".into(), e)));
                let failed = r.is_err();
                injector_result = Some(r);
                if failed {
                    break;
                }
            }
        }
        drain(&mut rx, &mut pool_events, &mut lagged, t0_sys, &names);
        let elapsed = t0.elapsed();
        if elapsed >= opts.duration {
            break;
        }
        let c = workload.counters();
        let ok = c.ok_writes + c.ok_reads;
        history.push_back((elapsed, ok));
        while history.len() > 1 && elapsed - history[0].0 > Duration::from_secs(1) {
            history.pop_front();
        }
        let (t_old, ok_old) = history[0];
        let span = (elapsed - t_old).as_secs_f64();
        let phase = match ctx.fault_at() {
            None => Phase::BeforeFault,
            Some(f) if workload.last_acked_start().is_some_and(|a| a >= f) => Phase::AfterFault,
            Some(_) => Phase::FailingOver,
        };
        report_progress(&Progress {
            elapsed,
            duration: opts.duration,
            ops_per_sec: if span > 0.0 {
                (ok - ok_old) as f64 / span
            } else {
                0.0
            },
            ok_writes: c.ok_writes,
            ok_reads: c.ok_reads,
            errors: c.errors,
            writer: pool.writer_id().map(|id| names.name(&id)),
            phase,
        });
    }
    let stopped_at = t0.elapsed();
    report_progress(&Progress::status(Phase::Checking, opts.duration));
    let records = workload.stop().await;
    if let Some(o) = &orchestrator {
        o.abort();
    }
    let injector_result = match injector_result {
        Some(r) => r,
        None => injector
            .await
            .unwrap_or_else(|e| Err(DrillError::Task("fault injection".into(), e))),
    };
    if let Err(e) = injector_result {
        pool.close().await;
        return Err(e);
    }
    let Some(fault_at) = ctx.fault_at() else {
        pool.close().await;
        return Err(DrillError::NoPrimary("the fault was never injected".into()));
    };

    // Heal, so that the old primary can be read.
    let mut notes = Vec::new();
    let cluster = &ctx.cluster;
    match opts.fault {
        Fault::Freeze => match cluster.thaw(0) {
            Ok(()) => ctx.mark("Healed", "pg0 thawed (SIGCONT)".into()),
            Err(e) => notes.push(format!("could not thaw pg0: {}", crate::error::chain(&e))),
        },
        Fault::Blackhole => {
            if let Some(p) = proxies.first() {
                p.set_mode(ProxyMode::Pass);
                ctx.mark(
                    "Healed",
                    "pg0's proxy passes traffic again (blackholed connections are reset)".into(),
                );
            }
        }
        Fault::Crash | Fault::Graceful | Fault::Flap => {}
    }
    if !cluster.node(0).running {
        match cluster.restart(0).await {
            Ok(()) => ctx.mark(
                "Restarted",
                "pg0 restarted after the workload, to count the writes it got".into(),
            ),
            Err(e) => notes.push(format!(
                "could not restart pg0 to read its rows: {}",
                crate::error::chain(&e)
            )),
        }
    }
    tokio::time::sleep(SETTLE).await;
    let topology = pool.refresh().await;
    drain(&mut rx, &mut pool_events, &mut lagged, t0_sys, &names);
    pool.close().await;
    if lagged > 0 {
        notes.push(format!(
            "{lagged} pool events were missed (event buffer overflow)"
        ));
    }

    // The survivor: the pool's writer, else the highest-timeline primary.
    let survivor = match topology.writer {
        Some(i) => i,
        None => {
            let mut best: Option<(i64, usize)> = None;
            for n in cluster.nodes() {
                if !n.running || n.frozen {
                    continue;
                }
                if let Ok(false) = cluster.is_in_recovery(n.index).await
                    && let Ok(tl) = cluster.timeline(n.index).await
                    && best.is_none_or(|(b, _)| tl > b)
                {
                    best = Some((tl, n.index));
                }
            }
            match best {
                Some((_, i)) => {
                    notes.push(format!(
                        "the pool had no writer at the end; checked {} (highest timeline)",
                        cluster.node(i).name
                    ));
                    i
                }
                None => {
                    return Err(DrillError::NoPrimary(
                        "no node is a primary at the end of the drill".into(),
                    ));
                }
            }
        }
    };
    let survivor_name = cluster.node(survivor).name;
    let survivor_ids = ids_on(cluster, survivor).await?;
    let mut other_ids = BTreeSet::new();
    for n in cluster.nodes() {
        if n.index == survivor || !n.running || n.frozen {
            continue;
        }
        match cluster.is_in_recovery(n.index).await {
            Ok(true) => {}
            Ok(false) => match ids_on(cluster, n.index).await {
                Ok(ids) => other_ids.extend(ids),
                Err(e) => notes.push(crate::error::chain(&e)),
            },
            Err(e) => notes.push(format!(
                "could not ask {} for its role: {}",
                n.name,
                crate::error::chain(&e)
            )),
        }
    }

    let mut events = std::mem::take(&mut *Ctx::lock(&ctx.events));
    events.extend(pool_events);
    events.sort_by_key(|e| e.t_ms);
    let mut report = DrillReport::from_records(ReportInput {
        fault: opts.fault,
        promotion: opts.promotion,
        backend: opts.backend,
        sync: opts.sync,
        read_preference: opts.read_preference.as_str().to_owned(),
        writers: opts.writers,
        readers: opts.readers,
        duration: stopped_at,
        fault_at,
        fault_done: (*Ctx::lock(&ctx.fault_done)).unwrap_or(fault_at),
        writes: &records.writes,
        reads: &records.reads,
        events,
        old_primary: "pg0".to_owned(),
        survivor: survivor_name,
        survivor_ids: &survivor_ids,
        other_primary_ids: &other_ids,
        notes,
    });
    explain(&mut report, opts);
    Ok(report)
}

/// Adds the notes that help reading a report.
fn explain(report: &mut DrillReport, opts: &DrillOptions) {
    let mut notes = Vec::new();
    if opts.fault == Fault::Flap {
        notes.push(format!(
            "flap: pg0 was killed and restarted after {} ms (half the {} ms confirmation window); {}",
            opts.confirmation.as_millis() / 2,
            opts.confirmation.as_millis(),
            if report.promoted {
                "the pool promoted anyway (the restart took longer than the window)"
            } else {
                "no promotion happened, as intended"
            }
        ));
    }
    if report.lost_acked_writes > 0 && !report.sync {
        notes.push(
            "asynchronous replication: writes acknowledged by the old primary but not yet \
             replicated are lost in a failover; run with --sync to require none"
                .into(),
        );
    }
    if report.stale_reads > 0 && opts.read_preference != DrillReadPreference::Primary {
        notes.push(format!(
            "stale reads are expected with {} (replicas lag a little behind the writer)",
            opts.read_preference.as_str()
        ));
    }
    if report.writes_to_fenced_node > report.writes_to_fenced_node_after_failover {
        notes.push(format!(
            "{} writes started after the fault but before the pool switched writers reached \
             the old primary (sent to it before the fault was detected; the callers got errors)",
            report.writes_to_fenced_node - report.writes_to_fenced_node_after_failover
        ));
    }
    if report.write_gap_ms.is_none() {
        notes.push("no write was acknowledged after the fault".into());
    }
    report.notes.extend(notes);
}

/// Writes the JSON report and the SVG chart where `opts` asks for them.
///
/// # Errors
///
/// [`DrillError::Output`].
pub fn write_outputs(report: &DrillReport, opts: &DrillOptions) -> Result<(), DrillError> {
    let write = |path: &PathBuf, text: String| {
        std::fs::write(path, text).map_err(|source| DrillError::Output {
            path: path.clone(),
            source,
        })
    };
    if let Some(path) = &opts.json {
        let json = serde_json::to_string_pretty(report).map_err(|e| DrillError::Output {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write(path, json + "\n")?;
    }
    if let Some(path) = &opts.svg {
        write(path, render_svg(report))?;
    }
    Ok(())
}

/// Injects the fault at `fault_at` (and, for a flap, restarts the node).
async fn inject(
    ctx: Arc<Ctx>,
    proxy: Option<Arc<FaultProxy>>,
    fault: Fault,
    fault_at: Duration,
    confirmation: Duration,
) -> Result<(), DrillError> {
    tokio::time::sleep_until(ctx.t0 + fault_at).await;
    let at = ctx.t0.elapsed();
    let cluster = &ctx.cluster;
    let failed = |what: &str| cluster_err(format!("could not {what} pg0"));
    match fault {
        Fault::Crash => {
            cluster.kill(0).map_err(failed("kill"))?;
            ctx.set_fault(at, "Fault", "crash: SIGKILL to pg0 and its backends".into());
        }
        Fault::Freeze => {
            cluster.freeze(0).map_err(failed("freeze"))?;
            ctx.set_fault(
                at,
                "Fault",
                "freeze: SIGSTOP to pg0 and its backends, until the end".into(),
            );
        }
        Fault::Blackhole => {
            let Some(proxy) = proxy else {
                return Err(DrillError::NoPrimary("no proxy in front of pg0".into()));
            };
            proxy.set_mode(ProxyMode::Blackhole);
            ctx.set_fault(
                at,
                "Fault",
                "blackhole: pg0's proxy swallows all traffic; the server keeps running".into(),
            );
        }
        Fault::Graceful => {
            ctx.set_fault(
                at,
                "Fault",
                "graceful: fast shutdown (SIGINT) of pg0".into(),
            );
            cluster.stop_graceful(0).await.map_err(failed("stop"))?;
            ctx.mark("Stopped", "pg0 finished its shutdown".into());
        }
        Fault::Flap => {
            cluster.kill(0).map_err(failed("kill"))?;
            ctx.set_fault(
                at,
                "Fault",
                format!(
                    "flap: SIGKILL to pg0; restart in {} ms",
                    confirmation.as_millis() / 2
                ),
            );
            tokio::time::sleep(confirmation / 2).await;
            ctx.mark("Restarting", "pg0 starting again (crash recovery)".into());
            cluster.restart(0).await.map_err(failed("restart"))?;
            ctx.mark("Restarted", "pg0 accepts connections again".into());
        }
    }
    Ok(())
}

/// The simulated orchestrator of external promotion: checks pg0 through
/// the application's network path every 100 ms and promotes pg1 once pg0
/// has been unreachable for `delay`.
async fn orchestrate(ctx: Arc<Ctx>, url: String, delay: Duration) {
    let mut down_since: Option<Instant> = None;
    loop {
        let healthy = check_primary(&url).await;
        if healthy {
            down_since = None;
        } else {
            let since = *down_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= delay {
                ctx.mark_node(
                    "OrchestratorPromote",
                    format!(
                        "orchestrator: pg0 unreachable for {} ms; promoting pg1",
                        since.elapsed().as_millis()
                    ),
                    "pg1",
                );
                match ctx.cluster.promote(1).await {
                    Ok(()) => ctx.mark_node(
                        "OrchestratorPromoted",
                        "orchestrator: pg1 promoted".into(),
                        "pg1",
                    ),
                    Err(e) => ctx.mark_node(
                        "OrchestratorFailed",
                        format!(
                            "orchestrator: promoting pg1 failed: {}",
                            crate::error::chain(&e)
                        ),
                        "pg1",
                    ),
                }
                return;
            }
        }
        tokio::time::sleep(ORCHESTRATOR_EVERY).await;
    }
}

impl Ctx {
    fn mark_node(&self, kind: &str, detail: String, node: &str) {
        Self::lock(&self.events).push(TimelineEvent {
            t_ms: self.t0.elapsed().as_millis() as u64,
            kind: kind.to_owned(),
            detail,
            node: Some(node.to_owned()),
            source: "drill".to_owned(),
        });
    }
}

/// Whether the node at `url` answers `SELECT 1` within the check timeout.
async fn check_primary(url: &str) -> bool {
    let Ok(mut config) = url.parse::<tokio_postgres::Config>() else {
        return false;
    };
    config.connect_timeout(ORCHESTRATOR_CHECK_TIMEOUT);
    let check = async {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.ok()?;
        let conn = tokio::spawn(connection);
        let ok = client.simple_query("SELECT 1").await.is_ok();
        drop(client);
        conn.abort();
        Some(ok)
    };
    matches!(
        tokio::time::timeout(ORCHESTRATOR_CHECK_TIMEOUT, check).await,
        Ok(Some(true))
    )
}

/// Every id in `drill_writes` on node `index`.
async fn ids_on(cluster: &LocalPgCluster, index: usize) -> Result<BTreeSet<i64>, DrillError> {
    let name = cluster.node(index).name;
    let context = format!("could not read the rows of {name}");
    let client = cluster
        .connect(index)
        .await
        .map_err(cluster_err(&*context))?;
    let limit = Duration::from_secs(30);
    let rows = match tokio::time::timeout(limit, client.query(ALL_IDS_SQL, &[])).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(source)) => {
            return Err(cluster_err(context)(ClusterError::Query {
                node: name,
                sql: ALL_IDS_SQL.to_owned(),
                source,
            }));
        }
        Err(_) => {
            return Err(cluster_err(context)(ClusterError::QueryTimeout {
                node: name,
                sql: ALL_IDS_SQL.to_owned(),
                timeout: limit,
            }));
        }
    };
    Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect())
}

/// Moves the pool's pending events into `out`.
fn drain(
    rx: &mut broadcast::Receiver<Event>,
    out: &mut Vec<TimelineEvent>,
    lagged: &mut u64,
    t0: SystemTime,
    names: &Names,
) {
    loop {
        match rx.try_recv() {
            Ok(e) => out.push(timeline_event(&e, t0, names)),
            Err(TryRecvError::Lagged(n)) => *lagged += n,
            Err(TryRecvError::Empty | TryRecvError::Closed) => return,
        }
    }
}

/// A pool event as a timeline entry, with node names instead of addresses.
fn timeline_event(e: &Event, t0: SystemTime, names: &Names) -> TimelineEvent {
    let n = |id: &str| names.name(id);
    let (kind, detail, node): (&str, String, Option<String>) = match &e.kind {
        EventKind::NodeUp { node, role } => {
            ("NodeUp", format!("{} up as {role}", n(node)), Some(n(node)))
        }
        EventKind::NodeDown { node, reason } => (
            "NodeDown",
            format!("{} down: {reason}", n(node)),
            Some(n(node)),
        ),
        EventKind::RoleChanged { node, from, to } => (
            "RoleChanged",
            format!(
                "{}: {} -> {to}",
                n(node),
                from.map_or("unknown", |r| r.as_str())
            ),
            Some(n(node)),
        ),
        EventKind::FailoverStarted { old_writer, reason } => (
            "FailoverStarted",
            format!(
                "writer {} lost: {reason}",
                old_writer.as_deref().map_or_else(|| "none".into(), n)
            ),
            old_writer.as_deref().map(n),
        ),
        EventKind::FailoverFinished {
            new_writer,
            duration,
        } => (
            "FailoverFinished",
            format!(
                "new writer {} after {} ms",
                n(new_writer),
                duration.as_millis()
            ),
            Some(n(new_writer)),
        ),
        EventKind::Promoted { node, duration } => (
            "Promoted",
            format!("pool promoted {} in {} ms", n(node), duration.as_millis()),
            Some(n(node)),
        ),
        EventKind::Fenced { node, reason } => (
            "Fenced",
            format!("{} fenced: {reason}", n(node)),
            Some(n(node)),
        ),
        EventKind::Unfenced { node } => {
            ("Unfenced", format!("{} unfenced", n(node)), Some(n(node)))
        }
        EventKind::SplitBrainDetected { nodes, winner } => (
            "SplitBrainDetected",
            format!(
                "{} claim to be primary; {} keeps the writes",
                nodes.iter().map(|id| n(id)).collect::<Vec<_>>().join(", "),
                n(winner)
            ),
            Some(n(winner)),
        ),
        EventKind::TopologyChanged { epoch, writer } => (
            "TopologyChanged",
            format!(
                "epoch {epoch}, writer {}",
                writer.as_deref().map_or_else(|| "none".into(), n)
            ),
            writer.as_deref().map(n),
        ),
        other => ("Other", format!("{other:?}"), None),
    };
    TimelineEvent {
        t_ms: e.at.duration_since(t0).unwrap_or_default().as_millis() as u64,
        kind: kind.to_owned(),
        detail: names.rewrite(&detail),
        node,
        source: "pool".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        DrillOptions::default().validate().unwrap();
        let o = DrillOptions {
            fault_at: Duration::from_secs(30),
            duration: Duration::from_secs(10),
            ..DrillOptions::default()
        };
        let e = o.validate().unwrap_err().to_string();
        assert!(
            e.contains("--fault-at (30s) must be less than --duration (10s)"),
            "{e}"
        );
        let o = DrillOptions {
            writers: 0,
            ..DrillOptions::default()
        };
        assert!(o.validate().unwrap_err().to_string().contains("--writers"));
    }

    #[test]
    fn names_replace_longest_ids_first() {
        let mut names = Names::default();
        names.add(4000, "pg0");
        names.add(40001, "pg1");
        assert_eq!(
            names.rewrite("127.0.0.1:40001 and 127.0.0.1:4000"),
            "pg1 and pg0"
        );
        assert_eq!(names.name("127.0.0.1:4000"), "pg0");
        assert_eq!(names.name("other"), "other");
    }
}
