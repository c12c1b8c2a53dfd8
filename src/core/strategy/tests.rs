//! Properties every built-in strategy has.

use super::test_support::{all, picks, set, weighted};
use super::{Excluded, PickContext};
use crate::core::clock::now_nanos;
use crate::core::endpoint::{Endpoint, Health};

#[test]
fn every_strategy_skips_unhealthy_endpoints() {
    let s = set(4);
    let snap = s.snapshot();
    snap.endpoints()[1].set_health(Health::Unhealthy);
    snap.endpoints()[2].set_health(Health::Unhealthy);
    let ex = Excluded::new();
    let ctx = PickContext::new(&snap, now_nanos(), &ex);
    for strategy in all() {
        for p in picks(&*strategy, &ctx, 200) {
            assert!(matches!(p, Some(0 | 3)), "{} picked {p:?}", strategy.name());
        }
    }
}

#[test]
fn every_strategy_skips_excluded_endpoints() {
    let s = set(4);
    let snap = s.snapshot();
    let mut ex = Excluded::new();
    ex.insert(0);
    ex.insert(2);
    let ctx = PickContext::new(&snap, now_nanos(), &ex);
    for strategy in all() {
        for p in picks(&*strategy, &ctx, 200) {
            assert!(matches!(p, Some(1 | 3)), "{} picked {p:?}", strategy.name());
        }
    }
}

#[test]
fn every_strategy_returns_none_when_nothing_is_eligible() {
    let empty = set(0);
    let snap = empty.snapshot();
    let ex = Excluded::new();
    let ctx = PickContext::new(&snap, now_nanos(), &ex);
    for strategy in all() {
        assert_eq!(
            strategy.pick(&ctx),
            None,
            "{} on an empty list",
            strategy.name()
        );
    }

    let s = set(3);
    let snap = s.snapshot();
    for ep in snap.endpoints() {
        ep.set_health(Health::Unhealthy);
    }
    let ctx = PickContext::new(&snap, now_nanos(), &ex);
    for strategy in all() {
        assert_eq!(
            picks(&*strategy, &ctx, 20),
            vec![None; 20],
            "{}",
            strategy.name()
        );
    }

    let healthy = set(3);
    let snap = healthy.snapshot();
    let mut all_excluded = Excluded::new();
    (0..3).for_each(|i| all_excluded.insert(i));
    let ctx = PickContext::new(&snap, now_nanos(), &all_excluded);
    for strategy in all() {
        assert_eq!(
            picks(&*strategy, &ctx, 20),
            vec![None; 20],
            "{}",
            strategy.name()
        );
    }
}

#[test]
fn panic_mode_ignores_health_but_not_exclusion() {
    let s = set(3);
    let snap = s.snapshot();
    for ep in snap.endpoints() {
        ep.set_health(Health::Unhealthy);
    }
    let mut ex = Excluded::new();
    ex.insert(1);
    let ctx = PickContext::new(&snap, now_nanos(), &ex).with_panic(true);
    for strategy in all() {
        for p in picks(&*strategy, &ctx, 100) {
            assert!(matches!(p, Some(0 | 2)), "{} picked {p:?}", strategy.name());
        }
    }
}

#[test]
fn strategies_can_be_shared_between_threads() {
    let s = weighted(&[1, 2, 3, 4]);
    for strategy in all() {
        std::thread::scope(|scope| {
            for t in 0..4 {
                let (s, strategy) = (&s, &strategy);
                scope.spawn(move || {
                    for i in 0..2000 {
                        if t == 0 && i % 500 == 0 {
                            let w = 1 + (i / 500) as u32;
                            s.upsert(Endpoint::new("w0", "127.0.0.1", 2000).with_weight(w))
                                .unwrap();
                        }
                        let snap = s.snapshot();
                        let ex = Excluded::new();
                        let ctx = PickContext::new(&snap, now_nanos(), &ex);
                        let p = strategy.pick(&ctx);
                        assert!(p.is_some_and(|i| i < 4), "{}: {p:?}", strategy.name());
                    }
                });
            }
        });
    }
}
