//! The measurement shared by the overhead benches: a raw client and the
//! wrapped one timed in short alternating loops (ABBA), every iteration
//! timed, and the ratio of their medians per round.
#![allow(dead_code)] // each bench uses its own part

use std::future::Future;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// The median of `values` (sorted in place).
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The mean of `values`.
pub(crate) fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Something whose iterations are timed: one iteration of a case.
pub(crate) trait Timed {
    /// What is measured (a client, an operation, a task count).
    type Case: Copy;
    /// One iteration of `case`.
    fn iteration(&self, case: Self::Case) -> impl Future<Output = ()>;
}

/// Runs `iters` iterations of `case`, pushing each one's time in µs.
pub(crate) async fn sample<T: Timed>(t: &T, case: T::Case, iters: u32, out: &mut Vec<f64>) {
    for _ in 0..iters {
        let began = Instant::now();
        t.iteration(case).await;
        out.push(began.elapsed().as_secs_f64() * 1e6);
    }
}

/// How long the alternating measurement of one pair runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The length of one loop of one side.
    pub(crate) loop_time: Duration,
    /// How long a pair is measured (at least `min_rounds` rounds).
    pub(crate) pair_time: Duration,
    /// The fewest rounds.
    pub(crate) min_rounds: usize,
}

/// The measurement of one pair (`a` is the raw client).
#[derive(Debug)]
pub(crate) struct Overhead {
    pub(crate) rounds: usize,
    pub(crate) iters: u32,
    /// Medians and means of every iteration of `a`, then of `b`.
    pub(crate) a_median: f64,
    pub(crate) b_median: f64,
    pub(crate) a_mean: f64,
    pub(crate) b_mean: f64,
    /// Median over the rounds of `b` median / `a` median.
    pub(crate) ratio: f64,
    /// Median over the rounds of `b` mean / `a` mean.
    pub(crate) mean_ratio: f64,
}

/// Measures `b` against `a`: short loops of each alternating (ABBA) for
/// `limits.pair_time`, every iteration timed.
pub(crate) fn overhead<T: Timed>(
    runtime: &Runtime,
    t: &T,
    a: T::Case,
    b: T::Case,
    limits: Limits,
) -> Overhead {
    // Calibrate the loop length on `a`.
    let mut probe = Vec::new();
    runtime.block_on(sample(t, a, 50, &mut probe));
    let per_iter = median(&mut probe) * 1e-6;
    let iters = (limits.loop_time.as_secs_f64() / per_iter).clamp(10.0, 10_000.0) as u32;
    let (mut a_all, mut b_all) = (Vec::new(), Vec::new());
    let (mut ratios, mut mean_ratios) = (Vec::new(), Vec::new());
    let began = Instant::now();
    let mut round = 0;
    while round < limits.min_rounds || began.elapsed() < limits.pair_time {
        // ABBA: `a` first in rounds 0, 3, 4, 7, 8, ...
        let a_first = matches!(round % 4, 0 | 3);
        let (mut ta, mut tb) = (Vec::new(), Vec::new());
        runtime.block_on(async {
            if a_first {
                sample(t, a, iters, &mut ta).await;
                sample(t, b, iters, &mut tb).await;
            } else {
                sample(t, b, iters, &mut tb).await;
                sample(t, a, iters, &mut ta).await;
            }
        });
        mean_ratios.push(mean(&tb) / mean(&ta));
        ratios.push(median(&mut tb) / median(&mut ta));
        a_all.extend(ta);
        b_all.extend(tb);
        round += 1;
    }
    Overhead {
        rounds: round,
        iters,
        a_mean: mean(&a_all),
        b_mean: mean(&b_all),
        a_median: median(&mut a_all),
        b_median: median(&mut b_all),
        ratio: median(&mut ratios),
        mean_ratio: median(&mut mean_ratios),
    }
}
