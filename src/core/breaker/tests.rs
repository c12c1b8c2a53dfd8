//! Unit tests of the breaker's state machine and its permits.

use super::test_support::*;
use super::window::Counts;
use super::*;
use std::sync::atomic::AtomicUsize;
use tokio::time::{advance, sleep};

#[tokio::test(start_paused = true)]
async fn trips_on_failure_rate_after_minimum_calls() {
    start().await;
    let b = breaker(|c| c.minimum_calls = 4);
    assert_eq!(call(&b, CallOutcome::Success), None);
    assert_eq!(call(&b, CallOutcome::Success), None);
    assert_eq!(call(&b, CallOutcome::Failure), None);
    assert_eq!(b.failure_rate(), None);
    assert_eq!(b.state(), BreakerState::Closed);
    // 2 of 4 = 50% >= threshold.
    assert_eq!(call(&b, CallOutcome::Failure), Some(TO_OPEN));
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.failure_rate(), Some(0.5));
}

#[tokio::test(start_paused = true)]
async fn no_rate_decision_before_minimum_calls() {
    start().await;
    let b = breaker(|c| c.minimum_calls = 10);
    for _ in 0..9 {
        assert_eq!(call(&b, CallOutcome::Failure), None);
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.failure_rate(), None);
    assert_eq!(call(&b, CallOutcome::Failure), Some(TO_OPEN));
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip() {
    start().await;
    let b = breaker(|c| {
        c.window = SlidingWindow::Count { size: 100 };
        c.minimum_calls = 100;
        c.consecutive_failures = Some(3);
    });
    assert_eq!(call(&b, CallOutcome::Failure), None);
    assert_eq!(call(&b, CallOutcome::Failure), None);
    // A success breaks the streak; an ignored outcome does not.
    assert_eq!(call(&b, CallOutcome::Success), None);
    assert_eq!(call(&b, CallOutcome::Failure), None);
    assert_eq!(call(&b, CallOutcome::Ignored), None);
    assert_eq!(call(&b, CallOutcome::Failure), None);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(call(&b, CallOutcome::Failure), Some(TO_OPEN));
}

#[tokio::test(start_paused = true)]
async fn slow_calls_trip() {
    start().await;
    let b = breaker(|c| {
        c.minimum_calls = 4;
        c.failure_rate_threshold = 1.0;
        c.slow_call_duration = Duration::from_millis(100);
        c.slow_call_rate_threshold = 0.75;
    });
    let record = |d: Duration| {
        let now = now_nanos();
        b.try_acquire(now)
            .unwrap()
            .record(CallOutcome::Success, d, now)
    };
    // Exactly the threshold is not slow.
    assert_eq!(record(Duration::from_millis(100)), None);
    assert_eq!(record(Duration::from_millis(101)), None);
    assert_eq!(record(Duration::from_secs(1)), None);
    assert_eq!(b.slow_call_rate(), None);
    assert_eq!(record(Duration::from_secs(2)), Some(TO_OPEN));
    // Slow successes count toward the slow rate, not the failure rate.
    assert_eq!(b.failure_rate(), Some(0.0));
    assert_eq!(b.slow_call_rate(), Some(0.75));
}

#[tokio::test(start_paused = true)]
async fn open_rejects_with_retry_after() {
    start().await;
    let b = breaker(|c| c.open_duration = Duration::from_secs(10));
    trip(&b);
    let err = b.try_acquire(now_nanos()).unwrap_err();
    assert_eq!(err.retry_after, Duration::from_secs(10));
    assert!(!b.is_call_permitted(now_nanos()));
    advance(Duration::from_secs(4)).await;
    let err = b.try_acquire(now_nanos()).unwrap_err();
    assert_eq!(err.retry_after, Duration::from_secs(6));
    assert_eq!(b.state(), BreakerState::Open);
    // Forcing it open again extends the open period, reporting nothing.
    assert_eq!(b.force_open(now_nanos()), None);
    let err = b.try_acquire(now_nanos()).unwrap_err();
    assert_eq!(err.retry_after, Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn half_open_after_open_duration() {
    start().await;
    let b = breaker(|c| c.open_duration = Duration::from_secs(10));
    trip(&b);
    advance(Duration::from_secs(10) - Duration::from_nanos(1)).await;
    assert!(!b.is_call_permitted(now_nanos()));
    advance(Duration::from_nanos(1)).await;
    // Elapsed, but still open until a call takes a probe.
    assert!(b.is_call_permitted(now_nanos()));
    assert_eq!(b.state(), BreakerState::Open);
    let probe = b.try_acquire(now_nanos()).unwrap();
    assert!(probe.is_probe());
    assert_eq!(probe.transition(), Some(TO_HALF_OPEN));
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let second = b.try_acquire(now_nanos()).unwrap();
    assert_eq!(second.transition(), None);
    drop((probe, second));
}

#[tokio::test(start_paused = true)]
async fn half_open_limits_concurrent_probes() {
    start().await;
    let b = breaker(|c| c.half_open_max_calls = 3);
    trip(&b);
    advance(b.config().open_duration).await;
    let now = now_nanos();
    let probes: Vec<_> = (0..3).map(|_| b.try_acquire(now).unwrap()).collect();
    assert!(!b.is_call_permitted(now));
    let err = b.try_acquire(now).unwrap_err();
    assert_eq!(err.retry_after, Duration::ZERO);
    let mut probes = probes.into_iter();
    assert_eq!(
        probes
            .next()
            .unwrap()
            .record(CallOutcome::Success, FAST, now),
        None
    );
    // A finished probe frees its slot.
    assert!(b.is_call_permitted(now));
    let fourth = b.try_acquire(now).unwrap();
    assert!(b.try_acquire(now).is_err());
    drop(fourth);
    assert_eq!(b.state(), BreakerState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn failure_in_half_open_reopens() {
    start().await;
    let b = breaker(|c| c.open_duration = Duration::from_secs(10));
    trip(&b);
    advance(Duration::from_secs(10)).await;
    let now = now_nanos();
    let first = b.try_acquire(now).unwrap();
    let second = b.try_acquire(now).unwrap();
    advance(Duration::from_secs(1)).await;
    let now = now_nanos();
    assert_eq!(first.record(CallOutcome::Failure, FAST, now), Some(REOPEN));
    assert_eq!(b.state(), BreakerState::Open);
    // A fresh open period, from the failure.
    assert_eq!(
        b.try_acquire(now).unwrap_err().retry_after,
        Duration::from_secs(10)
    );
    // The other probe belongs to the finished half-open period.
    assert_eq!(second.record(CallOutcome::Success, FAST, now), None);
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_probe_reopens() {
    start().await;
    let b = breaker(|c| c.slow_call_duration = Duration::from_secs(1));
    trip(&b);
    advance(b.config().open_duration).await;
    let now = now_nanos();
    let probe = b.try_acquire(now).unwrap();
    assert_eq!(
        probe.record(CallOutcome::Success, Duration::from_secs(2), now),
        Some(REOPEN)
    );
}

#[tokio::test(start_paused = true)]
async fn enough_successes_close_with_a_clear_window() {
    start().await;
    let b = breaker(|c| {
        c.minimum_calls = 2;
        c.half_open_max_calls = 3;
    });
    call(&b, CallOutcome::Success);
    assert_eq!(call(&b, CallOutcome::Failure), Some(TO_OPEN));
    advance(b.config().open_duration).await;
    let now = now_nanos();
    let probes: Vec<_> = (0..3).map(|_| b.try_acquire(now).unwrap()).collect();
    let results: Vec<_> = probes
        .into_iter()
        .map(|p| p.record(CallOutcome::Success, FAST, now))
        .collect();
    assert_eq!(results, [None, None, Some(TO_CLOSED)]);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.failure_rate(), None);
    // The old failure is gone: one failure + one success is 50% again,
    // but two successes first keep it closed.
    assert_eq!(call(&b, CallOutcome::Success), None);
    assert_eq!(call(&b, CallOutcome::Success), None);
    assert_eq!(b.failure_rate(), Some(0.0));
}

#[tokio::test(start_paused = true)]
async fn sequential_probes_close_too() {
    start().await;
    let b = breaker(|c| c.half_open_max_calls = 2);
    trip(&b);
    advance(b.config().open_duration).await;
    let p = b.try_acquire(now_nanos()).unwrap();
    assert_eq!(p.transition(), Some(TO_HALF_OPEN));
    assert_eq!(p.record(CallOutcome::Success, FAST, now_nanos()), None);
    // An ignored probe frees its slot without counting.
    let p = b.try_acquire(now_nanos()).unwrap();
    assert_eq!(p.record(CallOutcome::Ignored, FAST, now_nanos()), None);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let p = b.try_acquire(now_nanos()).unwrap();
    assert_eq!(
        p.record(CallOutcome::Success, FAST, now_nanos()),
        Some(TO_CLOSED)
    );
}

#[test]
fn minimum_calls_is_capped_by_a_count_window() {
    let b = breaker(|c| {
        c.window = SlidingWindow::Count { size: 3 };
        c.minimum_calls = 10;
    });
    for _ in 0..2 {
        call(&b, CallOutcome::Failure);
    }
    assert_eq!(call(&b, CallOutcome::Failure), Some(TO_OPEN));
}

#[tokio::test(start_paused = true)]
async fn dropped_permit_releases_half_open_slot() {
    start().await;
    let b = breaker(|c| c.half_open_max_calls = 1);
    trip(&b);
    advance(b.config().open_duration).await;
    let probe = b.try_acquire(now_nanos()).unwrap();
    assert!(!b.is_call_permitted(now_nanos()));
    drop(probe);
    assert!(b.is_call_permitted(now_nanos()));
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let probe = b.try_acquire(now_nanos()).unwrap();
    assert_eq!(probe.transition(), None);
    assert_eq!(
        probe.record(CallOutcome::Success, FAST, now_nanos()),
        Some(TO_CLOSED)
    );
}

async fn guarded_call(b: &CircuitBreaker, takes: Duration) -> Option<Transition> {
    let permit = b.try_acquire(now_nanos()).ok()?;
    sleep(takes).await;
    permit.record(CallOutcome::Success, takes, now_nanos())
}

#[tokio::test(start_paused = true)]
async fn cancelled_future_releases_half_open_slot() {
    start().await;
    let b = breaker(|c| c.half_open_max_calls = 1);
    trip(&b);
    advance(b.config().open_duration).await;

    // Cancelled by `select!`: the other branch wins.
    tokio::select! {
        _ = guarded_call(&b, Duration::from_secs(60)) => panic!("should be cancelled"),
        _ = sleep(Duration::from_millis(10)) => {}
    }
    assert!(b.is_call_permitted(now_nanos()));

    // Cancelled by dropping a future that holds the slot.
    let mut fut = Box::pin(guarded_call(&b, Duration::from_secs(60)));
    assert!(
        tokio::time::timeout(Duration::from_millis(10), &mut fut)
            .await
            .is_err()
    );
    assert!(
        !b.is_call_permitted(now_nanos()),
        "the future holds the slot"
    );
    assert!(b.try_acquire(now_nanos()).is_err());
    drop(fut);
    assert!(b.is_call_permitted(now_nanos()));
    assert_eq!(b.state(), BreakerState::HalfOpen);

    // The slot is really usable: a probe runs to completion and closes it.
    assert_eq!(
        guarded_call(&b, Duration::from_millis(5)).await,
        Some(TO_CLOSED)
    );
}

#[tokio::test(start_paused = true)]
async fn dropped_closed_permit_records_nothing() {
    start().await;
    let b = breaker(|c| c.minimum_calls = 1);
    for _ in 0..10 {
        drop(b.try_acquire(now_nanos()).unwrap());
    }
    assert_eq!(b.failure_rate(), None);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_do_not_count() {
    start().await;
    let b = breaker(|c| {
        c.minimum_calls = 2;
        c.consecutive_failures = Some(2);
    });
    for _ in 0..10 {
        assert_eq!(call(&b, CallOutcome::Ignored), None);
    }
    assert_eq!(b.failure_rate(), None);
    assert_eq!(b.window.counts(now_nanos()), Counts::default());
    assert_eq!(call(&b, CallOutcome::Success), None);
    assert_eq!(call(&b, CallOutcome::Ignored), None);
    assert_eq!(b.failure_rate(), None);
    assert_eq!(call(&b, CallOutcome::Success), None);
    assert_eq!(b.failure_rate(), Some(0.0));
}

#[tokio::test(start_paused = true)]
async fn stale_closed_permit_records_nothing() {
    start().await;
    let b = breaker(|c| c.minimum_calls = 1);
    let early = b.try_acquire(now_nanos()).unwrap();
    trip(&b);
    assert_eq!(
        b.reset(),
        Some(Transition {
            from: BreakerState::Open,
            to: BreakerState::Closed,
        })
    );
    // Started before the trip: not part of the new closed period.
    assert_eq!(early.record(CallOutcome::Failure, FAST, now_nanos()), None);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.failure_rate(), None);
    assert_eq!(b.reset(), None);
}

#[tokio::test(start_paused = true)]
async fn disabled_breaker_always_permits() {
    start().await;
    let b = breaker(|c| {
        c.enabled = false;
        c.minimum_calls = 1;
        c.consecutive_failures = Some(1);
    });
    for _ in 0..100 {
        assert_eq!(call(&b, CallOutcome::Failure), None);
    }
    assert_eq!(b.force_open(now_nanos()), None);
    assert!(b.is_call_permitted(now_nanos()));
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn concurrent_recording_trips_exactly_once() {
    for _ in 0..20 {
        let b = breaker(|c| {
            c.window = SlidingWindow::Count { size: 50 };
            c.minimum_calls = 50;
            c.consecutive_failures = Some(30);
        });
        let opened = AtomicUsize::new(0);
        let other = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..8 {
                let (b, opened, other) = (&b, &opened, &other);
                s.spawn(move || {
                    for i in 0..200 {
                        let now = now_nanos();
                        let Ok(permit) = b.try_acquire(now) else {
                            continue;
                        };
                        let outcome = if (i + t) % 4 == 0 {
                            CallOutcome::Success
                        } else {
                            CallOutcome::Failure
                        };
                        match permit.record(outcome, FAST, now) {
                            Some(TO_OPEN) => opened.fetch_add(1, Ordering::Relaxed),
                            Some(_) => other.fetch_add(1, Ordering::Relaxed),
                            None => 0,
                        };
                    }
                });
            }
        });
        assert_eq!(opened.load(Ordering::Relaxed), 1);
        assert_eq!(other.load(Ordering::Relaxed), 0);
        assert_eq!(b.state(), BreakerState::Open);
    }
}

#[test]
fn concurrent_half_open_cycle_reports_each_transition_once() {
    let b = breaker(|c| {
        c.half_open_max_calls = 4;
        c.open_duration = Duration::from_secs(1);
    });
    let t0 = now_nanos();
    assert_eq!(b.force_open(t0), Some(TO_OPEN));
    let later = t0 + dur_nanos(Duration::from_secs(2));
    let to_half = AtomicUsize::new(0);
    let to_closed = AtomicUsize::new(0);
    let granted = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..100 {
                    let Ok(p) = b.try_acquire(later) else {
                        continue;
                    };
                    granted.fetch_add(1, Ordering::Relaxed);
                    if p.transition() == Some(TO_HALF_OPEN) {
                        to_half.fetch_add(1, Ordering::Relaxed);
                    }
                    if p.record(CallOutcome::Success, FAST, later) == Some(TO_CLOSED) {
                        to_closed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(to_half.load(Ordering::Relaxed), 1);
    assert_eq!(to_closed.load(Ordering::Relaxed), 1);
    assert_eq!(b.state(), BreakerState::Closed);
    assert!(granted.load(Ordering::Relaxed) >= 4);
}

#[test]
fn breaker_is_send_sync_and_debug() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CircuitBreaker>();
    let b = breaker(|_| {});
    assert!(format!("{b:?}").contains("Closed"));
    let p = b.try_acquire(now_nanos()).unwrap();
    assert!(format!("{p:?}").contains("closed"));
}

#[test]
fn an_open_period_can_end_early_and_the_probes_still_decide() {
    use std::sync::Arc;
    use std::time::Duration;
    let cfg = BreakerConfig {
        consecutive_failures: Some(1),
        open_duration: Duration::from_secs(60),
        half_open_max_calls: 1,
        ..BreakerConfig::default()
    };
    let b = CircuitBreaker::new(Arc::new(cfg));
    let now = 1_000_000_000u64;
    let p = b.try_acquire(now).expect("closed");
    p.record(CallOutcome::Failure, Duration::from_millis(1), now);
    assert_eq!(b.state(), BreakerState::Open);
    assert!(!b.is_call_permitted(now + 1));
    assert!(b.end_open_period(now + 2));
    let probe = b.try_acquire(now + 3).expect("a probe is let through");
    assert_eq!(b.state(), BreakerState::HalfOpen);
    probe.record(CallOutcome::Success, Duration::from_millis(1), now + 4);
    assert_eq!(b.state(), BreakerState::Closed);
    assert!(!b.end_open_period(now + 5), "not open");
}
