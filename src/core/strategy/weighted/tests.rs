//! Unit tests of smooth weighted round robin.

use super::*;
use crate::core::clock::now_nanos;
use crate::core::endpoint::{Endpoint, Health};
use crate::core::strategy::Excluded;
use crate::core::strategy::test_support::{counts, picks, weighted};

#[test]
fn weighted_sequence_is_smooth() {
    let s = weighted(&[5, 1, 1]);
    let snap = s.snapshot();
    let ex = Excluded::new();
    let ctx = PickContext::new(&snap, now_nanos(), &ex);
    let wrr = WeightedRoundRobin::new();
    let p: Vec<_> = picks(&wrr, &ctx, 14).into_iter().flatten().collect();
    assert_eq!(p, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn weighted_schedule_is_reduced_and_capped() {
    assert_eq!(smooth_schedule(vec![10, 20, 30]), [2, 1, 0, 2, 1, 2]);
    assert_eq!(smooth_schedule(vec![4, 4]), [0, 1]);
    assert_eq!(smooth_schedule(vec![0]).len(), 0);
    let big = smooth_schedule(vec![u64::from(u32::MAX), 1, 1000]);
    assert!(big.len() as u64 <= MAX_SCHEDULE_LEN + 3, "{}", big.len());
    for i in 0..3 {
        assert!(big.contains(&i), "endpoint {i} missing");
    }
    let heavy = big.iter().filter(|&&i| i == 0).count() as f64 / big.len() as f64;
    assert!(heavy > 0.99, "{heavy}");
}

#[test]
fn weighted_rebuilds_when_the_list_changes() {
    let s = weighted(&[1, 1]);
    let ex = Excluded::new();
    let wrr = WeightedRoundRobin::new();
    {
        let snap = s.snapshot();
        let ctx = PickContext::new(&snap, now_nanos(), &ex);
        let p: Vec<_> = picks(&wrr, &ctx, 4).into_iter().flatten().collect();
        assert_eq!(p, [0, 1, 0, 1]);
    }
    s.upsert(Endpoint::new("w1", "127.0.0.1", 2001).with_weight(3))
        .unwrap();
    let snap = s.snapshot();
    let ctx = PickContext::new(&snap, now_nanos(), &ex);
    assert_eq!(counts(&wrr, &ctx, 400), [100, 300]);
}

#[test]
fn weighted_keeps_relative_weights_of_eligible_endpoints() {
    let s = weighted(&[5, 1, 1]);
    let snap = s.snapshot();
    snap.endpoints()[0].set_health(Health::Unhealthy);
    let ex = Excluded::new();
    let ctx = PickContext::new(&snap, now_nanos(), &ex);
    let c = counts(&WeightedRoundRobin::new(), &ctx, 7000);
    assert_eq!(c[0], 0);
    assert!((3000..4000).contains(&c[1]), "{c:?}");
}

#[test]
fn weighted_shared_by_two_lists_stays_correct() {
    let a = weighted(&[3, 1]);
    let b = weighted(&[1, 1, 1]);
    let (sa, sb) = (a.snapshot(), b.snapshot());
    assert_eq!(sa.version(), sb.version());
    let ex = Excluded::new();
    let ca = PickContext::new(&sa, now_nanos(), &ex);
    let cb = PickContext::new(&sb, now_nanos(), &ex);
    let wrr = WeightedRoundRobin::new();
    let mut counts = [0usize; 2];
    for _ in 0..4000 {
        counts[wrr.pick(&ca).unwrap()] += 1;
        assert!(wrr.pick(&cb).unwrap() < 3);
    }
    assert!((2700..3300).contains(&counts[0]), "{counts:?}");
}
