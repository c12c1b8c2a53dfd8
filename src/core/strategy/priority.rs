//! [`Priority`]: active-passive, the first available endpoint in order,
//! failing back to a higher-priority one after a hold-down.

use super::{NO_EXCLUSIONS, PickContext, Strategy, scan_from};
use crate::core::clock::dur_nanos;
use crate::core::set::LiveEndpoint;
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::time::Duration;

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
            hold_down_ms: dur_nanos(hold_down).div_ceil(NANOS_PER_MS),
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

#[cfg(test)]
mod tests;
