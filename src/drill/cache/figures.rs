//! The report's figures from what the drill saw: latency percentiles
//! before and during the fault, the repair time, the per-bucket timeline.

use std::collections::BTreeMap;
use std::time::Duration;

use super::CacheDrillOptions;
use super::CacheFault;
use super::load::{LastOp, LoadRecord};
use super::report::{CacheBucket, CacheDrillReport, CacheTimelineEvent};
use crate::cache::{CacheStats, SideStats};
use crate::drill::figures::{micros, ms, percentile};

/// The timeline's bucket.
const BUCKET: Duration = Duration::from_millis(250);

/// The cache's state at one tick.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    pub(super) t: Duration,
    pub(super) backlog: usize,
    pub(super) side_up: bool,
    pub(super) in_sync: bool,
}

/// What the drill measured while the load ran and the side was repaired.
pub(super) struct Run {
    pub(super) record: LoadRecord,
    pub(super) samples: Vec<Sample>,
    pub(super) fault_at: Duration,
    pub(super) recovered_at: Duration,
    pub(super) duration: Duration,
}

/// The name of side `index` in the cache.
pub(super) const fn side_name(index: usize) -> &'static str {
    if index == 0 { "a" } else { "b" }
}

/// The figures of side `index`.
pub(super) fn side_stats(stats: &CacheStats, index: usize) -> &SideStats {
    if index == 0 {
        &stats.primary
    } else {
        &stats.secondary
    }
}

/// The report's figures from what the drill saw (the check's are added
/// by the caller).
pub(super) fn assemble(
    opts: &CacheDrillOptions,
    failing: usize,
    run: &Run,
    stats: &CacheStats,
    events: Vec<CacheTimelineEvent>,
    queued_events: u64,
    last: &BTreeMap<String, LastOp>,
) -> CacheDrillReport {
    let side = side_stats(stats, failing);
    let record = &run.record;
    let before = durations(record, Duration::ZERO, run.fault_at);
    let during = durations(record, run.fault_at, run.recovered_at);
    let p = |d: &[f64], q: f64| percentile(d, q);
    let repair_ms = run
        .samples
        .iter()
        .find(|s| s.t >= run.recovered_at && s.in_sync)
        .map(|s| ms(s.t - run.recovered_at));
    let mut notes = vec![format!(
        "every key's last acknowledged operation is known ({} keys touched); the sides were read directly, not through the cache",
        last.len()
    )];
    if opts.fault == CacheFault::Blackhole {
        notes.push(format!(
            "side {} was reached through an in-process proxy (the partition), side {} directly",
            side_name(failing),
            side_name(1 - failing)
        ));
    }
    CacheDrillReport {
        store: "cache".into(),
        fault: opts.fault,
        side: opts.side,
        side_name: side_name(failing).into(),
        write_policy: "both".into(),
        writers: opts.writers,
        readers: opts.readers,
        keys: opts.keys,
        duration_ms: ms(run.duration),
        fault_at_ms: ms(run.fault_at),
        recovered_at_ms: ms(run.recovered_at),
        write_timeout_ms: ms(opts.write_timeout),
        read_soft_timeout_ms: ms(opts.read_soft_timeout),
        acked_writes: record.acked_writes,
        reads: record.reads,
        caller_errors: record.caller_errors(),
        write_errors: record.write_errors,
        read_errors: record.read_errors,
        error_samples: record.error_samples.clone(),
        queued_writes: side.queued_writes,
        replayed: side.replayed,
        superseded: side.superseded,
        divergences: side.divergences,
        reconciliations: stats.reconciliations,
        reconciled_keys: side.reconciled_keys,
        fallback_reads: stats.fallback_reads,
        repair_ms,
        divergent_keys_after_repair: 0,
        resurrected_deletes: 0,
        ttls_extended: 0,
        lost_acked_writes: 0,
        keys_checked: 0,
        findings: Vec::new(),
        p50_before_fault_ms: p(&before, 0.50),
        p99_before_fault_ms: p(&before, 0.99),
        p99_during_fault_ms: p(&during, 0.99),
        max_during_fault_ms: micros(during.last().copied().unwrap_or(0.0)),
        p99_added_latency_ms: micros((p(&during, 0.99) - p(&before, 0.99)).max(0.0)),
        timeline: timeline(record, &run.samples),
        events,
        queued_events,
        goals: Vec::new(),
        notes,
    }
}

/// Durations (ms, sorted) of the calls started in `[from, to)`.
fn durations(record: &LoadRecord, from: Duration, to: Duration) -> Vec<f64> {
    let mut d: Vec<f64> = (record.calls.iter())
        .filter(|c| c.at >= from && c.at < to)
        .map(|c| c.took.as_secs_f64() * 1000.0)
        .collect();
    d.sort_by(f64::total_cmp);
    d
}

/// The calls and the side's state per [`BUCKET`].
fn timeline(record: &LoadRecord, samples: &[Sample]) -> Vec<CacheBucket> {
    let end = (record.calls.iter().map(|c| c.at))
        .chain(samples.iter().map(|s| s.t))
        .max()
        .unwrap_or_default();
    let n = (end.as_millis() / BUCKET.as_millis()) as usize + 1;
    let mut took: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut errors = vec![0u64; n];
    let index = |t: Duration| (t.as_millis() / BUCKET.as_millis()) as usize;
    for c in &record.calls {
        let i = index(c.at);
        took[i].push(c.took.as_secs_f64() * 1000.0);
        errors[i] += u64::from(!c.ok);
    }
    let mut backlog = vec![0u64; n];
    let mut up = vec![true; n];
    for s in samples {
        let i = index(s.t);
        backlog[i] = backlog[i].max(s.backlog as u64);
        up[i] &= s.side_up;
    }
    (0..n)
        .map(|i| {
            took[i].sort_by(f64::total_cmp);
            CacheBucket {
                t_ms: (i as u64) * ms(BUCKET),
                calls: took[i].len() as u64,
                errors: errors[i],
                p99_ms: percentile(&took[i], 0.99),
                backlog: backlog[i],
                side_up: up[i],
            }
        })
        .collect()
}
