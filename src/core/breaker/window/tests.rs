//! Unit tests of the sliding windows, alone and through a breaker.

use super::*;
use crate::core::breaker::CallOutcome;
use crate::core::breaker::test_support::*;
use crate::core::clock::now_nanos;
use tokio::time::advance;

#[tokio::test(start_paused = true)]
async fn time_window_forgets_old_failures() {
    start().await;
    let b = breaker(|c| {
        c.window = SlidingWindow::Time {
            duration: Duration::from_secs(10),
            buckets: 10,
        };
        c.minimum_calls = 5;
        c.failure_rate_threshold = 0.9;
    });
    for _ in 0..4 {
        assert_eq!(call(&b, CallOutcome::Failure), None);
    }
    // Still counted a bit less than `duration` later...
    advance(Duration::from_millis(8_900)).await;
    assert_eq!(call(&b, CallOutcome::Success), None);
    assert_eq!(b.failure_rate(), Some(0.8));
    // ...and forgotten once `duration` has passed.
    advance(Duration::from_millis(1_100)).await;
    assert_eq!(b.failure_rate(), None);
    for _ in 0..4 {
        assert_eq!(call(&b, CallOutcome::Failure), None);
    }
    // Five calls again (the success is still in): 4 of 5 failed.
    assert_eq!(b.failure_rate(), Some(0.8));
    advance(Duration::from_secs(10)).await;
    assert_eq!(b.failure_rate(), None);
    for _ in 0..4 {
        assert_eq!(call(&b, CallOutcome::Failure), None);
    }
    assert_eq!(call(&b, CallOutcome::Failure), Some(TO_OPEN));
}

#[tokio::test(start_paused = true)]
async fn time_window_reuses_buckets_across_rounds() {
    start().await;
    let b = breaker(|c| {
        c.window = SlidingWindow::Time {
            duration: Duration::from_secs(1),
            buckets: 4,
        };
        c.minimum_calls = 1;
        c.failure_rate_threshold = 1.0;
    });
    // Many rounds over every bucket: the totals never leak between rounds.
    for _ in 0..50 {
        for _ in 0..3 {
            assert_eq!(call(&b, CallOutcome::Success), None);
        }
        advance(Duration::from_millis(250)).await;
    }
    let c = b.window.counts(now_nanos());
    assert_eq!(c.total, 9, "{c:?}");
}

#[tokio::test(start_paused = true)]
async fn count_window_slides() {
    start().await;
    let b = breaker(|c| {
        c.window = SlidingWindow::Count { size: 5 };
        c.minimum_calls = 5;
    });
    call(&b, CallOutcome::Failure);
    call(&b, CallOutcome::Failure);
    for _ in 0..3 {
        assert_eq!(call(&b, CallOutcome::Success), None);
    }
    assert_eq!(b.failure_rate(), Some(0.4));
    // Two more successes push both failures out.
    call(&b, CallOutcome::Success);
    call(&b, CallOutcome::Success);
    assert_eq!(b.failure_rate(), Some(0.0));
    assert_eq!(call(&b, CallOutcome::Failure), None);
    assert_eq!(call(&b, CallOutcome::Failure), None);
    assert_eq!(b.failure_rate(), Some(0.4));
    assert_eq!(call(&b, CallOutcome::Failure), Some(TO_OPEN));
    assert_eq!(b.failure_rate(), Some(0.6));
}

#[test]
fn count_window_totals_stay_exact_under_contention() {
    let w = CountWindow::new(64);
    std::thread::scope(|s| {
        for t in 0..8 {
            let w = &w;
            s.spawn(move || {
                for i in 0..5_000 {
                    w.record((i + t) % 3 == 0, i % 5 == 0);
                }
            });
        }
    });
    let c = w.counts();
    let (mut failures, mut slow) = (0, 0);
    for slot in w.slots.iter() {
        let v = slot.load(Ordering::Relaxed);
        failures += u64::from(v & SLOT_FAILURE != 0);
        slow += u64::from(v & SLOT_SLOW != 0);
    }
    assert_eq!(c.total, 64);
    assert_eq!((c.failures, c.slow), (failures, slow));
    w.clear();
    assert_eq!(w.counts(), Counts::default());
}
