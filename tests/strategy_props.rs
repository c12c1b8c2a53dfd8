//! Property tests of the built-in load-balancing strategies, through the
//! public API only.

use failover_pool::core::strategy::{
    Excluded, HealthBased, LeastConnections, PickContext, PowerOfTwoChoices, Priority, Random,
    RoundRobin, StrategyKind, WeightedRoundRobin,
};
use failover_pool::core::{BreakerConfig, Endpoint, EndpointSet, Health, Strategy as Pick};
use proptest::collection::vec;
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;

fn endpoints(weights: &[u32]) -> EndpointSet {
    let list = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Endpoint::new(format!("e{i}"), "127.0.0.1", 1000 + i as u16).with_weight(w))
        .collect();
    EndpointSet::new(list, Arc::new(BreakerConfig::default())).unwrap()
}

fn now() -> u64 {
    failover_pool::core::clock::now_nanos()
}

fn all_strategies() -> Vec<Arc<dyn Pick>> {
    StrategyKind::ALL.iter().map(StrategyKind::build).collect()
}

/// One endpoint's state: eligible (or unhealthy / degraded), in-flight
/// calls, and a latency sample.
#[derive(Debug, Clone)]
struct EndpointState {
    health: Health,
    weight: u32,
    in_flight: usize,
    rtt_ms: u64,
}

fn endpoint_state() -> impl Strategy<Value = EndpointState> {
    (
        prop_oneof![
            Just(Health::Healthy),
            Just(Health::Unknown),
            Just(Health::Degraded),
            Just(Health::Unhealthy),
        ],
        1u32..=10,
        0usize..4,
        1u64..200,
    )
        .prop_map(|(health, weight, in_flight, rtt_ms)| EndpointState {
            health,
            weight,
            in_flight,
            rtt_ms,
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Smooth weighted round robin is exact per period: over `k × Σw`
    /// picks every endpoint gets exactly `k × w` of them.
    #[test]
    fn weighted_round_robin_is_exact_per_period(
        weights in vec(1u32..=20, 1..=12),
        k in 1usize..=4,
        warmup in 0usize..50,
    ) {
        let set = endpoints(&weights);
        let snap = set.snapshot();
        let ex = Excluded::new();
        let ctx = PickContext::new(&snap, now(), &ex);
        let wrr = WeightedRoundRobin::new();
        let sum: usize = weights.iter().map(|&w| w as usize).sum();
        // Any window of whole periods works, wherever it starts.
        for _ in 0..warmup {
            wrr.pick(&ctx).unwrap();
        }
        let mut counts = vec![0usize; weights.len()];
        for _ in 0..k * sum {
            counts[wrr.pick(&ctx).unwrap()] += 1;
        }
        let expected: Vec<usize> = weights.iter().map(|&w| k * w as usize).collect();
        prop_assert_eq!(counts, expected);
    }

    /// Smooth weighted round robin never runs ahead of an endpoint's fair
    /// share: after any `t` picks from the start, endpoint `i` has had fewer
    /// than `t × w_i / Σw + 1` of them (no bursts), and more than
    /// `t × w_i / Σw − n`.
    #[test]
    fn weighted_round_robin_is_never_ahead_of_the_fair_share(weights in vec(1u32..=20, 1..=8)) {
        let set = endpoints(&weights);
        let snap = set.snapshot();
        let ex = Excluded::new();
        let ctx = PickContext::new(&snap, now(), &ex);
        let wrr = WeightedRoundRobin::new();
        let sum = i64::from(weights.iter().sum::<u32>());
        let n = weights.len() as i64;
        let mut counts = vec![0i64; weights.len()];
        for t in 1..=2 * sum {
            counts[wrr.pick(&ctx).unwrap()] += 1;
            for (i, &w) in weights.iter().enumerate() {
                // S × (fair share − count), in (−S, (n − 1) × S].
                let lag = t * i64::from(w) - sum * counts[i];
                prop_assert!(lag > -sum && lag <= (n - 1) * sum, "endpoint {i} after {t} picks: {counts:?}");
            }
        }
    }

    /// Round robin is fair: over `k × n` picks every endpoint gets exactly `k`.
    #[test]
    fn round_robin_is_fair(n in 1usize..=40, k in 1usize..=5, warmup in 0usize..100) {
        let set = endpoints(&vec![1; n]);
        let snap = set.snapshot();
        let ex = Excluded::new();
        let ctx = PickContext::new(&snap, now(), &ex);
        let rr = RoundRobin::new();
        for _ in 0..warmup {
            rr.pick(&ctx).unwrap();
        }
        let mut counts = vec![0usize; n];
        for _ in 0..k * n {
            counts[rr.pick(&ctx).unwrap()] += 1;
        }
        prop_assert_eq!(counts, vec![k; n]);
    }

    /// Random and P2C always return an eligible endpoint when there is one.
    #[test]
    fn random_and_p2c_return_eligible_endpoints(
        mask in vec(any::<bool>(), 1..=40),
        excluded in vec(0usize..40, 0..=4),
    ) {
        let set = endpoints(&vec![1; mask.len()]);
        let snap = set.snapshot();
        let t = now();
        for (ep, &ok) in snap.endpoints().iter().zip(&mask) {
            if !ok {
                ep.set_health(Health::Unhealthy);
            }
            ep.ewma().observe(Duration::from_millis(fastrand_ms(ep.id())), t);
        }
        let mut ex = Excluded::new();
        excluded.iter().for_each(|&i| ex.insert(i));
        let ctx = PickContext::new(&snap, t, &ex);
        let any_eligible = (0..mask.len()).any(|i| ctx.is_eligible(i));
        let strategies: [&dyn Pick; 2] = [&Random::new(), &PowerOfTwoChoices::new()];
        for s in strategies {
            for _ in 0..50 {
                match s.pick(&ctx) {
                    Some(i) => prop_assert!(ctx.is_eligible(i), "{} picked {i}", s.name()),
                    None => prop_assert!(!any_eligible, "{} found nothing", s.name()),
                }
            }
        }
    }

    /// Whatever the health, load, weights, exclusions and panic mode, no
    /// strategy returns an ineligible endpoint, and each finds one when
    /// there is one.
    #[test]
    fn no_strategy_picks_an_ineligible_endpoint(
        states in vec(endpoint_state(), 0..=30),
        excluded in vec(0usize..30, 0..=8),
        panic in any::<bool>(),
        rounds in 1usize..=3,
    ) {
        let weights: Vec<u32> = states.iter().map(|s| s.weight).collect();
        let set = endpoints(&weights);
        let snap = set.snapshot();
        let t = now();
        let mut guards = Vec::new();
        for (ep, st) in snap.endpoints().iter().zip(&states) {
            ep.set_health(st.health);
            ep.ewma().observe(Duration::from_millis(st.rtt_ms), t);
            guards.extend((0..st.in_flight).map(|_| ep.start_call()));
        }
        let mut ex = Excluded::new();
        excluded.iter().for_each(|&i| ex.insert(i));
        let ctx = PickContext::new(&snap, t, &ex).with_panic(panic);
        let any_eligible = (0..states.len()).any(|i| ctx.is_eligible(i));
        let mut strategies = all_strategies();
        strategies.push(Arc::new(Priority::new(Duration::ZERO)));
        strategies.push(Arc::new(LeastConnections::new()));
        strategies.push(Arc::new(HealthBased::new()));
        for s in &strategies {
            for _ in 0..rounds * (states.len() + 1) {
                match s.pick(&ctx) {
                    Some(i) => prop_assert!(ctx.is_eligible(i), "{} picked ineligible {i}", s.name()),
                    None => prop_assert!(!any_eligible, "{} found nothing", s.name()),
                }
            }
        }
        // Eligibility changes between picks (the weighted schedule and the
        // priority state must not go stale).
        for (i, ep) in snap.endpoints().iter().enumerate() {
            if i % 2 == 0 {
                ep.set_health(Health::Unhealthy);
            }
        }
        let any_eligible = (0..states.len()).any(|i| ctx.is_eligible(i));
        for s in &strategies {
            for _ in 0..rounds * (states.len() + 1) {
                match s.pick(&ctx) {
                    Some(i) => prop_assert!(ctx.is_eligible(i), "{} picked ineligible {i}", s.name()),
                    None => prop_assert!(!any_eligible, "{} found nothing", s.name()),
                }
            }
        }
        drop(guards);
    }
}

/// A deterministic pseudo-latency per endpoint id, 1..=100 ms.
fn fastrand_ms(id: &str) -> u64 {
    id.bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        % 100
        + 1
}
