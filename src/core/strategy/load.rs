//! Strategies that spread load: [`LeastConnections`] (fewest calls in
//! flight), [`Random`], and [`PowerOfTwoChoices`] (the lower peak-EWMA load
//! of two random endpoints).

use super::{PickContext, RANDOM_TRIES, Strategy, random_eligible};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Least connections: the eligible endpoint with the fewest calls in flight
/// ([`LiveEndpoint::in_flight`](crate::core::LiveEndpoint::in_flight)).
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

/// "P2C peak-EWMA" (as in tower and linkerd): two distinct random eligible
/// endpoints are compared and the one with the lower
/// [`LiveEndpoint::load`](crate::core::LiveEndpoint::load) wins — the peak-EWMA round-trip estimate
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

#[cfg(test)]
mod tests;
