//! The figures of a [`DrillReport`](super::DrillReport), computed from the
//! raw records one measurement at a time: the failover's milestones in the
//! pool's events, the write gap, the errors by kind, the throughput and the
//! per-bucket timeline. The definitions are in the
//! [report module's docs](super).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{BUCKET, TimelineBucket, TimelineEvent};
use crate::drill::scenario::Promotion;
use crate::drill::workload::{ReadRecord, WriteRecord};

/// Whole milliseconds of `d`.
pub(super) fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// When the pool noticed the fault, switched writers and promoted, from
/// its events at or after the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Milestones {
    /// Fault → the first `FailoverStarted`, or `NodeDown` of the old primary.
    pub(super) detection_ms: Option<u64>,
    /// When the pool first named a writer other than the old primary
    /// (`FailoverFinished` or `TopologyChanged`), since the start.
    pub(super) writer_switch: Option<u64>,
    /// When the pool reported `Promoted`, since the start.
    pub(super) promoted_event: Option<u64>,
    /// When the drill saw the first sentinel name another master
    /// (`SentinelSwitched`), since the start.
    pub(super) sentinel_switch: Option<u64>,
    fault_ms: u64,
}

impl Milestones {
    /// Finds the milestones in `events` (the drill's and the pool's, in
    /// time order).
    pub(super) fn find(events: &[TimelineEvent], fault_at: Duration, old_primary: &str) -> Self {
        let fault_ms = ms(fault_at);
        let first = |matches: &dyn Fn(&TimelineEvent) -> bool| {
            events
                .iter()
                .filter(|e| e.source == "pool" && e.t_ms >= fault_ms)
                .find(|e| matches(e))
                .map(|e| e.t_ms)
        };
        let detection_ms = first(&|e| {
            e.kind == "FailoverStarted"
                || (e.kind == "NodeDown" && e.node.as_deref() == Some(old_primary))
        })
        .map(|t| t - fault_ms);
        let writer_switch = first(&|e| {
            matches!(e.kind.as_str(), "FailoverFinished" | "TopologyChanged")
                && e.node.as_deref().is_some_and(|n| n != old_primary)
        });
        let promoted_event = first(&|e| e.kind == "Promoted");
        let sentinel_switch = events
            .iter()
            .find(|e| e.kind == "SentinelSwitched" && e.t_ms >= fault_ms)
            .map(|e| e.t_ms);
        Milestones {
            detection_ms,
            writer_switch,
            promoted_event,
            sentinel_switch,
            fault_ms,
        }
    }

    /// Fault → promotion: the pool's `Promoted` for automatic promotion,
    /// its writer switch for external promotion.
    pub(super) fn promotion_ms(&self, promotion: Promotion) -> Option<u64> {
        match promotion {
            Promotion::Automatic => self.promoted_event,
            Promotion::External | Promotion::Sentinel => self.writer_switch,
        }
        .map(|t| t - self.fault_ms)
    }

    /// Fault → Sentinel's switch.
    pub(super) fn sentinel_switch_ms(&self) -> Option<u64> {
        self.sentinel_switch.map(|t| t - self.fault_ms)
    }

    /// Sentinel's switch → the pool's writer switch.
    pub(super) fn pool_after_sentinel_ms(&self) -> Option<i64> {
        Some(self.writer_switch? as i64 - self.sentinel_switch? as i64)
    }

    /// Whether the pool promoted a node or switched to another writer.
    pub(super) fn promoted(&self) -> bool {
        self.promoted_event.is_some() || self.writer_switch.is_some()
    }
}

/// The window without acknowledged writes around the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WriteGap {
    /// When the first write started after `fault_done` was acknowledged.
    pub(super) first_after: Option<Duration>,
    /// The last acknowledgement before the fault (else the fault) → `first_after`.
    pub(super) gap_ms: Option<u64>,
}

impl WriteGap {
    /// Measures the gap: from the last write acknowledged before
    /// `fault_at` to the first acknowledgement of a write started at or
    /// after `fault_done`.
    pub(super) fn measure(
        writes: &[WriteRecord],
        fault_at: Duration,
        fault_done: Duration,
    ) -> Self {
        let last_before = writes
            .iter()
            .filter(|w| w.is_ok() && w.end < fault_at)
            .map(|w| w.end)
            .max();
        let first_after = writes
            .iter()
            .filter(|w| w.is_ok() && w.start >= fault_done)
            .map(|w| w.end)
            .min();
        let gap_ms = first_after.map(|a| ms(a - last_before.unwrap_or(fault_at)));
        WriteGap {
            first_after,
            gap_ms,
        }
    }
}

/// Failed operations by kind, and those the callers saw during the
/// failover.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ErrorTally {
    /// Failed writes and reads, by kind.
    pub(super) all: BTreeMap<String, u64>,
    /// Failed writes, by kind.
    pub(super) writes: BTreeMap<String, u64>,
    /// Failed reads, by kind.
    pub(super) reads: BTreeMap<String, u64>,
    /// Failed writes started at or after `fault_done`.
    pub(super) caller_writes: u64,
    /// Failed reads started at or after `fault_done`.
    pub(super) caller_reads: u64,
}

impl ErrorTally {
    /// Counts the failed operations of the records.
    pub(super) fn count(
        writes: &[WriteRecord],
        reads: &[ReadRecord],
        fault_done: Duration,
    ) -> Self {
        let mut tally = ErrorTally::default();
        for (start, kind) in writes
            .iter()
            .filter_map(|w| w.error.as_deref().map(|e| (w.start, e)))
        {
            *tally.all.entry(kind.to_owned()).or_insert(0) += 1;
            *tally.writes.entry(kind.to_owned()).or_insert(0) += 1;
            if start >= fault_done {
                tally.caller_writes += 1;
            }
        }
        for (start, kind) in reads
            .iter()
            .filter_map(|r| r.result.as_ref().err().map(|e| (r.start, e.as_str())))
        {
            *tally.all.entry(kind.to_owned()).or_insert(0) += 1;
            *tally.reads.entry(kind.to_owned()).or_insert(0) += 1;
            if start >= fault_done {
                tally.caller_reads += 1;
            }
        }
        tally
    }
}

/// Successful operations per second that ended in `[from, to)`, to one
/// decimal.
pub(super) fn ops_rate(
    writes: &[WriteRecord],
    reads: &[ReadRecord],
    from: Duration,
    to: Duration,
) -> f64 {
    let secs = to.saturating_sub(from).as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    let ok_ends = writes
        .iter()
        .filter(|w| w.is_ok())
        .map(|w| w.end)
        .chain(reads.iter().filter(|r| r.is_ok()).map(|r| r.end));
    let n = ok_ends.filter(|&t| t >= from && t < to).count();
    (n as f64 / secs * 10.0).round() / 10.0
}

/// Operations per [`BUCKET`] by end time, from the start to the last
/// operation's end (at least to `duration`).
pub(super) fn timeline(
    writes: &[WriteRecord],
    reads: &[ReadRecord],
    duration: Duration,
) -> Vec<TimelineBucket> {
    let last_end = writes
        .iter()
        .map(|w| w.end)
        .chain(reads.iter().map(|r| r.end))
        .max()
        .unwrap_or_default()
        .max(duration);
    let buckets = (ms(last_end) / ms(BUCKET) + 1) as usize;
    let mut timeline: Vec<TimelineBucket> = (0..buckets)
        .map(|i| TimelineBucket {
            t_ms: i as u64 * ms(BUCKET),
            ..TimelineBucket::default()
        })
        .collect();
    let bucket = |t: Duration| ((ms(t) / ms(BUCKET)) as usize).min(buckets - 1);
    for w in writes {
        let b = &mut timeline[bucket(w.end)];
        if w.is_ok() {
            b.ok_writes += 1;
        } else {
            b.errors += 1;
        }
    }
    for r in reads {
        let b = &mut timeline[bucket(r.end)];
        if r.is_ok() {
            b.ok_reads += 1;
        } else {
            b.errors += 1;
        }
    }
    timeline
}
