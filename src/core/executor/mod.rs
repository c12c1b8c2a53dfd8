//! [`Failover`]: the manager that ties the core together, and
//! [`Failover::execute`], which runs one operation with failover:
//! pick → breaker → per-attempt timeout → run → classify → record → maybe retry.
//!
//! The steps of a call are in `execute.rs`, the builder in `builder.rs`, and
//! error classification ([`Classify`], [`Classified`]) in `classify.rs`.
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

mod builder;
mod classify;
mod execute;
mod hedge;

pub use builder::FailoverBuilder;
pub use classify::{Classified, Classify};
pub use hedge::HedgeDelay;

use crate::core::breaker::{BreakerState, Transition};
use crate::core::clock::now_nanos;
use crate::core::endpoint::Health;
use crate::core::events::{EndpointStats, Event, EventBus, EventKind, Stats, names};
use crate::core::health::{HealthChecker, OutlierDetector};
use crate::core::retry::{Idempotency, RetryBudget, RetryPolicy};
use crate::core::set::{EndpointSet, LiveEndpoint};
use crate::core::stats::{Counters, LatencyHistogram};
use crate::core::strategy::{Excluded, PickContext, Strategy};
use crate::core::task::TaskHandle;
use crate::error::{Error, ErrorClass, Result};
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

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

/// The manager's metric handles, registered once.
struct Metrics {
    requests_ok: metrics::Counter,
    requests_err: metrics::Counter,
    retries: metrics::Counter,
    failovers: metrics::Counter,
    hedges: metrics::Counter,
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
            hedges: metrics::counter!(names::HEDGES_TOTAL, "manager" => m.clone()),
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

/// What the clones of a [`Failover`] share.
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

impl Failover {
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

    /// Picks an endpoint, skipping `excluded` unless nothing else is left,
    /// and falling back to panic routing when nothing is available at all.
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
        self.inner.counters.attempts.fetch_add(1, Relaxed);
        self.record_attempt(endpoint, success, latency, now);
    }

    /// Feeds one attempt's outcome to passive health: the endpoint's live
    /// state, outlier detection and its metrics.
    fn record_attempt(&self, ep: &Arc<LiveEndpoint>, success: bool, latency: Duration, now: u64) {
        let n = ep.record_outcome(success, latency, now);
        if let Some(o) = &self.inner.outlier {
            o.on_result(ep, success, n, now);
        }
        ep.metrics(&self.inner.name).record(success, latency);
    }

    /// Reports a breaker transition: the state gauge, an event, and a
    /// recovery when the breaker closed.
    fn breaker_event(&self, ep: &LiveEndpoint, t: Transition) {
        metrics::gauge!(names::BREAKER_STATE, "manager" => metrics::SharedString::from(Arc::clone(&self.inner.name)), "endpoint" => ep.id().to_owned())
            .set(match t.to {
                BreakerState::Closed => 0.0,
                BreakerState::Open => 1.0,
                BreakerState::HalfOpen => 2.0,
            });
        self.inner.events.emit(EventKind::BreakerStateChanged {
            endpoint: Arc::clone(&ep.endpoint().id),
            from: t.from,
            to: t.to,
        });
        if matches!(t.to, BreakerState::Closed) {
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
