//! Passive outlier detection: [`OutlierConfig`] and the [`OutlierDetector`]
//! that ejects endpoints from the outcome of real calls (consecutive
//! failures, failure rate), after Envoy's outlier detection.

use super::panic::{DEFAULT_PANIC_THRESHOLD, refresh_panic};
use crate::core::clock::{dur_nanos, now_nanos};
use crate::core::events::{EventBus, EventKind, names};
use crate::core::set::{EndpointSet, LiveEndpoint};
use crate::core::task::TaskHandle;
use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

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

/// What the sweep remembers of one endpoint between two passes.
#[derive(Debug)]
struct SweepState {
    endpoint: Weak<LiveEndpoint>,
    successes: u64,
    failures: u64,
    clean_since: Option<u64>,
}

impl SweepState {
    fn new(ep: &Arc<LiveEndpoint>) -> Self {
        SweepState {
            endpoint: Arc::downgrade(ep),
            successes: 0,
            failures: 0,
            clean_since: None,
        }
    }

    /// The state of `ep`, fresh when it is new or was replaced by discovery
    /// (fresh counters, fresh baseline).
    fn of<'a>(
        state: &'a mut HashMap<Arc<str>, SweepState>,
        ep: &Arc<LiveEndpoint>,
    ) -> &'a mut SweepState {
        let st = state
            .entry(Arc::clone(&ep.endpoint().id))
            .or_insert_with(|| SweepState::new(ep));
        if !std::ptr::eq(st.endpoint.as_ptr(), Arc::as_ptr(ep)) {
            *st = SweepState::new(ep);
        }
        st
    }
}

/// Why an endpoint is being ejected (for logs).
#[derive(Debug, Clone, Copy)]
enum Reason {
    Consecutive(u32),
    Rate { failures: u64, total: u64 },
}

/// Passive outlier detection over an [`EndpointSet`]; see the
/// [module docs](crate::core::health).
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

    fn lock_state(&self) -> MutexGuard<'_, HashMap<Arc<str>, SweepState>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
            let mut state = self.lock_state();
            state.retain(|id, _| snap.index_of(id).is_some());
            for ep in snap.endpoints() {
                if ep.clear_expired_ejection(now) {
                    unejected.push(Arc::clone(ep));
                }
                let st = SweepState::of(&mut state, ep);
                if let Some((failures, total)) = self.failure_rate_outlier(st, ep, now) {
                    candidates.push((Arc::clone(ep), failures, total));
                }
                self.track_clean_stretch(st, ep, now);
            }
        }
        for ep in unejected {
            self.report_unejected(&ep);
        }
        for (ep, failures, total) in candidates {
            self.try_eject(&ep, now, Reason::Rate { failures, total });
        }
        refresh_panic(&self.set, &self.events, self.config.panic_threshold, now);
    }

    /// Moves `st` to the endpoint's current counters; returns the failures
    /// and calls since the last sweep when their rate makes the endpoint an
    /// outlier to eject.
    fn failure_rate_outlier(
        &self,
        st: &mut SweepState,
        ep: &LiveEndpoint,
        now: u64,
    ) -> Option<(u64, u64)> {
        let counters = ep.counters();
        let successes = counters.successes.load(Relaxed);
        let failures = counters.failures.load(Relaxed);
        let ds = successes.saturating_sub(st.successes);
        let df = failures.saturating_sub(st.failures);
        st.successes = successes;
        st.failures = failures;
        let rate = self.config.failure_rate?;
        let total = ds + df;
        (self.config.enabled
            && total >= self.config.failure_rate_min_requests
            && df as f64 >= rate * total as f64
            && !ep.is_ejected(now))
        .then_some((df, total))
    }

    /// Resets the ejection count of an endpoint that has stayed un-ejected
    /// and usable for `max_ejection`.
    fn track_clean_stretch(&self, st: &mut SweepState, ep: &LiveEndpoint, now: u64) {
        if ep.is_ejected(now) || !ep.health().is_usable() {
            st.clean_since = None;
            return;
        }
        let since = *st.clean_since.get_or_insert(now);
        if ep.ejection_count() > 0 && now.saturating_sub(since) >= self.max_ns {
            tracing::debug!(
                source = %self.events.source(), endpoint = %ep.id(),
                "resetting the ejection count after a long healthy stretch"
            );
            ep.reset_ejection_count();
        }
    }

    /// Reports an ejection that ended, and a recovery when the endpoint's
    /// health is usable.
    fn report_unejected(&self, ep: &LiveEndpoint) {
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
mod tests;
