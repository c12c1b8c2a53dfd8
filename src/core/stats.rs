//! Lock-free counters and latency histograms behind [`Stats`](crate::core::events::Stats) snapshots.
//!
//! Every recording is a handful of relaxed atomic adds: no lock, no
//! allocation. Percentiles come from a log-linear histogram (4 sub-buckets per
//! power of two of microseconds, so a reported percentile is within ~19% of the
//! true value, and always an upper bound of its bucket).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

const SUB: usize = 4; // sub-buckets per power of two
const POWERS: usize = 40; // 1 µs .. 2^40 µs (≈ 12.7 days)
const BUCKETS: usize = SUB * POWERS + 1;

/// A lock-free latency histogram with microsecond resolution.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

fn bucket_of(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let p = 63 - us.leading_zeros() as usize; // floor(log2)
    // two bits below the top bit select the sub-bucket
    let sub = ((us >> (p - 2)) & 0b11) as usize;
    let idx = (p - 1) * SUB + sub;
    idx.min(BUCKETS - 1)
}

fn bucket_upper(idx: usize) -> u64 {
    if idx < SUB {
        return idx as u64;
    }
    let p = idx / SUB + 1;
    let sub = (idx % SUB) as u64;
    // bucket covers [ (4+sub) << (p-2), (5+sub) << (p-2) )
    ((SUB as u64 + sub + 1) << (p - 2)).saturating_sub(1)
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        LatencyHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one latency.
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Mean of the recorded values (zero when empty).
    pub fn mean(&self) -> Duration {
        let n = self.count();
        if n == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.sum_us.load(Relaxed) / n)
    }

    /// The value at quantile `q` (0.0..=1.0), as the upper bound of its bucket.
    pub fn quantile(&self, q: f64) -> Duration {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_micros(bucket_upper(i));
            }
        }
        Duration::from_micros(bucket_upper(BUCKETS - 1))
    }

    /// A point-in-time summary.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count(),
            mean: self.mean(),
            p50: self.quantile(0.50),
            p99: self.quantile(0.99),
        }
    }
}

/// Latency figures of a [`LatencyHistogram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub mean: Duration,
    /// Median (bucket upper bound).
    pub p50: Duration,
    /// 99th percentile (bucket upper bound).
    pub p99: Duration,
}

/// Request counters shared by a whole failover manager or one endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    /// Calls started (one per `execute`, not per attempt).
    pub requests: AtomicU64,
    /// Attempts made (including retries).
    pub attempts: AtomicU64,
    /// Successful calls.
    pub successes: AtomicU64,
    /// Failed calls.
    pub failures: AtomicU64,
    /// Times a call moved to another endpoint after a failure.
    pub failovers: AtomicU64,
    /// Times an endpoint came back (unhealthy→healthy, ejection ended, breaker closed).
    pub recoveries: AtomicU64,
    /// Retries started (attempts after the first, hedges not included).
    pub retries: AtomicU64,
    /// Retries (and hedges) the retry budget refused.
    pub budget_refusals: AtomicU64,
    /// Hedged copies sent.
    pub hedges: AtomicU64,
}

/// A snapshot of [`Counters`] and latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterSnapshot {
    /// Calls started.
    pub requests: u64,
    /// Attempts made.
    pub attempts: u64,
    /// Successful calls.
    pub successes: u64,
    /// Failed calls.
    pub failures: u64,
    /// Failovers.
    pub failovers: u64,
    /// Recoveries.
    pub recoveries: u64,
    /// Retries started.
    pub retries: u64,
    /// Retries and hedges the retry budget refused.
    pub budget_refusals: u64,
    /// Hedged copies sent.
    pub hedges: u64,
}

impl Counters {
    /// Reads every counter.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            requests: self.requests.load(Relaxed),
            attempts: self.attempts.load(Relaxed),
            successes: self.successes.load(Relaxed),
            failures: self.failures.load(Relaxed),
            failovers: self.failovers.load(Relaxed),
            recoveries: self.recoveries.load(Relaxed),
            retries: self.retries.load(Relaxed),
            budget_refusals: self.budget_refusals.load(Relaxed),
            hedges: self.hedges.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_cover() {
        let mut last = 0;
        for us in [
            0u64,
            1,
            2,
            3,
            4,
            5,
            7,
            8,
            100,
            1000,
            12345,
            1 << 30,
            u64::MAX,
        ] {
            let b = bucket_of(us);
            assert!(b >= last, "bucket of {us}");
            last = b;
            if us < (1 << 40) {
                assert!(bucket_upper(b) >= us, "upper of {us}: {}", bucket_upper(b));
            }
        }
    }

    #[test]
    fn quantiles_are_close() {
        let h = LatencyHistogram::new();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).as_micros() as f64;
        let p99 = h.quantile(0.99).as_micros() as f64;
        assert!((50_000.0..=50_000.0 * 1.25).contains(&p50), "{p50}");
        assert!((99_000.0..=99_000.0 * 1.25).contains(&p99), "{p99}");
        assert_eq!(h.count(), 100);
        assert_eq!(h.mean(), Duration::from_micros(50_500));
    }
}
