//! Unit tests of least connections, random and power of two choices.

use super::*;
use crate::core::clock::now_nanos;
use crate::core::endpoint::Health;
use crate::core::strategy::Excluded;
use crate::core::strategy::test_support::{counts, picks, set};
use std::time::Duration;

#[test]
fn least_connections_follows_in_flight() {
    let s = set(3);
    let snap = s.snapshot();
    let eps = snap.endpoints();
    let _g0 = [eps[0].start_call(), eps[0].start_call()];
    let g1 = eps[1].start_call();
    let _g2 = [
        eps[2].start_call(),
        eps[2].start_call(),
        eps[2].start_call(),
    ];
    let ex = Excluded::new();
    let ctx = PickContext::new(&snap, now_nanos(), &ex);
    let lc = LeastConnections::new();
    assert!(picks(&lc, &ctx, 10).iter().all(|p| *p == Some(1)));
    let _g1b = [g1, eps[1].start_call(), eps[1].start_call()];
    assert!(picks(&lc, &ctx, 10).iter().all(|p| *p == Some(0)));
}

#[test]
fn least_connections_spreads_equal_loads() {
    let s = set(4);
    let snap = s.snapshot();
    let ex = Excluded::new();
    let ctx = PickContext::new(&snap, now_nanos(), &ex);
    assert_eq!(counts(&LeastConnections::new(), &ctx, 400), [100; 4]);
}

#[test]
fn random_reaches_every_eligible_endpoint() {
    let s = set(5);
    let snap = s.snapshot();
    snap.endpoints()[3].set_health(Health::Unhealthy);
    let ex = Excluded::new();
    let ctx = PickContext::new(&snap, now_nanos(), &ex);
    let c = counts(&Random::new(), &ctx, 4000);
    assert_eq!(c[3], 0);
    for i in [0, 1, 2, 4] {
        assert!((800..1200).contains(&c[i]), "{c:?}");
    }
}

#[test]
fn p2c_prefers_the_lower_load() {
    let s = set(2);
    let snap = s.snapshot();
    let now = now_nanos();
    let eps = snap.endpoints();
    eps[0].ewma().observe(Duration::from_millis(80), now);
    eps[1].ewma().observe(Duration::from_millis(5), now);
    let ex = Excluded::new();
    let ctx = PickContext::new(&snap, now, &ex);
    let p2c = PowerOfTwoChoices::new();
    assert!(picks(&p2c, &ctx, 50).iter().all(|p| *p == Some(1)));
    // 5 ms × 20 pending > 80 ms × 1.
    let _busy: Vec<_> = (0..19).map(|_| eps[1].start_call()).collect();
    assert!(picks(&p2c, &ctx, 50).iter().all(|p| *p == Some(0)));
}

#[test]
fn p2c_on_many_endpoints_avoids_the_slow_ones() {
    let s = set(10);
    let snap = s.snapshot();
    let now = now_nanos();
    for (i, ep) in snap.endpoints().iter().enumerate() {
        let ms = if i < 5 { 200 } else { 2 };
        ep.ewma().observe(Duration::from_millis(ms), now);
    }
    let ex = Excluded::new();
    let ctx = PickContext::new(&snap, now, &ex);
    let c = counts(&PowerOfTwoChoices::new(), &ctx, 10_000);
    let slow: usize = c[..5].iter().sum();
    // Slow only when both choices are slow: ~ 5/10 × 4/9 ≈ 22%.
    assert!((1500..3000).contains(&slow), "{c:?}");
}

#[test]
fn p2c_with_one_eligible_endpoint_returns_it() {
    let s = set(3);
    let snap = s.snapshot();
    snap.endpoints()[0].set_health(Health::Unhealthy);
    snap.endpoints()[2].set_health(Health::Unhealthy);
    let ex = Excluded::new();
    let ctx = PickContext::new(&snap, now_nanos(), &ex);
    assert!(
        picks(&PowerOfTwoChoices::new(), &ctx, 50)
            .iter()
            .all(|p| *p == Some(1))
    );
}
