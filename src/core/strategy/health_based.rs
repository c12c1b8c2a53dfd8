//! [`HealthBased`]: round robin among the endpoints of the best health class
//! present (healthy before degraded).

use super::{PickContext, Strategy, scan_from};
use crate::core::endpoint::Health;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

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

#[cfg(test)]
mod tests;
