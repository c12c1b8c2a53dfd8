//! A monotonic clock in nanoseconds that fits in an `AtomicU64`.
//!
//! Built on [`tokio::time::Instant`], so tests that call
//! `tokio::time::pause()` control it like every other timer in the crate.

use std::sync::OnceLock;
use std::time::Duration;
use tokio::time::Instant;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    // An hour (or as much as the platform allows) before the first call, so
    // that instants of a runtime created earlier — including a paused test
    // runtime, whose clock starts at its creation — are still after it.
    *BASE.get_or_init(|| {
        let now = Instant::now();
        [3600, 60, 1]
            .into_iter()
            .find_map(|s| now.checked_sub(Duration::from_secs(s)))
            .unwrap_or(now)
    })
}

/// Nanoseconds since a process-wide base instant; never 0 after the first call
/// returns (the base is shifted by one nanosecond) so 0 can mean "never".
pub fn now_nanos() -> u64 {
    nanos_of(Instant::now())
}

/// The clock value of an instant.
pub fn nanos_of(at: Instant) -> u64 {
    let d = at.saturating_duration_since(base());
    u64::try_from(d.as_nanos())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// The instant a clock value stands for.
pub fn instant_of(nanos: u64) -> Instant {
    base() + Duration::from_nanos(nanos.saturating_sub(1))
}

/// A duration as nanoseconds, saturating.
pub fn dur_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
