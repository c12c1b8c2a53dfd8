//! Benchmarks of the core hot path: one strategy pick per iteration, every
//! built-in strategy at 100 and 1000 endpoints (ids `pick/<strategy>/<n>`).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use failover_pool::core::clock::now_nanos;
use failover_pool::core::strategy::{
    Excluded, HealthBased, LeastConnections, PickContext, PowerOfTwoChoices, Priority, Random,
    RoundRobin, WeightedRoundRobin,
};
use failover_pool::core::{
    BreakerConfig, Classified, Endpoint, EndpointSet, Failover, Health, Strategy,
};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

const SIZES: [usize; 2] = [100, 1000];

/// `n` healthy endpoints with realistic state: weights 1..=4, a few
/// latency samples each (0.5–5 ms), some calls in flight.
fn endpoint_set(n: usize) -> (EndpointSet, Vec<impl Drop>) {
    let list = (0..n)
        .map(|i| {
            Endpoint::new(
                format!("ep-{i}"),
                format!("10.0.{}.{}", i / 250, i % 250),
                5432,
            )
            .with_weight(1 + (i % 4) as u32)
        })
        .collect();
    let set = EndpointSet::new(list, Arc::new(BreakerConfig::default())).expect("unique ids");
    let mut guards = Vec::new();
    {
        let snap = set.snapshot();
        let now = now_nanos();
        for (i, ep) in snap.endpoints().iter().enumerate() {
            ep.set_health(Health::Healthy);
            for s in 0..3u64 {
                let us = 500 + ((i as u64 * 7919 + s * 104_729) % 4500);
                ep.ewma().observe(Duration::from_micros(us), now);
            }
            for _ in 0..(i % 3) {
                guards.push(ep.start_call());
            }
        }
    }
    (set, guards)
}

fn strategies() -> Vec<(&'static str, Box<dyn Strategy>)> {
    vec![
        ("round_robin", Box::new(RoundRobin::new())),
        ("weighted_round_robin", Box::new(WeightedRoundRobin::new())),
        ("least_connections", Box::new(LeastConnections::new())),
        ("random", Box::new(Random::new())),
        ("p2c", Box::new(PowerOfTwoChoices::new())),
        ("priority", Box::new(Priority::default())),
        ("health_based", Box::new(HealthBased::new())),
    ]
}

fn bench_pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        let (set, _guards) = endpoint_set(n);
        let snap = set.load_full();
        let excluded = Excluded::new();
        let ctx = PickContext::new(&snap, now_nanos(), &excluded);
        for (name, strategy) in strategies() {
            // Build caches (the weighted schedule) outside the measurement.
            assert!(strategy.pick(&ctx).is_some());
            group.bench_with_input(BenchmarkId::new(name, n), &ctx, |b, ctx| {
                b.iter(|| strategy.pick(black_box(ctx)))
            });
        }
    }
    group.finish();
}

/// `execute/noop`: one full `Failover::execute` (pick, breaker permit,
/// in-flight guard, attempt timeout, classification, recording) around an
/// operation that returns at once; `execute/raw` awaits the same operation
/// directly, for the ratio printed at the end.
fn bench_execute(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let failover = rt.block_on(async {
        Failover::builder("bench")
            .endpoints((0..3).map(|i| Endpoint::new(format!("e{i}"), "127.0.0.1", 1000 + i)))
            .build()
            .unwrap()
    });
    let mut group = c.benchmark_group("execute");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.bench_function("raw", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(async { Ok::<_, Classified>(1u32) }.await) })
    });
    group.bench_function("noop", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                failover
                    .execute(|_| async { Ok::<_, Classified>(1u32) })
                    .await
                    .unwrap()
                    .value,
            )
        })
    });
    group.finish();

    // Same-run ratio, measured directly (criterion's estimates are not
    // readable from here): median of 5 rounds of 200k calls each.
    let per_call = |f: &dyn Fn() -> Duration| {
        let mut v: Vec<Duration> = (0..5).map(|_| f()).collect();
        v.sort();
        v[2] / 200_000
    };
    let raw = per_call(&|| {
        rt.block_on(async {
            let t = std::time::Instant::now();
            for _ in 0..200_000 {
                black_box(async { Ok::<_, Classified>(1u32) }.await.unwrap());
            }
            t.elapsed()
        })
    });
    let noop = per_call(&|| {
        rt.block_on(async {
            let t = std::time::Instant::now();
            for _ in 0..200_000 {
                black_box(
                    failover
                        .execute(|_| async { Ok::<_, Classified>(1u32) })
                        .await
                        .unwrap(),
                );
            }
            t.elapsed()
        })
    });
    println!(
        "overhead execute/noop per_call={:?} raw={:?} added={:?}",
        noop,
        raw,
        noop.saturating_sub(raw)
    );
}

criterion_group!(benches, bench_pick, bench_execute);
criterion_main!(benches);
