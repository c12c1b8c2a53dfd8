//! Unit tests of health-based routing.

use super::*;
use crate::core::clock::now_nanos;
use crate::core::endpoint::Health;
use crate::core::strategy::Excluded;
use crate::core::strategy::test_support::{counts, set};

#[test]
fn health_based_prefers_healthy_over_degraded() {
    let s = set(4);
    let snap = s.snapshot();
    let eps = snap.endpoints();
    eps[0].set_health(Health::Degraded);
    eps[1].set_health(Health::Healthy);
    eps[3].set_health(Health::Degraded);
    let ex = Excluded::new();
    let ctx = PickContext::new(&snap, now_nanos(), &ex);
    let hb = HealthBased::new();
    assert_eq!(counts(&hb, &ctx, 400), [0, 200, 200, 0]);

    eps[1].set_health(Health::Unhealthy);
    eps[2].set_health(Health::Degraded);
    assert_eq!(counts(&hb, &ctx, 300), [100, 0, 100, 100]);
}
