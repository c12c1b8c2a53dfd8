//! The live endpoint set: an [`arc_swap`] snapshot of [`LiveEndpoint`]s that
//! discovery replaces atomically, each with its live state in atomics.
//!
//! Readers (every pick, every call) load the snapshot without a lock and
//! without allocating; writers (discovery, `upsert`, `remove`) build a new
//! snapshot and swap it in. An endpoint whose id and address survive a
//! replacement keeps its live state (health, latency, breaker, counters).

use crate::core::breaker::{BreakerConfig, CircuitBreaker};
use crate::core::clock::{dur_nanos, now_nanos};
use crate::core::endpoint::{Endpoint, Health};
use crate::core::events::names;
use crate::core::stats::{Counters, LatencyHistogram};
use crate::error::{Error, Result};
use arc_swap::{ArcSwap, Guard};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::*};
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
    consecutive_successes: AtomicU32,
    ejected_until: AtomicU64,
    ejections: AtomicU32,
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
            consecutive_successes: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
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
            self.consecutive_successes.fetch_add(1, Relaxed);
            self.ewma.observe(latency, now);
            self.latency.record(latency);
            0
        } else {
            self.counters.failures.fetch_add(1, Relaxed);
            self.consecutive_successes.store(0, Relaxed);
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

    /// Whether a pick may choose this endpoint now: usable health, not
    /// ejected, breaker permits a call.
    pub fn is_available(&self, now: u64) -> bool {
        self.health().is_usable() && !self.is_ejected(now) && self.breaker.is_call_permitted(now)
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

/// One immutable version of the endpoint list.
#[derive(Debug)]
pub struct Snapshot {
    version: u64,
    endpoints: Box<[Arc<LiveEndpoint>]>,
    by_id: HashMap<Arc<str>, usize>,
}

impl Snapshot {
    /// Monotonic version; changes with every replacement.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The endpoints, in configured order (priority order for active-passive).
    pub fn endpoints(&self) -> &[Arc<LiveEndpoint>] {
        &self.endpoints
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Position of an endpoint by id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// An endpoint by id.
    pub fn get(&self, id: &str) -> Option<&Arc<LiveEndpoint>> {
        self.index_of(id).map(|i| &self.endpoints[i])
    }
}

/// What a replacement of the set changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetChange {
    /// Ids that are new.
    pub added: Vec<Arc<str>>,
    /// Ids that are gone.
    pub removed: Vec<Arc<str>>,
    /// Ids whose description changed (they keep their live state only if the
    /// address and port stayed the same).
    pub updated: Vec<Arc<str>>,
}

impl SetChange {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.updated.is_empty()
    }
}

/// The live, atomically replaceable set of endpoints.
#[derive(Debug)]
pub struct EndpointSet {
    current: ArcSwap<Snapshot>,
    breaker: Arc<BreakerConfig>,
    next_version: AtomicU64,
    panic: AtomicBool,
}

impl EndpointSet {
    /// A set of the given endpoints; ids must be unique.
    pub fn new(endpoints: Vec<Endpoint>, breaker: Arc<BreakerConfig>) -> Result<Self> {
        check_unique(&endpoints)?;
        let live = endpoints
            .into_iter()
            .map(|e| Arc::new(LiveEndpoint::new(e, Arc::clone(&breaker))))
            .collect();
        Ok(EndpointSet {
            current: ArcSwap::from_pointee(build_snapshot(1, live)),
            breaker,
            next_version: AtomicU64::new(2),
            panic: AtomicBool::new(false),
        })
    }

    /// The current snapshot; lock-free and allocation-free. Hold it only
    /// briefly (use [`EndpointSet::load_full`] to keep it).
    pub fn snapshot(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The endpoint with this id in the current snapshot.
    pub fn get(&self, id: &str) -> Option<Arc<LiveEndpoint>> {
        self.snapshot().get(id).cloned()
    }

    /// The breaker configuration every endpoint of this set uses.
    pub fn breaker_config(&self) -> &Arc<BreakerConfig> {
        &self.breaker
    }

    /// Replaces the whole list (what discovery does). Endpoints whose id,
    /// address and port are unchanged keep their live state.
    pub fn replace(&self, endpoints: Vec<Endpoint>) -> Result<SetChange> {
        check_unique(&endpoints)?;
        let mut change = SetChange::default();
        self.current.rcu(|old| {
            change = SetChange::default();
            let mut live = Vec::with_capacity(endpoints.len());
            for e in &endpoints {
                match old.get(&e.id) {
                    Some(prev) if prev.endpoint() == e => live.push(Arc::clone(prev)),
                    Some(prev) => {
                        change.updated.push(Arc::clone(&e.id));
                        live.push(Arc::new(self.carry_over(prev, e.clone())));
                    }
                    None => {
                        change.added.push(Arc::clone(&e.id));
                        live.push(Arc::new(LiveEndpoint::new(
                            e.clone(),
                            Arc::clone(&self.breaker),
                        )));
                    }
                }
            }
            for prev in old.endpoints() {
                if !endpoints.iter().any(|e| e.id == prev.endpoint().id) {
                    change.removed.push(Arc::clone(&prev.endpoint().id));
                }
            }
            build_snapshot(self.next_version.fetch_add(1, Relaxed), live)
        });
        Ok(change)
    }

    fn carry_over(&self, prev: &LiveEndpoint, e: Endpoint) -> LiveEndpoint {
        let same_target = prev.endpoint().address == e.address && prev.endpoint().port == e.port;
        let fresh = LiveEndpoint::new(e, Arc::clone(&self.breaker));
        if same_target {
            // Metadata changed only: keep what we learned about the server.
            fresh.health.store(prev.health.load(Relaxed), Relaxed);
            fresh
                .ejected_until
                .store(prev.ejected_until.load(Relaxed), Relaxed);
            fresh.ejections.store(prev.ejections.load(Relaxed), Relaxed);
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

    /// Adds an endpoint or replaces the one with the same id.
    pub fn upsert(&self, endpoint: Endpoint) -> Result<SetChange> {
        let mut list: Vec<Endpoint> = self
            .snapshot()
            .endpoints()
            .iter()
            .map(|l| l.endpoint().clone())
            .collect();
        match list.iter_mut().find(|e| e.id == endpoint.id) {
            Some(slot) => *slot = endpoint,
            None => list.push(endpoint),
        }
        self.replace(list)
    }

    /// Removes an endpoint by id; returns whether it was there.
    pub fn remove(&self, id: &str) -> Result<bool> {
        let list: Vec<Endpoint> = self
            .snapshot()
            .endpoints()
            .iter()
            .filter(|l| l.id() != id)
            .map(|l| l.endpoint().clone())
            .collect();
        Ok(!self.replace(list)?.removed.is_empty())
    }

    /// Whether panic routing is on (too few endpoints are healthy, so picks
    /// ignore health and ejection rather than fail).
    pub fn is_panic(&self) -> bool {
        self.panic.load(Relaxed)
    }

    /// Recomputes panic mode: on when the share of available endpoints is
    /// below `threshold` (0.0 disables panic routing). Returns the new state
    /// when it changed. Called by health checking and outlier detection after
    /// they change an endpoint, never per pick.
    pub fn refresh_panic(&self, threshold: f64, now: u64) -> Option<bool> {
        let snap = self.snapshot();
        let total = snap.len();
        let panic = if threshold <= 0.0 || total == 0 {
            false
        } else {
            let usable = snap
                .endpoints()
                .iter()
                .filter(|e| e.health().is_usable() && !e.is_ejected(now))
                .count();
            (usable as f64) / (total as f64) < threshold
        };
        let prev = self.panic.swap(panic, Relaxed);
        (prev != panic).then_some(panic)
    }
}

fn check_unique(endpoints: &[Endpoint]) -> Result<()> {
    let mut seen = std::collections::HashSet::with_capacity(endpoints.len());
    for e in endpoints {
        if !seen.insert(&*e.id) {
            return Err(Error::Config(format!("duplicate endpoint id `{}`", e.id)));
        }
    }
    Ok(())
}

fn build_snapshot(version: u64, live: Vec<Arc<LiveEndpoint>>) -> Snapshot {
    let by_id = live
        .iter()
        .enumerate()
        .map(|(i, l)| (Arc::clone(&l.endpoint().id), i))
        .collect();
    Snapshot {
        version,
        endpoints: live.into_boxed_slice(),
        by_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize) -> EndpointSet {
        let eps = (0..n)
            .map(|i| Endpoint::new(format!("e{i}"), "127.0.0.1", 1000 + i as u16))
            .collect();
        EndpointSet::new(eps, Arc::new(BreakerConfig::default())).unwrap()
    }

    #[test]
    fn duplicate_ids_are_a_config_error() {
        let eps = vec![Endpoint::new("a", "h", 1), Endpoint::new("a", "h", 2)];
        let err = EndpointSet::new(eps, Arc::new(BreakerConfig::default())).unwrap_err();
        assert_eq!(err.code(), crate::error::ErrorCode::Config);
    }

    #[test]
    fn replace_keeps_live_state_of_unchanged_endpoints() {
        let s = set(3);
        let e1 = s.get("e1").unwrap();
        e1.set_health(Health::Unhealthy);
        let v1 = s.snapshot().version();
        let mut list: Vec<Endpoint> = s
            .snapshot()
            .endpoints()
            .iter()
            .map(|l| l.endpoint().clone())
            .collect();
        list.remove(0);
        list.push(Endpoint::new("e9", "127.0.0.1", 9));
        list[1] = list[1].clone().with_tag("new");
        let change = s.replace(list).unwrap();
        assert_eq!(&*change.removed, &[Arc::from("e0")]);
        assert_eq!(&*change.added, &[Arc::from("e9")]);
        assert_eq!(&*change.updated, &[Arc::from("e2")]);
        assert!(Arc::ptr_eq(&e1, &s.get("e1").unwrap()));
        assert_eq!(s.get("e1").unwrap().health(), Health::Unhealthy);
        assert!(s.snapshot().version() > v1);
        assert!(s.get("e0").is_none());
    }

    #[test]
    fn upsert_and_remove() {
        let s = set(1);
        s.upsert(Endpoint::new("x", "h", 1)).unwrap();
        assert_eq!(s.snapshot().len(), 2);
        assert!(s.remove("x").unwrap());
        assert!(!s.remove("x").unwrap());
        assert_eq!(s.snapshot().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_guard_releases_on_cancel() {
        let s = set(1);
        let ep = s.get("e0").unwrap();
        let ep2 = Arc::clone(&ep);
        let fut = async move {
            let _g = ep2.start_call();
            tokio::time::sleep(Duration::from_secs(60)).await;
        };
        let handle = tokio::spawn(fut);
        tokio::task::yield_now().await;
        assert_eq!(ep.in_flight(), 1);
        handle.abort();
        let _ = handle.await;
        assert_eq!(ep.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_expires_once() {
        let s = set(1);
        let ep = s.get("e0").unwrap();
        let now = now_nanos();
        assert_eq!(ep.eject(now + 1_000_000_000, now), Some(1));
        assert_eq!(ep.eject(now + 2_000_000_000, now), None);
        assert!(ep.is_ejected(now));
        assert!(!ep.is_available(now));
        tokio::time::advance(Duration::from_secs(2)).await;
        let later = now_nanos();
        assert!(!ep.is_ejected(later));
        assert!(ep.clear_expired_ejection(later));
        assert!(!ep.clear_expired_ejection(later));
    }

    #[tokio::test(start_paused = true)]
    async fn peak_ewma_jumps_up_and_decays() {
        let e = PeakEwma::new(Duration::from_millis(30), Duration::from_secs(10));
        let t0 = now_nanos();
        e.observe(Duration::from_millis(100), t0);
        assert!((e.estimate_ns(t0) - 100e6).abs() < 1.0);
        tokio::time::advance(Duration::from_secs(10)).await;
        let t1 = now_nanos();
        let decayed = e.estimate_ns(t1);
        assert!(decayed < 40e6 && decayed > 30e6, "{decayed}");
    }

    #[test]
    fn panic_mode_follows_threshold() {
        let s = set(4);
        let now = now_nanos();
        assert_eq!(s.refresh_panic(0.5, now), None);
        for id in ["e0", "e1", "e2"] {
            s.get(id).unwrap().set_health(Health::Unhealthy);
        }
        assert_eq!(s.refresh_panic(0.5, now), Some(true));
        assert!(s.is_panic());
        assert_eq!(s.refresh_panic(0.0, now), Some(false));
    }
}
