//! The [`Discovery`] trait (where an endpoint list comes from) and its
//! driver, [`spawn_discovery`], which applies every change to an
//! [`EndpointSet`].
//!
//! A [`Discovery`] is pull-style: the first [`Discovery::next_change`]
//! returns the initial list promptly, each later call waits for the next
//! change. A Consul blocking query (`?index=`) or a Kubernetes watch maps
//! straight onto this. The providers (a static list, and a mock for tests)
//! live in [`crate::discovery`], which also re-exports everything here.
//!
//! When discovery fails the driver logs, backs off ([`DiscoveryBackoff`]) and
//! **keeps the last known endpoints**: an unreachable Consul agent must not
//! take every endpoint away.

use crate::core::endpoint::{Endpoint, Health};
use crate::core::events::{EventBus, EventKind, names};
use crate::core::set::{EndpointSet, SetChange};
use crate::core::task::TaskHandle;
use crate::error::{Error, chain};
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// One change reported by a [`Discovery`].
#[derive(Debug, Clone, PartialEq)]
pub enum DiscoveryChange {
    /// The complete current list (replaces the set's list).
    Replace(Vec<Endpoint>),
    /// One endpoint added or changed.
    Upsert(Endpoint),
    /// One endpoint gone, by id.
    Remove(Arc<str>),
}

/// The future [`Discovery::next_change`] returns.
pub type DiscoveryFuture<'a> =
    Pin<Box<dyn Future<Output = Result<DiscoveryChange, Error>> + Send + 'a>>;

/// A source of endpoints.
///
/// The first call of [`Discovery::next_change`] returns the initial list
/// (usually as [`DiscoveryChange::Replace`]) promptly; later calls wait until
/// something changes. An error means this attempt failed: the caller backs
/// off and calls again, and the implementation should then resume (for
/// Consul, re-issue the blocking query; for Kubernetes, re-list and re-watch).
/// The future must be cancel-safe: dropping it must not lose a change that
/// the next call would otherwise return.
pub trait Discovery: Send + Sync + Debug + 'static {
    /// A short name for logs ("static", "consul", "kubernetes", ...).
    fn name(&self) -> &str;

    /// The next change (the initial list on the first call).
    fn next_change(&self) -> DiscoveryFuture<'_>;
}

/// Exponential backoff with full jitter between failed discovery attempts:
/// the n-th consecutive failure waits a random time between zero and
/// `min(max, initial × 2ⁿ⁻¹)`.
///
/// ```
/// use failover_pool::discovery::DiscoveryBackoff;
/// use std::time::Duration;
/// let b = DiscoveryBackoff::default();
/// assert_eq!(b.ceiling(1), Duration::from_millis(200));
/// assert_eq!(b.ceiling(3), Duration::from_millis(800));
/// assert_eq!(b.ceiling(30), Duration::from_secs(10));
/// assert!(b.delay(3) <= Duration::from_millis(800));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoveryBackoff {
    /// Ceiling of the first delay (default 200 ms).
    pub initial: Duration,
    /// Largest ceiling (default 10 s).
    pub max: Duration,
}

impl Default for DiscoveryBackoff {
    fn default() -> Self {
        DiscoveryBackoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

impl DiscoveryBackoff {
    /// The upper bound of the delay after `failures` consecutive failures
    /// (1 for the first).
    pub fn ceiling(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(31);
        self.initial.saturating_mul(1 << exp).min(self.max)
    }

    /// A random delay in `0..=ceiling(failures)`.
    pub fn delay(&self, failures: u32) -> Duration {
        self.ceiling(failures).mul_f64(fastrand::f64())
    }
}

/// What applying a change did.
#[derive(Debug, Default)]
struct Applied {
    change: SetChange,
    /// (id, from, to) of endpoints whose live health followed the health
    /// discovery reported.
    health: Vec<(Arc<str>, Health, Health)>,
}

/// Applies one change to `set` and returns what changed.
///
/// When discovery reports a *different* health for an endpoint that stays
/// (say Consul's check turned critical: the description's
/// [`Endpoint::health`] changed and is not [`Health::Unknown`]), the
/// endpoint's live health is set to it; otherwise the live health learned by
/// checks is kept. New endpoints start with the health discovery reports.
///
/// # Errors
/// [`Error::Config`] when a [`DiscoveryChange::Replace`] list has duplicate
/// ids; the set is left unchanged.
pub fn apply_change(set: &EndpointSet, change: DiscoveryChange) -> Result<SetChange, Error> {
    apply(set, change).map(|a| a.change)
}

fn apply(set: &EndpointSet, change: DiscoveryChange) -> Result<Applied, Error> {
    let before = set.load_full();
    let change = match change {
        DiscoveryChange::Replace(list) => set.replace(list)?,
        DiscoveryChange::Upsert(endpoint) => set.upsert(endpoint)?,
        DiscoveryChange::Remove(id) => {
            let removed = set.remove(&id)?;
            return Ok(Applied {
                change: SetChange {
                    removed: if removed { vec![id] } else { Vec::new() },
                    ..SetChange::default()
                },
                health: Vec::new(),
            });
        }
    };
    let mut health = Vec::new();
    for id in &change.updated {
        let (Some(old), Some(live)) = (before.get(id), set.get(id)) else {
            continue;
        };
        let reported = live.endpoint().health;
        if reported != old.endpoint().health
            && reported != Health::Unknown
            && let Some(prev) = live.set_health(reported)
        {
            health.push((Arc::clone(id), prev, reported));
        }
    }
    Ok(Applied { change, health })
}

/// Runs `discovery` in the background, applying every change to `set`.
///
/// Emits [`EventKind::EndpointsChanged`] for every change that changed
/// something, and [`EventKind::HealthChanged`] (plus
/// [`EventKind::Recovered`]) when a reported health was applied (see
/// [`apply_change`]). On an error (from discovery, or a list that cannot be
/// applied) it logs a warning, waits per `backoff`, and tries again; the set
/// keeps its last known endpoints meanwhile. An empty
/// [`DiscoveryChange::Replace`] is applied like any other list (a discovery
/// that considers an empty answer suspicious should return an error
/// instead). Dropping the handle stops the task. Must be called within a
/// Tokio runtime.
pub fn spawn_discovery(
    discovery: Arc<dyn Discovery>,
    set: Arc<EndpointSet>,
    events: EventBus,
    backoff: DiscoveryBackoff,
) -> TaskHandle {
    TaskHandle::spawn(run(discovery, set, events, backoff))
}

async fn run(
    discovery: Arc<dyn Discovery>,
    set: Arc<EndpointSet>,
    events: EventBus,
    backoff: DiscoveryBackoff,
) {
    let mut failures: u32 = 0;
    loop {
        let result = discovery
            .next_change()
            .await
            .and_then(|change| apply(&set, change));
        match result {
            Ok(applied) => {
                if failures > 0 {
                    tracing::info!(
                        source = %events.source(),
                        discovery = discovery.name(),
                        failures,
                        "endpoint discovery recovered"
                    );
                }
                failures = 0;
                report(&set, &events, discovery.name(), applied);
            }
            Err(err) => {
                failures = failures.saturating_add(1);
                let delay = backoff.delay(failures);
                tracing::warn!(
                    source = %events.source(),
                    discovery = discovery.name(),
                    error = %chain(&err),
                    failures,
                    retry_in = ?delay,
                    kept = set.snapshot().len(),
                    "endpoint discovery failed; keeping the last known endpoints"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

fn report(set: &EndpointSet, events: &EventBus, name: &str, applied: Applied) {
    let Applied { change, health } = applied;
    if !change.is_empty() {
        tracing::info!(
            source = %events.source(),
            discovery = name,
            added = ?change.added,
            removed = ?change.removed,
            updated = ?change.updated,
            "endpoints changed"
        );
        events.emit(EventKind::EndpointsChanged {
            added: change.added,
            removed: change.removed,
            updated: change.updated,
        });
    }
    for (id, from, to) in health {
        metrics::gauge!(
            names::ENDPOINT_HEALTH,
            "manager" => Arc::clone(events.source()),
            "endpoint" => Arc::clone(&id),
        )
        .set(f64::from(to as u8));
        events.emit(EventKind::HealthChanged {
            endpoint: Arc::clone(&id),
            from,
            to,
        });
        if !from.is_usable() && to.is_usable() {
            if let Some(live) = set.get(&id) {
                live.counters().recoveries.fetch_add(1, Relaxed);
            }
            events.emit(EventKind::Recovered { endpoint: id });
        }
    }
}
