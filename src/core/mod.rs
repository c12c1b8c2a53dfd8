//! The endpoint-failover core: endpoints, their live state, strategies,
//! health checking, circuit breaking, retries, the [`Discovery`] trait that
//! keeps an endpoint list current (its providers live in
//! [`crate::discovery`]), and the executor that ties them together. It knows
//! nothing of Postgres, Redis or HTTP; the pools and the HTTP client are
//! built on it.
//!
//! [`Discovery`]: discovery::Discovery

pub mod breaker;
pub mod clock;
pub mod discovery;
pub mod endpoint;
pub mod events;
pub mod executor;
pub mod health;
pub mod redact;
pub mod retry;
pub mod set;
pub mod stats;
pub mod strategy;
pub mod task;

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use endpoint::{Endpoint, Health, Role};
pub use events::{Event, EventKind, Stats};
pub use executor::{
    CallOptions, Classified, Classify, Failover, FailoverBuilder, HedgeDelay, Served,
};
#[cfg(feature = "http")]
pub use health::HttpCheck;
pub use health::{
    CheckReport, HealthCheck, HealthCheckConfig, HealthChecker, OutlierConfig, OutlierDetector,
    TcpCheck,
};
pub use retry::{Backoff, BudgetConfig, Idempotency, Jitter, RetryBudget, RetryPolicy};
pub use set::{EndpointSet, LiveEndpoint, Snapshot};
pub use stats::{LatencyHistogram, LatencySummary};
pub use strategy::{
    Excluded, HealthBased, LeastConnections, PickContext, PowerOfTwoChoices, Priority, Random,
    RoundRobin, Strategy, StrategyKind, WeightedRoundRobin,
};
pub use task::TaskHandle;
