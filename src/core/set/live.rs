//! [`LiveEndpoint`]: an endpoint with its live state in atomics (health,
//! calls in flight, failure streaks, ejection, peak-EWMA latency, breaker,
//! counters), and the [`InFlightGuard`] that counts one call.

use crate::core::breaker::{BreakerConfig, CircuitBreaker};
use crate::core::clock::{dur_nanos, now_nanos};
use crate::core::endpoint::{Endpoint, Health};
use crate::core::events::names;
use crate::core::stats::{Counters, LatencyHistogram};
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Default round-trip estimate before any sample (tower/linkerd use 30 ms... for
/// an unknown endpoint; new endpoints must not look infinitely fast or slow).
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// Default decay window of the peak-EWMA estimate.
pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);

/// Peak-EWMA latency estimate (as in tower and linkerd): a sample above the
/// estimate replaces it at once; lower samples are blended in with a weight
/// that depends on the time since the last update; the estimate decays
/// towards zero while idle so a slow endpoint is retried eventually.
#[derive(Debug)]
pub struct PeakEwma {
    rtt_ns: AtomicU64, // f64 bits
    stamp: AtomicU64,  // clock nanos of last update
    decay_ns: f64,
}

impl PeakEwma {
    fn new(default_rtt: Duration, decay: Duration) -> Self {
        PeakEwma {
            rtt_ns: AtomicU64::new((dur_nanos(default_rtt) as f64).to_bits()),
            stamp: AtomicU64::new(now_nanos()),
            decay_ns: dur_nanos(decay).max(1) as f64,
        }
    }

    /// Records an observed round-trip time.
    pub fn observe(&self, rtt: Duration, now: u64) {
        let sample = dur_nanos(rtt) as f64;
        let prev_stamp = self.stamp.swap(now, Relaxed);
        let elapsed = now.saturating_sub(prev_stamp) as f64;
        let _ = self.rtt_ns.fetch_update(Relaxed, Relaxed, |bits| {
            let cur = f64::from_bits(bits);
            let next = if sample > cur {
                sample
            } else {
                let w = (-elapsed / self.decay_ns).exp();
                cur * w + sample * (1.0 - w)
            };
            Some(next.to_bits())
        });
    }

    /// The current estimate in nanoseconds, decayed for the idle time since
    /// the last sample.
    pub fn estimate_ns(&self, now: u64) -> f64 {
        let cur = f64::from_bits(self.rtt_ns.load(Relaxed));
        let elapsed = now.saturating_sub(self.stamp.load(Relaxed));
        if elapsed == 0 {
            return cur;
        }
        cur * (-(elapsed as f64) / self.decay_ns).exp()
    }
}

/// An [`Endpoint`] with its live state. Shared as `Arc<LiveEndpoint>`.
#[derive(Debug)]
pub struct LiveEndpoint {
    endpoint: Endpoint,
    health: AtomicU8,
    in_flight: AtomicU32,
    consecutive_failures: AtomicU32,
    ejected_until: AtomicU64,
    ejections: AtomicU32,
    paused_until: AtomicU64,
    last_checked: AtomicU64,
    ewma: PeakEwma,
    breaker: CircuitBreaker,
    counters: Counters,
    latency: LatencyHistogram,
    metrics: OnceLock<EndpointMetrics>,
}

/// Metric handles of one endpoint, registered once (first use) so the hot
/// path does no label formatting or registry lookup.
pub struct EndpointMetrics {
    ok: metrics::Counter,
    err: metrics::Counter,
    duration: metrics::Histogram,
}

impl fmt::Debug for EndpointMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EndpointMetrics")
    }
}

impl EndpointMetrics {
    fn new(manager: &Arc<str>, endpoint: &Arc<str>) -> Self {
        let m = metrics::SharedString::from(Arc::clone(manager));
        let e = metrics::SharedString::from(Arc::clone(endpoint));
        EndpointMetrics {
            ok: metrics::counter!(names::ATTEMPTS_TOTAL, "manager" => m.clone(), "endpoint" => e.clone(), "outcome" => "success"),
            err: metrics::counter!(names::ATTEMPTS_TOTAL, "manager" => m.clone(), "endpoint" => e.clone(), "outcome" => "failure"),
            duration: metrics::histogram!(names::ATTEMPT_DURATION_SECONDS, "manager" => m, "endpoint" => e),
        }
    }

    /// Records one attempt.
    pub fn record(&self, success: bool, latency: Duration) {
        if success {
            self.ok.increment(1);
        } else {
            self.err.increment(1);
        }
        self.duration.record(latency.as_secs_f64());
    }
}

impl LiveEndpoint {
    /// Wraps an endpoint with fresh live state.
    pub fn new(endpoint: Endpoint, breaker: Arc<BreakerConfig>) -> Self {
        LiveEndpoint {
            health: AtomicU8::new(endpoint.health as u8),
            endpoint,
            in_flight: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            paused_until: AtomicU64::new(0),
            last_checked: AtomicU64::new(0),
            ewma: PeakEwma::new(DEFAULT_RTT, DEFAULT_DECAY),
            breaker: CircuitBreaker::new(breaker),
            counters: Counters::default(),
            latency: LatencyHistogram::new(),
            metrics: OnceLock::new(),
        }
    }

    /// This endpoint's metric handles, labelled with `manager` (registered on
    /// first use; the manager name of the first caller sticks).
    pub fn metrics(&self, manager: &Arc<str>) -> &EndpointMetrics {
        self.metrics
            .get_or_init(|| EndpointMetrics::new(manager, &self.endpoint.id))
    }

    /// The static description.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The endpoint's id.
    pub fn id(&self) -> &str {
        &self.endpoint.id
    }

    /// Current health.
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Relaxed))
    }

    /// Sets the health; returns the previous value when it changed.
    pub fn set_health(&self, health: Health) -> Option<Health> {
        let prev = Health::from_u8(self.health.swap(health as u8, AcqRel));
        (prev != health).then_some(prev)
    }

    /// Calls currently in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    /// Marks a call as started; the guard marks it finished when dropped,
    /// even when the caller's future is cancelled.
    pub fn start_call(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Relaxed);
        InFlightGuard {
            endpoint: Arc::clone(self),
        }
    }

    /// The peak-EWMA latency estimate.
    pub fn ewma(&self) -> &PeakEwma {
        &self.ewma
    }

    /// The peak-EWMA load: estimated rtt × (in-flight + 1), in nanoseconds.
    pub fn load(&self, now: u64) -> f64 {
        self.ewma.estimate_ns(now) * f64::from(self.in_flight() + 1)
    }

    /// The endpoint's circuit breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Consecutive failures of real calls since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Relaxed)
    }

    /// Records the outcome of a real call for passive health (consecutive
    /// counts, latency, counters). Returns the new consecutive-failure count.
    pub fn record_outcome(&self, success: bool, latency: Duration, now: u64) -> u32 {
        self.counters.attempts.fetch_add(1, Relaxed);
        if success {
            self.counters.successes.fetch_add(1, Relaxed);
            self.consecutive_failures.store(0, Relaxed);
            self.ewma.observe(latency, now);
            self.latency.record(latency);
            0
        } else {
            self.counters.failures.fetch_add(1, Relaxed);
            self.consecutive_failures.fetch_add(1, Relaxed) + 1
        }
    }

    /// Whether the endpoint is currently ejected by outlier detection.
    pub fn is_ejected(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Relaxed);
        until != 0 && now < until
    }

    /// When the current ejection ends (clock nanos), if ejected at all.
    pub fn ejected_until(&self) -> Option<u64> {
        match self.ejected_until.load(Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// Ejects until `until` (clock nanos) and counts the ejection; returns
    /// the number of ejections so far, or `None` if it was already ejected.
    pub fn eject(&self, until: u64, now: u64) -> Option<u32> {
        let cur = self.ejected_until.load(Relaxed);
        if cur != 0 && now < cur {
            return None;
        }
        self.ejected_until
            .compare_exchange(cur, until, AcqRel, Relaxed)
            .ok()?;
        Some(self.ejections.fetch_add(1, Relaxed) + 1)
    }

    /// Ends an ejection that has run out; returns true exactly once per
    /// ejection (for the "recovered" event).
    pub fn clear_expired_ejection(&self, now: u64) -> bool {
        let cur = self.ejected_until.load(Relaxed);
        cur != 0
            && now >= cur
            && self
                .ejected_until
                .compare_exchange(cur, 0, AcqRel, Relaxed)
                .is_ok()
    }

    /// Takes the endpoint out of picks until `until` (clock nanos) because
    /// it asked for no traffic (an HTTP `Retry-After`, say). Unlike an
    /// ejection this is not an outlier verdict: it is not counted and does
    /// not lengthen later ejections. A later pause never shortens an
    /// earlier, longer one.
    pub fn pause_until(&self, until: u64) {
        self.paused_until.fetch_max(until, Relaxed);
    }

    /// Whether the endpoint asked for no traffic until after `now`
    /// ([`pause_until`](Self::pause_until)).
    pub fn is_paused(&self, now: u64) -> bool {
        now < self.paused_until.load(Relaxed)
    }

    /// How many times the endpoint has been ejected.
    pub fn ejection_count(&self) -> u32 {
        self.ejections.load(Relaxed)
    }

    /// Forgets past ejections (called after a long healthy stretch).
    pub fn reset_ejection_count(&self) {
        self.ejections.store(0, Relaxed);
    }

    /// Request counters of this endpoint.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Latency histogram of successful calls.
    pub fn latency(&self) -> &LatencyHistogram {
        &self.latency
    }

    /// Records when an active check last ran.
    pub fn mark_checked(&self, now: u64) {
        self.last_checked.store(now, Relaxed);
    }

    /// When an active check last ran (clock nanos; 0 = never).
    pub fn last_checked(&self) -> u64 {
        self.last_checked.load(Relaxed)
    }

    /// `e` with fresh live state, except that what was learned about the
    /// server (health, ejection, failure streak, latency estimate) carries
    /// over from `prev` when the address and port stayed the same.
    pub(super) fn succeeding(
        prev: &LiveEndpoint,
        e: Endpoint,
        breaker: Arc<BreakerConfig>,
    ) -> Self {
        let same_target = prev.endpoint().address == e.address && prev.endpoint().port == e.port;
        let fresh = LiveEndpoint::new(e, breaker);
        if same_target {
            // Metadata changed only: keep what we learned about the server.
            fresh.health.store(prev.health.load(Relaxed), Relaxed);
            fresh
                .ejected_until
                .store(prev.ejected_until.load(Relaxed), Relaxed);
            fresh.ejections.store(prev.ejections.load(Relaxed), Relaxed);
            fresh
                .paused_until
                .store(prev.paused_until.load(Relaxed), Relaxed);
            fresh
                .consecutive_failures
                .store(prev.consecutive_failures(), Relaxed);
            fresh
                .ewma
                .rtt_ns
                .store(prev.ewma.rtt_ns.load(Relaxed), Relaxed);
            fresh
                .ewma
                .stamp
                .store(prev.ewma.stamp.load(Relaxed), Relaxed);
        }
        fresh
    }

    /// Whether a pick may choose this endpoint now: usable health, not
    /// ejected, not paused, breaker permits a call.
    pub fn is_available(&self, now: u64) -> bool {
        self.health().is_usable()
            && !self.is_ejected(now)
            && !self.is_paused(now)
            && self.breaker.is_call_permitted(now)
    }
}

/// Decrements the in-flight count of an endpoint when dropped.
#[derive(Debug)]
pub struct InFlightGuard {
    endpoint: Arc<LiveEndpoint>,
}

impl InFlightGuard {
    /// The endpoint this call runs on.
    pub fn endpoint(&self) -> &Arc<LiveEndpoint> {
        &self.endpoint
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests;
