//! [`RoundRobin`]: every endpoint in turn ("active-active").

use super::{PickContext, Strategy, scan_from};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

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

#[cfg(test)]
mod tests;
