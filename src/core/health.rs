//! Active health checks and passive outlier detection.
//!
//! * **Active**: a [`HealthChecker`] runs a [`HealthCheck`] ([`TcpCheck`],
//!   `HttpCheck` with the `http` feature, or your own) against every endpoint
//!   of an [`EndpointSet`] every [`HealthCheckConfig::interval`] (plus
//!   jitter), and moves the endpoint's [`Health`] with rise/fall thresholds:
//!   an [`Unhealthy`](Health::Unhealthy) endpoint needs
//!   [`rise`](HealthCheckConfig::rise) passes in a row to come back, a usable
//!   one needs [`fall`](HealthCheckConfig::fall) failures in a row to go down.
//!   An endpoint of [`Unknown`](Health::Unknown) health takes the result of
//!   its first check at once.
//! * **Passive**: an [`OutlierDetector`] watches the outcome of real calls.
//!   [`OutlierDetector::on_result`] runs after every attempt (no lock, no
//!   allocation unless it ejects) and ejects an endpoint after
//!   [`consecutive_failures`](OutlierConfig::consecutive_failures) failures in
//!   a row; [`OutlierDetector::sweep`] runs every
//!   [`interval`](OutlierConfig::interval), ends expired ejections and ejects
//!   endpoints whose failure rate is too high. Ejections last
//!   `base_ejection × number of ejections`, capped at `max_ejection`, and never
//!   take out more than [`max_ejected_share`](OutlierConfig::max_ejected_share)
//!   of the endpoints.
//!
//! Both recompute the set's panic mode ([`EndpointSet::refresh_panic`]) after
//! they change an endpoint and emit [`EventKind::PanicMode`] when it flips;
//! give both the same threshold (the checker's
//! [`HealthChecker::with_panic_threshold`], the detector's
//! [`OutlierConfig::panic_threshold`]).
//!
//! Background loops are returned as a [`TaskHandle`], which aborts its task
//! when dropped.

use crate::core::clock::{dur_nanos, now_nanos};
use crate::core::endpoint::{Endpoint, Health};
use crate::core::events::{EventBus, EventKind, names};
use crate::core::set::{EndpointSet, LiveEndpoint, Snapshot};
pub use crate::core::task::TaskHandle;
use crate::error::{BoxError, Error};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Poll;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

// ---------------------------------------------------------------------------
// Health checks
// ---------------------------------------------------------------------------

/// The future a [`HealthCheck`] returns.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<Health, BoxError>> + Send + 'a>>;

/// One active check of one endpoint.
///
/// `Ok(Healthy)` and `Ok(Degraded)` are passes (the endpoint takes that
/// health once the rise threshold allows it); `Ok(Unknown)` counts as a pass
/// reported as `Healthy`; `Ok(Unhealthy)` and `Err(_)` are failures. The
/// [`HealthChecker`] bounds every check with [`HealthCheckConfig::timeout`],
/// so an implementation does not need its own.
///
/// ```
/// use failover_pool::core::Endpoint;
/// use failover_pool::core::Health;
/// use failover_pool::core::health::{CheckFuture, HealthCheck};
///
/// /// Passes for every endpoint tagged "up".
/// #[derive(Debug)]
/// struct TagCheck;
///
/// impl HealthCheck for TagCheck {
///     fn check<'a>(&'a self, endpoint: &'a Endpoint) -> CheckFuture<'a> {
///         Box::pin(async move {
///             if endpoint.tags.iter().any(|t| t == "up") {
///                 Ok(Health::Healthy)
///             } else {
///                 Err("not tagged up".into())
///             }
///         })
///     }
/// }
/// ```
pub trait HealthCheck: Send + Sync + Debug + 'static {
    /// Checks `endpoint` once.
    fn check<'a>(&'a self, endpoint: &'a Endpoint) -> CheckFuture<'a>;
}

/// Passes when a TCP connection to [`Endpoint::authority`] can be opened; the
/// connection is closed right away.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpCheck;

impl TcpCheck {
    /// A TCP connect check.
    pub const fn new() -> Self {
        TcpCheck
    }
}

impl HealthCheck for TcpCheck {
    fn check<'a>(&'a self, endpoint: &'a Endpoint) -> CheckFuture<'a> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(endpoint.authority()).await?;
            drop(stream);
            Ok(Health::Healthy)
        })
    }
}

/// `GET {scheme}://{authority}{path}`; passes on a 2xx status (or on the
/// statuses given to [`HttpCheck::expect_status`]), reports
/// [`Health::Degraded`] on a status given to [`HttpCheck::degraded_status`]
/// (such as 429), and fails on anything else.
///
/// The scheme is the endpoint's protocol when it is `http` or `https`, and
/// `http` otherwise. This crate builds `reqwest` without TLS: for `https`
/// endpoints enable one of reqwest's TLS features in your own `Cargo.toml`
/// (or pass a configured client to [`HttpCheck::with_client`]). One client is
/// reused for every check, so connections are pooled.
///
/// ```
/// use failover_pool::core::Endpoint;
/// use failover_pool::core::health::HttpCheck;
///
/// let check = HttpCheck::new().path("/ready").degraded_status(429);
/// let ep = Endpoint::new("api-1", "10.0.0.7", 8080).with_protocol("http");
/// assert_eq!(check.url(&ep), "http://10.0.0.7:8080/ready");
/// ```
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone)]
pub struct HttpCheck {
    client: reqwest::Client,
    path: String,
    expected: Vec<u16>,
    degraded: Vec<u16>,
}

#[cfg(feature = "http")]
impl Default for HttpCheck {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "http")]
impl HttpCheck {
    /// A check of `/health` with a default client.
    pub fn new() -> Self {
        Self::with_client(reqwest::Client::new())
    }

    /// A check of `/health` with the given client.
    pub fn with_client(client: reqwest::Client) -> Self {
        HttpCheck {
            client,
            path: DEFAULT_HEALTH_PATH.to_owned(),
            expected: Vec::new(),
            degraded: Vec::new(),
        }
    }

    /// A check configured from a [`HealthCheckConfig`] (its `path`).
    pub fn from_config(config: &HealthCheckConfig) -> Self {
        let check = Self::new();
        match &config.path {
            Some(p) => check.path(p.clone()),
            None => check,
        }
    }

    /// The path to request (a leading `/` is added if missing).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        self
    }

    /// Accepts exactly these statuses as healthy instead of any 2xx; call it
    /// once per accepted status.
    pub fn expect_status(mut self, status: u16) -> Self {
        self.expected.push(status);
        self
    }

    /// Reports [`Health::Degraded`] (a pass) on this status; call it once per
    /// status.
    pub fn degraded_status(mut self, status: u16) -> Self {
        self.degraded.push(status);
        self
    }

    /// The URL checked for `endpoint`.
    pub fn url(&self, endpoint: &Endpoint) -> String {
        let scheme = match endpoint.protocol.to_ascii_lowercase().as_str() {
            "https" => "https",
            _ => "http",
        };
        format!("{scheme}://{}{}", endpoint.authority(), self.path)
    }

    fn classify(&self, status: u16) -> Result<Health, BoxError> {
        if self.degraded.contains(&status) {
            Ok(Health::Degraded)
        } else if (self.expected.is_empty() && (200..300).contains(&status))
            || self.expected.contains(&status)
        {
            Ok(Health::Healthy)
        } else {
            Err(format!("unexpected HTTP status {status}").into())
        }
    }
}

#[cfg(feature = "http")]
impl HealthCheck for HttpCheck {
    fn check<'a>(&'a self, endpoint: &'a Endpoint) -> CheckFuture<'a> {
        Box::pin(async move {
            let response = self.client.get(self.url(endpoint)).send().await?;
            self.classify(response.status().as_u16())
        })
    }
}

const DEFAULT_HEALTH_PATH: &str = "/health";

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

/// The default panic threshold (Envoy's `healthy_panic_threshold`, 50%).
pub const DEFAULT_PANIC_THRESHOLD: f64 = 0.5;

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
    /// value as [`OutlierConfig::panic_threshold`].
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

    fn prune_streaks(&self, snap: &Snapshot) {
        lock(&self.streaks).retain(|id, _| snap.index_of(id).is_some());
    }

    async fn run_check(&self, ep: &Arc<LiveEndpoint>) -> CheckReport {
        let id = Arc::clone(&ep.endpoint().id);
        let started = Instant::now();
        let raw = tokio::time::timeout(self.config.timeout, self.check.check(ep.endpoint())).await;
        let duration = started.elapsed();
        let failed = |source: BoxError| Error::HealthCheckFailed {
            endpoint: id.to_string(),
            source: Some(source),
        };
        let outcome = match raw {
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
        };
        let now = now_nanos();
        ep.mark_checked(now);

        let source = self.events.source();
        metrics::counter!(
            names::HEALTH_CHECKS_TOTAL,
            "manager" => Arc::clone(source),
            "endpoint" => Arc::clone(&id),
            "result" => if outcome.is_ok() { "pass" } else { "fail" },
        )
        .increment(1);
        metrics::histogram!(
            names::HEALTH_CHECK_DURATION_SECONDS,
            "manager" => Arc::clone(source),
            "endpoint" => Arc::clone(&id),
        )
        .record(duration.as_secs_f64());
        if let Err(err) = &outcome {
            tracing::debug!(
                source = %source,
                endpoint = %id,
                error = %ErrorChain(err),
                "health check failed"
            );
        }

        let (changed_from, health) = {
            let mut streaks = lock(&self.streaks);
            let streak = streaks.entry(Arc::clone(&id)).or_default();
            let current = ep.health();
            let target = match &outcome {
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
        };

        metrics::gauge!(
            names::ENDPOINT_HEALTH,
            "manager" => Arc::clone(source),
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
        ep.counters().recoveries.fetch_add(1, Relaxed);
        events.emit(EventKind::Recovered {
            endpoint: Arc::clone(id),
        });
    }
}

/// Recomputes panic mode and reports a flip.
fn refresh_panic(set: &EndpointSet, events: &EventBus, threshold: f64, now: u64) {
    if let Some(on) = set.refresh_panic(threshold, now) {
        if on {
            tracing::warn!(source = %events.source(), "panic routing on: too few endpoints are available");
        } else {
            tracing::info!(source = %events.source(), "panic routing off");
        }
        metrics::gauge!(names::PANIC_MODE, "manager" => Arc::clone(events.source())).set(if on {
            1.0
        } else {
            0.0
        });
        events.emit(EventKind::PanicMode { on });
    }
}

fn clamp_unit(v: f64) -> f64 {
    if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Displays an error with its sources: `outer: inner: innermost`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(e) = cur {
            write!(f, ": {e}")?;
            cur = e.source();
        }
        Ok(())
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

// ---------------------------------------------------------------------------
// Outlier detection
// ---------------------------------------------------------------------------

/// Passive outlier-detection settings (after Envoy's outlier detection).
///
/// ```
/// use failover_pool::core::health::OutlierConfig;
/// use std::time::Duration;
///
/// let config: OutlierConfig =
///     serde_yaml_ng::from_str("consecutive_failures: 3\nbase_ejection: 10s\n").unwrap();
/// assert_eq!(config.consecutive_failures, 3);
/// assert_eq!(config.base_ejection, Duration::from_secs(10));
/// assert_eq!(config.max_ejection, Duration::from_secs(300)); // default
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierConfig {
    /// Whether endpoints are ejected at all (default true).
    pub enabled: bool,
    /// Failures in a row that eject an endpoint (default 5; 0 disables this
    /// rule).
    pub consecutive_failures: u32,
    /// Share of failed calls within one interval that ejects an endpoint
    /// (0.0 < rate <= 1.0, default 0.5; `None` disables this rule).
    pub failure_rate: Option<f64>,
    /// Calls an endpoint needs within one interval before its failure rate
    /// counts (default 20).
    pub failure_rate_min_requests: u64,
    /// How often failure rates are evaluated and expired ejections are ended
    /// (default `10s`). An ejection stops applying to picks at its exact end;
    /// the sweep only reports it.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Length of the first ejection; the n-th lasts n × this (default `30s`).
    #[serde(with = "humantime_serde")]
    pub base_ejection: Duration,
    /// Longest ejection (default `300s`). An endpoint that stays un-ejected
    /// and usable this long has its ejection count reset.
    #[serde(with = "humantime_serde")]
    pub max_ejection: Duration,
    /// Largest share of endpoints ejected at once (0.0..=1.0, default 0.5):
    /// at most `floor(share × n)` endpoints, but at least one when there are
    /// two or more endpoints and the share is above zero. A lone endpoint is
    /// never ejected (it would leave nothing to send calls to).
    pub max_ejected_share: f64,
    /// Panic routing threshold: when the share of available endpoints drops
    /// below it, picks ignore health and ejection (Envoy's
    /// `healthy_panic_threshold`; default 0.5; 0.0 disables).
    pub panic_threshold: f64,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            enabled: true,
            consecutive_failures: 5,
            failure_rate: Some(0.5),
            failure_rate_min_requests: 20,
            interval: Duration::from_secs(10),
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_share: 0.5,
            panic_threshold: DEFAULT_PANIC_THRESHOLD,
        }
    }
}

impl OutlierConfig {
    /// Checks the values; the error names the offending field.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(rate) = self.failure_rate
            && !(rate > 0.0 && rate <= 1.0)
        {
            return Err(Error::Config(format!(
                "outlier_detection.failure_rate must be above 0.0 and at most 1.0, got {rate}"
            )));
        }
        if self.failure_rate_min_requests == 0 {
            return Err(Error::Config(
                "outlier_detection.failure_rate_min_requests must be at least 1".into(),
            ));
        }
        if self.interval.is_zero() {
            return Err(Error::Config(
                "outlier_detection.interval must be greater than zero".into(),
            ));
        }
        if self.base_ejection.is_zero() {
            return Err(Error::Config(
                "outlier_detection.base_ejection must be greater than zero".into(),
            ));
        }
        if self.max_ejection < self.base_ejection {
            return Err(Error::Config(format!(
                "outlier_detection.max_ejection ({:?}) must not be shorter than base_ejection ({:?})",
                self.max_ejection, self.base_ejection
            )));
        }
        if !(0.0..=1.0).contains(&self.max_ejected_share) {
            return Err(Error::Config(format!(
                "outlier_detection.max_ejected_share must be between 0.0 and 1.0, got {}",
                self.max_ejected_share
            )));
        }
        if !(0.0..=1.0).contains(&self.panic_threshold) {
            return Err(Error::Config(format!(
                "outlier_detection.panic_threshold must be between 0.0 and 1.0, got {}",
                self.panic_threshold
            )));
        }
        Ok(())
    }

    /// How many of `n` endpoints may be ejected at once (see
    /// [`OutlierConfig::max_ejected_share`]).
    ///
    /// ```
    /// use failover_pool::core::health::OutlierConfig;
    /// let c = OutlierConfig::default(); // share 0.5
    /// assert_eq!(c.max_ejected(1), 0);
    /// assert_eq!(c.max_ejected(2), 1);
    /// assert_eq!(c.max_ejected(3), 1);
    /// assert_eq!(c.max_ejected(10), 5);
    /// ```
    pub fn max_ejected(&self, n: usize) -> usize {
        if n < 2 || self.max_ejected_share <= 0.0 {
            return 0;
        }
        let share = (self.max_ejected_share * n as f64).floor() as usize;
        share.clamp(1, n)
    }
}

#[derive(Debug)]
struct SweepState {
    endpoint: Weak<LiveEndpoint>,
    successes: u64,
    failures: u64,
    clean_since: Option<u64>,
}

/// Why an endpoint is being ejected (for logs).
#[derive(Debug, Clone, Copy)]
enum Reason {
    Consecutive(u32),
    Rate { failures: u64, total: u64 },
}

/// Passive outlier detection over an [`EndpointSet`]; see the
/// [module docs](self).
///
/// ```
/// use failover_pool::core::clock::now_nanos;
/// use failover_pool::core::events::EventBus;
/// use failover_pool::core::health::{OutlierConfig, OutlierDetector};
/// use failover_pool::core::{BreakerConfig, Endpoint, EndpointSet};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// # fn main() -> Result<(), failover_pool::Error> {
/// let set = Arc::new(EndpointSet::new(
///     vec![Endpoint::new("a", "10.0.0.1", 80), Endpoint::new("b", "10.0.0.2", 80)],
///     Arc::new(BreakerConfig::default()),
/// )?);
/// let detector = OutlierDetector::new(
///     Arc::clone(&set),
///     OutlierConfig { consecutive_failures: 2, ..OutlierConfig::default() },
///     EventBus::new("example", 64),
/// )?;
/// let a = set.get("a").unwrap();
/// for _ in 0..2 {
///     let now = now_nanos();
///     let failures = a.record_outcome(false, Duration::from_millis(3), now);
///     detector.on_result(&a, false, failures, now);
/// }
/// assert!(a.is_ejected(now_nanos()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct OutlierDetector {
    set: Arc<EndpointSet>,
    config: OutlierConfig,
    events: EventBus,
    base_ns: u64,
    max_ns: u64,
    state: Mutex<HashMap<Arc<str>, SweepState>>,
}

impl OutlierDetector {
    /// A detector for `set`; fails when `config` is invalid.
    pub fn new(
        set: Arc<EndpointSet>,
        config: OutlierConfig,
        events: EventBus,
    ) -> Result<Self, Error> {
        config.validate()?;
        Ok(OutlierDetector {
            base_ns: dur_nanos(config.base_ejection),
            max_ns: dur_nanos(config.max_ejection),
            set,
            config,
            events,
            state: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OutlierConfig {
        &self.config
    }

    /// How long the next ejection of `ep` would last.
    pub fn next_ejection(&self, ep: &LiveEndpoint) -> Duration {
        Duration::from_nanos(self.ejection_ns(ep.ejection_count().saturating_add(1)))
    }

    fn ejection_ns(&self, nth: u32) -> u64 {
        self.base_ns.saturating_mul(u64::from(nth)).min(self.max_ns)
    }

    /// Called after every attempt with the outcome and the endpoint's
    /// consecutive-failure count (what
    /// [`LiveEndpoint::record_outcome`] returned). Ejects the endpoint when
    /// the count reached `consecutive_failures` and it is not ejected yet
    /// (an endpoint that fails again after its ejection ended, without a
    /// success in between, is ejected again at once, for longer).
    ///
    /// Takes no lock and does not allocate unless it ejects.
    #[inline]
    pub fn on_result(
        &self,
        ep: &Arc<LiveEndpoint>,
        success: bool,
        consecutive_failures: u32,
        now: u64,
    ) {
        let threshold = self.config.consecutive_failures;
        if success
            || !self.config.enabled
            || threshold == 0
            || consecutive_failures < threshold
            || ep.is_ejected(now)
        {
            return;
        }
        self.try_eject(ep, now, Reason::Consecutive(consecutive_failures));
    }

    /// Ejects `ep` unless it is ejected already or the share cap is reached.
    /// Returns whether it ejected.
    fn try_eject(&self, ep: &Arc<LiveEndpoint>, now: u64, reason: Reason) -> bool {
        {
            let snap = self.set.snapshot();
            let ejected = snap
                .endpoints()
                .iter()
                .filter(|e| e.is_ejected(now))
                .count();
            if ejected >= self.config.max_ejected(snap.len()) {
                tracing::debug!(
                    source = %self.events.source(),
                    endpoint = %ep.id(),
                    ejected,
                    total = snap.len(),
                    "not ejecting: the maximum share of endpoints is already ejected"
                );
                return false;
            }
        }
        let nanos = self.ejection_ns(ep.ejection_count().saturating_add(1));
        let Some(ejections) = ep.eject(now.saturating_add(nanos), now) else {
            return false;
        };
        let duration = Duration::from_nanos(nanos);
        let id = &ep.endpoint().id;
        match reason {
            Reason::Consecutive(n) => tracing::warn!(
                source = %self.events.source(), endpoint = %id, ?duration, ejections,
                consecutive_failures = n, "endpoint ejected"
            ),
            Reason::Rate { failures, total } => tracing::warn!(
                source = %self.events.source(), endpoint = %id, ?duration, ejections,
                failures, total, "endpoint ejected for its failure rate"
            ),
        }
        metrics::counter!(
            names::EJECTIONS_TOTAL,
            "manager" => Arc::clone(self.events.source()),
            "endpoint" => Arc::clone(id),
        )
        .increment(1);
        self.events.emit(EventKind::Ejected {
            endpoint: Arc::clone(id),
            duration,
            ejections,
        });
        refresh_panic(&self.set, &self.events, self.config.panic_threshold, now);
        true
    }

    /// The periodic pass: ends expired ejections (emitting
    /// [`EventKind::Unejected`], and [`EventKind::Recovered`] when the
    /// endpoint's health is usable), ejects endpoints whose failure rate
    /// since the last sweep is too high, resets the ejection count of
    /// endpoints that stayed un-ejected and usable for `max_ejection`, and
    /// recomputes panic mode.
    pub fn sweep(&self, now: u64) {
        let snap = self.set.load_full();
        let mut unejected = Vec::new();
        let mut candidates = Vec::new();
        {
            let mut state = lock(&self.state);
            state.retain(|id, _| snap.index_of(id).is_some());
            for ep in snap.endpoints() {
                if ep.clear_expired_ejection(now) {
                    unejected.push(Arc::clone(ep));
                }
                let counters = ep.counters();
                let successes = counters.successes.load(Relaxed);
                let failures = counters.failures.load(Relaxed);
                let st = state
                    .entry(Arc::clone(&ep.endpoint().id))
                    .or_insert_with(|| SweepState {
                        endpoint: Arc::downgrade(ep),
                        successes: 0,
                        failures: 0,
                        clean_since: None,
                    });
                if !std::ptr::eq(st.endpoint.as_ptr(), Arc::as_ptr(ep)) {
                    // Replaced by discovery: fresh counters, fresh baseline.
                    *st = SweepState {
                        endpoint: Arc::downgrade(ep),
                        successes: 0,
                        failures: 0,
                        clean_since: None,
                    };
                }
                let ds = successes.saturating_sub(st.successes);
                let df = failures.saturating_sub(st.failures);
                st.successes = successes;
                st.failures = failures;
                if let Some(rate) = self.config.failure_rate {
                    let total = ds + df;
                    if self.config.enabled
                        && total >= self.config.failure_rate_min_requests
                        && df as f64 >= rate * total as f64
                        && !ep.is_ejected(now)
                    {
                        candidates.push((Arc::clone(ep), df, total));
                    }
                }
                if ep.is_ejected(now) || !ep.health().is_usable() {
                    st.clean_since = None;
                } else {
                    let since = *st.clean_since.get_or_insert(now);
                    if ep.ejection_count() > 0 && now.saturating_sub(since) >= self.max_ns {
                        tracing::debug!(
                            source = %self.events.source(), endpoint = %ep.id(),
                            "resetting the ejection count after a long healthy stretch"
                        );
                        ep.reset_ejection_count();
                    }
                }
            }
        }
        for ep in unejected {
            let id = &ep.endpoint().id;
            tracing::info!(source = %self.events.source(), endpoint = %id, "ejection ended");
            self.events.emit(EventKind::Unejected {
                endpoint: Arc::clone(id),
            });
            if ep.health().is_usable() {
                ep.counters().recoveries.fetch_add(1, Relaxed);
                self.events.emit(EventKind::Recovered {
                    endpoint: Arc::clone(id),
                });
            }
        }
        for (ep, failures, total) in candidates {
            self.try_eject(&ep, now, Reason::Rate { failures, total });
        }
        refresh_panic(&self.set, &self.events, self.config.panic_threshold, now);
    }

    /// Starts the background loop running [`OutlierDetector::sweep`] every
    /// `interval`. Dropping the handle stops it. Must be called within a
    /// Tokio runtime.
    pub fn spawn(self: Arc<Self>) -> TaskHandle {
        TaskHandle::spawn(async move {
            loop {
                tokio::time::sleep(self.config.interval).await;
                self.sweep(now_nanos());
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::breaker::BreakerConfig;
    use crate::error::ErrorCode;
    use std::sync::atomic::AtomicU8;
    use tokio::sync::broadcast;

    const PASS: u8 = 0;
    const FAIL: u8 = 1;
    const DEGRADED: u8 = 2;
    const HANG: u8 = 3;

    /// A check whose result per endpoint is set by the test.
    #[derive(Debug, Default)]
    struct Scripted {
        results: Mutex<HashMap<String, Arc<AtomicU8>>>,
    }

    impl Scripted {
        fn set(&self, id: &str, v: u8) {
            lock(&self.results)
                .entry(id.to_owned())
                .or_default()
                .store(v, Relaxed);
        }
    }

    impl HealthCheck for Scripted {
        fn check<'a>(&'a self, endpoint: &'a Endpoint) -> CheckFuture<'a> {
            let v = lock(&self.results)
                .get(&*endpoint.id)
                .map_or(PASS, |a| a.load(Relaxed));
            Box::pin(async move {
                match v {
                    PASS => Ok(Health::Healthy),
                    DEGRADED => Ok(Health::Degraded),
                    HANG => std::future::pending().await,
                    _ => Err("scripted failure".into()),
                }
            })
        }
    }

    fn set_of(n: usize) -> Arc<EndpointSet> {
        let eps = (0..n)
            .map(|i| Endpoint::new(format!("e{i}"), "127.0.0.1", 1000 + i as u16))
            .collect();
        Arc::new(EndpointSet::new(eps, Arc::new(BreakerConfig::default())).unwrap())
    }

    fn checker(
        n: usize,
        config: HealthCheckConfig,
    ) -> (
        Arc<HealthChecker>,
        Arc<Scripted>,
        broadcast::Receiver<crate::core::events::Event>,
    ) {
        let script = Arc::new(Scripted::default());
        let events = EventBus::new("t", 256);
        let rx = events.subscribe();
        let hc = HealthChecker::new(
            set_of(n),
            Arc::clone(&script) as Arc<dyn HealthCheck>,
            config,
            events,
        )
        .unwrap();
        (Arc::new(hc), script, rx)
    }

    fn drain(rx: &mut broadcast::Receiver<crate::core::events::Event>) -> Vec<EventKind> {
        let mut out = Vec::new();
        while let Ok(e) = rx.try_recv() {
            out.push(e.kind);
        }
        out
    }

    fn changed(id: &str, from: Health, to: Health) -> EventKind {
        EventKind::HealthChanged {
            endpoint: id.into(),
            from,
            to,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rise_and_fall_thresholds() {
        let (hc, script, mut rx) = checker(2, HealthCheckConfig::default());
        // Unknown -> Healthy after one pass.
        assert_eq!(hc.check("e0").await.unwrap(), Health::Healthy);
        assert_eq!(
            drain(&mut rx),
            vec![changed("e0", Health::Unknown, Health::Healthy)]
        );

        script.set("e0", FAIL);
        assert_eq!(hc.check("e0").await.unwrap(), Health::Healthy);
        assert_eq!(hc.check("e0").await.unwrap(), Health::Healthy);
        assert!(drain(&mut rx).is_empty());
        assert_eq!(hc.check("e0").await.unwrap(), Health::Unhealthy);
        assert_eq!(
            drain(&mut rx),
            vec![changed("e0", Health::Healthy, Health::Unhealthy)]
        );

        // A pass in between resets the rise streak.
        script.set("e0", PASS);
        assert_eq!(hc.check("e0").await.unwrap(), Health::Unhealthy);
        script.set("e0", FAIL);
        assert_eq!(hc.check("e0").await.unwrap(), Health::Unhealthy);
        script.set("e0", PASS);
        assert_eq!(hc.check("e0").await.unwrap(), Health::Unhealthy);
        assert!(drain(&mut rx).is_empty());
        assert_eq!(hc.check("e0").await.unwrap(), Health::Healthy);
        assert_eq!(
            drain(&mut rx),
            vec![
                changed("e0", Health::Unhealthy, Health::Healthy),
                EventKind::Recovered {
                    endpoint: "e0".into()
                }
            ]
        );
        let ep = hc.set().get("e0").unwrap();
        assert_eq!(ep.counters().recoveries.load(Relaxed), 1);
        assert_ne!(ep.last_checked(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_goes_down_after_one_failure_and_degraded_is_immediate() {
        let (hc, script, mut rx) = checker(2, HealthCheckConfig::default());
        script.set("e1", FAIL);
        assert_eq!(hc.check("e1").await.unwrap(), Health::Unhealthy);
        script.set("e0", DEGRADED);
        assert_eq!(hc.check("e0").await.unwrap(), Health::Degraded);
        script.set("e0", PASS);
        assert_eq!(hc.check("e0").await.unwrap(), Health::Healthy);
        assert_eq!(
            drain(&mut rx),
            vec![
                changed("e1", Health::Unknown, Health::Unhealthy),
                changed("e0", Health::Unknown, Health::Degraded),
                changed("e0", Health::Degraded, Health::Healthy),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_is_a_failure_and_unknown_id_is_a_config_error() {
        let config = HealthCheckConfig {
            timeout: Duration::from_millis(500),
            ..HealthCheckConfig::default()
        };
        let (hc, script, _rx) = checker(1, config);
        script.set("e0", HANG);
        let report = hc.check_report("e0").await.unwrap();
        assert!(!report.passed());
        assert_eq!(report.health, Health::Unhealthy);
        assert_eq!(report.changed_from, Some(Health::Unknown));
        let err = report.outcome.unwrap_err();
        assert_eq!(err.code(), ErrorCode::HealthCheckFailed);
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("timed out"), "{source}");

        let err = hc.check("nope").await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::Config);
    }

    #[tokio::test(start_paused = true)]
    async fn panic_mode_toggles_with_health() {
        let (hc, script, mut rx) = checker(2, HealthCheckConfig::default());
        assert_eq!(hc.check_all().await.len(), 2);
        drain(&mut rx);
        script.set("e0", FAIL);
        script.set("e1", FAIL);
        for _ in 0..3 {
            hc.check_all().await;
        }
        let kinds = drain(&mut rx);
        // One of two down is 50% available: not below the threshold yet.
        assert_eq!(
            kinds
                .iter()
                .filter(|k| matches!(k, EventKind::PanicMode { .. }))
                .count(),
            1,
            "{kinds:?}"
        );
        assert_eq!(kinds.last(), Some(&EventKind::PanicMode { on: true }));
        assert!(hc.set().is_panic());

        script.set("e0", PASS);
        assert_eq!(hc.check("e0").await.unwrap(), Health::Unhealthy); // rise not reached
        assert!(hc.set().is_panic());
        assert_eq!(hc.check("e0").await.unwrap(), Health::Healthy);
        assert!(!hc.set().is_panic());
        let kinds = drain(&mut rx);
        assert!(
            kinds.contains(&EventKind::PanicMode { on: false }),
            "{kinds:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn background_loop_moves_health() {
        let config = HealthCheckConfig {
            interval: Duration::from_secs(1),
            fall: 2,
            ..HealthCheckConfig::default()
        };
        let (hc, script, mut rx) = checker(2, config);
        let task = Arc::clone(&hc).spawn();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(hc.set().get("e0").unwrap().health(), Health::Healthy);
        assert_eq!(hc.set().get("e1").unwrap().health(), Health::Healthy);
        script.set("e1", FAIL);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(hc.set().get("e1").unwrap().health(), Health::Unhealthy);
        assert_eq!(hc.set().get("e0").unwrap().health(), Health::Healthy);
        assert!(drain(&mut rx).contains(&changed("e1", Health::Healthy, Health::Unhealthy)));

        // Endpoints added later are picked up.
        hc.set()
            .upsert(Endpoint::new("late", "127.0.0.1", 9))
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(hc.set().get("late").unwrap().health(), Health::Healthy);

        drop(task);
        script.set("e1", PASS);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(hc.set().get("e1").unwrap().health(), Health::Unhealthy);
    }

    #[test]
    fn config_validation_names_the_field() {
        assert!(HealthCheckConfig::default().validate().is_ok());
        let bad = [
            HealthCheckConfig {
                interval: Duration::ZERO,
                ..Default::default()
            },
            HealthCheckConfig {
                jitter: 1.5,
                ..Default::default()
            },
            HealthCheckConfig {
                rise: 0,
                ..Default::default()
            },
            HealthCheckConfig {
                path: Some("health".into()),
                ..Default::default()
            },
        ];
        for (cfg, field) in bad.iter().zip(["interval", "jitter", "rise", "path"]) {
            let msg = cfg.validate().unwrap_err().to_string();
            assert!(msg.contains(&format!("health_check.{field}")), "{msg}");
        }
        assert!(OutlierConfig::default().validate().is_ok());
        let msg = OutlierConfig {
            max_ejection: Duration::from_secs(1),
            ..Default::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(msg.contains("outlier_detection.max_ejection"), "{msg}");
        let msg = OutlierConfig {
            failure_rate: Some(0.0),
            ..Default::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(msg.contains("outlier_detection.failure_rate"), "{msg}");
    }

    // ---- outlier detection ------------------------------------------------

    fn detector(
        n: usize,
        config: OutlierConfig,
    ) -> (
        OutlierDetector,
        Arc<EndpointSet>,
        broadcast::Receiver<crate::core::events::Event>,
    ) {
        let set = set_of(n);
        let events = EventBus::new("t", 256);
        let rx = events.subscribe();
        (
            OutlierDetector::new(Arc::clone(&set), config, events).unwrap(),
            set,
            rx,
        )
    }

    fn fail_n(d: &OutlierDetector, ep: &Arc<LiveEndpoint>, n: u32) {
        for _ in 0..n {
            let now = now_nanos();
            let c = ep.record_outcome(false, Duration::from_millis(1), now);
            d.on_result(ep, false, c, now);
        }
    }

    fn ejected(id: &str, secs: u64, ejections: u32) -> EventKind {
        EventKind::Ejected {
            endpoint: id.into(),
            duration: Duration::from_secs(secs),
            ejections,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_eject_for_growing_capped_durations() {
        let config = OutlierConfig {
            max_ejection: Duration::from_secs(75),
            ..OutlierConfig::default()
        };
        let (d, set, mut rx) = detector(4, config);
        let ep = set.get("e0").unwrap();
        fail_n(&d, &ep, 4);
        assert!(!ep.is_ejected(now_nanos()));
        fail_n(&d, &ep, 1);
        assert!(ep.is_ejected(now_nanos()));
        assert_eq!(drain(&mut rx), vec![ejected("e0", 30, 1)]);
        // Further failures while ejected change nothing.
        fail_n(&d, &ep, 3);
        assert!(drain(&mut rx).is_empty());

        tokio::time::advance(Duration::from_secs(29)).await;
        d.sweep(now_nanos());
        assert!(drain(&mut rx).is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!ep.is_ejected(now_nanos()));
        d.sweep(now_nanos());
        assert_eq!(
            drain(&mut rx),
            vec![
                EventKind::Unejected {
                    endpoint: "e0".into()
                },
                EventKind::Recovered {
                    endpoint: "e0".into()
                }
            ]
        );

        // Fails again without a success in between: ejected at once, twice as long.
        fail_n(&d, &ep, 1);
        assert_eq!(drain(&mut rx), vec![ejected("e0", 60, 2)]);
        tokio::time::advance(Duration::from_secs(60)).await;
        d.sweep(now_nanos());
        drain(&mut rx);

        // A success resets the streak; the third ejection is capped at 75s.
        let now = now_nanos();
        let c = ep.record_outcome(true, Duration::from_millis(1), now);
        d.on_result(&ep, true, c, now);
        fail_n(&d, &ep, 4);
        assert!(drain(&mut rx).is_empty());
        fail_n(&d, &ep, 1);
        assert_eq!(drain(&mut rx), vec![ejected("e0", 75, 3)]);
        assert_eq!(d.next_ejection(&ep), Duration::from_secs(75));
    }

    #[tokio::test(start_paused = true)]
    async fn max_ejected_share_is_respected() {
        let (d, set, mut rx) = detector(4, OutlierConfig::default());
        for id in ["e0", "e1", "e2"] {
            fail_n(&d, &set.get(id).unwrap(), 5);
        }
        let now = now_nanos();
        let ejected_now: Vec<_> = set
            .snapshot()
            .endpoints()
            .iter()
            .filter(|e| e.is_ejected(now))
            .map(|e| e.id().to_owned())
            .collect();
        assert_eq!(ejected_now, ["e0", "e1"]);
        let kinds = drain(&mut rx);
        assert_eq!(
            kinds
                .iter()
                .filter(|k| matches!(k, EventKind::Ejected { .. }))
                .count(),
            2
        );
        // Half of the endpoints are out: not below the 0.5 panic threshold.
        assert!(!set.is_panic());

        // A lone endpoint is never ejected.
        let (d, set, _rx) = detector(1, OutlierConfig::default());
        let ep = set.get("e0").unwrap();
        fail_n(&d, &ep, 10);
        assert!(!ep.is_ejected(now_nanos()));
    }

    #[tokio::test(start_paused = true)]
    async fn ejections_can_trigger_panic_mode() {
        let config = OutlierConfig {
            max_ejected_share: 1.0,
            ..OutlierConfig::default()
        };
        let (d, set, mut rx) = detector(2, config);
        fail_n(&d, &set.get("e0").unwrap(), 5);
        assert!(!set.is_panic());
        fail_n(&d, &set.get("e1").unwrap(), 5);
        assert!(set.is_panic());
        assert!(drain(&mut rx).contains(&EventKind::PanicMode { on: true }));
        tokio::time::advance(Duration::from_secs(30)).await;
        d.sweep(now_nanos());
        assert!(!set.is_panic());
        assert!(drain(&mut rx).contains(&EventKind::PanicMode { on: false }));
    }

    #[tokio::test(start_paused = true)]
    async fn failure_rate_ejects_on_sweep() {
        let config = OutlierConfig {
            consecutive_failures: 0, // only the rate rule
            ..OutlierConfig::default()
        };
        let (d, set, mut rx) = detector(3, config);
        let (e0, e1, e2) = (
            set.get("e0").unwrap(),
            set.get("e1").unwrap(),
            set.get("e2").unwrap(),
        );
        let now = now_nanos();
        // e0: 20 calls, 12 failures (never 5 in a row) -> 60% >= 50%.
        for i in 0..20 {
            let ok = i % 5 == 0 || i % 5 == 2;
            let c = e0.record_outcome(ok, Duration::from_millis(1), now);
            d.on_result(&e0, ok, c, now);
        }
        // e1: 10 calls, all failed -> below the minimum request count.
        for _ in 0..10 {
            let c = e1.record_outcome(false, Duration::from_millis(1), now);
            d.on_result(&e1, false, c, now);
        }
        // e2: 30 calls, 9 failures -> 30%.
        for i in 0..30 {
            let ok = i % 10 >= 3;
            e2.record_outcome(ok, Duration::from_millis(1), now);
        }
        assert!(drain(&mut rx).is_empty());
        d.sweep(now);
        assert_eq!(drain(&mut rx), vec![ejected("e0", 30, 1)]);
        assert!(e0.is_ejected(now) && !e1.is_ejected(now) && !e2.is_ejected(now));

        // Only the calls since the last sweep count: 10 more failures on e1
        // make 10 in this interval, still too few.
        for _ in 0..10 {
            e1.record_outcome(false, Duration::from_millis(1), now);
        }
        d.sweep(now);
        assert!(!e1.is_ejected(now));
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_count_resets_after_a_long_healthy_stretch() {
        let config = OutlierConfig {
            interval: Duration::from_secs(10),
            max_ejection: Duration::from_secs(60),
            ..OutlierConfig::default()
        };
        let (d, set, _rx) = detector(2, config);
        let ep = set.get("e0").unwrap();
        fail_n(&d, &ep, 5);
        assert_eq!(ep.ejection_count(), 1);
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(10)).await;
            d.sweep(now_nanos());
        }
        assert!(!ep.is_ejected(now_nanos()));
        assert_eq!(ep.ejection_count(), 1);
        for _ in 0..6 {
            tokio::time::advance(Duration::from_secs(10)).await;
            d.sweep(now_nanos());
        }
        assert_eq!(ep.ejection_count(), 0);
        assert_eq!(d.next_ejection(&ep), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn spawned_sweep_unejects() {
        let config = OutlierConfig {
            interval: Duration::from_secs(5),
            base_ejection: Duration::from_secs(10),
            ..OutlierConfig::default()
        };
        let (d, set, mut rx) = detector(2, config);
        let d = Arc::new(d);
        let task = Arc::clone(&d).spawn();
        fail_n(&d, &set.get("e1").unwrap(), 5);
        tokio::time::sleep(Duration::from_secs(16)).await;
        let kinds = drain(&mut rx);
        assert!(
            kinds.contains(&EventKind::Unejected {
                endpoint: "e1".into()
            }),
            "{kinds:?}"
        );
        task.shutdown().await;
    }

    #[tokio::test]
    async fn join_all_keeps_order() {
        let futs = (0..5u64)
            .map(|i| async move {
                tokio::time::sleep(Duration::from_millis(10 * (5 - i))).await;
                i
            })
            .collect();
        assert_eq!(join_all(futs).await, vec![0, 1, 2, 3, 4]);
    }
}
