//! [`WeightedRoundRobin`]: nginx's smooth weighted round robin over a
//! schedule precomputed once per endpoint list.

use super::{PickContext, RANDOM_TRIES, Strategy, weighted_random};
use arc_swap::ArcSwapOption;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};

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

#[cfg(test)]
mod tests;
