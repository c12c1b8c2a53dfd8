//! Load-balancing strategies: the object-safe [`Strategy`] trait and the
//! built-ins. A pick reads the live snapshot and per-endpoint atomics only:
//! no lock, no allocation.
//!
//! | strategy | config name ([`StrategyKind`]) | chooses |
//! |---|---|---|
//! | [`RoundRobin`] | `round-robin` (`active-active`) | every endpoint in turn |
//! | [`WeightedRoundRobin`] | `weighted-round-robin` (`weighted`) | in turn, in proportion to the weights, interleaved (nginx's smooth WRR) |
//! | [`LeastConnections`] | `least-connections` (`least-conn`) | the fewest calls in flight |
//! | [`Random`] | `random` | uniformly at random |
//! | [`PowerOfTwoChoices`] | `power-of-two-choices` (`p2c`) | the lower peak-EWMA load of two random endpoints |
//! | [`Priority`] | `priority` (`active-passive`) | the first available in order, failing back after a hold-down |
//! | [`HealthBased`] | `health-based` | in turn among the healthiest class present |
//!
//! Every built-in returns only positions that pass
//! [`PickContext::is_eligible`] (which covers exclusions and panic mode) and
//! `None` when there is none.

use crate::core::endpoint::Health;
use crate::core::set::{LiveEndpoint, Snapshot};
use crate::error::Error;
use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::time::Duration;

/// Maximum number of endpoints a single call can exclude (the ones already
/// tried by earlier attempts).
pub const MAX_EXCLUDED: usize = 8;

/// A small, fixed-capacity set of endpoint positions to skip (no allocation).
#[derive(Debug, Clone, Copy, Default)]
pub struct Excluded {
    items: [usize; MAX_EXCLUDED],
    len: usize,
}

impl Excluded {
    /// An empty set.
    pub const fn new() -> Self {
        Excluded {
            items: [0; MAX_EXCLUDED],
            len: 0,
        }
    }

    /// Adds a position; once full, the oldest entry is forgotten.
    pub fn insert(&mut self, index: usize) {
        if self.contains(index) {
            return;
        }
        if self.len < MAX_EXCLUDED {
            self.items[self.len] = index;
            self.len += 1;
        } else {
            self.items.rotate_left(1);
            self.items[MAX_EXCLUDED - 1] = index;
        }
    }

    /// Whether a position is excluded.
    pub fn contains(&self, index: usize) -> bool {
        self.items[..self.len].contains(&index)
    }

    /// Number of excluded positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// Everything a strategy may look at to choose an endpoint.
#[derive(Clone, Copy)]
pub struct PickContext<'a> {
    /// The endpoints of the current snapshot, in configured order.
    pub endpoints: &'a [Arc<LiveEndpoint>],
    /// The snapshot version (changes whenever the list changes), for
    /// strategies that precompute something per list.
    pub version: u64,
    /// Now, in [`clock`](crate::core::clock) nanoseconds.
    pub now: u64,
    /// Positions tried already by this call; skip them when anything else is eligible.
    pub excluded: &'a Excluded,
    /// Panic routing: too few endpoints are healthy, so ignore health and
    /// ejection (but not exclusion) rather than fail.
    pub panic: bool,
}

impl fmt::Debug for PickContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PickContext")
            .field("endpoints", &self.endpoints.len())
            .field("version", &self.version)
            .field("now", &self.now)
            .field("excluded", &self.excluded)
            .field("panic", &self.panic)
            .finish()
    }
}

impl PickContext<'_> {
    /// Whether the endpoint at `index` may be picked: not excluded and, unless
    /// in panic mode, available (usable health, not ejected, breaker permits).
    #[inline]
    pub fn is_eligible(&self, index: usize) -> bool {
        if self.excluded.contains(index) {
            return false;
        }
        let Some(ep) = self.endpoints.get(index) else {
            return false;
        };
        if self.panic {
            ep.breaker().is_call_permitted(self.now)
        } else {
            ep.is_available(self.now)
        }
    }
}

/// Chooses one endpoint for a call.
///
/// Object-safe, so a `Box<dyn Strategy>` / `Arc<dyn Strategy>` of your own
/// works wherever a built-in does. `pick` returns a position in
/// `ctx.endpoints` that satisfies [`PickContext::is_eligible`], or `None`
/// when no endpoint is eligible. It is called on every attempt: keep it
/// lock-free and allocation-free.
pub trait Strategy: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and metrics ("round_robin", ...).
    fn name(&self) -> &'static str;

    /// Chooses an eligible endpoint.
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize>;
}

impl<S: Strategy + ?Sized> Strategy for Arc<S> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        (**self).pick(ctx)
    }
}

impl<S: Strategy + ?Sized> Strategy for Box<S> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        (**self).pick(ctx)
    }
}

impl<'a> PickContext<'a> {
    /// A context for the endpoints of `snapshot` at `now` (clock nanos),
    /// skipping `excluded`, outside panic mode.
    ///
    /// ```
    /// use failover_pool::core::strategy::{Excluded, PickContext};
    /// use failover_pool::core::{BreakerConfig, Endpoint, EndpointSet, clock::now_nanos};
    /// use std::sync::Arc;
    ///
    /// let set = EndpointSet::new(
    ///     vec![Endpoint::new("a", "10.0.0.1", 80)],
    ///     Arc::new(BreakerConfig::default()),
    /// )?;
    /// let snapshot = set.snapshot();
    /// let excluded = Excluded::new();
    /// let ctx = PickContext::new(&snapshot, now_nanos(), &excluded);
    /// assert!(ctx.is_eligible(0));
    /// # Ok::<(), failover_pool::Error>(())
    /// ```
    pub fn new(snapshot: &'a Snapshot, now: u64, excluded: &'a Excluded) -> Self {
        PickContext {
            endpoints: snapshot.endpoints(),
            version: snapshot.version(),
            now,
            excluded,
            panic: false,
        }
    }

    /// The same context with panic routing switched on or off.
    pub fn with_panic(self, panic: bool) -> Self {
        PickContext { panic, ..self }
    }
}

// ---------------------------------------------------------------------------
// Helpers shared by the built-ins.

/// Random draws a strategy makes before it falls back to a scan.
const RANDOM_TRIES: usize = 4;

/// An empty exclusion set, for strategies that track availability
/// independently of the positions one call has already tried.
static NO_EXCLUSIONS: Excluded = Excluded::new();

/// The first eligible position at or after `start` (`start < n`), wrapping.
#[inline]
fn scan_from(ctx: &PickContext<'_>, start: usize) -> Option<usize> {
    let n = ctx.endpoints.len();
    let mut i = start;
    for _ in 0..n {
        if ctx.is_eligible(i) {
            return Some(i);
        }
        i += 1;
        if i == n {
            i = 0;
        }
    }
    None
}

/// A uniformly random eligible position (`n` = number of endpoints, > 0):
/// rejection sampling with a few draws, then a scan from a random start.
#[inline]
fn random_eligible(ctx: &PickContext<'_>, n: usize) -> Option<usize> {
    for _ in 0..RANDOM_TRIES {
        let i = fastrand::usize(..n);
        if ctx.is_eligible(i) {
            return Some(i);
        }
    }
    scan_from(ctx, fastrand::usize(..n))
}

/// An eligible position chosen at random in proportion to the endpoints'
/// effective weights. Two passes over the list; no allocation.
fn weighted_random(ctx: &PickContext<'_>) -> Option<usize> {
    let mut total = 0u64;
    let mut first = None;
    for (i, ep) in ctx.endpoints.iter().enumerate() {
        if ctx.is_eligible(i) {
            total += u64::from(ep.endpoint().effective_weight());
            first.get_or_insert(i);
        }
    }
    let first = first?;
    let mut r = fastrand::u64(..total);
    for (i, ep) in ctx.endpoints.iter().enumerate() {
        if ctx.is_eligible(i) {
            let w = u64::from(ep.endpoint().effective_weight());
            if r < w {
                return Some(i);
            }
            r -= w;
        }
    }
    // Eligibility changed between the passes.
    Some(first)
}

// ---------------------------------------------------------------------------
// Round robin

/// Round robin ("active-active"): every endpoint in turn.
///
/// An atomic counter picks the start position (`counter % n`); the first
/// eligible endpoint from there on (wrapping) is chosen. With every endpoint
/// eligible, `k * n` consecutive picks give each endpoint exactly `k`.
/// An ineligible endpoint's turns go to the next eligible one after it.
///
/// ```
/// use failover_pool::core::strategy::{Excluded, PickContext, RoundRobin, Strategy};
/// use failover_pool::core::{BreakerConfig, Endpoint, EndpointSet, clock::now_nanos};
/// use std::sync::Arc;
///
/// let set = EndpointSet::new(
///     vec![Endpoint::new("a", "10.0.0.1", 80), Endpoint::new("b", "10.0.0.2", 80)],
///     Arc::new(BreakerConfig::default()),
/// )?;
/// let snapshot = set.snapshot();
/// let excluded = Excluded::new();
/// let ctx = PickContext::new(&snapshot, now_nanos(), &excluded);
/// let rr = RoundRobin::new();
/// let picks: Vec<_> = (0..4).map(|_| rr.pick(&ctx).unwrap()).collect();
/// assert_eq!(picks, [0, 1, 0, 1]);
/// # Ok::<(), failover_pool::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// A round robin starting at the first endpoint.
    pub const fn new() -> Self {
        RoundRobin {
            next: AtomicUsize::new(0),
        }
    }
}

impl Strategy for RoundRobin {
    fn name(&self) -> &'static str {
        "round_robin"
    }

    #[inline]
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let n = ctx.endpoints.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Relaxed) % n;
        scan_from(ctx, start)
    }
}

// ---------------------------------------------------------------------------
// Smooth weighted round robin

/// Longest smooth schedule [`WeightedRoundRobin`] builds: when the
/// (gcd-reduced) weights of a list add up to more, they are scaled down
/// proportionally (each stays at least 1), so the schedule holds at most
/// this many entries plus one per endpoint.
pub const MAX_SCHEDULE_LEN: u64 = 65_536;

/// After this many picks that could not use the cached schedule (a context
/// whose version is not newer than the cached one, e.g. one instance shared
/// by two lists), the schedule is rebuilt anyway.
const REBUILD_AFTER_MISSES: usize = 1024;

/// The precomputed smooth sequence of one endpoint list.
struct Schedule {
    version: u64,
    /// Address of the endpoint slice it was built for (identity only).
    list: usize,
    len: usize,
    slots: Box<[u32]>,
}

impl Schedule {
    fn matches(&self, ctx: &PickContext<'_>) -> bool {
        self.version == ctx.version
            && self.len == ctx.endpoints.len()
            && self.list == ctx.endpoints.as_ptr() as usize
    }

    fn build(ctx: &PickContext<'_>) -> Self {
        let weights: Vec<u64> = ctx
            .endpoints
            .iter()
            .map(|ep| u64::from(ep.endpoint().effective_weight()))
            .collect();
        Schedule {
            version: ctx.version,
            list: ctx.endpoints.as_ptr() as usize,
            len: ctx.endpoints.len(),
            slots: smooth_schedule(weights).into_boxed_slice(),
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Divides the weights by their greatest common divisor.
fn reduce(weights: &mut [u64]) {
    let g = weights.iter().copied().fold(0, gcd);
    if g > 1 {
        weights.iter_mut().for_each(|w| *w /= g);
    }
}

/// nginx's smooth weighted round robin, unrolled over one period: at each
/// step every endpoint's current value grows by its weight, the largest
/// (first on ties) is chosen and loses the total. For weights 5, 1, 1 the
/// period is `a a b a c a a`.
///
/// Weights are reduced by their gcd and, when they add up to more than
/// [`MAX_SCHEDULE_LEN`], scaled down proportionally (each at least 1).
/// Costs O(n × period) once per list version.
fn smooth_schedule(mut weights: Vec<u64>) -> Vec<u32> {
    if weights.is_empty() {
        return Vec::new();
    }
    reduce(&mut weights);
    let sum: u64 = weights.iter().sum();
    if sum > MAX_SCHEDULE_LEN {
        // w ≤ u32::MAX and MAX_SCHEDULE_LEN = 2^16: the product fits in u64.
        weights
            .iter_mut()
            .for_each(|w| *w = (*w * MAX_SCHEDULE_LEN / sum).max(1));
        reduce(&mut weights);
    }
    let total: u64 = weights.iter().sum();
    let total_i = total as i64;
    let weights_i: Vec<i64> = weights.iter().map(|&w| w as i64).collect();
    let mut current = vec![0i64; weights.len()];
    let mut slots = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        let mut best_value = i64::MIN;
        for (i, (c, &w)) in current.iter_mut().zip(&weights_i).enumerate() {
            *c += w;
            if *c > best_value {
                best_value = *c;
                best = i;
            }
        }
        current[best] -= total_i;
        slots.push(best as u32);
    }
    slots
}

/// Smooth weighted round robin (nginx's algorithm): endpoints get turns in
/// proportion to [`Endpoint::weight`](crate::core::Endpoint::weight),
/// interleaved rather than in bursts — for weights 5, 1, 1 the sequence is
/// `a a b a c a a`, and any `k` whole periods are exactly proportional.
///
/// The sequence is precomputed once per list version (`ctx.version`) and
/// cached; a pick is then an atomic counter indexing into it, lock-free and
/// allocation-free. Weights are reduced by their gcd; when they still add
/// up to more than [`MAX_SCHEDULE_LEN`] they are scaled down proportionally
/// (each stays at least 1), so very uneven weights are approximated.
/// Building costs O(endpoints × schedule length), once per version; picks
/// that arrive while another thread builds use a weighted random pick.
///
/// When the scheduled endpoint is not eligible, a random schedule entry is
/// drawn a few times (a random entry is weight-proportional, so the
/// eligible endpoints keep their relative weights), then a weighted random
/// pick over the list decides.
///
/// Use one instance per endpoint list; an instance shared by two lists
/// still picks correctly but falls back to weighted random picks.
///
/// ```
/// use failover_pool::core::strategy::{Excluded, PickContext, Strategy, WeightedRoundRobin};
/// use failover_pool::core::{BreakerConfig, Endpoint, EndpointSet, clock::now_nanos};
/// use std::sync::Arc;
///
/// let set = EndpointSet::new(
///     vec![
///         Endpoint::new("a", "10.0.0.1", 80).with_weight(5),
///         Endpoint::new("b", "10.0.0.2", 80),
///         Endpoint::new("c", "10.0.0.3", 80),
///     ],
///     Arc::new(BreakerConfig::default()),
/// )?;
/// let snapshot = set.snapshot();
/// let excluded = Excluded::new();
/// let ctx = PickContext::new(&snapshot, now_nanos(), &excluded);
/// let wrr = WeightedRoundRobin::new();
/// let picks: Vec<_> = (0..7).map(|_| wrr.pick(&ctx).unwrap()).collect();
/// assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
/// # Ok::<(), failover_pool::Error>(())
/// ```
#[derive(Default)]
pub struct WeightedRoundRobin {
    schedule: ArcSwapOption<Schedule>,
    cursor: AtomicUsize,
    building: AtomicBool,
    misses: AtomicUsize,
}

impl fmt::Debug for WeightedRoundRobin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let schedule = self.schedule.load();
        let (version, len) = match &*schedule {
            Some(s) => (Some(s.version), s.slots.len()),
            None => (None, 0),
        };
        f.debug_struct("WeightedRoundRobin")
            .field("version", &version)
            .field("schedule_len", &len)
            .field("cursor", &self.cursor.load(Relaxed))
            .finish()
    }
}

impl WeightedRoundRobin {
    /// A weighted round robin; the schedule is built on the first pick.
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    fn pick_scheduled(&self, ctx: &PickContext<'_>, slots: &[u32]) -> Option<usize> {
        let len = slots.len();
        if len == 0 {
            return weighted_random(ctx);
        }
        let i = slots[self.cursor.fetch_add(1, Relaxed) % len] as usize;
        if ctx.is_eligible(i) {
            return Some(i);
        }
        for _ in 0..RANDOM_TRIES {
            let i = slots[fastrand::usize(..len)] as usize;
            if ctx.is_eligible(i) {
                return Some(i);
            }
        }
        weighted_random(ctx)
    }

    #[cold]
    fn rebuild_and_pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let may_build = match &*self.schedule.load() {
            None => true,
            Some(s) => {
                ctx.version > s.version
                    || self.misses.fetch_add(1, Relaxed) + 1 >= REBUILD_AFTER_MISSES
            }
        };
        if may_build
            && self
                .building
                .compare_exchange(false, true, Acquire, Relaxed)
                .is_ok()
        {
            let schedule = Arc::new(Schedule::build(ctx));
            self.schedule.store(Some(Arc::clone(&schedule)));
            self.misses.store(0, Relaxed);
            self.building.store(false, Release);
            return self.pick_scheduled(ctx, &schedule.slots);
        }
        weighted_random(ctx)
    }
}

impl Strategy for WeightedRoundRobin {
    fn name(&self) -> &'static str {
        "weighted_round_robin"
    }

    #[inline]
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        if ctx.endpoints.is_empty() {
            return None;
        }
        {
            let guard = self.schedule.load();
            if let Some(s) = &*guard
                && s.matches(ctx)
            {
                return self.pick_scheduled(ctx, &s.slots);
            }
        }
        self.rebuild_and_pick(ctx)
    }
}

// ---------------------------------------------------------------------------
// Least connections

/// Least connections: the eligible endpoint with the fewest calls in flight
/// ([`LiveEndpoint::in_flight`]).
///
/// The scan starts at a rotating offset and keeps the first minimum it
/// meets, so endpoints with equal load share the traffic; it stops early at
/// an idle endpoint.
///
/// ```
/// use failover_pool::core::strategy::{Excluded, LeastConnections, PickContext, Strategy};
/// use failover_pool::core::{BreakerConfig, Endpoint, EndpointSet, clock::now_nanos};
/// use std::sync::Arc;
///
/// let set = EndpointSet::new(
///     vec![Endpoint::new("a", "10.0.0.1", 80), Endpoint::new("b", "10.0.0.2", 80)],
///     Arc::new(BreakerConfig::default()),
/// )?;
/// let snapshot = set.snapshot();
/// let _busy = snapshot.endpoints()[0].start_call();
/// let excluded = Excluded::new();
/// let ctx = PickContext::new(&snapshot, now_nanos(), &excluded);
/// let lc = LeastConnections::new();
/// assert_eq!(lc.pick(&ctx), Some(1));
/// assert_eq!(lc.pick(&ctx), Some(1));
/// # Ok::<(), failover_pool::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct LeastConnections {
    next: AtomicUsize,
}

impl LeastConnections {
    /// A least-connections strategy.
    pub const fn new() -> Self {
        LeastConnections {
            next: AtomicUsize::new(0),
        }
    }
}

impl Strategy for LeastConnections {
    fn name(&self) -> &'static str {
        "least_connections"
    }

    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let n = ctx.endpoints.len();
        if n == 0 {
            return None;
        }
        let mut i = self.next.fetch_add(1, Relaxed) % n;
        let mut best: Option<(usize, u32)> = None;
        for _ in 0..n {
            let load = ctx.endpoints[i].in_flight();
            if best.is_none_or(|(_, b)| load < b) && ctx.is_eligible(i) {
                best = Some((i, load));
                if load == 0 {
                    break;
                }
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        best.map(|(i, _)| i)
    }
}

// ---------------------------------------------------------------------------
// Random

/// Uniformly random among the eligible endpoints (a few random draws, then a
/// scan from a random position). Uses fastrand's thread-local generator.
///
/// ```
/// use failover_pool::core::strategy::{Excluded, PickContext, Random, Strategy};
/// use failover_pool::core::{BreakerConfig, Endpoint, EndpointSet, clock::now_nanos};
/// use std::sync::Arc;
///
/// let set = EndpointSet::new(
///     vec![Endpoint::new("a", "10.0.0.1", 80), Endpoint::new("b", "10.0.0.2", 80)],
///     Arc::new(BreakerConfig::default()),
/// )?;
/// let snapshot = set.snapshot();
/// let mut excluded = Excluded::new();
/// excluded.insert(0);
/// let ctx = PickContext::new(&snapshot, now_nanos(), &excluded);
/// assert_eq!(Random::new().pick(&ctx), Some(1));
/// # Ok::<(), failover_pool::Error>(())
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct Random {
    _private: (),
}

impl Random {
    /// A uniformly random strategy.
    pub const fn new() -> Self {
        Random { _private: () }
    }
}

impl Strategy for Random {
    fn name(&self) -> &'static str {
        "random"
    }

    #[inline]
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let n = ctx.endpoints.len();
        if n == 0 {
            return None;
        }
        random_eligible(ctx, n)
    }
}

// ---------------------------------------------------------------------------
// Power of two choices (P2C peak-EWMA)

/// "P2C peak-EWMA" (as in tower and linkerd): two distinct random eligible
/// endpoints are compared and the one with the lower
/// [`LiveEndpoint::load`] wins — the peak-EWMA round-trip estimate
/// multiplied by (calls in flight + 1). New endpoints start from
/// [`DEFAULT_RTT`](crate::core::set::DEFAULT_RTT); the estimate decays over
/// [`DEFAULT_DECAY`](crate::core::set::DEFAULT_DECAY) so a slow endpoint is
/// tried again eventually. With a single eligible endpoint, that one.
///
/// ```
/// use failover_pool::core::strategy::{Excluded, PickContext, PowerOfTwoChoices, Strategy};
/// use failover_pool::core::{BreakerConfig, Endpoint, EndpointSet, clock::now_nanos};
/// use std::{sync::Arc, time::Duration};
///
/// let set = EndpointSet::new(
///     vec![Endpoint::new("slow", "10.0.0.1", 80), Endpoint::new("fast", "10.0.0.2", 80)],
///     Arc::new(BreakerConfig::default()),
/// )?;
/// let snapshot = set.snapshot();
/// let now = now_nanos();
/// snapshot.endpoints()[0].ewma().observe(Duration::from_millis(500), now);
/// let excluded = Excluded::new();
/// let ctx = PickContext::new(&snapshot, now, &excluded);
/// // With two endpoints both are always compared: the fast one wins.
/// assert_eq!(PowerOfTwoChoices::new().pick(&ctx), Some(1));
/// # Ok::<(), failover_pool::Error>(())
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct PowerOfTwoChoices {
    _private: (),
}

impl PowerOfTwoChoices {
    /// A power-of-two-choices strategy over the peak-EWMA load.
    pub const fn new() -> Self {
        PowerOfTwoChoices { _private: () }
    }
}

impl Strategy for PowerOfTwoChoices {
    fn name(&self) -> &'static str {
        "p2c"
    }

    #[inline]
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let n = ctx.endpoints.len();
        if n < 2 {
            return if n == 1 && ctx.is_eligible(0) {
                Some(0)
            } else {
                None
            };
        }
        let a = random_eligible(ctx, n)?;
        let mut b = None;
        for _ in 0..RANDOM_TRIES {
            let mut j = fastrand::usize(..n - 1);
            if j >= a {
                j += 1;
            }
            if ctx.is_eligible(j) {
                b = Some(j);
                break;
            }
        }
        let b = match b {
            Some(b) => b,
            None => {
                // Scan the others from a random position.
                let mut j = fastrand::usize(..n);
                let mut found = None;
                for _ in 0..n {
                    if j != a && ctx.is_eligible(j) {
                        found = Some(j);
                        break;
                    }
                    j += 1;
                    if j == n {
                        j = 0;
                    }
                }
                match found {
                    Some(b) => b,
                    None => return Some(a),
                }
            }
        };
        let now = ctx.now;
        if ctx.endpoints[b].load(now) < ctx.endpoints[a].load(now) {
            Some(b)
        } else {
            Some(a)
        }
    }
}

// ---------------------------------------------------------------------------
// Priority (active-passive)

/// Default [`Priority`] hold-down before failing back to a higher-priority endpoint.
pub const DEFAULT_HOLD_DOWN: Duration = Duration::from_secs(30);

/// Bits of [`Priority`]'s packed pending state that hold the candidate
/// position + 1; the rest hold "eligible since" in milliseconds.
const SINCE_BITS: u32 = 44;
const SINCE_MASK: u64 = (1 << SINCE_BITS) - 1;
/// Largest position that can be tracked as a fail-back candidate.
const MAX_CANDIDATE: usize = (1 << (64 - SINCE_BITS)) - 2;
const NANOS_PER_MS: u64 = 1_000_000;

/// Priority / active-passive: all traffic goes to one active endpoint, the
/// first eligible one in configured order (the snapshot order).
///
/// * **Failover** is immediate: when the active endpoint is no longer
///   available (unhealthy, ejected, breaker open), the first available
///   endpoint in order becomes active.
/// * **Fail-back** to a higher-priority endpoint waits for a hold-down
///   (default [`DEFAULT_HOLD_DOWN`], 30 s): the highest-priority available
///   endpoint must have been seen available at every pick for that long
///   before it takes over again, so a flapping primary does not pull traffic
///   back and forth. The clock starts at the first pick that sees it
///   available and restarts whenever a pick sees it unavailable, or the list
///   changes (new snapshot version). Times are tracked with millisecond
///   granularity, rounding so that fail-back is never early.
/// * **Exclusion** (positions already tried by this call) does not change
///   the active endpoint: a retry goes to the first eligible endpoint in
///   order, and the next call returns to the active one.
///
/// State is a few atomics: the active endpoint (by identity, so it survives
/// list changes; an endpoint replaced with fresh live state counts as a new
/// one) and the fail-back candidate with the time it was first seen.
///
/// ```
/// use failover_pool::core::strategy::{Excluded, PickContext, Priority, Strategy};
/// use failover_pool::core::{BreakerConfig, Endpoint, EndpointSet, Health, clock::now_nanos};
/// use std::{sync::Arc, time::Duration};
///
/// let set = EndpointSet::new(
///     vec![Endpoint::new("primary", "10.0.0.1", 80), Endpoint::new("standby", "10.0.0.2", 80)],
///     Arc::new(BreakerConfig::default()),
/// )?;
/// let snapshot = set.snapshot();
/// let excluded = Excluded::new();
/// let strategy = Priority::new(Duration::from_secs(30));
/// assert_eq!(strategy.pick(&PickContext::new(&snapshot, now_nanos(), &excluded)), Some(0));
///
/// snapshot.endpoints()[0].set_health(Health::Unhealthy);
/// assert_eq!(strategy.pick(&PickContext::new(&snapshot, now_nanos(), &excluded)), Some(1));
///
/// // Back, but traffic stays on the standby until the hold-down has passed.
/// snapshot.endpoints()[0].set_health(Health::Healthy);
/// assert_eq!(strategy.pick(&PickContext::new(&snapshot, now_nanos(), &excluded)), Some(1));
/// # Ok::<(), failover_pool::Error>(())
/// ```
#[derive(Debug)]
pub struct Priority {
    hold_down_ms: u64,
    /// Identity of the active endpoint (never dereferenced); null = none yet.
    active: AtomicPtr<LiveEndpoint>,
    /// Where the active endpoint was last found in the list.
    active_hint: AtomicUsize,
    /// 0 = no candidate; else `(candidate + 1) << SINCE_BITS | since_ms`.
    pending: AtomicU64,
    /// The list version the pending state belongs to.
    seen_version: AtomicU64,
}

impl Default for Priority {
    fn default() -> Self {
        Self::new(DEFAULT_HOLD_DOWN)
    }
}

fn identity(ep: &Arc<LiveEndpoint>) -> *mut LiveEndpoint {
    Arc::as_ptr(ep).cast_mut()
}

impl Priority {
    /// Active-passive with the given fail-back hold-down (zero fails back at
    /// once).
    pub fn new(hold_down: Duration) -> Self {
        Priority {
            hold_down_ms: crate::core::clock::dur_nanos(hold_down).div_ceil(NANOS_PER_MS),
            active: AtomicPtr::new(std::ptr::null_mut()),
            active_hint: AtomicUsize::new(0),
            pending: AtomicU64::new(0),
            seen_version: AtomicU64::new(0),
        }
    }

    /// The fail-back hold-down.
    pub fn hold_down(&self) -> Duration {
        Duration::from_millis(self.hold_down_ms)
    }

    /// Position of the current active endpoint in `endpoints`, if it is
    /// still in the list (`None` before the first pick).
    pub fn active_in(&self, endpoints: &[Arc<LiveEndpoint>]) -> Option<usize> {
        let p = self.active.load(Acquire);
        if p.is_null() {
            return None;
        }
        let hint = self.active_hint.load(Relaxed);
        if let Some(ep) = endpoints.get(hint)
            && identity(ep) == p
        {
            return Some(hint);
        }
        let i = endpoints.iter().position(|ep| identity(ep) == p)?;
        self.active_hint.store(i, Relaxed);
        Some(i)
    }

    fn set_active(&self, endpoints: &[Arc<LiveEndpoint>], index: usize) {
        self.active.store(identity(&endpoints[index]), Release);
        self.active_hint.store(index, Relaxed);
    }

    fn clear_pending(&self) {
        if self.pending.load(Relaxed) != 0 {
            self.pending.store(0, Relaxed);
        }
    }

    /// `active` is available and `top < active` is available too: track
    /// `top` and fail back once it has been held long enough.
    fn consider_fail_back(&self, ctx: &PickContext<'_>, active: usize, top: usize) -> usize {
        let pending = self.pending.load(Acquire);
        let candidate = (pending >> SINCE_BITS) as usize;
        if pending == 0 || candidate != top + 1 {
            if top <= MAX_CANDIDATE {
                let since_ms = ctx.now.div_ceil(NANOS_PER_MS) & SINCE_MASK;
                let packed = ((top as u64 + 1) << SINCE_BITS) | since_ms;
                let _ = self
                    .pending
                    .compare_exchange(pending, packed, AcqRel, Relaxed);
            }
            return active;
        }
        let since_ms = pending & SINCE_MASK;
        let now_ms = ctx.now / NANOS_PER_MS;
        if now_ms.saturating_sub(since_ms) < self.hold_down_ms {
            return active;
        }
        let from = identity(&ctx.endpoints[active]);
        let to = identity(&ctx.endpoints[top]);
        if self
            .active
            .compare_exchange(from, to, AcqRel, Relaxed)
            .is_ok()
        {
            self.active_hint.store(top, Relaxed);
            self.clear_pending();
        }
        top
    }
}

impl Strategy for Priority {
    fn name(&self) -> &'static str {
        "priority"
    }

    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        if ctx.endpoints.is_empty() {
            return None;
        }
        // Availability drives the state; this call's exclusions only steer
        // this call.
        let base = PickContext {
            excluded: &NO_EXCLUSIONS,
            ..*ctx
        };
        if self.seen_version.load(Relaxed) != ctx.version {
            self.seen_version.store(ctx.version, Relaxed);
            self.clear_pending();
        }
        let top = scan_from(&base, 0)?;
        let chosen = match self.active_in(ctx.endpoints) {
            Some(active) if active == top => {
                self.clear_pending();
                active
            }
            Some(active) if base.is_eligible(active) => self.consider_fail_back(ctx, active, top),
            _ => {
                // Failover: no active endpoint yet, or it is unavailable.
                self.set_active(ctx.endpoints, top);
                self.clear_pending();
                top
            }
        };
        if ctx.is_eligible(chosen) {
            Some(chosen)
        } else {
            scan_from(ctx, 0)
        }
    }
}

// ---------------------------------------------------------------------------
// Health based

/// Preference class of a health state: lower is better.
#[inline]
fn health_class(health: Health) -> u8 {
    match health {
        Health::Healthy | Health::Unknown => 0,
        Health::Degraded => 1,
        Health::Unhealthy => 2,
    }
}

/// Health-based: round robin among the eligible endpoints of the best health
/// class present — [`Health::Healthy`] and [`Health::Unknown`] first, then
/// [`Health::Degraded`] (then, in panic mode only, [`Health::Unhealthy`]).
/// Degraded endpoints get traffic only while no healthy one is eligible.
///
/// When the round-robin slot holds a healthy eligible endpoint it is chosen
/// at once; otherwise the turn goes to one of the best-class endpoints in
/// rotation (two passes over the list), so a skipped endpoint's turns are
/// spread instead of landing on its neighbour.
///
/// ```
/// use failover_pool::core::strategy::{Excluded, HealthBased, PickContext, Strategy};
/// use failover_pool::core::{BreakerConfig, Endpoint, EndpointSet, Health, clock::now_nanos};
/// use std::sync::Arc;
///
/// let set = EndpointSet::new(
///     vec![
///         Endpoint::new("a", "10.0.0.1", 80).with_health(Health::Degraded),
///         Endpoint::new("b", "10.0.0.2", 80).with_health(Health::Healthy),
///     ],
///     Arc::new(BreakerConfig::default()),
/// )?;
/// let snapshot = set.snapshot();
/// let excluded = Excluded::new();
/// let ctx = PickContext::new(&snapshot, now_nanos(), &excluded);
/// let hb = HealthBased::new();
/// assert!((0..4).all(|_| hb.pick(&ctx) == Some(1)));
/// # Ok::<(), failover_pool::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct HealthBased {
    next: AtomicUsize,
}

impl HealthBased {
    /// A health-based strategy.
    pub const fn new() -> Self {
        HealthBased {
            next: AtomicUsize::new(0),
        }
    }
}

impl Strategy for HealthBased {
    fn name(&self) -> &'static str {
        "health_based"
    }

    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let n = ctx.endpoints.len();
        if n == 0 {
            return None;
        }
        let turn = self.next.fetch_add(1, Relaxed);
        let slot = turn % n;
        if health_class(ctx.endpoints[slot].health()) == 0 && ctx.is_eligible(slot) {
            return Some(slot);
        }
        let mut best = u8::MAX;
        let mut count = 0usize;
        for (i, ep) in ctx.endpoints.iter().enumerate() {
            let class = health_class(ep.health());
            if class <= best && ctx.is_eligible(i) {
                if class < best {
                    best = class;
                    count = 0;
                }
                count += 1;
            }
        }
        if count == 0 {
            return None;
        }
        let mut k = turn % count;
        for (i, ep) in ctx.endpoints.iter().enumerate() {
            if health_class(ep.health()) == best && ctx.is_eligible(i) {
                if k == 0 {
                    return Some(i);
                }
                k -= 1;
            }
        }
        // Health or eligibility changed between the passes.
        scan_from(ctx, slot)
    }
}

// ---------------------------------------------------------------------------
// Configuration

/// The built-in strategies, by name, for configuration files.
///
/// Serialized in kebab-case; the snake_case names of [`Strategy::name`] and
/// a few aliases are accepted too:
///
/// | variant | name | aliases |
/// |---|---|---|
/// | [`RoundRobin`](StrategyKind::RoundRobin) | `round-robin` | `round_robin`, `active-active` |
/// | [`WeightedRoundRobin`](StrategyKind::WeightedRoundRobin) | `weighted-round-robin` | `weighted_round_robin`, `weighted` |
/// | [`LeastConnections`](StrategyKind::LeastConnections) | `least-connections` | `least_connections`, `least-conn` |
/// | [`Random`](StrategyKind::Random) | `random` | |
/// | [`PowerOfTwoChoices`](StrategyKind::PowerOfTwoChoices) | `power-of-two-choices` | `power_of_two_choices`, `p2c` |
/// | [`Priority`](StrategyKind::Priority) | `priority` | `active-passive` |
/// | [`HealthBased`](StrategyKind::HealthBased) | `health-based` | `health_based` |
///
/// ```
/// use failover_pool::core::strategy::StrategyKind;
///
/// let kind: StrategyKind = "p2c".parse()?;
/// assert_eq!(kind, StrategyKind::PowerOfTwoChoices);
/// assert_eq!(kind.build().name(), "p2c");
/// assert_eq!("active-active".parse::<StrategyKind>()?, StrategyKind::RoundRobin);
/// assert!("fastest".parse::<StrategyKind>().is_err());
/// # Ok::<(), failover_pool::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// [`RoundRobin`] (also for "active-active").
    #[default]
    #[serde(alias = "round_robin", alias = "active-active")]
    RoundRobin,
    /// [`WeightedRoundRobin`].
    #[serde(alias = "weighted_round_robin", alias = "weighted")]
    WeightedRoundRobin,
    /// [`LeastConnections`].
    #[serde(alias = "least_connections", alias = "least-conn")]
    LeastConnections,
    /// [`Random`].
    Random,
    /// [`PowerOfTwoChoices`] (P2C peak-EWMA).
    #[serde(alias = "power_of_two_choices", alias = "p2c")]
    PowerOfTwoChoices,
    /// [`Priority`] (active-passive), with the default hold-down.
    #[serde(alias = "active-passive")]
    Priority,
    /// [`HealthBased`].
    #[serde(alias = "health_based")]
    HealthBased,
}

/// Every accepted name (canonical first) with its kind; keep in step with
/// the serde attributes above.
const KIND_NAMES: &[(&str, StrategyKind)] = &[
    ("round-robin", StrategyKind::RoundRobin),
    ("weighted-round-robin", StrategyKind::WeightedRoundRobin),
    ("least-connections", StrategyKind::LeastConnections),
    ("random", StrategyKind::Random),
    ("power-of-two-choices", StrategyKind::PowerOfTwoChoices),
    ("priority", StrategyKind::Priority),
    ("health-based", StrategyKind::HealthBased),
    ("round_robin", StrategyKind::RoundRobin),
    ("active-active", StrategyKind::RoundRobin),
    ("weighted_round_robin", StrategyKind::WeightedRoundRobin),
    ("weighted", StrategyKind::WeightedRoundRobin),
    ("least_connections", StrategyKind::LeastConnections),
    ("least-conn", StrategyKind::LeastConnections),
    ("power_of_two_choices", StrategyKind::PowerOfTwoChoices),
    ("p2c", StrategyKind::PowerOfTwoChoices),
    ("active-passive", StrategyKind::Priority),
    ("health_based", StrategyKind::HealthBased),
];

impl StrategyKind {
    /// Every built-in, in declaration order.
    pub const ALL: [StrategyKind; 7] = [
        StrategyKind::RoundRobin,
        StrategyKind::WeightedRoundRobin,
        StrategyKind::LeastConnections,
        StrategyKind::Random,
        StrategyKind::PowerOfTwoChoices,
        StrategyKind::Priority,
        StrategyKind::HealthBased,
    ];

    /// The canonical (kebab-case) name.
    pub const fn as_str(self) -> &'static str {
        match self {
            StrategyKind::RoundRobin => "round-robin",
            StrategyKind::WeightedRoundRobin => "weighted-round-robin",
            StrategyKind::LeastConnections => "least-connections",
            StrategyKind::Random => "random",
            StrategyKind::PowerOfTwoChoices => "power-of-two-choices",
            StrategyKind::Priority => "priority",
            StrategyKind::HealthBased => "health-based",
        }
    }

    /// A fresh instance of the strategy, with default settings.
    pub fn build(&self) -> Arc<dyn Strategy> {
        match self {
            StrategyKind::RoundRobin => Arc::new(RoundRobin::new()),
            StrategyKind::WeightedRoundRobin => Arc::new(WeightedRoundRobin::new()),
            StrategyKind::LeastConnections => Arc::new(LeastConnections::new()),
            StrategyKind::Random => Arc::new(Random::new()),
            StrategyKind::PowerOfTwoChoices => Arc::new(PowerOfTwoChoices::new()),
            StrategyKind::Priority => Arc::new(Priority::default()),
            StrategyKind::HealthBased => Arc::new(HealthBased::new()),
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StrategyKind {
    type Err = Error;

    /// Parses a name or alias (ASCII case-insensitive, surrounding
    /// whitespace ignored); the error lists the valid names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        KIND_NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, kind)| kind)
            .ok_or_else(|| {
                let valid: Vec<&str> = KIND_NAMES.iter().map(|(n, _)| *n).collect();
                Error::Config(format!(
                    "unknown load-balancing strategy `{name}`; valid names: {}",
                    valid.join(", ")
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::breaker::BreakerConfig;
    use crate::core::clock::now_nanos;
    use crate::core::endpoint::Endpoint;
    use crate::core::set::EndpointSet;

    fn set_of(endpoints: Vec<Endpoint>) -> EndpointSet {
        EndpointSet::new(endpoints, Arc::new(BreakerConfig::default())).unwrap()
    }

    fn set(n: usize) -> EndpointSet {
        set_of(
            (0..n)
                .map(|i| Endpoint::new(format!("e{i}"), "127.0.0.1", 1000 + i as u16))
                .collect(),
        )
    }

    fn all() -> Vec<Arc<dyn Strategy>> {
        StrategyKind::ALL.iter().map(StrategyKind::build).collect()
    }

    fn picks(s: &dyn Strategy, ctx: &PickContext<'_>, k: usize) -> Vec<Option<usize>> {
        (0..k).map(|_| s.pick(ctx)).collect()
    }

    fn counts(s: &dyn Strategy, ctx: &PickContext<'_>, k: usize) -> Vec<usize> {
        let mut c = vec![0; ctx.endpoints.len()];
        for _ in 0..k {
            c[s.pick(ctx).expect("an eligible endpoint")] += 1;
        }
        c
    }

    #[test]
    fn every_strategy_skips_unhealthy_endpoints() {
        let s = set(4);
        let snap = s.snapshot();
        snap.endpoints()[1].set_health(Health::Unhealthy);
        snap.endpoints()[2].set_health(Health::Unhealthy);
        let ex = Excluded::new();
        let ctx = PickContext::new(&snap, now_nanos(), &ex);
        for strategy in all() {
            for p in picks(&*strategy, &ctx, 200) {
                assert!(matches!(p, Some(0 | 3)), "{} picked {p:?}", strategy.name());
            }
        }
    }

    #[test]
    fn every_strategy_skips_excluded_endpoints() {
        let s = set(4);
        let snap = s.snapshot();
        let mut ex = Excluded::new();
        ex.insert(0);
        ex.insert(2);
        let ctx = PickContext::new(&snap, now_nanos(), &ex);
        for strategy in all() {
            for p in picks(&*strategy, &ctx, 200) {
                assert!(matches!(p, Some(1 | 3)), "{} picked {p:?}", strategy.name());
            }
        }
    }

    #[test]
    fn every_strategy_returns_none_when_nothing_is_eligible() {
        let empty = set(0);
        let snap = empty.snapshot();
        let ex = Excluded::new();
        let ctx = PickContext::new(&snap, now_nanos(), &ex);
        for strategy in all() {
            assert_eq!(
                strategy.pick(&ctx),
                None,
                "{} on an empty list",
                strategy.name()
            );
        }

        let s = set(3);
        let snap = s.snapshot();
        for ep in snap.endpoints() {
            ep.set_health(Health::Unhealthy);
        }
        let ctx = PickContext::new(&snap, now_nanos(), &ex);
        for strategy in all() {
            assert_eq!(
                picks(&*strategy, &ctx, 20),
                vec![None; 20],
                "{}",
                strategy.name()
            );
        }

        let healthy = set(3);
        let snap = healthy.snapshot();
        let mut all_excluded = Excluded::new();
        (0..3).for_each(|i| all_excluded.insert(i));
        let ctx = PickContext::new(&snap, now_nanos(), &all_excluded);
        for strategy in all() {
            assert_eq!(
                picks(&*strategy, &ctx, 20),
                vec![None; 20],
                "{}",
                strategy.name()
            );
        }
    }

    #[test]
    fn panic_mode_ignores_health_but_not_exclusion() {
        let s = set(3);
        let snap = s.snapshot();
        for ep in snap.endpoints() {
            ep.set_health(Health::Unhealthy);
        }
        let mut ex = Excluded::new();
        ex.insert(1);
        let ctx = PickContext::new(&snap, now_nanos(), &ex).with_panic(true);
        for strategy in all() {
            for p in picks(&*strategy, &ctx, 100) {
                assert!(matches!(p, Some(0 | 2)), "{} picked {p:?}", strategy.name());
            }
        }
    }

    #[test]
    fn round_robin_cycles_and_passes_turns_on() {
        let s = set(3);
        let snap = s.snapshot();
        let ex = Excluded::new();
        let ctx = PickContext::new(&snap, now_nanos(), &ex);
        let rr = RoundRobin::new();
        let p: Vec<_> = picks(&rr, &ctx, 6).into_iter().flatten().collect();
        assert_eq!(p, [0, 1, 2, 0, 1, 2]);
        snap.endpoints()[1].set_health(Health::Unhealthy);
        let p: Vec<_> = picks(&rr, &ctx, 3).into_iter().flatten().collect();
        assert_eq!(p, [0, 2, 2]);
    }

    fn weighted(weights: &[u32]) -> EndpointSet {
        set_of(
            weights
                .iter()
                .enumerate()
                .map(|(i, &w)| {
                    Endpoint::new(format!("w{i}"), "127.0.0.1", 2000 + i as u16).with_weight(w)
                })
                .collect(),
        )
    }

    #[test]
    fn weighted_sequence_is_smooth() {
        let s = weighted(&[5, 1, 1]);
        let snap = s.snapshot();
        let ex = Excluded::new();
        let ctx = PickContext::new(&snap, now_nanos(), &ex);
        let wrr = WeightedRoundRobin::new();
        let p: Vec<_> = picks(&wrr, &ctx, 14).into_iter().flatten().collect();
        assert_eq!(p, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weighted_schedule_is_reduced_and_capped() {
        assert_eq!(smooth_schedule(vec![10, 20, 30]), [2, 1, 0, 2, 1, 2]);
        assert_eq!(smooth_schedule(vec![4, 4]), [0, 1]);
        assert_eq!(smooth_schedule(vec![0]).len(), 0);
        let big = smooth_schedule(vec![u64::from(u32::MAX), 1, 1000]);
        assert!(big.len() as u64 <= MAX_SCHEDULE_LEN + 3, "{}", big.len());
        for i in 0..3 {
            assert!(big.contains(&i), "endpoint {i} missing");
        }
        let heavy = big.iter().filter(|&&i| i == 0).count() as f64 / big.len() as f64;
        assert!(heavy > 0.99, "{heavy}");
    }

    #[test]
    fn weighted_rebuilds_when_the_list_changes() {
        let s = weighted(&[1, 1]);
        let ex = Excluded::new();
        let wrr = WeightedRoundRobin::new();
        {
            let snap = s.snapshot();
            let ctx = PickContext::new(&snap, now_nanos(), &ex);
            let p: Vec<_> = picks(&wrr, &ctx, 4).into_iter().flatten().collect();
            assert_eq!(p, [0, 1, 0, 1]);
        }
        s.upsert(Endpoint::new("w1", "127.0.0.1", 2001).with_weight(3))
            .unwrap();
        let snap = s.snapshot();
        let ctx = PickContext::new(&snap, now_nanos(), &ex);
        assert_eq!(counts(&wrr, &ctx, 400), [100, 300]);
    }

    #[test]
    fn weighted_keeps_relative_weights_of_eligible_endpoints() {
        let s = weighted(&[5, 1, 1]);
        let snap = s.snapshot();
        snap.endpoints()[0].set_health(Health::Unhealthy);
        let ex = Excluded::new();
        let ctx = PickContext::new(&snap, now_nanos(), &ex);
        let c = counts(&WeightedRoundRobin::new(), &ctx, 7000);
        assert_eq!(c[0], 0);
        assert!((3000..4000).contains(&c[1]), "{c:?}");
    }

    #[test]
    fn weighted_shared_by_two_lists_stays_correct() {
        let a = weighted(&[3, 1]);
        let b = weighted(&[1, 1, 1]);
        let (sa, sb) = (a.snapshot(), b.snapshot());
        assert_eq!(sa.version(), sb.version());
        let ex = Excluded::new();
        let ca = PickContext::new(&sa, now_nanos(), &ex);
        let cb = PickContext::new(&sb, now_nanos(), &ex);
        let wrr = WeightedRoundRobin::new();
        let mut counts = [0usize; 2];
        for _ in 0..4000 {
            counts[wrr.pick(&ca).unwrap()] += 1;
            assert!(wrr.pick(&cb).unwrap() < 3);
        }
        assert!((2700..3300).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn strategies_can_be_shared_between_threads() {
        let s = weighted(&[1, 2, 3, 4]);
        for strategy in all() {
            std::thread::scope(|scope| {
                for t in 0..4 {
                    let (s, strategy) = (&s, &strategy);
                    scope.spawn(move || {
                        for i in 0..2000 {
                            if t == 0 && i % 500 == 0 {
                                let w = 1 + (i / 500) as u32;
                                s.upsert(Endpoint::new("w0", "127.0.0.1", 2000).with_weight(w))
                                    .unwrap();
                            }
                            let snap = s.snapshot();
                            let ex = Excluded::new();
                            let ctx = PickContext::new(&snap, now_nanos(), &ex);
                            let p = strategy.pick(&ctx);
                            assert!(p.is_some_and(|i| i < 4), "{}: {p:?}", strategy.name());
                        }
                    });
                }
            });
        }
    }

    #[test]
    fn least_connections_follows_in_flight() {
        let s = set(3);
        let snap = s.snapshot();
        let eps = snap.endpoints();
        let _g0 = [eps[0].start_call(), eps[0].start_call()];
        let g1 = eps[1].start_call();
        let _g2 = [
            eps[2].start_call(),
            eps[2].start_call(),
            eps[2].start_call(),
        ];
        let ex = Excluded::new();
        let ctx = PickContext::new(&snap, now_nanos(), &ex);
        let lc = LeastConnections::new();
        assert!(picks(&lc, &ctx, 10).iter().all(|p| *p == Some(1)));
        let _g1b = [g1, eps[1].start_call(), eps[1].start_call()];
        assert!(picks(&lc, &ctx, 10).iter().all(|p| *p == Some(0)));
    }

    #[test]
    fn least_connections_spreads_equal_loads() {
        let s = set(4);
        let snap = s.snapshot();
        let ex = Excluded::new();
        let ctx = PickContext::new(&snap, now_nanos(), &ex);
        assert_eq!(counts(&LeastConnections::new(), &ctx, 400), [100; 4]);
    }

    #[test]
    fn random_reaches_every_eligible_endpoint() {
        let s = set(5);
        let snap = s.snapshot();
        snap.endpoints()[3].set_health(Health::Unhealthy);
        let ex = Excluded::new();
        let ctx = PickContext::new(&snap, now_nanos(), &ex);
        let c = counts(&Random::new(), &ctx, 4000);
        assert_eq!(c[3], 0);
        for i in [0, 1, 2, 4] {
            assert!((800..1200).contains(&c[i]), "{c:?}");
        }
    }

    #[test]
    fn p2c_prefers_the_lower_load() {
        let s = set(2);
        let snap = s.snapshot();
        let now = now_nanos();
        let eps = snap.endpoints();
        eps[0].ewma().observe(Duration::from_millis(80), now);
        eps[1].ewma().observe(Duration::from_millis(5), now);
        let ex = Excluded::new();
        let ctx = PickContext::new(&snap, now, &ex);
        let p2c = PowerOfTwoChoices::new();
        assert!(picks(&p2c, &ctx, 50).iter().all(|p| *p == Some(1)));
        // 5 ms × 20 pending > 80 ms × 1.
        let _busy: Vec<_> = (0..19).map(|_| eps[1].start_call()).collect();
        assert!(picks(&p2c, &ctx, 50).iter().all(|p| *p == Some(0)));
    }

    #[test]
    fn p2c_on_many_endpoints_avoids_the_slow_ones() {
        let s = set(10);
        let snap = s.snapshot();
        let now = now_nanos();
        for (i, ep) in snap.endpoints().iter().enumerate() {
            let ms = if i < 5 { 200 } else { 2 };
            ep.ewma().observe(Duration::from_millis(ms), now);
        }
        let ex = Excluded::new();
        let ctx = PickContext::new(&snap, now, &ex);
        let c = counts(&PowerOfTwoChoices::new(), &ctx, 10_000);
        let slow: usize = c[..5].iter().sum();
        // Slow only when both choices are slow: ~ 5/10 × 4/9 ≈ 22%.
        assert!((1500..3000).contains(&slow), "{c:?}");
    }

    #[test]
    fn p2c_with_one_eligible_endpoint_returns_it() {
        let s = set(3);
        let snap = s.snapshot();
        snap.endpoints()[0].set_health(Health::Unhealthy);
        snap.endpoints()[2].set_health(Health::Unhealthy);
        let ex = Excluded::new();
        let ctx = PickContext::new(&snap, now_nanos(), &ex);
        assert!(
            picks(&PowerOfTwoChoices::new(), &ctx, 50)
                .iter()
                .all(|p| *p == Some(1))
        );
    }

    fn pick_now(s: &dyn Strategy, set: &EndpointSet) -> Option<usize> {
        let snap = set.snapshot();
        let ex = Excluded::new();
        s.pick(&PickContext::new(&snap, now_nanos(), &ex))
    }

    #[tokio::test(start_paused = true)]
    async fn priority_fails_over_at_once_and_back_after_hold_down() {
        let s = set(3);
        let prio = Priority::new(Duration::from_secs(30));
        let primary = s.get("e0").unwrap();
        assert_eq!(pick_now(&prio, &s), Some(0));

        primary.set_health(Health::Unhealthy);
        assert_eq!(pick_now(&prio, &s), Some(1));

        primary.set_health(Health::Healthy);
        assert_eq!(pick_now(&prio, &s), Some(1));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(pick_now(&prio, &s), Some(1));
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(pick_now(&prio, &s), Some(0));
        assert_eq!(pick_now(&prio, &s), Some(0));
        assert_eq!(prio.active_in(s.snapshot().endpoints()), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn priority_hold_down_restarts_when_the_primary_flaps() {
        let s = set(2);
        let prio = Priority::new(Duration::from_secs(30));
        let primary = s.get("e0").unwrap();
        primary.set_health(Health::Unhealthy);
        assert_eq!(pick_now(&prio, &s), Some(1));

        primary.set_health(Health::Healthy);
        assert_eq!(pick_now(&prio, &s), Some(1));
        tokio::time::advance(Duration::from_secs(20)).await;
        primary.set_health(Health::Unhealthy);
        assert_eq!(pick_now(&prio, &s), Some(1));
        primary.set_health(Health::Healthy);
        assert_eq!(pick_now(&prio, &s), Some(1));
        tokio::time::advance(Duration::from_secs(20)).await;
        // 40 s since it first came back, but only 20 s continuously.
        assert_eq!(pick_now(&prio, &s), Some(1));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(pick_now(&prio, &s), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn priority_fails_over_from_the_standby_immediately() {
        let s = set(3);
        let prio = Priority::new(Duration::from_secs(30));
        s.get("e0").unwrap().set_health(Health::Unhealthy);
        assert_eq!(pick_now(&prio, &s), Some(1));
        s.get("e1").unwrap().set_health(Health::Unhealthy);
        assert_eq!(pick_now(&prio, &s), Some(2));
        // e1 back: still behind the hold-down.
        s.get("e1").unwrap().set_health(Health::Healthy);
        assert_eq!(pick_now(&prio, &s), Some(2));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(pick_now(&prio, &s), Some(1));
    }

    #[test]
    fn priority_exclusion_does_not_move_the_active_endpoint() {
        let s = set(3);
        let prio = Priority::default();
        assert_eq!(prio.hold_down(), DEFAULT_HOLD_DOWN);
        let snap = s.snapshot();
        let now = now_nanos();
        let none = Excluded::new();
        assert_eq!(prio.pick(&PickContext::new(&snap, now, &none)), Some(0));
        let mut tried = Excluded::new();
        tried.insert(0);
        assert_eq!(prio.pick(&PickContext::new(&snap, now, &tried)), Some(1));
        assert_eq!(prio.pick(&PickContext::new(&snap, now, &none)), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn priority_follows_the_active_endpoint_across_list_changes() {
        let s = set(3);
        let prio = Priority::new(Duration::from_secs(30));
        s.get("e0").unwrap().set_health(Health::Unhealthy);
        assert_eq!(pick_now(&prio, &s), Some(1));
        s.get("e0").unwrap().set_health(Health::Healthy);
        // A new endpoint at the front: e1 (active) moves to position 2.
        let mut list: Vec<Endpoint> = s
            .snapshot()
            .endpoints()
            .iter()
            .map(|l| l.endpoint().clone())
            .collect();
        list.insert(0, Endpoint::new("new", "127.0.0.1", 999));
        s.replace(list).unwrap();
        assert_eq!(pick_now(&prio, &s), Some(2));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(pick_now(&prio, &s), Some(0));
    }

    #[test]
    fn health_based_prefers_healthy_over_degraded() {
        let s = set(4);
        let snap = s.snapshot();
        let eps = snap.endpoints();
        eps[0].set_health(Health::Degraded);
        eps[1].set_health(Health::Healthy);
        eps[3].set_health(Health::Degraded);
        let ex = Excluded::new();
        let ctx = PickContext::new(&snap, now_nanos(), &ex);
        let hb = HealthBased::new();
        assert_eq!(counts(&hb, &ctx, 400), [0, 200, 200, 0]);

        eps[1].set_health(Health::Unhealthy);
        eps[2].set_health(Health::Degraded);
        assert_eq!(counts(&hb, &ctx, 300), [100, 0, 100, 100]);
    }

    #[test]
    fn strategy_kind_parses_names_and_aliases() {
        for &(name, kind) in KIND_NAMES {
            assert_eq!(name.parse::<StrategyKind>().unwrap(), kind, "{name}");
            assert_eq!(
                name.to_uppercase().parse::<StrategyKind>().unwrap(),
                kind,
                "{name}"
            );
            let de: StrategyKind = serde_yaml_ng::from_str(name).unwrap();
            assert_eq!(de, kind, "{name}");
        }
        for kind in StrategyKind::ALL {
            assert_eq!(kind.as_str().parse::<StrategyKind>().unwrap(), kind);
            let yaml = serde_yaml_ng::to_string(&kind).unwrap();
            assert_eq!(yaml.trim(), kind.as_str());
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(
            "active-active".parse::<StrategyKind>().unwrap(),
            StrategyKind::RoundRobin
        );
        assert_eq!(
            " weighted ".parse::<StrategyKind>().unwrap(),
            StrategyKind::WeightedRoundRobin
        );
        assert_eq!(StrategyKind::default(), StrategyKind::RoundRobin);
        let err = "fastest".parse::<StrategyKind>().unwrap_err().to_string();
        assert!(
            err.contains("fastest") && err.contains("round-robin") && err.contains("p2c"),
            "{err}"
        );
        assert!(serde_yaml_ng::from_str::<StrategyKind>("fastest").is_err());
    }

    #[test]
    fn strategy_kind_builds_the_named_strategy() {
        let names: Vec<_> = StrategyKind::ALL.iter().map(|k| k.build().name()).collect();
        assert_eq!(
            names,
            [
                "round_robin",
                "weighted_round_robin",
                "least_connections",
                "random",
                "p2c",
                "priority",
                "health_based"
            ]
        );
    }
}
