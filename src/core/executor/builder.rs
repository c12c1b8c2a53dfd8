//! [`FailoverBuilder`]: the endpoints, strategy, breaker, retry, health and
//! discovery settings of a [`Failover`], validated into a running manager.

use super::{Failover, Inner, Metrics};
use crate::core::breaker::BreakerConfig;
use crate::core::discovery::{Discovery, DiscoveryBackoff, spawn_discovery};
use crate::core::endpoint::{Endpoint, Health};
use crate::core::events::EventBus;
use crate::core::health::{
    CheckFuture, HealthCheck, HealthCheckConfig, HealthChecker, OutlierConfig, OutlierDetector,
};
use crate::core::retry::{RetryBudget, RetryPolicy};
use crate::core::set::EndpointSet;
use crate::core::stats::{Counters, LatencyHistogram};
use crate::core::strategy::{RoundRobin, Strategy};
use crate::core::task::TaskHandle;
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

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
        self.validate()?;
        let active_checks = self.check.is_some() && self.health.enabled;
        let set = Arc::new(EndpointSet::new(self.endpoints, Arc::new(self.breaker))?);
        let events = EventBus::new(Arc::clone(&self.name), self.event_capacity);
        let checker = Arc::new(health_checker(
            &set,
            self.check,
            self.health,
            &self.outlier,
            &events,
        )?);
        let outlier = outlier_detector(&set, self.outlier, &events)?;
        let tasks = spawn_tasks(
            &set,
            &events,
            active_checks.then_some(&checker),
            outlier.as_ref(),
            self.discovery,
        )?;
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

    /// Checks every configuration; the error names the offending field.
    fn validate(&self) -> Result<()> {
        self.breaker.validate()?;
        self.retry.validate()?;
        self.health.validate()?;
        self.outlier.validate()
    }
}

/// The active checker (with [`NoCheck`] when no check is configured), using
/// the outlier detector's panic threshold (none when detection is off).
fn health_checker(
    set: &Arc<EndpointSet>,
    check: Option<Arc<dyn HealthCheck>>,
    config: HealthCheckConfig,
    outlier: &OutlierConfig,
    events: &EventBus,
) -> Result<HealthChecker> {
    let panic_threshold = if outlier.enabled {
        outlier.panic_threshold
    } else {
        0.0
    };
    Ok(HealthChecker::new(
        Arc::clone(set),
        check.unwrap_or_else(|| Arc::new(NoCheck)),
        config,
        events.clone(),
    )?
    .with_panic_threshold(panic_threshold))
}

/// The outlier detector, when detection is enabled.
fn outlier_detector(
    set: &Arc<EndpointSet>,
    config: OutlierConfig,
    events: &EventBus,
) -> Result<Option<Arc<OutlierDetector>>> {
    if !config.enabled {
        return Ok(None);
    }
    Ok(Some(Arc::new(OutlierDetector::new(
        Arc::clone(set),
        config,
        events.clone(),
    )?)))
}

/// Starts the background tasks that are configured: active checks, outlier
/// sweeps and discovery.
///
/// # Errors
/// [`Error::Config`] when any is configured and no Tokio runtime is running.
fn spawn_tasks(
    set: &Arc<EndpointSet>,
    events: &EventBus,
    checker: Option<&Arc<HealthChecker>>,
    outlier: Option<&Arc<OutlierDetector>>,
    discovery: Option<Arc<dyn Discovery>>,
) -> Result<Vec<TaskHandle>> {
    if checker.is_none() && outlier.is_none() && discovery.is_none() {
        return Ok(Vec::new());
    }
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::Config(
            "Failover::build needs a running Tokio runtime for its background tasks \
             (health checks, outlier sweeps or discovery)"
                .into(),
        ));
    }
    let mut tasks = Vec::new();
    if let Some(c) = checker {
        tasks.push(Arc::clone(c).spawn());
    }
    if let Some(o) = outlier {
        tasks.push(Arc::clone(o).spawn());
    }
    if let Some(d) = discovery {
        tasks.push(spawn_discovery(
            d,
            Arc::clone(set),
            events.clone(),
            DiscoveryBackoff::default(),
        ));
    }
    Ok(tasks)
}

/// The health check used when none is configured: reports the current health.
#[derive(Debug)]
struct NoCheck;

impl HealthCheck for NoCheck {
    fn check<'a>(&'a self, endpoint: &'a Endpoint) -> CheckFuture<'a> {
        let health = endpoint.health;
        Box::pin(async move {
            match health {
                Health::Unknown => Ok(Health::Healthy),
                h => Ok(h),
            }
        })
    }
}
