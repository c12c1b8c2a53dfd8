//! Breakers, calls and transitions shared by the breaker unit tests.

use super::{BreakerConfig, BreakerState, CallOutcome, CircuitBreaker, Transition};
use crate::core::clock::now_nanos;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::advance;

pub(super) const FAST: Duration = Duration::from_millis(1);

pub(super) fn breaker(tweak: impl FnOnce(&mut BreakerConfig)) -> CircuitBreaker {
    let mut config = BreakerConfig {
        consecutive_failures: None,
        ..BreakerConfig::default()
    };
    tweak(&mut config);
    config.validate().expect("test config is valid");
    CircuitBreaker::new(Arc::new(config))
}

/// Paused runtimes created before the clock's process-wide base was set
/// would read as "1" until they advance past it; step well clear of it.
pub(super) async fn start() {
    advance(Duration::from_secs(1)).await;
}

pub(super) fn call(b: &CircuitBreaker, outcome: CallOutcome) -> Option<Transition> {
    let now = now_nanos();
    b.try_acquire(now)
        .expect("call permitted")
        .record(outcome, FAST, now)
}

pub(super) const TO_OPEN: Transition = Transition {
    from: BreakerState::Closed,
    to: BreakerState::Open,
};

pub(super) const TO_HALF_OPEN: Transition = Transition {
    from: BreakerState::Open,
    to: BreakerState::HalfOpen,
};

pub(super) const REOPEN: Transition = Transition {
    from: BreakerState::HalfOpen,
    to: BreakerState::Open,
};

pub(super) const TO_CLOSED: Transition = Transition {
    from: BreakerState::HalfOpen,
    to: BreakerState::Closed,
};

/// Trips a breaker that opens on one failure.
pub(super) fn trip(b: &CircuitBreaker) {
    assert_eq!(b.force_open(now_nanos()), Some(TO_OPEN));
}
