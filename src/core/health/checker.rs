//! Running checks: [`HealthCheckConfig`] (interval, timeout, jitter,
//! rise/fall), [`HealthChecker`], which runs a [`HealthCheck`] against every
//! endpoint of a set and moves their health, and the [`CheckReport`] of one
//! check.

use super::check::{DEFAULT_HEALTH_PATH, HealthCheck};
use super::panic::{DEFAULT_PANIC_THRESHOLD, clamp_unit, refresh_panic};
use crate::core::clock::now_nanos;
use crate::core::endpoint::Health;
use crate::core::events::{EventBus, EventKind, names};
use crate::core::set::{EndpointSet, LiveEndpoint, Snapshot};
use crate::core::task::TaskHandle;
use crate::error::{BoxError, Error, chain};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Active health-check settings.
///
/// ```
/// use failover_pool::core::health::HealthCheckConfig;
/// use std::time::Duration;
///
/// let config: HealthCheckConfig = serde_yaml_ng::from_str("interval: 5s\nfall: 2\n").unwrap();
/// assert_eq!(config.interval, Duration::from_secs(5));
/// assert_eq!(config.fall, 2);
/// assert_eq!(config.rise, 2); // default
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Whether the background loop runs (default true). On-demand
    /// [`HealthChecker::check`] works either way.
    pub enabled: bool,
    /// Time between two checks of one endpoint (default `10s`).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Limit of one check; a check that takes longer fails (default `3s`).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Random extra delay added to each interval, as a fraction of it
    /// (0.0..=1.0, default 0.1), so checks of many clients spread out.
    pub jitter: f64,
    /// Passes in a row an unhealthy endpoint needs to become usable again
    /// (default 2). An endpoint of unknown health needs one.
    #[serde(alias = "healthy_threshold")]
    pub rise: u32,
    /// Failures in a row a usable endpoint needs to become unhealthy
    /// (default 3). An endpoint of unknown health needs one.
    #[serde(alias = "unhealthy_threshold")]
    pub fall: u32,
    /// Path requested by HTTP checks (`HttpCheck::from_config` with the
    /// `http` feature); default `/health`, and `None` means `/health` too.
    pub path: Option<String>,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            enabled: true,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(3),
            jitter: 0.1,
            rise: 2,
            fall: 3,
            path: Some(DEFAULT_HEALTH_PATH.to_owned()),
        }
    }
}

impl HealthCheckConfig {
    /// Checks the values; the error names the offending field.
    pub fn validate(&self) -> Result<(), Error> {
        if self.interval.is_zero() {
            return Err(Error::Config(
                "health_check.interval must be greater than zero".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(Error::Config(
                "health_check.timeout must be greater than zero".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(Error::Config(format!(
                "health_check.jitter must be between 0.0 and 1.0, got {}",
                self.jitter
            )));
        }
        if self.rise == 0 {
            return Err(Error::Config("health_check.rise must be at least 1".into()));
        }
        if self.fall == 0 {
            return Err(Error::Config("health_check.fall must be at least 1".into()));
        }
        if let Some(path) = &self.path
            && !path.starts_with('/')
        {
            return Err(Error::Config(format!(
                "health_check.path must start with `/`, got `{path}`"
            )));
        }
        Ok(())
    }

    fn next_delay(&self) -> Duration {
        let extra = self.interval.as_secs_f64() * self.jitter * fastrand::f64();
        self.interval + Duration::try_from_secs_f64(extra).unwrap_or_default()
    }
}

#[cfg(feature = "http")]
impl super::HttpCheck {
    /// A check configured from a [`HealthCheckConfig`] (its `path`).
    pub fn from_config(config: &HealthCheckConfig) -> Self {
        let check = Self::new();
        match &config.path {
            Some(p) => check.path(p.clone()),
            None => check,
        }
    }
}

/// The full result of one on-demand check ([`HealthChecker::check_report`]).
#[derive(Debug)]
pub struct CheckReport {
    /// The endpoint checked.
    pub endpoint: Arc<str>,
    /// What this check found: `Ok(Healthy | Degraded)` for a pass, or an
    /// [`Error::HealthCheckFailed`] whose source says why it failed (the
    /// check's own error, an `Unhealthy` answer, or an [`Error::Timeout`]).
    pub outcome: Result<Health, Error>,
    /// The endpoint's health after rise/fall were applied.
    pub health: Health,
    /// The health before, when this check changed it.
    pub changed_from: Option<Health>,
    /// How long the check took.
    pub duration: Duration,
}

impl CheckReport {
    /// Whether this check passed.
    pub fn passed(&self) -> bool {
        self.outcome.is_ok()
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Streak {
    passes: u32,
    fails: u32,
}

/// Runs a [`HealthCheck`] against the endpoints of an [`EndpointSet`] and
/// moves their health with rise/fall thresholds.
///
/// Every health change sets the endpoint's health, emits
/// [`EventKind::HealthChanged`] (and [`EventKind::Recovered`] when an
/// unhealthy endpoint becomes usable), and recomputes panic mode. Metrics:
/// `failover_health_checks_total{result}`,
/// `failover_health_check_duration_seconds` and the
/// `failover_endpoint_health` gauge, labelled `manager` (the event bus's
/// source) and `endpoint`.
///
/// ```
/// use failover_pool::core::events::EventBus;
/// use failover_pool::core::health::{HealthCheckConfig, HealthChecker, TcpCheck};
/// use failover_pool::core::{BreakerConfig, Endpoint, EndpointSet, Health};
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), failover_pool::Error> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let port = listener.local_addr().unwrap().port();
/// let set = Arc::new(EndpointSet::new(
///     vec![Endpoint::new("db-1", "127.0.0.1", port)],
///     Arc::new(BreakerConfig::default()),
/// )?);
/// let checker = Arc::new(HealthChecker::new(
///     Arc::clone(&set),
///     Arc::new(TcpCheck::new()),
///     HealthCheckConfig::default(),
///     EventBus::new("example", 64),
/// )?);
/// assert_eq!(checker.check("db-1").await?, Health::Healthy);
///
/// let background = Arc::clone(&checker).spawn(); // checks every interval
/// drop(background); // stops the loop
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct HealthChecker {
    set: Arc<EndpointSet>,
    check: Arc<dyn HealthCheck>,
    config: HealthCheckConfig,
    events: EventBus,
    panic_threshold: f64,
    streaks: Mutex<HashMap<Arc<str>, Streak>>,
}

impl HealthChecker {
    /// A checker of `set` with `check`; fails when `config` is invalid. The
    /// panic threshold is [`DEFAULT_PANIC_THRESHOLD`].
    pub fn new(
        set: Arc<EndpointSet>,
        check: Arc<dyn HealthCheck>,
        config: HealthCheckConfig,
        events: EventBus,
    ) -> Result<Self, Error> {
        config.validate()?;
        Ok(HealthChecker {
            set,
            check,
            config,
            events,
            panic_threshold: DEFAULT_PANIC_THRESHOLD,
            streaks: Mutex::new(HashMap::new()),
        })
    }

    /// Sets the panic threshold used when recomputing panic mode (0.0
    /// disables panic routing; values are clamped to 0.0..=1.0). Use the same
    /// value as [`OutlierConfig::panic_threshold`](super::OutlierConfig::panic_threshold).
    pub fn with_panic_threshold(mut self, threshold: f64) -> Self {
        self.panic_threshold = clamp_unit(threshold);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &HealthCheckConfig {
        &self.config
    }

    /// The set being checked.
    pub fn set(&self) -> &Arc<EndpointSet> {
        &self.set
    }

    /// The panic threshold.
    pub fn panic_threshold(&self) -> f64 {
        self.panic_threshold
    }

    /// Checks one endpoint now and returns its health afterwards.
    ///
    /// A *failing* check is not an error: it returns `Ok` with the health
    /// after the fall threshold was applied (still usable until `fall`
    /// failures in a row), and the failure shows in
    /// `failover_health_checks_total{result="fail"}`, in a debug log, and as
    /// [`EventKind::HealthChanged`] once the health changes. Use
    /// [`HealthChecker::check_report`] to see why a check failed.
    ///
    /// # Errors
    /// [`Error::Config`] (code [`ErrorCode::Config`](crate::ErrorCode::Config))
    /// when no endpoint has this id: asking for an id the set does not hold
    /// is a caller's mistake, not an outage, so it is not reported as
    /// `NoEndpoints`.
    pub async fn check(&self, id: &str) -> Result<Health, Error> {
        Ok(self.check_report(id).await?.health)
    }

    /// Like [`HealthChecker::check`], with what the check found.
    pub async fn check_report(&self, id: &str) -> Result<CheckReport, Error> {
        let ep = self
            .set
            .get(id)
            .ok_or_else(|| Error::Config(format!("no endpoint with id `{id}` in the set")))?;
        Ok(self.run_check(&ep).await)
    }

    /// Checks every endpoint concurrently (each bounded by the timeout) and
    /// returns the health of each afterwards, in set order.
    pub async fn check_all(&self) -> Vec<(Arc<str>, Health)> {
        let snap = self.set.load_full();
        let checks = snap
            .endpoints()
            .iter()
            .map(|ep| self.run_check(ep))
            .collect();
        let reports = join_all(checks).await;
        self.prune_streaks(&snap);
        reports
            .into_iter()
            .map(|r| (r.endpoint, r.health))
            .collect()
    }

    /// Starts the background loop: every endpoint is checked every
    /// `interval` plus a random jitter (each on its own schedule, so one slow
    /// endpoint does not delay the others); endpoints added to the set are
    /// picked up within a second. Dropping the handle stops the loop. With
    /// `enabled: false` nothing runs and the returned task ends at once.
    /// Must be called within a Tokio runtime.
    pub fn spawn(self: Arc<Self>) -> TaskHandle {
        if !self.config.enabled {
            return TaskHandle::spawn(async {});
        }
        TaskHandle::spawn(self.run())
    }

    async fn run(self: Arc<Self>) {
        let rescan = self.config.interval.min(Duration::from_secs(1));
        let mut due: HashMap<Arc<str>, Instant> = HashMap::new();
        let mut running: HashMap<tokio::task::Id, Arc<str>> = HashMap::new();
        let mut busy: HashSet<Arc<str>> = HashSet::new();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut version = 0;
        loop {
            let now = Instant::now();
            let snap = self.set.load_full();
            if snap.version() != version {
                version = snap.version();
                due.retain(|id, _| snap.index_of(id).is_some());
                self.prune_streaks(&snap);
            }
            for ep in snap.endpoints() {
                let id = &ep.endpoint().id;
                if busy.contains(id) {
                    continue;
                }
                let at = *due.entry(Arc::clone(id)).or_insert(now);
                if at <= now {
                    let this = Arc::clone(&self);
                    let ep = Arc::clone(ep);
                    let handle = tasks.spawn(async move {
                        this.run_check(&ep).await;
                    });
                    running.insert(handle.id(), Arc::clone(id));
                    busy.insert(Arc::clone(id));
                }
            }
            let wake = due
                .iter()
                .filter(|(id, _)| !busy.contains(*id))
                .map(|(_, at)| *at)
                .min()
                .map_or(now + rescan, |at| at.min(now + rescan));
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let task = match done {
                        Ok((task, ())) => task,
                        Err(err) => {
                            tracing::warn!(
                                source = %self.events.source(),
                                error = %err,
                                "health check task failed"
                            );
                            err.id()
                        }
                    };
                    if let Some(id) = running.remove(&task) {
                        busy.remove(&id);
                        if snap.index_of(&id).is_some() {
                            due.insert(id, Instant::now() + self.config.next_delay());
                        }
                    }
                }
            }
        }
    }

    fn lock_streaks(&self) -> MutexGuard<'_, HashMap<Arc<str>, Streak>> {
        self.streaks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn prune_streaks(&self, snap: &Snapshot) {
        self.lock_streaks()
            .retain(|id, _| snap.index_of(id).is_some());
    }

    /// One check of `ep`: run it within the timeout, record it, apply the
    /// rise/fall thresholds, and report a health change.
    async fn run_check(&self, ep: &Arc<LiveEndpoint>) -> CheckReport {
        let id = Arc::clone(&ep.endpoint().id);
        let started = Instant::now();
        let raw = tokio::time::timeout(self.config.timeout, self.check.check(ep.endpoint())).await;
        let duration = started.elapsed();
        let outcome = self.outcome_of(&id, raw);
        let now = now_nanos();
        ep.mark_checked(now);
        self.record_check(&id, &outcome, duration);
        let (changed_from, health) = self.apply_thresholds(ep, &outcome);
        metrics::gauge!(
            names::ENDPOINT_HEALTH,
            "manager" => Arc::clone(self.events.source()),
            "endpoint" => Arc::clone(&id),
        )
        .set(f64::from(health as u8));
        if let Some(from) = changed_from {
            report_health_change(&self.events, ep, from, health);
            refresh_panic(&self.set, &self.events, self.panic_threshold, now);
        }
        CheckReport {
            endpoint: id,
            outcome,
            health,
            changed_from,
            duration,
        }
    }

    /// What a check's raw result means: a pass with the health to take, or
    /// an [`Error::HealthCheckFailed`] saying why it failed.
    fn outcome_of(
        &self,
        id: &str,
        raw: Result<Result<Health, BoxError>, tokio::time::error::Elapsed>,
    ) -> Result<Health, Error> {
        let failed = |source: BoxError| Error::HealthCheckFailed {
            endpoint: id.to_owned(),
            source: Some(source),
        };
        match raw {
            Ok(Ok(Health::Unhealthy)) => {
                Err(failed("the check reported the endpoint unhealthy".into()))
            }
            Ok(Ok(Health::Unknown)) => Ok(Health::Healthy),
            Ok(Ok(h)) => Ok(h),
            Ok(Err(e)) => Err(failed(e)),
            Err(_) => Err(failed(Box::new(Error::Timeout {
                what: "health check",
                after: self.config.timeout,
                may_have_executed: false,
            }))),
        }
    }

    /// Counts the check and its duration; logs a failure at debug level.
    fn record_check(&self, id: &Arc<str>, outcome: &Result<Health, Error>, duration: Duration) {
        let source = self.events.source();
        metrics::counter!(
            names::HEALTH_CHECKS_TOTAL,
            "manager" => Arc::clone(source),
            "endpoint" => Arc::clone(id),
            "result" => if outcome.is_ok() { "pass" } else { "fail" },
        )
        .increment(1);
        metrics::histogram!(
            names::HEALTH_CHECK_DURATION_SECONDS,
            "manager" => Arc::clone(source),
            "endpoint" => Arc::clone(id),
        )
        .record(duration.as_secs_f64());
        if let Err(err) = outcome {
            tracing::debug!(
                source = %source,
                endpoint = %id,
                error = %chain(err),
                "health check failed"
            );
        }
    }

    /// Updates the endpoint's pass/fail streak and moves its health when the
    /// rise or fall threshold is reached. Returns the health before (when it
    /// changed) and the health after.
    fn apply_thresholds(
        &self,
        ep: &LiveEndpoint,
        outcome: &Result<Health, Error>,
    ) -> (Option<Health>, Health) {
        let mut streaks = self.lock_streaks();
        let streak = streaks.entry(Arc::clone(&ep.endpoint().id)).or_default();
        let current = ep.health();
        let target = match outcome {
            Ok(h) => {
                streak.passes = streak.passes.saturating_add(1);
                streak.fails = 0;
                match current {
                    Health::Unhealthy if streak.passes < self.config.rise => None,
                    _ => Some(*h),
                }
            }
            Err(_) => {
                streak.fails = streak.fails.saturating_add(1);
                streak.passes = 0;
                match current {
                    Health::Unhealthy => None,
                    Health::Unknown => Some(Health::Unhealthy),
                    _ if streak.fails >= self.config.fall => Some(Health::Unhealthy),
                    _ => None,
                }
            }
        };
        let prev = target.and_then(|t| ep.set_health(t));
        (prev, ep.health())
    }
}

/// Emits `HealthChanged` (and `Recovered` when the endpoint became usable).
fn report_health_change(events: &EventBus, ep: &LiveEndpoint, from: Health, to: Health) {
    let id = &ep.endpoint().id;
    if to.is_usable() {
        tracing::info!(source = %events.source(), endpoint = %id, %from, %to, "endpoint health changed");
    } else {
        tracing::warn!(source = %events.source(), endpoint = %id, %from, %to, "endpoint health changed");
    }
    events.emit(EventKind::HealthChanged {
        endpoint: Arc::clone(id),
        from,
        to,
    });
    if !from.is_usable() && to.is_usable() {
        // The check saw it answer again: an open breaker tries it now
        // rather than at the end of its open duration.
        ep.breaker()
            .end_open_period(crate::core::clock::now_nanos());
        ep.counters().recoveries.fetch_add(1, Relaxed);
        events.emit(EventKind::Recovered {
            endpoint: Arc::clone(id),
        });
    }
}

/// Polls all futures on the current task until every one is done; outputs in
/// input order. (The core has no `futures` dependency.)
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests;
