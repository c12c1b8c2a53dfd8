//! [`DrillReport`]: what a failover drill measured, how it is computed from
//! the raw records ([`DrillReport::from_records`]), the Jepsen-style set
//! check ([`check_sets`]) and the text rendering
//! ([`DrillReport::render_text`]).
//!
//! # Definitions
//! All times are milliseconds since the drill's start (`t_ms`) or between
//! two instants. The *fault* instant is when the fault took effect (after
//! `SIGKILL`/`SIGSTOP` was delivered or the proxy switched; for a graceful
//! stop, when the shutdown signal was sent).
//!
//! * `detection_ms`: fault → the first `FailoverStarted` event, or
//!   `NodeDown` of the old primary, whichever comes first.
//! * `promotion_ms`: fault → the pool's `Promoted` event (automatic
//!   promotion), or → the pool switching its writer to another node
//!   (external promotion).
//! * `write_gap_ms`: the acknowledgement of the last write acknowledged
//!   before the fault → the first acknowledgement of a write that started
//!   after the fault had been injected completely (writes in flight at the
//!   fault whose answer is processed just after it do not count: they say
//!   nothing about the failover).
//! * `lost_acked_writes`: acknowledged ids missing from the surviving
//!   primary. `unexpected_rows`: ids on it that were never attempted.
//!   `maybe_committed_present`: ids whose attempt failed (outcome unknown
//!   to the caller) but that are on it.
//! * `caller_errors_during_failover`: failed operations (writes and reads)
//!   that *started* after the fault had been injected completely.
//! * `writes_to_fenced_node`: ids present on another primary (the old,
//!   fenced one) but not on the survivor, whose attempt started at or after
//!   the fault: writes that reached the old primary after it was faulted.
//!   `writes_to_fenced_node_after_failover` counts those that started
//!   after the pool had switched to the new writer (a fencing failure
//!   proper; the others were routed before the pool could know).
//! * `ops_per_sec_before`: successful operations per second from the start
//!   to the fault; `ops_per_sec_after`: from the first acknowledged write
//!   started after the fault to the end.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::scenario::{DrillBackend, Fault, Promotion};
use super::workload::{ReadRecord, WriteRecord};

/// Width of a [`TimelineBucket`].
pub const BUCKET: Duration = Duration::from_millis(100);
/// How many lost/unexpected ids a report lists.
const ID_SAMPLE: usize = 20;

/// One event of the drill's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEvent {
    /// Milliseconds since the drill's start.
    pub t_ms: u64,
    /// The event's kind: the pool's event name (`FailoverStarted`,
    /// `NodeDown`, `Promoted`, ...) or, for what the drill itself did,
    /// `Fault`, `OrchestratorPromote`, `Restarted`, `Healed`.
    pub kind: String,
    /// Human-readable details (node names rather than addresses).
    pub detail: String,
    /// The node the event is about (for `TopologyChanged` and
    /// `FailoverFinished`: the new writer), by name (`pg0`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `pool` for the pool's events, `drill` for the drill's actions.
    pub source: String,
}

/// Successful and failed operations in one 100 ms bucket (by end time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TimelineBucket {
    /// Start of the bucket, in milliseconds since the drill's start.
    pub t_ms: u64,
    /// Writes acknowledged in the bucket.
    pub ok_writes: u64,
    /// Reads that succeeded in the bucket.
    pub ok_reads: u64,
    /// Operations (writes and reads) that failed in the bucket.
    pub errors: u64,
}

/// A target the drill checks, and whether it was met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goal {
    /// The measured figure's name (`write_gap_ms`, ...).
    pub name: String,
    /// The target, as text (`<= 500`).
    pub target: String,
    /// The measured value, as text.
    pub actual: String,
    /// Whether the target was met.
    pub met: bool,
}

/// The result of the set check on the surviving primary.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SetCheck {
    /// Writes attempted.
    pub attempted: u64,
    /// Writes acknowledged.
    pub acked: u64,
    /// Acknowledged ids missing from the survivor, ascending.
    pub lost: Vec<i64>,
    /// Ids on the survivor that were never attempted, ascending.
    pub unexpected: Vec<i64>,
    /// Ids whose attempt failed but that are on the survivor.
    pub maybe_committed_present: u64,
}

/// Compares the attempted writes with the ids found on the survivor.
pub fn check_sets(writes: &[WriteRecord], present: &BTreeSet<i64>) -> SetCheck {
    let mut check = SetCheck {
        attempted: writes.len() as u64,
        ..SetCheck::default()
    };
    let mut attempted = BTreeSet::new();
    for w in writes {
        attempted.insert(w.id);
        let here = present.contains(&w.id);
        match (w.is_ok(), here) {
            (true, true) => check.acked += 1,
            (true, false) => {
                check.acked += 1;
                check.lost.push(w.id);
            }
            (false, true) => check.maybe_committed_present += 1,
            (false, false) => {}
        }
    }
    check.lost.sort_unstable();
    check.unexpected = present.difference(&attempted).copied().collect();
    check
}

/// Writes that reached another primary after the fault: ids in `others`
/// but not in `survivor` whose attempt started at or after `fault_at`.
/// Returns (all of them, those started at or after `failover_at`).
pub fn fenced_writes(
    writes: &[WriteRecord],
    fault_at: Duration,
    failover_at: Option<Duration>,
    survivor: &BTreeSet<i64>,
    others: &BTreeSet<i64>,
) -> (u64, u64) {
    let mut all = 0;
    let mut after_failover = 0;
    for w in writes {
        if w.start >= fault_at && others.contains(&w.id) && !survivor.contains(&w.id) {
            all += 1;
            if failover_at.is_some_and(|f| w.start >= f) {
                after_failover += 1;
            }
        }
    }
    (all, after_failover)
}

/// Everything [`DrillReport::from_records`] needs.
#[derive(Debug, Clone)]
pub struct ReportInput<'a> {
    /// The fault injected.
    pub fault: Fault,
    /// Who promoted.
    pub promotion: Promotion,
    /// The client library.
    pub backend: DrillBackend,
    /// Synchronous replication.
    pub sync: bool,
    /// The read preference, as text.
    pub read_preference: String,
    /// Writer and reader task counts.
    pub writers: usize,
    /// Reader task count.
    pub readers: usize,
    /// When the workload was told to stop (since the drill's start);
    /// operations in flight then may end later.
    pub duration: Duration,
    /// When the fault was injected (since the drill's start): taken just
    /// before the signal or mode change.
    pub fault_at: Duration,
    /// When the injection had completed (the signal delivered, the killed
    /// process reaped). A write that started after this cannot have been
    /// acknowledged by the faulted node; `write_gap_ms` ends at the first
    /// such write.
    pub fault_done: Duration,
    /// Every write attempt.
    pub writes: &'a [WriteRecord],
    /// Every read attempt.
    pub reads: &'a [ReadRecord],
    /// The timeline, in time order.
    pub events: Vec<TimelineEvent>,
    /// The name of the primary the fault hit.
    pub old_primary: String,
    /// The name of the primary at the end.
    pub survivor: String,
    /// Ids on the survivor.
    pub survivor_ids: &'a BTreeSet<i64>,
    /// Ids on every other node that reported itself primary at the end.
    pub other_primary_ids: &'a BTreeSet<i64>,
    /// Remarks to pass on (e.g. a node that could not be read).
    pub notes: Vec<String>,
}

/// The outcome of one failover drill (see the [module docs](self) for the
/// definitions). Serializes to the drill's JSON output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    /// The fault injected.
    pub fault: Fault,
    /// Who promoted the new primary.
    pub promotion: Promotion,
    /// The client library.
    pub backend: DrillBackend,
    /// Whether replication was synchronous.
    pub sync: bool,
    /// The read preference of the readers.
    pub read_preference: String,
    /// Writer tasks.
    pub writers: usize,
    /// Reader tasks.
    pub readers: usize,
    /// How long the workload ran.
    pub duration_ms: u64,
    /// When the fault took effect.
    pub fault_at_ms: u64,
    /// Fault → the pool noticed (`FailoverStarted` or `NodeDown` of the old primary).
    pub detection_ms: Option<u64>,
    /// Fault → promotion (the pool's `Promoted`, or its writer change for
    /// external promotion).
    pub promotion_ms: Option<u64>,
    /// Last acknowledged write before the fault → first acknowledged write
    /// started after it.
    pub write_gap_ms: Option<u64>,
    /// When the first write started after the fault was acknowledged
    /// (since the start).
    pub first_write_after_fault_ms: Option<u64>,
    /// Whether a node other than the old primary became the writer.
    pub promoted: bool,
    /// The old primary's name.
    pub old_primary: String,
    /// The primary at the end.
    pub survivor: String,
    /// Writes attempted.
    pub attempted_writes: u64,
    /// Writes acknowledged.
    pub acked_writes: u64,
    /// Acknowledged writes missing from the survivor.
    pub lost_acked_writes: u64,
    /// Up to 20 of the lost ids.
    pub lost_ids: Vec<i64>,
    /// Rows on the survivor that were never attempted.
    pub unexpected_rows: u64,
    /// Failed writes whose row is on the survivor anyway.
    pub maybe_committed_present: u64,
    /// Reads attempted.
    pub attempted_reads: u64,
    /// Failed operations (writes and reads), by error kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Failed writes, by error kind.
    pub write_errors_by_kind: BTreeMap<String, u64>,
    /// Failed reads, by error kind.
    pub read_errors_by_kind: BTreeMap<String, u64>,
    /// Failed operations that started at or after the fault.
    pub caller_errors_during_failover: u64,
    /// Of those, writes.
    pub caller_write_errors_during_failover: u64,
    /// Of those, reads.
    pub caller_read_errors_during_failover: u64,
    /// Reads that did not see their sibling writer's acknowledged write.
    pub stale_reads: u64,
    /// Writes that reached the old primary after the fault and are not on
    /// the survivor.
    pub writes_to_fenced_node: u64,
    /// Of those, the ones started after the pool switched writers.
    pub writes_to_fenced_node_after_failover: u64,
    /// Successful operations per second before the fault.
    pub ops_per_sec_before: f64,
    /// Successful operations per second after the first write after the fault.
    pub ops_per_sec_after: f64,
    /// The drill's and the pool's events.
    pub events: Vec<TimelineEvent>,
    /// Operations per 100 ms bucket.
    pub timeline: Vec<TimelineBucket>,
    /// Targets and whether they were met.
    pub goals: Vec<Goal>,
    /// Remarks (what could not be measured, what was expected).
    pub notes: Vec<String>,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl DrillReport {
    /// Computes the report from the raw records.
    pub fn from_records(input: ReportInput<'_>) -> DrillReport {
        let fault_at = input.fault_at;
        let fault_ms = ms(fault_at);
        // "Started after the fault": after it was completely injected (a
        // write sent while the signal was still being delivered was in
        // flight at the fault).
        let fault_done = input.fault_done.max(fault_at);
        let writes = input.writes;
        let reads = input.reads;
        let after_fault = |t: u64| t >= fault_ms;

        let detection_ms = input
            .events
            .iter()
            .filter(|e| e.source == "pool" && after_fault(e.t_ms))
            .find(|e| {
                e.kind == "FailoverStarted"
                    || (e.kind == "NodeDown" && e.node.as_deref() == Some(&*input.old_primary))
            })
            .map(|e| e.t_ms - fault_ms);
        let writer_switch = input
            .events
            .iter()
            .filter(|e| e.source == "pool" && after_fault(e.t_ms))
            .find(|e| {
                matches!(e.kind.as_str(), "FailoverFinished" | "TopologyChanged")
                    && e.node
                        .as_deref()
                        .is_some_and(|n| n != input.old_primary.as_str())
            })
            .map(|e| e.t_ms);
        let promoted_event = input
            .events
            .iter()
            .filter(|e| e.source == "pool" && after_fault(e.t_ms))
            .find(|e| e.kind == "Promoted")
            .map(|e| e.t_ms);
        let promotion_ms = match input.promotion {
            Promotion::Automatic => promoted_event,
            Promotion::External => writer_switch,
        }
        .map(|t| t - fault_ms);
        let promoted = promoted_event.is_some()
            || writer_switch.is_some()
            || input.survivor != input.old_primary;

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
        let write_gap_ms = first_after.map(|a| ms(a - last_before.unwrap_or(fault_at)));

        let set = check_sets(writes, input.survivor_ids);
        let failover_at = writer_switch.map(Duration::from_millis);
        let (fenced, fenced_after) = fenced_writes(
            writes,
            fault_done,
            failover_at,
            input.survivor_ids,
            input.other_primary_ids,
        );

        let mut errors_by_kind = BTreeMap::new();
        let mut write_errors_by_kind = BTreeMap::new();
        let mut read_errors_by_kind = BTreeMap::new();
        let (mut caller_write_errors, mut caller_read_errors) = (0, 0);
        for (start, kind) in writes
            .iter()
            .filter_map(|w| w.error.as_deref().map(|e| (w.start, e)))
        {
            *errors_by_kind.entry(kind.to_owned()).or_insert(0) += 1;
            *write_errors_by_kind.entry(kind.to_owned()).or_insert(0) += 1;
            if start >= fault_done {
                caller_write_errors += 1;
            }
        }
        for (start, kind) in reads
            .iter()
            .filter_map(|r| r.result.as_ref().err().map(|e| (r.start, e.as_str())))
        {
            *errors_by_kind.entry(kind.to_owned()).or_insert(0) += 1;
            *read_errors_by_kind.entry(kind.to_owned()).or_insert(0) += 1;
            if start >= fault_done {
                caller_read_errors += 1;
            }
        }
        let stale_reads = reads.iter().filter(|r| r.is_stale()).count() as u64;

        let ok_ends = || {
            writes
                .iter()
                .filter(|w| w.is_ok())
                .map(|w| w.end)
                .chain(reads.iter().filter(|r| r.is_ok()).map(|r| r.end))
        };
        let rate = |from: Duration, to: Duration| {
            let secs = to.saturating_sub(from).as_secs_f64();
            if secs <= 0.0 {
                return 0.0;
            }
            let n = ok_ends().filter(|&t| t >= from && t < to).count();
            (n as f64 / secs * 10.0).round() / 10.0
        };
        let ops_per_sec_before = rate(Duration::ZERO, fault_at);
        let ops_per_sec_after = first_after.map_or(0.0, |a| rate(a, input.duration));

        let last_end = writes
            .iter()
            .map(|w| w.end)
            .chain(reads.iter().map(|r| r.end))
            .max()
            .unwrap_or_default()
            .max(input.duration);
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

        let mut report = DrillReport {
            fault: input.fault,
            promotion: input.promotion,
            backend: input.backend,
            sync: input.sync,
            read_preference: input.read_preference,
            writers: input.writers,
            readers: input.readers,
            duration_ms: ms(input.duration),
            fault_at_ms: fault_ms,
            detection_ms,
            promotion_ms,
            write_gap_ms,
            first_write_after_fault_ms: first_after.map(ms),
            promoted,
            old_primary: input.old_primary,
            survivor: input.survivor,
            attempted_writes: set.attempted,
            acked_writes: set.acked,
            lost_acked_writes: set.lost.len() as u64,
            lost_ids: set.lost.iter().take(ID_SAMPLE).copied().collect(),
            unexpected_rows: set.unexpected.len() as u64,
            maybe_committed_present: set.maybe_committed_present,
            attempted_reads: reads.len() as u64,
            errors_by_kind,
            write_errors_by_kind,
            read_errors_by_kind,
            caller_errors_during_failover: caller_write_errors + caller_read_errors,
            caller_write_errors_during_failover: caller_write_errors,
            caller_read_errors_during_failover: caller_read_errors,
            stale_reads,
            writes_to_fenced_node: fenced,
            writes_to_fenced_node_after_failover: fenced_after,
            ops_per_sec_before,
            ops_per_sec_after,
            events: input.events,
            timeline,
            goals: Vec::new(),
            notes: input.notes,
        };
        if !set.unexpected.is_empty() {
            let sample: Vec<i64> = set.unexpected.iter().take(ID_SAMPLE).copied().collect();
            report
                .notes
                .push(format!("unexpected ids on the survivor: {sample:?}"));
        }
        report.goals = goals(&report);
        report
    }

    /// Whether every goal was met.
    pub fn all_goals_met(&self) -> bool {
        self.goals.iter().all(|g| g.met)
    }

    /// The goals that were missed.
    pub fn missed_goals(&self) -> impl Iterator<Item = &Goal> {
        self.goals.iter().filter(|g| !g.met)
    }

    /// A readable multi-line report: settings, figures, goals (✓/✗),
    /// errors by kind and the event timeline.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"));
        let _ = writeln!(
            s,
            "failover drill: postgres, fault {}, {} promotion, {}, {} replication",
            self.fault.as_str(),
            self.promotion.as_str(),
            self.backend.as_str(),
            if self.sync {
                "synchronous"
            } else {
                "asynchronous"
            }
        );
        let setup: Vec<(&str, String)> = vec![
            (
                "workload",
                format!(
                    "{} writers, {} readers ({})",
                    self.writers, self.readers, self.read_preference
                ),
            ),
            (
                "duration",
                format!(
                    "{:.1} s, fault at {:.3} s",
                    self.duration_ms as f64 / 1000.0,
                    self.fault_at_ms as f64 / 1000.0
                ),
            ),
            (
                "primary",
                if self.promoted {
                    format!("{} -> {} (promoted)", self.old_primary, self.survivor)
                } else {
                    format!("{} (no promotion)", self.survivor)
                },
            ),
        ];
        section(&mut s, "", &setup);
        let figures: Vec<(&str, String)> = vec![
            ("detection_ms", opt(self.detection_ms)),
            ("promotion_ms", opt(self.promotion_ms)),
            ("write_gap_ms", opt(self.write_gap_ms)),
            (
                "acked_writes",
                format!(
                    "{} of {} attempted",
                    self.acked_writes, self.attempted_writes
                ),
            ),
            ("lost_acked_writes", self.lost_acked_writes.to_string()),
            ("unexpected_rows", self.unexpected_rows.to_string()),
            (
                "maybe_committed_present",
                self.maybe_committed_present.to_string(),
            ),
            (
                "caller_errors_during_failover",
                format!(
                    "{} ({} writes, {} reads)",
                    self.caller_errors_during_failover,
                    self.caller_write_errors_during_failover,
                    self.caller_read_errors_during_failover
                ),
            ),
            (
                "stale_reads",
                format!("{} of {} reads", self.stale_reads, self.attempted_reads),
            ),
            (
                "writes_to_fenced_node",
                format!(
                    "{} ({} after the writer switch)",
                    self.writes_to_fenced_node, self.writes_to_fenced_node_after_failover
                ),
            ),
            (
                "ops_per_sec_before",
                format!("{:.0}", self.ops_per_sec_before),
            ),
            (
                "ops_per_sec_after",
                format!("{:.0}", self.ops_per_sec_after),
            ),
        ];
        section(&mut s, "Results", &figures);
        if !self.lost_ids.is_empty() {
            let _ = writeln!(
                s,
                "  lost ids (first {}): {:?}",
                self.lost_ids.len(),
                self.lost_ids
            );
        }

        let _ = writeln!(s, "\nGoals");
        let name_w = self.goals.iter().map(|g| g.name.len()).max().unwrap_or(0);
        let target_w = self
            .goals
            .iter()
            .map(|g| g.target.chars().count())
            .max()
            .unwrap_or(0);
        for g in &self.goals {
            let _ = writeln!(
                s,
                "  {} {:<name_w$}  target {:<target_w$}  actual {}",
                if g.met { "✓" } else { "✗" },
                g.name,
                g.target,
                g.actual,
            );
        }
        if self.goals.is_empty() {
            let _ = writeln!(s, "  (none for this fault)");
        }
        let missed = self.missed_goals().count();
        let _ = writeln!(
            s,
            "  => {}",
            if missed == 0 {
                "all goals met".to_owned()
            } else {
                format!("{missed} of {} goals MISSED", self.goals.len())
            }
        );

        let _ = writeln!(s, "\nErrors by kind (all operations)");
        if self.errors_by_kind.is_empty() {
            let _ = writeln!(s, "  none");
        } else {
            let width = self
                .errors_by_kind
                .keys()
                .map(String::len)
                .max()
                .unwrap_or(0);
            let _ = writeln!(
                s,
                "  {:<width$}  {:>7}  {:>7}  {:>7}",
                "kind", "total", "writes", "reads"
            );
            for (kind, total) in &self.errors_by_kind {
                let w = self.write_errors_by_kind.get(kind).copied().unwrap_or(0);
                let r = self.read_errors_by_kind.get(kind).copied().unwrap_or(0);
                let _ = writeln!(s, "  {kind:<width$}  {total:>7}  {w:>7}  {r:>7}");
            }
        }

        let _ = writeln!(s, "\nEvents (time since start, +/- relative to the fault)");
        let kind_w = self.events.iter().map(|e| e.kind.len()).max().unwrap_or(0);
        for e in &self.events {
            let rel = e.t_ms as i64 - self.fault_at_ms as i64;
            let _ = writeln!(
                s,
                "  {:>8.3} s  {:>+7} ms  {:<kind_w$}  {}",
                e.t_ms as f64 / 1000.0,
                rel,
                e.kind,
                e.detail
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s, "\nNotes");
            for n in &self.notes {
                let _ = writeln!(s, "  - {n}");
            }
        }
        s
    }
}

/// Appends an aligned key/value section.
fn section(s: &mut String, title: &str, rows: &[(&str, String)]) {
    if !title.is_empty() {
        let _ = writeln!(s, "\n{title}");
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        let _ = writeln!(s, "  {k:<width$}  {v}");
    }
}

/// The goals that apply to a drill with these settings.
fn goals(r: &DrillReport) -> Vec<Goal> {
    let mut goals = Vec::new();
    let max_gap = match (r.fault, r.promotion) {
        (Fault::Crash, Promotion::Automatic) => Some(500),
        (Fault::Freeze, _) => Some(2000),
        _ => None,
    };
    if let Some(max) = max_gap {
        goals.push(Goal {
            name: "write_gap_ms".into(),
            target: format!("<= {max}"),
            actual: r
                .write_gap_ms
                .map_or_else(|| "no write after the fault".into(), |g| g.to_string()),
            met: r.write_gap_ms.is_some_and(|g| g <= max),
        });
    }
    let zero = |name: &str, value: u64| Goal {
        name: name.into(),
        target: "= 0".into(),
        actual: value.to_string(),
        met: value == 0,
    };
    goals.push(zero(
        "caller_errors_during_failover",
        r.caller_errors_during_failover,
    ));
    if r.sync {
        goals.push(zero("lost_acked_writes", r.lost_acked_writes));
    }
    goals.push(zero("writes_to_fenced_node", r.writes_to_fenced_node));
    goals.push(zero("unexpected_rows", r.unexpected_rows));
    if r.fault == Fault::Flap {
        goals.push(Goal {
            name: "no_promotion".into(),
            target: "no promotion".into(),
            actual: if r.promoted {
                format!("promoted {}", r.survivor)
            } else {
                "no promotion".into()
            },
            met: !r.promoted,
        });
    }
    goals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: i64, ok: bool) -> WriteRecord {
        WriteRecord {
            id,
            writer: 0,
            start: Duration::from_millis(id as u64 * 10),
            end: Duration::from_millis(id as u64 * 10 + 5),
            error: (!ok).then(|| "io".to_owned()),
        }
    }

    #[test]
    fn set_check_classifies() {
        let writes = vec![w(1, true), w(2, true), w(3, false), w(4, false)];
        let present: BTreeSet<i64> = [1, 3, 99].into_iter().collect();
        let c = check_sets(&writes, &present);
        assert_eq!(c.attempted, 4);
        assert_eq!(c.acked, 2);
        assert_eq!(c.lost, vec![2]);
        assert_eq!(c.unexpected, vec![99]);
        assert_eq!(c.maybe_committed_present, 1);
    }

    #[test]
    fn fenced_writes_count_only_after_the_fault() {
        let writes: Vec<_> = (1..=10).map(|i| w(i, true)).collect();
        let survivor: BTreeSet<i64> = (1..=5).collect();
        let others: BTreeSet<i64> = [2, 6, 7, 9].into_iter().collect();
        // Fault at 65 ms: ids 7.. start after it; failover at 85 ms: 9, 10.
        let (all, after) = fenced_writes(
            &writes,
            Duration::from_millis(65),
            Some(Duration::from_millis(85)),
            &survivor,
            &others,
        );
        assert_eq!((all, after), (2, 1));
    }
}
