//! Observability: the typed [`Event`] stream, the [`Stats`] snapshot, and the
//! names of every metric this crate emits through the [`metrics`] facade.
//!
//! # Metrics
//! All names start with `failover_`. Labels: `manager` (the name given to
//! the manager or pool), `endpoint` (endpoint or node id), plus the ones listed.
//! Install your `metrics` recorder (e.g. `metrics-exporter-prometheus`)
//! *before* building managers and pools: handles are registered once per
//! endpoint so the hot path does no label formatting or registry lookup.
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `failover_requests_total` | counter | manager, outcome (`success`/`failure`) | calls through `execute` |
//! | `failover_attempts_total` | counter | manager, endpoint, outcome | attempts, per endpoint |
//! | `failover_retries_total` | counter | manager | attempts after the first |
//! | `failover_failovers_total` | counter | manager | calls that moved to another endpoint after a failure |
//! | `failover_retry_budget_exhausted_total` | counter | manager | retries refused by the budget |
//! | `failover_request_duration_seconds` | histogram | manager | whole-call latency |
//! | `failover_attempt_duration_seconds` | histogram | manager, endpoint | attempt latency |
//! | `failover_endpoint_health` | gauge | manager, endpoint | 0 unknown, 1 healthy, 2 degraded, 3 unhealthy |
//! | `failover_breaker_state` | gauge | manager, endpoint | 0 closed, 1 open, 2 half-open |
//! | `failover_ejections_total` | counter | manager, endpoint | outlier ejections |
//! | `failover_health_checks_total` | counter | manager, endpoint, result (`pass`/`fail`) | active checks |
//! | `failover_health_check_duration_seconds` | histogram | manager, endpoint | active check latency |
//! | `failover_panic_mode` | gauge | manager | 1 while panic routing is on |
//!
//! Pools record their own metrics (`failover_pool_*`), listed in
//! `failover_pool::pool::names`.

use crate::core::breaker::BreakerState;
use crate::core::endpoint::{Health, Role};
use crate::core::stats::{CounterSnapshot, LatencySummary};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;

/// Metric names (see the [module docs](self) for labels).
pub mod names {
    /// Calls through `execute`.
    pub const REQUESTS_TOTAL: &str = "failover_requests_total";
    /// Attempts per endpoint.
    pub const ATTEMPTS_TOTAL: &str = "failover_attempts_total";
    /// Attempts after the first.
    pub const RETRIES_TOTAL: &str = "failover_retries_total";
    /// Calls that moved to another endpoint.
    pub const FAILOVERS_TOTAL: &str = "failover_failovers_total";
    /// Retries refused by the budget.
    pub const RETRY_BUDGET_EXHAUSTED_TOTAL: &str = "failover_retry_budget_exhausted_total";
    /// Whole-call latency.
    pub const REQUEST_DURATION_SECONDS: &str = "failover_request_duration_seconds";
    /// Attempt latency.
    pub const ATTEMPT_DURATION_SECONDS: &str = "failover_attempt_duration_seconds";
    /// Endpoint health gauge.
    pub const ENDPOINT_HEALTH: &str = "failover_endpoint_health";
    /// Breaker state gauge.
    pub const BREAKER_STATE: &str = "failover_breaker_state";
    /// Outlier ejections.
    pub const EJECTIONS_TOTAL: &str = "failover_ejections_total";
    /// Active health checks.
    pub const HEALTH_CHECKS_TOTAL: &str = "failover_health_checks_total";
    /// Active health check latency.
    pub const HEALTH_CHECK_DURATION_SECONDS: &str = "failover_health_check_duration_seconds";
    /// Panic routing gauge.
    pub const PANIC_MODE: &str = "failover_panic_mode";
    /// Hedged copies sent ([`Failover::execute_hedged`](crate::core::Failover::execute_hedged)).
    pub const HEDGES_TOTAL: &str = "failover_hedges_total";
}

/// Something that happened, with when it happened.
#[derive(Debug, Clone)]
pub struct Event {
    /// Wall-clock time of the event.
    pub at: SystemTime,
    /// Name of the manager or pool that emitted it.
    pub source: Arc<str>,
    /// What happened.
    pub kind: EventKind,
}

/// The kinds of [`Event`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// An endpoint's health changed (active check or passive detection).
    HealthChanged {
        /// Endpoint id.
        endpoint: Arc<str>,
        /// Previous health.
        from: Health,
        /// New health.
        to: Health,
    },
    /// Outlier detection ejected an endpoint.
    Ejected {
        /// Endpoint id.
        endpoint: Arc<str>,
        /// How long the ejection lasts.
        duration: Duration,
        /// How many times it has been ejected.
        ejections: u32,
    },
    /// An ejection ended.
    Unejected {
        /// Endpoint id.
        endpoint: Arc<str>,
    },
    /// A circuit breaker changed state.
    BreakerStateChanged {
        /// Endpoint id.
        endpoint: Arc<str>,
        /// Previous state.
        from: BreakerState,
        /// New state.
        to: BreakerState,
    },
    /// A call moved to another endpoint after a failure.
    Failover {
        /// The endpoint that failed.
        from: Arc<str>,
        /// The endpoint tried next.
        to: Arc<str>,
        /// The attempt number of the new attempt (2 for the first retry).
        attempt: u32,
    },
    /// An endpoint came back (health, ejection or breaker).
    Recovered {
        /// Endpoint id.
        endpoint: Arc<str>,
    },
    /// The retry budget refused a retry.
    RetryBudgetExhausted,
    /// Panic routing switched on or off.
    PanicMode {
        /// Whether it is on now.
        on: bool,
    },
    /// Discovery or the user changed the endpoint list.
    EndpointsChanged {
        /// New ids.
        added: Vec<Arc<str>>,
        /// Removed ids.
        removed: Vec<Arc<str>>,
        /// Changed ids.
        updated: Vec<Arc<str>>,
    },
    /// A node answered its probe after being down (pools).
    NodeUp {
        /// Node id.
        node: Arc<str>,
        /// Role it reported.
        role: Role,
    },
    /// A node stopped answering its probe (pools).
    NodeDown {
        /// Node id.
        node: Arc<str>,
        /// Why, as text.
        reason: String,
    },
    /// A node reported a different role than before (pools).
    RoleChanged {
        /// Node id.
        node: Arc<str>,
        /// Previous role, if known.
        from: Option<Role>,
        /// New role.
        to: Role,
    },
    /// The writer was lost and the pool started looking for (or making) a new one.
    FailoverStarted {
        /// The writer that was lost.
        old_writer: Option<Arc<str>>,
        /// Why.
        reason: String,
    },
    /// A writer is known again after a failover.
    FailoverFinished {
        /// The new writer.
        new_writer: Arc<str>,
        /// Time since the failover started.
        duration: Duration,
    },
    /// The pool promoted a node.
    Promoted {
        /// Node id.
        node: Arc<str>,
        /// How long the promotion took.
        duration: Duration,
    },
    /// A node was fenced: it claims to be a writer but must not get writes.
    Fenced {
        /// Node id.
        node: Arc<str>,
        /// Why.
        reason: String,
    },
    /// A fenced node reported itself a replica and may be used again.
    Unfenced {
        /// Node id.
        node: Arc<str>,
    },
    /// Two or more nodes claimed to be the writer at once.
    SplitBrainDetected {
        /// The claimants.
        nodes: Vec<Arc<str>>,
        /// The one that keeps the writes.
        winner: Arc<str>,
    },
    /// The pool's topology changed (new epoch).
    TopologyChanged {
        /// New epoch.
        epoch: u64,
        /// Current writer.
        writer: Option<Arc<str>>,
    },
}

/// Broadcasts [`Event`]s to every subscriber. Cheap when nobody listens.
#[derive(Debug, Clone)]
pub struct EventBus {
    source: Arc<str>,
    tx: broadcast::Sender<Event>,
}

impl EventBus {
    /// A bus that keeps up to `capacity` undelivered events per subscriber
    /// (slow subscribers miss the oldest and get `RecvError::Lagged`).
    pub fn new(source: impl Into<Arc<str>>, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        EventBus {
            source: source.into(),
            tx,
        }
    }

    /// The name events are tagged with.
    pub fn source(&self) -> &Arc<str> {
        &self.source
    }

    /// A new subscription; it sees events emitted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Emits an event (also logged through `tracing`).
    pub fn emit(&self, kind: EventKind) {
        tracing::debug!(source = %self.source, event = ?kind, "failover event");
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Event {
                at: SystemTime::now(),
                source: Arc::clone(&self.source),
                kind,
            });
        }
    }
}

/// Per-endpoint figures in a [`Stats`] snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointStats {
    /// Endpoint id.
    pub id: Arc<str>,
    /// Current health.
    pub health: Health,
    /// Breaker state.
    pub breaker: BreakerState,
    /// Whether outlier detection has it ejected now.
    pub ejected: bool,
    /// Calls in flight.
    pub in_flight: u32,
    /// Peak-EWMA latency estimate.
    pub ewma: Duration,
    /// Consecutive failures.
    pub consecutive_failures: u32,
    /// Attempts, successes and failures on this endpoint.
    pub counters: CounterSnapshot,
    /// Latency of successful attempts.
    pub latency: LatencySummary,
}

/// A point-in-time snapshot of a manager's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Calls, attempts, successes, failures, failovers, recoveries.
    pub totals: CounterSnapshot,
    /// Whole-call latency (average, p50, p99).
    pub latency: LatencySummary,
    /// Per endpoint, in set order.
    pub endpoints: Vec<EndpointStats>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_events_in_order() {
        let bus = EventBus::new("m", 16);
        bus.emit(EventKind::RetryBudgetExhausted); // nobody listens: dropped
        let mut rx = bus.subscribe();
        bus.emit(EventKind::PanicMode { on: true });
        bus.emit(EventKind::PanicMode { on: false });
        let a = rx.recv().await.unwrap();
        assert_eq!(&*a.source, "m");
        assert_eq!(a.kind, EventKind::PanicMode { on: true });
        assert_eq!(
            rx.recv().await.unwrap().kind,
            EventKind::PanicMode { on: false }
        );
    }
}
