//! [`CacheDrillReport`]: what a cache drill measured, its goals, and the
//! report as text.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{CacheFault, FaultSide};
use crate::drill::report::Goal;

/// What a cache drill measured. The JSON field names are the ones the
/// figures are known by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheDrillReport {
    /// Always `cache`.
    pub store: String,
    /// The fault.
    pub fault: CacheFault,
    /// The side that failed.
    pub side: FaultSide,
    /// The side's name in the cache (`a` is the primary, `b` the secondary).
    pub side_name: String,
    /// The write policy (always `both`).
    pub write_policy: String,
    /// Writer tasks.
    pub writers: usize,
    /// Reader tasks.
    pub readers: usize,
    /// Keys.
    pub keys: usize,
    /// How long the load ran, ms.
    pub duration_ms: u64,
    /// When the fault was injected, ms since the load started.
    pub fault_at_ms: u64,
    /// When the side was back (restarted, thawed, healed), ms since the
    /// load started.
    pub recovered_at_ms: u64,
    /// The cache's write timeout per side, ms.
    pub write_timeout_ms: u64,
    /// The cache's read soft timeout, ms.
    pub read_soft_timeout_ms: u64,

    /// Writes (sets and deletes) acknowledged to the callers, the preload
    /// excluded.
    pub acked_writes: u64,
    /// Reads answered.
    pub reads: u64,
    /// Errors returned to callers, reads and writes.
    pub caller_errors: u64,
    /// Of those, writes.
    pub write_errors: u64,
    /// Of those, reads.
    pub read_errors: u64,
    /// The first errors, as text.
    pub error_samples: Vec<String>,
    /// Acknowledged writes that were queued for the failed side.
    pub queued_writes: u64,
    /// Queued entries replayed onto the side.
    pub replayed: u64,
    /// Queued entries the side already had (or newer).
    pub superseded: u64,
    /// Times the side became divergent (a key scan needed).
    pub divergences: u64,
    /// Key scans completed.
    pub reconciliations: u64,
    /// Entries reconciliation copied onto the side.
    pub reconciled_keys: u64,
    /// Reads answered by the side asked second.
    pub fallback_reads: u64,

    /// From the side's recovery to the cache in sync (both sides up,
    /// nothing queued, nothing divergent); `None` when it was not in sync
    /// within the repair timeout.
    pub repair_ms: Option<u64>,
    /// Keys the sides disagree on after the repair (goal 0).
    pub divergent_keys_after_repair: u64,
    /// Keys deleted last but holding a value on a side (goal 0).
    pub resurrected_deletes: u64,
    /// Keys held past their entry's absolute expiry (goal 0).
    pub ttls_extended: u64,
    /// Keys whose last acknowledged value a side lacks (goal 0).
    pub lost_acked_writes: u64,
    /// Keys checked.
    pub keys_checked: u64,
    /// Examples of the keys behind the four counts above.
    pub findings: Vec<String>,

    /// p50 of the calls started before the fault, ms.
    pub p50_before_fault_ms: f64,
    /// p99 of the calls started before the fault, ms.
    pub p99_before_fault_ms: f64,
    /// p99 of the calls started during the fault, ms.
    pub p99_during_fault_ms: f64,
    /// The slowest call started during the fault, ms.
    pub max_during_fault_ms: f64,
    /// `p99_during_fault_ms - p99_before_fault_ms`, at least 0.
    pub p99_added_latency_ms: f64,

    /// The load and the side's backlog per 250 ms.
    pub timeline: Vec<CacheBucket>,
    /// What happened, in time order: the drill's steps and the cache's
    /// events (`WriteQueued` only counted, in `queued_events`).
    pub events: Vec<CacheTimelineEvent>,
    /// `WriteQueued` events seen.
    pub queued_events: u64,
    /// The goals and whether they were met.
    pub goals: Vec<Goal>,
    /// Remarks on the run.
    pub notes: Vec<String>,
}

/// The load and the failed side's backlog over one 250 ms bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheBucket {
    /// Start of the bucket, ms since the load started.
    pub t_ms: u64,
    /// Calls started in the bucket.
    pub calls: u64,
    /// Of those, failed.
    pub errors: u64,
    /// p99 of their durations, ms.
    pub p99_ms: f64,
    /// The largest backlog (keys queued for the failed side) seen.
    pub backlog: u64,
    /// Whether the cache used the side throughout the bucket.
    pub side_up: bool,
}

/// One event on the drill's timeline.
pub type CacheTimelineEvent = crate::drill::event_log::LoggedEvent;

impl CacheDrillReport {
    /// Computes [`goals`](Self::goals) from the figures.
    pub(super) fn set_goals(&mut self) {
        let zero = Goal::zero;
        self.goals = vec![
            zero(
                "divergent_keys_after_repair",
                self.divergent_keys_after_repair,
            ),
            zero("resurrected_deletes", self.resurrected_deletes),
            zero("ttls_extended", self.ttls_extended),
            zero("caller_errors", self.caller_errors),
            zero("lost_acked_writes", self.lost_acked_writes),
            Goal {
                name: "repaired".into(),
                target: "in sync after the fault".into(),
                actual: self
                    .repair_ms
                    .map_or_else(|| "not in sync".into(), |ms| format!("after {ms} ms")),
                met: self.repair_ms.is_some(),
            },
        ];
    }

    /// Whether every goal was met.
    pub fn all_goals_met(&self) -> bool {
        self.goals.iter().all(|g| g.met)
    }

    /// The goals that were missed.
    pub fn missed_goals(&self) -> impl Iterator<Item = &Goal> {
        self.goals.iter().filter(|g| !g.met)
    }

    /// A readable multi-line report: settings, figures, goals, errors,
    /// events and notes.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "cache drill: fault {} on the {} side ({}), write policy {}",
            self.fault.as_str(),
            self.side.as_str(),
            self.side_name,
            self.write_policy
        );
        let ms = |v: u64| format!("{:.3} s", v as f64 / 1000.0);
        let rows: Vec<(&str, String)> = vec![
            (
                "workload",
                format!(
                    "{} writers (set 3 : delete 1), {} readers, {} keys",
                    self.writers, self.readers, self.keys
                ),
            ),
            (
                "duration",
                format!(
                    "{}, fault at {}, side back at {}",
                    ms(self.duration_ms),
                    ms(self.fault_at_ms),
                    ms(self.recovered_at_ms)
                ),
            ),
            ("acked_writes", self.acked_writes.to_string()),
            ("reads", self.reads.to_string()),
            (
                "caller_errors",
                format!(
                    "{} ({} writes, {} reads)",
                    self.caller_errors, self.write_errors, self.read_errors
                ),
            ),
            (
                "queued for the side",
                format!(
                    "{} writes; replayed {}, superseded {}",
                    self.queued_writes, self.replayed, self.superseded
                ),
            ),
            (
                "key scans",
                format!(
                    "{} (divergences {}, keys copied onto the side {})",
                    self.reconciliations, self.divergences, self.reconciled_keys
                ),
            ),
            ("fallback_reads", self.fallback_reads.to_string()),
            (
                "repair_ms",
                self.repair_ms
                    .map_or_else(|| "not in sync".into(), |v| format!("{v} ms")),
            ),
            (
                "latency before fault",
                format!(
                    "p50 {:.2} ms, p99 {:.2} ms",
                    self.p50_before_fault_ms, self.p99_before_fault_ms
                ),
            ),
            (
                "latency during fault",
                format!(
                    "p99 {:.2} ms, max {:.2} ms",
                    self.p99_during_fault_ms, self.max_during_fault_ms
                ),
            ),
            (
                "p99_added_latency_ms",
                format!("{:.2} ms", self.p99_added_latency_ms),
            ),
            (
                "after the repair",
                format!(
                    "{} keys checked: divergent {}, resurrected deletes {}, TTLs extended {}, acked values lost {}",
                    self.keys_checked,
                    self.divergent_keys_after_repair,
                    self.resurrected_deletes,
                    self.ttls_extended,
                    self.lost_acked_writes
                ),
            ),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in &rows {
            let _ = writeln!(s, "  {k:<width$}  {v}");
        }
        let _ = writeln!(s, "\ngoals:");
        for g in &self.goals {
            let mark = if g.met { "✓" } else { "✗" };
            let _ = writeln!(
                s,
                "  {mark} {:<28} target {:<24} actual {}",
                g.name, g.target, g.actual
            );
        }
        list(&mut s, "findings", &self.findings);
        list(&mut s, "errors (first ones)", &self.error_samples);
        let _ = writeln!(s, "\nevents:");
        for e in &self.events {
            let _ = writeln!(
                s,
                "  {:>7.3} s  {:<5} {:<14} {}",
                e.t_ms as f64 / 1000.0,
                e.source,
                e.kind,
                e.detail
            );
        }
        if self.queued_events > 0 {
            let _ = writeln!(s, "  (and {} WriteQueued events)", self.queued_events);
        }
        list(&mut s, "notes", &self.notes);
        s
    }
}

/// A titled list, when it has items.
fn list(s: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n{title}:");
    for item in items {
        let _ = writeln!(s, "  - {item}");
    }
}
