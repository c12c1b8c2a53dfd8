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
//!
//! Each family lives in its own file (`round_robin.rs`, `weighted.rs`,
//! `load.rs`, `priority.rs`, `health_based.rs`); the names used in
//! configuration files are in `kind.rs`.

mod health_based;
mod kind;
mod load;
mod priority;
mod round_robin;
mod weighted;

pub use health_based::HealthBased;
pub use kind::StrategyKind;
pub use load::{LeastConnections, PowerOfTwoChoices, Random};
pub use priority::{DEFAULT_HOLD_DOWN, Priority};
pub use round_robin::RoundRobin;
pub use weighted::{MAX_SCHEDULE_LEN, WeightedRoundRobin};

use crate::core::set::{LiveEndpoint, Snapshot};
use std::fmt;
use std::sync::Arc;

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
pub(super) const RANDOM_TRIES: usize = 4;

/// An empty exclusion set, for strategies that track availability
/// independently of the positions one call has already tried.
pub(super) static NO_EXCLUSIONS: Excluded = Excluded::new();

/// The first eligible position at or after `start` (`start < n`), wrapping.
#[inline]
pub(super) fn scan_from(ctx: &PickContext<'_>, start: usize) -> Option<usize> {
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
pub(super) fn random_eligible(ctx: &PickContext<'_>, n: usize) -> Option<usize> {
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
pub(super) fn weighted_random(ctx: &PickContext<'_>) -> Option<usize> {
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

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
