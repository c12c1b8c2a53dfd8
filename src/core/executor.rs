//! [`Failover`]: the manager that ties the core together, and
//! [`Failover::execute`], which runs one operation with failover:
//! pick → breaker → per-attempt timeout → run → classify → record → maybe retry.
//!
//! ```no_run
//! use failover_pool::core::{Endpoint, Failover, Classified};
//!
//! # async fn demo() -> failover_pool::Result<()> {
//! let failover = Failover::builder("users")
//!     .endpoint(Endpoint::new("a", "10.0.0.1", 8080))
//!     .endpoint(Endpoint::new("b", "10.0.0.2", 8080))
//!     .build()?;
//!
//! let served = failover
//!     .execute(|ep| {
//!         let addr = ep.endpoint().authority();
//!         async move {
//!             // call the service at `addr`; classify your error so the
//!             // executor knows whether to fail over
//!             tokio::net::TcpStream::connect(addr).await.map_err(Classified::from)?;
//!             Ok::<_, Classified>("hello")
//!         }
//!     })
//!     .await?;
//! println!("{} served by {}", served.value, served.endpoint.id());
//! # Ok(()) }
//! ```

use crate::core::breaker::{BreakerConfig, CallOutcome};
use crate::core::clock::{instant_of, nanos_of, now_nanos};
use crate::core::discovery::{Discovery, DiscoveryBackoff, spawn_discovery};
use crate::core::endpoint::{Endpoint, Health};
use crate::core::events::{EndpointStats, Event, EventBus, EventKind, Stats, names};
use crate::core::health::{
    HealthCheck, HealthCheckConfig, HealthChecker, OutlierConfig, OutlierDetector,
};
use crate::core::retry::{Idempotency, RetryBudget, RetryPolicy};
use crate::core::set::{EndpointSet, LiveEndpoint};
use crate::core::stats::{Counters, LatencyHistogram};
use crate::core::strategy::{Excluded, PickContext, RoundRobin, Strategy};
use crate::core::task::TaskHandle;
use crate::error::{BoxError, Error, ErrorClass, Result};
use std::fmt;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tracing::Instrument;

/// How an operation's error relates to failover. Implemented for this
/// crate's [`Error`], for [`std::io::Error`] and for [`Classified`]; implement
/// it for your own error type, or wrap your errors in [`Classified`].
pub trait Classify {
    /// The error's class.
    fn classify(&self) -> ErrorClass;
}

impl Classify for Error {
    fn classify(&self) -> ErrorClass {
        if self.is_failover() {
            ErrorClass::Failover {
                may_have_executed: self.may_have_executed(),
            }
        } else {
            ErrorClass::Application
        }
    }
}

impl Classify for std::io::Error {
    fn classify(&self) -> ErrorClass {
        ErrorClass::of_io(self)
    }
}

/// An error paired with its [`ErrorClass`], for operations whose error type
/// does not implement [`Classify`].
#[derive(Debug)]
pub struct Classified {
    /// The class.
    pub class: ErrorClass,
    /// The error.
    pub error: BoxError,
}

impl Classified {
    /// A failover-class error that certainly did not execute.
    pub fn not_executed(error: impl Into<BoxError>) -> Self {
        Classified {
            class: ErrorClass::not_executed(),
            error: error.into(),
        }
    }

    /// A failover-class error after which the operation may have executed.
    pub fn maybe_executed(error: impl Into<BoxError>) -> Self {
        Classified {
            class: ErrorClass::maybe_executed(),
            error: error.into(),
        }
    }

    /// The application's own error: never retried, never a failover.
    pub fn application(error: impl Into<BoxError>) -> Self {
        Classified {
            class: ErrorClass::Application,
            error: error.into(),
        }
    }
}

impl From<std::io::Error> for Classified {
    fn from(e: std::io::Error) -> Self {
        Classified {
            class: e.classify(),
            error: Box::new(e),
        }
    }
}

impl From<Classified> for BoxError {
    fn from(c: Classified) -> Self {
        c.error
    }
}

impl Classify for Classified {
    fn classify(&self) -> ErrorClass {
        self.class
    }
}

/// The result of a successful [`Failover::execute`]: the value and who served it.
#[derive(Debug)]
pub struct Served<T> {
    /// What the operation returned.
    pub value: T,
    /// The endpoint that served it.
    pub endpoint: Arc<LiveEndpoint>,
    /// Attempts it took (1 = no retry).
    pub attempts: u32,
}

/// Per-call options for [`Failover::execute_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOptions {
    /// Whether the operation may be retried after it may have executed.
    pub idempotency: Idempotency,
    /// Overrides the policy's overall deadline for this call.
    pub deadline: Option<Duration>,
}

impl CallOptions {
    /// Options for an idempotent operation.
    pub fn idempotent() -> Self {
        CallOptions {
            idempotency: Idempotency::Idempotent,
            deadline: None,
        }
    }
}

struct Metrics {
    requests_ok: metrics::Counter,
    requests_err: metrics::Counter,
    retries: metrics::Counter,
    failovers: metrics::Counter,
    budget_exhausted: metrics::Counter,
    duration: metrics::Histogram,
}

impl Metrics {
    fn new(manager: &Arc<str>) -> Self {
        let m = metrics::SharedString::from(Arc::clone(manager));
        Metrics {
            requests_ok: metrics::counter!(names::REQUESTS_TOTAL, "manager" => m.clone(), "outcome" => "success"),
            requests_err: metrics::counter!(names::REQUESTS_TOTAL, "manager" => m.clone(), "outcome" => "failure"),
            retries: metrics::counter!(names::RETRIES_TOTAL, "manager" => m.clone()),
            failovers: metrics::counter!(names::FAILOVERS_TOTAL, "manager" => m.clone()),
            budget_exhausted: metrics::counter!(names::RETRY_BUDGET_EXHAUSTED_TOTAL, "manager" => m.clone()),
            duration: metrics::histogram!(names::REQUEST_DURATION_SECONDS, "manager" => m),
        }
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    set: Arc<EndpointSet>,
    strategy: Arc<dyn Strategy>,
    retry: RetryPolicy,
    budget: Option<RetryBudget>,
    outlier: Option<Arc<OutlierDetector>>,
    checker: Arc<HealthChecker>,
    events: EventBus,
    counters: Counters,
    latency: LatencyHistogram,
    metrics: Metrics,
    tasks: Mutex<Vec<TaskHandle>>,
}

/// The endpoint-failover manager: a live endpoint set, a strategy, health
/// checking, outlier detection, per-endpoint circuit breakers and a retry
/// policy with a budget. Cheap to clone (an `Arc`).
///
/// Background tasks (active health checks, outlier sweeps, discovery) run
/// while any clone is alive and stop when the last one is dropped or
/// [`Failover::close`] is called.
#[derive(Debug, Clone)]
pub struct Failover {
    inner: Arc<Inner>,
}

/// Builds a [`Failover`].
#[derive(Debug)]
pub struct FailoverBuilder {
    name: Arc<str>,
    endpoints: Vec<Endpoint>,
    strategy: Arc<dyn Strategy>,
    breaker: BreakerConfig,
    retry: RetryPolicy,
    health: HealthCheckConfig,
    check: Option<Arc<dyn HealthCheck>>,
    outlier: OutlierConfig,
    discovery: Option<Arc<dyn Discovery>>,
    event_capacity: usize,
}

impl FailoverBuilder {
    /// Adds an endpoint.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// Adds endpoints.
    pub fn endpoints(mut self, endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        self.endpoints.extend(endpoints);
        self
    }

    /// Sets the strategy (default: round-robin).
    pub fn strategy(mut self, strategy: impl Strategy) -> Self {
        self.strategy = Arc::new(strategy);
        self
    }

    /// Sets a shared strategy object.
    pub fn strategy_arc(mut self, strategy: Arc<dyn Strategy>) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets the circuit breaker configuration (applies to every endpoint).
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Sets the active health-check configuration.
    pub fn health_config(mut self, config: HealthCheckConfig) -> Self {
        self.health = config;
        self
    }

    /// Sets the active health check (default: none; `health_check(id)` then
    /// reports the passive view only). Background checking starts when the
    /// config is enabled.
    pub fn health_check(mut self, check: impl HealthCheck) -> Self {
        self.check = Some(Arc::new(check));
        self
    }

    /// Sets the outlier detection configuration.
    pub fn outlier(mut self, config: OutlierConfig) -> Self {
        self.outlier = config;
        self
    }

    /// Takes endpoints from a discovery provider (in addition to any given
    /// directly, which are the initial list).
    pub fn discovery(mut self, discovery: impl Discovery) -> Self {
        self.discovery = Some(Arc::new(discovery));
        self
    }

    /// Sets a shared discovery provider.
    pub fn discovery_arc(mut self, discovery: Arc<dyn Discovery>) -> Self {
        self.discovery = Some(discovery);
        self
    }

    /// How many undelivered events a slow subscriber may fall behind (default 1024).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// Validates the configuration and builds the manager. Background tasks
    /// (health checks, outlier sweeps, discovery) need a Tokio runtime: when
    /// any is configured and no runtime is running, this returns a
    /// [`Error::Config`].
    pub fn build(self) -> Result<Failover> {
        self.breaker.validate()?;
        self.retry.validate()?;
        self.health.validate()?;
        self.outlier.validate()?;
        let set = Arc::new(EndpointSet::new(self.endpoints, Arc::new(self.breaker))?);
        let events = EventBus::new(Arc::clone(&self.name), self.event_capacity);
        let panic_threshold = if self.outlier.enabled {
            self.outlier.panic_threshold
        } else {
            0.0
        };
        let checker = Arc::new(
            HealthChecker::new(
                Arc::clone(&set),
                self.check.clone().unwrap_or_else(|| Arc::new(NoCheck)),
                self.health.clone(),
                events.clone(),
            )?
            .with_panic_threshold(panic_threshold),
        );
        let outlier = if self.outlier.enabled {
            Some(Arc::new(OutlierDetector::new(
                Arc::clone(&set),
                self.outlier.clone(),
                events.clone(),
            )?))
        } else {
            None
        };
        let wants_tasks = (self.check.is_some() && self.health.enabled)
            || outlier.is_some()
            || self.discovery.is_some();
        let runtime = tokio::runtime::Handle::try_current().ok();
        if wants_tasks && runtime.is_none() {
            return Err(Error::Config(
                "Failover::build needs a running Tokio runtime for its background tasks \
                 (health checks, outlier sweeps or discovery)"
                    .into(),
            ));
        }
        let mut tasks = Vec::new();
        if runtime.is_some() {
            if self.check.is_some() && self.health.enabled {
                tasks.push(Arc::clone(&checker).spawn());
            }
            if let Some(o) = &outlier {
                tasks.push(Arc::clone(o).spawn());
            }
            if let Some(d) = self.discovery {
                tasks.push(spawn_discovery(
                    d,
                    Arc::clone(&set),
                    events.clone(),
                    DiscoveryBackoff::default(),
                ));
            }
        }
        let budget = self.retry.budget.as_ref().map(RetryBudget::new);
        Ok(Failover {
            inner: Arc::new(Inner {
                metrics: Metrics::new(&self.name),
                name: self.name,
                set,
                strategy: self.strategy,
                retry: self.retry,
                budget,
                outlier,
                checker,
                events,
                counters: Counters::default(),
                latency: LatencyHistogram::new(),
                tasks: Mutex::new(tasks),
            }),
        })
    }
}

/// The health check used when none is configured: reports the current health.
#[derive(Debug)]
struct NoCheck;

impl HealthCheck for NoCheck {
    fn check<'a>(&'a self, endpoint: &'a Endpoint) -> crate::core::health::CheckFuture<'a> {
        let health = endpoint.health;
        Box::pin(async move {
            match health {
                Health::Unknown => Ok(Health::Healthy),
                h => Ok(h),
            }
        })
    }
}

impl Failover {
    /// Starts building a manager with this name (used in events, metrics and logs).
    pub fn builder(name: impl Into<Arc<str>>) -> FailoverBuilder {
        FailoverBuilder {
            name: name.into(),
            endpoints: Vec::new(),
            strategy: Arc::new(RoundRobin::new()),
            breaker: BreakerConfig::default(),
            retry: RetryPolicy::default(),
            health: HealthCheckConfig::default(),
            check: None,
            outlier: OutlierConfig::default(),
            discovery: None,
            event_capacity: 1024,
        }
    }

    /// The manager's name.
    pub fn name(&self) -> &Arc<str> {
        &self.inner.name
    }

    /// The live endpoint set (to inspect, or to change by hand).
    pub fn endpoints(&self) -> &Arc<EndpointSet> {
        &self.inner.set
    }

    /// Subscribes to the event stream.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The event bus (to emit events of your own layer into the same stream).
    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    /// Runs the active health check of one endpoint now and returns its
    /// health afterwards.
    pub async fn health_check(&self, id: &str) -> Result<Health> {
        self.inner.checker.check(id).await
    }

    /// Runs every endpoint's active health check now, concurrently.
    pub async fn health_check_all(&self) -> Vec<(Arc<str>, Health)> {
        self.inner.checker.check_all().await
    }

    /// Stops the background tasks. Calls still work; health then changes only
    /// through passive detection and by hand.
    pub fn close(&self) {
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Chooses an endpoint for one call without running anything (for callers
    /// that manage the call themselves; pair it with [`Failover::record`]).
    pub fn pick(&self) -> Result<Arc<LiveEndpoint>> {
        let excluded = Excluded::new();
        Ok(self.pick_excluding(&excluded, now_nanos())?.1)
    }

    fn pick_excluding(&self, excluded: &Excluded, now: u64) -> Result<(usize, Arc<LiveEndpoint>)> {
        let inner = &*self.inner;
        let snap = inner.set.snapshot();
        if snap.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let mut ctx = PickContext {
            endpoints: snap.endpoints(),
            version: snap.version(),
            now,
            excluded,
            panic: inner.set.is_panic(),
        };
        let empty = Excluded::new();
        let idx = inner
            .strategy
            .pick(&ctx)
            .or_else(|| {
                // Only already-tried endpoints are left: trying one again beats failing.
                (!excluded.is_empty()).then_some(())?;
                ctx.excluded = &empty;
                inner.strategy.pick(&ctx)
            })
            .or_else(|| {
                // Nothing available at all: panic routing (if enabled) uses
                // every endpoint rather than none.
                let panic_on = inner
                    .outlier
                    .as_ref()
                    .is_some_and(|o| o.config().panic_threshold > 0.0);
                (panic_on && !ctx.panic).then_some(())?;
                ctx.panic = true;
                inner.strategy.pick(&ctx)
            });
        match idx {
            Some(i) => Ok((i, Arc::clone(&snap.endpoints()[i]))),
            None => Err(Error::AllEndpointsDown { total: snap.len() }),
        }
    }

    /// Records the outcome of a call made on an endpoint obtained with
    /// [`Failover::pick`] (passive health, latency, outlier detection).
    pub fn record(
        &self,
        endpoint: &Arc<LiveEndpoint>,
        class: Option<ErrorClass>,
        latency: Duration,
    ) {
        let now = now_nanos();
        let success = !matches!(class, Some(ErrorClass::Failover { .. }));
        self.record_attempt(endpoint, success, latency, now);
    }

    fn record_attempt(&self, ep: &Arc<LiveEndpoint>, success: bool, latency: Duration, now: u64) {
        let n = ep.record_outcome(success, latency, now);
        if let Some(o) = &self.inner.outlier {
            o.on_result(ep, success, n, now);
        }
        ep.metrics(&self.inner.name).record(success, latency);
    }

    /// Runs `op` with failover (the seed's `ExecuteWithFailover`) under the
    /// manager's retry policy, treating it
    /// as *not* idempotent: after a failure that may have executed (a timeout
    /// or a connection cut mid-request) it is not retried and the error says
    /// so ([`Error::may_have_executed`]).
    #[doc(alias = "execute_with_failover")]
    pub async fn execute<T, E, F, Fut>(&self, op: F) -> Result<Served<T>>
    where
        F: FnMut(Arc<LiveEndpoint>) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Classify + Into<BoxError>,
    {
        self.execute_with(CallOptions::default(), op).await
    }

    /// Runs an idempotent `op` with failover: it is retried (on another
    /// endpoint when one exists) even after failures that may have executed.
    pub async fn execute_idempotent<T, E, F, Fut>(&self, op: F) -> Result<Served<T>>
    where
        F: FnMut(Arc<LiveEndpoint>) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Classify + Into<BoxError>,
    {
        self.execute_with(CallOptions::idempotent(), op).await
    }

    /// Runs `op` with failover and explicit [`CallOptions`].
    pub async fn execute_with<T, E, F, Fut>(
        &self,
        opts: CallOptions,
        mut op: F,
    ) -> Result<Served<T>>
    where
        F: FnMut(Arc<LiveEndpoint>) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Classify + Into<BoxError>,
    {
        let inner = &*self.inner;
        let policy = &inner.retry;
        let started = Instant::now();
        let mut clock = nanos_of(started);
        let deadline = opts.deadline.or(policy.deadline).map(|d| started + d);
        let idempotent = matches!(opts.idempotency, Idempotency::Idempotent);
        inner.counters.requests.fetch_add(1, Relaxed);

        let mut excluded = Excluded::new();
        let mut attempt: u32 = 0;
        let mut may_have_executed = false;
        let mut previous: Option<Arc<str>> = None;
        let mut last_error: Option<Error> = None;
        let result: Result<Served<T>> = loop {
            attempt += 1;
            if attempt > 1 {
                if let Some(budget) = &inner.budget
                    && !budget.try_withdraw_at(now_nanos())
                {
                    inner.metrics.budget_exhausted.increment(1);
                    inner.events.emit(EventKind::RetryBudgetExhausted);
                    break Err(Error::RetryBudgetExhausted {
                        attempts: attempt - 1,
                        may_have_executed,
                        last: Box::new(last_error.take().unwrap_or(Error::Closed)),
                    });
                }
                inner.metrics.retries.increment(1);
                let delay = policy.backoff.delay(attempt - 2);
                let wake = Instant::now() + delay;
                if let Some(d) = deadline
                    && wake >= d
                {
                    break Err(Error::Timeout {
                        what: "call",
                        after: d - started,
                        may_have_executed,
                    });
                }
                tokio::time::sleep_until(wake).await;
                clock = now_nanos();
            }
            let now = clock;
            let (index, ep) = match self.pick_excluding(&excluded, now) {
                Ok(picked) => picked,
                Err(e) => break Err(e),
            };
            if let Some(prev) = &previous
                && **prev != *ep.id()
            {
                inner.counters.failovers.fetch_add(1, Relaxed);
                inner.metrics.failovers.increment(1);
                inner.events.emit(EventKind::Failover {
                    from: Arc::clone(prev),
                    to: Arc::clone(&ep.endpoint().id),
                    attempt,
                });
            }
            previous = Some(Arc::clone(&ep.endpoint().id));
            excluded.insert(index);

            let permit = match ep.breaker().try_acquire(now) {
                Ok(p) => p,
                Err(_) => {
                    let err = Error::CircuitOpen {
                        endpoint: ep.id().to_owned(),
                    };
                    if attempt >= policy.max_attempts {
                        break Err(exhausted(attempt, may_have_executed, err));
                    }
                    last_error = Some(err);
                    continue;
                }
            };
            if let Some(t) = permit.transition() {
                self.breaker_event(&ep, t);
            }
            let guard = ep.start_call();
            let attempt_started = instant_of(now);
            let timeout = match (policy.attempt_timeout, deadline) {
                (Some(t), Some(d)) => Some(t.min(d.saturating_duration_since(attempt_started))),
                (Some(t), None) => Some(t),
                (None, Some(d)) => Some(d.saturating_duration_since(attempt_started)),
                (None, None) => None,
            };
            let span = tracing::debug_span!("failover.attempt", manager = %inner.name, endpoint = %ep.id(), attempt);
            let fut = op(Arc::clone(&ep)).instrument(span);
            let outcome = match timeout {
                Some(t) => match tokio::time::timeout_at(attempt_started + t, fut).await {
                    Ok(r) => r.map_err(|e| (e.classify(), e.into())),
                    Err(_) => Err((
                        ErrorClass::maybe_executed(),
                        Box::new(Error::Timeout {
                            what: "attempt",
                            after: t,
                            may_have_executed: true,
                        }) as BoxError,
                    )),
                },
                None => fut.await.map_err(|e| (e.classify(), e.into())),
            };
            drop(guard);
            let ended = Instant::now();
            let now = nanos_of(ended);
            clock = now;
            let elapsed = ended.saturating_duration_since(attempt_started);
            match outcome {
                Ok(value) => {
                    if let Some(t) = permit.record(CallOutcome::Success, elapsed, now) {
                        self.breaker_event(&ep, t);
                    }
                    self.record_attempt(&ep, true, elapsed, now);
                    if let Some(b) = &inner.budget {
                        b.deposit_at(now);
                    }
                    break Ok(Served {
                        value,
                        endpoint: ep,
                        attempts: attempt,
                    });
                }
                Err((ErrorClass::Application, source)) => {
                    // The server answered: it is healthy; the error is the caller's.
                    if let Some(t) = permit.record(CallOutcome::Ignored, elapsed, now) {
                        self.breaker_event(&ep, t);
                    }
                    self.record_attempt(&ep, true, elapsed, now);
                    break Err(Error::Backend {
                        endpoint: ep.id().to_owned(),
                        class: ErrorClass::Application,
                        source,
                    });
                }
                Err((
                    class @ ErrorClass::Failover {
                        may_have_executed: mhe,
                    },
                    source,
                )) => {
                    if let Some(t) = permit.record(CallOutcome::Failure, elapsed, now) {
                        self.breaker_event(&ep, t);
                    }
                    self.record_attempt(&ep, false, elapsed, now);
                    may_have_executed |= mhe;
                    let err = match source.downcast::<Error>() {
                        Ok(e) => *e,
                        Err(source) => Error::Backend {
                            endpoint: ep.id().to_owned(),
                            class,
                            source,
                        },
                    };
                    if mhe && !idempotent {
                        // Retrying could apply the operation twice.
                        break Err(if attempt == 1 {
                            err
                        } else {
                            exhausted(attempt, true, err)
                        });
                    }
                    if attempt >= policy.max_attempts {
                        break Err(exhausted(attempt, may_have_executed, err));
                    }
                    last_error = Some(err);
                }
            }
        };
        let elapsed = instant_of(clock).saturating_duration_since(started);
        inner.latency.record(elapsed);
        inner.metrics.duration.record(elapsed.as_secs_f64());
        match &result {
            Ok(_) => {
                inner.counters.successes.fetch_add(1, Relaxed);
                inner.metrics.requests_ok.increment(1);
            }
            Err(_) => {
                inner.counters.failures.fetch_add(1, Relaxed);
                inner.metrics.requests_err.increment(1);
            }
        }
        result
    }

    fn breaker_event(&self, ep: &LiveEndpoint, t: crate::core::breaker::Transition) {
        metrics::gauge!(names::BREAKER_STATE, "manager" => metrics::SharedString::from(Arc::clone(&self.inner.name)), "endpoint" => ep.id().to_owned())
            .set(match t.to {
                crate::core::breaker::BreakerState::Closed => 0.0,
                crate::core::breaker::BreakerState::Open => 1.0,
                crate::core::breaker::BreakerState::HalfOpen => 2.0,
            });
        self.inner.events.emit(EventKind::BreakerStateChanged {
            endpoint: Arc::clone(&ep.endpoint().id),
            from: t.from,
            to: t.to,
        });
        if matches!(t.to, crate::core::breaker::BreakerState::Closed) {
            self.inner.counters.recoveries.fetch_add(1, Relaxed);
            self.inner.events.emit(EventKind::Recovered {
                endpoint: Arc::clone(&ep.endpoint().id),
            });
        }
    }

    /// A point-in-time snapshot of the statistics.
    pub fn stats(&self) -> Stats {
        let now = now_nanos();
        let snap = self.inner.set.snapshot();
        Stats {
            totals: self.inner.counters.snapshot(),
            latency: self.inner.latency.summary(),
            endpoints: snap
                .endpoints()
                .iter()
                .map(|e| EndpointStats {
                    id: Arc::clone(&e.endpoint().id),
                    health: e.health(),
                    breaker: e.breaker().state(),
                    ejected: e.is_ejected(now),
                    in_flight: e.in_flight(),
                    ewma: Duration::from_nanos(e.ewma().estimate_ns(now) as u64),
                    consecutive_failures: e.consecutive_failures(),
                    counters: e.counters().snapshot(),
                    latency: e.latency().summary(),
                })
                .collect(),
        }
    }
}

fn exhausted(attempts: u32, may_have_executed: bool, last: Error) -> Error {
    Error::RetryExhausted {
        attempts,
        may_have_executed,
        last: Box::new(last),
    }
}
