//! Unit tests of round robin.

use super::*;
use crate::core::clock::now_nanos;
use crate::core::endpoint::Health;
use crate::core::strategy::Excluded;
use crate::core::strategy::test_support::{picks, set};

#[test]
fn round_robin_cycles_and_passes_turns_on() {
    let s = set(3);
    let snap = s.snapshot();
    let ex = Excluded::new();
    let ctx = PickContext::new(&snap, now_nanos(), &ex);
    let rr = RoundRobin::new();
    let p: Vec<_> = picks(&rr, &ctx, 6).into_iter().flatten().collect();
    assert_eq!(p, [0, 1, 2, 0, 1, 2]);
    snap.endpoints()[1].set_health(Health::Unhealthy);
    let p: Vec<_> = picks(&rr, &ctx, 3).into_iter().flatten().collect();
    assert_eq!(p, [0, 2, 2]);
}
