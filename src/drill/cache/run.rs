//! [`run_cache_drill`]: the cache drill from start to report — two
//! servers, the cache, the load, the fault and its end, the wait for the
//! repair, the check — and [`write_cache_outputs`].

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::events::describe;
use super::figures::{Run, Sample, assemble, side_name, side_stats};
use super::inspect::{check, held};
use super::load::{LoadCounters, LoadOptions, preload, run_load};
use super::report::CacheDrillReport;
use super::svg::render_cache_svg;
use super::{CacheDrillOptions, CacheFault, FaultSide};
use crate::cache::{CacheConfig, CacheSide, FailoverCache};
use crate::drill::event_log::EventLog;
use crate::drill::proxy::{FaultProxy, ProxyMode};
use crate::drill::redis::{LocalRedisCluster, RedisClusterOptions};
use crate::drill::run::{DrillError, cluster_err};
use crate::pool::PoolConfig;

/// The cache's key prefix in the drill.
const PREFIX: &str = "drill:";
/// How often the drill looks at the cache's state.
const TICK: Duration = Duration::from_millis(20);
/// How often the progress callback is called while the load runs.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Where a cache drill is, given to [`run_cache_drill`]'s callback about
/// four times a second while the load runs, and at each step.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheProgress {
    /// Time since the load started.
    pub elapsed: Duration,
    /// The load's planned duration.
    pub duration: Duration,
    /// Calls answered so far.
    pub ok_calls: u64,
    /// Calls that returned an error so far.
    pub errors: u64,
    /// Keys queued for the failing side.
    pub backlog: usize,
    /// Whether the cache uses the failing side now.
    pub side_up: bool,
    /// What the drill does now (`starting`, `before fault`, `side failed`,
    /// `side back`, `repairing`, `checking`).
    pub step: &'static str,
    /// Whether the load runs (a line to update in place) or this is a
    /// step of its own.
    pub running: bool,
}

impl CacheProgress {
    /// A step outside the load.
    fn step(step: &'static str) -> Self {
        CacheProgress {
            elapsed: Duration::ZERO,
            duration: Duration::ZERO,
            ok_calls: 0,
            errors: 0,
            backlog: 0,
            side_up: true,
            step,
            running: false,
        }
    }

    /// One line for a terminal.
    pub fn line(&self) -> String {
        if !self.running {
            return format!("{} ...", self.step);
        }
        format!(
            "{:>5.1}/{:.0}s  {:>8} calls  {:>5} errors  side {:<4} backlog {:>6}  {}",
            self.elapsed.as_secs_f64(),
            self.duration.as_secs_f64(),
            self.ok_calls,
            self.errors,
            if self.side_up { "up" } else { "down" },
            self.backlog,
            self.step
        )
    }
}

/// Runs a cache drill (see the [module docs](super)) and returns its
/// report; `progress` is called at each step and about four times a
/// second while the load runs.
///
/// # Errors
///
/// [`DrillError::InvalidOptions`], [`DrillError::Cluster`] (the servers do
/// not start, or a fault cannot be injected or ended),
/// [`DrillError::Proxy`], [`DrillError::Cache`] (the cache cannot be built
/// or preloaded) or [`DrillError::Task`] (a load task panicked). A drill
/// that ran but missed a goal is not an error: see
/// [`CacheDrillReport::goals`].
pub async fn run_cache_drill(
    opts: &CacheDrillOptions,
    mut progress: impl FnMut(&CacheProgress),
) -> Result<CacheDrillReport, DrillError> {
    opts.validate()?;
    progress(&CacheProgress::step(
        "starting two Redis servers and the cache",
    ));
    let start = || LocalRedisCluster::start(RedisClusterOptions::new().replicas(0));
    let (a, b) = tokio::join!(start(), start());
    let clusters = [
        a.map_err(cluster_err("could not start side a's Redis server"))?,
        b.map_err(cluster_err("could not start side b's Redis server"))?,
    ];
    let failing = match opts.side {
        FaultSide::Primary => 0,
        FaultSide::Secondary => 1,
    };
    let proxy = match opts.fault {
        CacheFault::Blackhole => {
            let target = SocketAddr::from((Ipv4Addr::LOCALHOST, clusters[failing].port(0)));
            let proxy = FaultProxy::start(target)
                .await
                .map_err(|source| DrillError::Proxy {
                    node: side_name(failing).into(),
                    source,
                })?;
            Some(proxy)
        }
        _ => None,
    };
    let mut urls = [clusters[0].url(0), clusters[1].url(0)];
    if let Some(proxy) = &proxy {
        urls[failing] = format!("redis://127.0.0.1:{}", proxy.port());
    }
    let cache = build_cache(opts, &urls).await?;
    let mut last = preload(&cache, opts.keys, opts.ttl)
        .await
        .map_err(|source| DrillError::Cache {
            context: "could not write the keys before the load".into(),
            source: Box::new(source),
        })?;

    let origin = Instant::now();
    let events = EventLog::start(cache.subscribe(), origin, "cache", describe);
    let fault = Fault {
        kind: opts.fault,
        cluster: &clusters[failing],
        proxy: proxy.as_ref(),
    };
    let run = drive(opts, &cache, failing, fault, origin, &events, &mut progress).await?;

    progress(&CacheProgress::step("checking both sides"));
    let (ha, hb) = tokio::join!(held(&clusters[0], 0, PREFIX), held(&clusters[1], 0, PREFIX));
    let ha = ha.map_err(cluster_err("could not read side a"))?;
    let hb = hb.map_err(cluster_err("could not read side b"))?;
    last.extend(run.record.last.iter().map(|(k, v)| (k.clone(), v.clone())));
    let verdict = check(&ha, &hb, PREFIX, &last);
    let stats = cache.stats();
    cache.close().await;
    let (logged, queued_events) = events.finish();

    let mut report = assemble(opts, failing, &run, &stats, logged, queued_events, &last);
    report.divergent_keys_after_repair = verdict.divergent_keys;
    report.resurrected_deletes = verdict.resurrected_deletes;
    report.ttls_extended = verdict.ttls_extended;
    report.lost_acked_writes = verdict.lost_acked_writes;
    report.keys_checked = verdict.keys_checked;
    report.findings = verdict.samples;
    report.set_goals();

    if let Some(proxy) = proxy {
        proxy.shutdown().await;
    }
    for c in clusters {
        // Dropping a cluster stops it too; an error here changes nothing.
        let _ = c.shutdown().await;
    }
    Ok(report)
}

/// Builds the drill's cache over `urls` (side `a` first).
async fn build_cache(
    opts: &CacheDrillOptions,
    urls: &[String; 2],
) -> Result<FailoverCache, DrillError> {
    let pool = |name: &str| PoolConfig {
        name: format!("drill-{name}"),
        probe_interval: Duration::from_millis(100),
        probe_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        acquire_timeout: Duration::from_secs(1),
        ..PoolConfig::default()
    };
    let config = CacheConfig {
        name: "drill".into(),
        prefix: PREFIX.into(),
        write_timeout: opts.write_timeout,
        read_soft_timeout: opts.read_soft_timeout,
        health_interval: opts.health_interval,
        ..CacheConfig::default()
    };
    FailoverCache::builder()
        .primary(CacheSide::url("a", urls[0].as_str()).with_pool_config(pool("a")))
        .secondary(CacheSide::url("b", urls[1].as_str()).with_pool_config(pool("b")))
        .config(config)
        .build()
        .await
        .map_err(|source| DrillError::Cache {
            context: "could not build the cache".into(),
            source: Box::new(source),
        })
}

/// The failing side and how it fails.
struct Fault<'a> {
    kind: CacheFault,
    cluster: &'a LocalRedisCluster,
    proxy: Option<&'a FaultProxy>,
}

impl Fault<'_> {
    /// Makes the side fail.
    fn inject(&self) -> Result<(), DrillError> {
        match self.kind {
            CacheFault::Crash => self
                .cluster
                .kill(0)
                .map_err(cluster_err("could not kill the side")),
            CacheFault::Freeze => {
                (self.cluster.freeze(0)).map_err(cluster_err("could not freeze the side"))
            }
            CacheFault::Blackhole => {
                if let Some(proxy) = self.proxy {
                    proxy.set_mode(ProxyMode::Blackhole);
                }
                Ok(())
            }
        }
    }

    /// Ends the fault: restarts the side empty, thaws it, or heals the
    /// partition.
    async fn end(&self) -> Result<(), DrillError> {
        match self.kind {
            CacheFault::Crash => {
                (self.cluster.restart(0).await).map_err(cluster_err("could not restart the side"))
            }
            CacheFault::Freeze => {
                (self.cluster.thaw(0)).map_err(cluster_err("could not thaw the side"))
            }
            CacheFault::Blackhole => {
                if let Some(proxy) = self.proxy {
                    proxy.set_mode(ProxyMode::Pass);
                }
                Ok(())
            }
        }
    }
}

/// Runs the load, injects and ends the fault on time, then waits for the
/// repair; the cache's state is sampled every tick throughout.
async fn drive(
    opts: &CacheDrillOptions,
    cache: &FailoverCache,
    failing: usize,
    fault: Fault<'_>,
    origin: Instant,
    events: &EventLog,
    progress: &mut impl FnMut(&CacheProgress),
) -> Result<Run, DrillError> {
    let counters = Arc::new(LoadCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load_opts = LoadOptions {
        writers: opts.writers,
        readers: opts.readers,
        keys: opts.keys,
        ttl: opts.ttl,
        pace: opts.pace,
    };
    let load = tokio::spawn(run_load(
        cache.clone(),
        load_opts,
        origin,
        stop.clone(),
        counters.clone(),
    ));
    let mut samples = Vec::new();
    let (mut fault_at, mut recovered_at) = (None, None);
    let mut shown = Duration::ZERO;
    let ended = loop {
        let t = origin.elapsed();
        if fault_at.is_none() && t >= opts.fault_at {
            fault.inject()?;
            fault_at = Some(origin.elapsed());
            events.drill(
                "fault",
                format!("{} on side {}", opts.fault.as_str(), side_name(failing)),
            );
        }
        if let (Some(f), None) = (fault_at, recovered_at)
            && t >= f + opts.outage
        {
            fault.end().await?;
            recovered_at = Some(origin.elapsed());
            events.drill("recovered", recovery_text(opts.fault).into());
        }
        if t >= opts.duration {
            break t;
        }
        let s = sample(cache, failing, origin);
        samples.push(s);
        if t >= shown + PROGRESS_EVERY {
            shown = t;
            let step = match (fault_at, recovered_at) {
                (None, _) => "before fault",
                (Some(_), None) => "side failed",
                (Some(_), Some(_)) => "side back",
            };
            progress(&running(opts, &counters, s, step));
        }
        tokio::time::sleep(TICK).await;
    };
    stop.store(true, Ordering::Relaxed);
    let record = load
        .await
        .map_err(|e| DrillError::Task("cache load".into(), e))?;
    events.drill("load stopped", format!("{} calls", record.calls.len()));
    progress(&CacheProgress::step("load stopped; waiting for the repair"));
    let deadline = Instant::now() + opts.repair_timeout;
    loop {
        let s = sample(cache, failing, origin);
        samples.push(s);
        if s.in_sync || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    let (Some(fault_at), Some(recovered_at)) = (fault_at, recovered_at) else {
        unreachable!("validate() puts the fault and its end before the end of the load");
    };
    Ok(Run {
        record,
        samples,
        fault_at,
        recovered_at,
        duration: ended,
    })
}

/// What ending `fault` does, for the timeline.
const fn recovery_text(fault: CacheFault) -> &'static str {
    match fault {
        CacheFault::Crash => "side restarted, empty",
        CacheFault::Freeze => "side thawed",
        CacheFault::Blackhole => "partition healed",
    }
}

/// The failing side's state now.
fn sample(cache: &FailoverCache, failing: usize, origin: Instant) -> Sample {
    let stats = cache.stats();
    let side = side_stats(&stats, failing);
    Sample {
        t: origin.elapsed(),
        backlog: side.backlog,
        side_up: side.up,
        in_sync: stats.in_sync(),
    }
}

/// A progress snapshot while the load runs.
fn running(
    opts: &CacheDrillOptions,
    counters: &LoadCounters,
    s: Sample,
    step: &'static str,
) -> CacheProgress {
    CacheProgress {
        elapsed: s.t,
        duration: opts.duration,
        ok_calls: counters.ok.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        backlog: s.backlog,
        side_up: s.side_up,
        step,
        running: true,
    }
}

/// Writes the JSON report and the SVG chart where `opts` asks for them.
///
/// # Errors
///
/// [`DrillError::Output`].
pub fn write_cache_outputs(
    report: &CacheDrillReport,
    opts: &CacheDrillOptions,
) -> Result<(), DrillError> {
    crate::drill::run::write_report_files(report, opts.json.as_ref(), opts.svg.as_ref(), || {
        render_cache_svg(report)
    })
}
