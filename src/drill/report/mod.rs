//! [`DrillReport`]: what a failover drill measured, how it is computed from
//! the raw records ([`DrillReport::from_records`]: one measurement per
//! function in `measure.rs`), the Jepsen-style set check ([`check_sets`],
//! `sets.rs`), the goals (`goals.rs`) and the text rendering
//! ([`DrillReport::render_text`], `text.rs`).
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
//!   nothing about the failover). A graceful stop is complete when the
//!   server has exited: until then it may still serve some writes.
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
//! * `sentinel_switch_ms` (Sentinel promotion): fault → the first sentinel
//!   naming another master (`SentinelSwitched`, polled by the drill);
//!   `pool_after_sentinel_ms`: that instant → the pool's writer switch
//!   (negative when the pool saw the promoted master first).
//! * `fresh_pool` (fault `restart-old`): what a pool started when the old
//!   primary came back wrote, and where those writes ended up
//!   ([`FreshPoolWrites`]).

mod goals;
mod measure;
mod sets;
mod text;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use self::goals::goals;
use self::measure::{ErrorTally, Milestones, WriteGap, ms, ops_rate, timeline};
pub use self::sets::{SetCheck, check_sets, fenced_writes};
use super::scenario::{ClusterKind, DrillBackend, Fault, Promotion, Store};
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

impl Goal {
    /// A goal that `value` of the figure `name` be 0.
    pub fn zero(name: &str, value: u64) -> Goal {
        Goal {
            name: name.into(),
            target: "= 0".into(),
            actual: value.to_string(),
            met: value == 0,
        }
    }
}

/// Fault `restart-old`: the writes of a fresh pool started when the old
/// primary came back, and where they ended up. Their ids are negative, so
/// the workload's set check does not see them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FreshPoolWrites {
    /// When the fresh pool was started (the old primary's restart), since
    /// the drill's start.
    pub started_ms: u64,
    /// The writer it chose, by node name (`None`: it found none).
    pub writer: Option<String>,
    /// Writes attempted through it.
    pub attempted: u64,
    /// Writes it had acknowledged.
    pub acked: u64,
    /// Its failed writes, by error kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Its acknowledged writes found on the survivor.
    pub acked_on_survivor: u64,
    /// Its writes (acknowledged or not) found on another primary: the
    /// restarted old one.
    pub on_other_primary: u64,
}

/// Everything [`DrillReport::from_records`] needs.
#[derive(Debug, Clone)]
pub struct ReportInput<'a> {
    /// The store drilled.
    pub store: Store,
    /// The fault injected.
    pub fault: Fault,
    /// Who promoted.
    pub promotion: Promotion,
    /// The client library.
    pub backend: DrillBackend,
    /// Synchronous replication.
    pub sync: bool,
    /// Redis: the replicas each write waited for (`WAIT`; 0: plain
    /// writes); `None` for Postgres.
    pub ack_replicas: Option<u32>,
    /// The pool's probe interval.
    pub probe_interval: Duration,
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
    /// process reaped; for a graceful stop, the server exited). A write
    /// that started after this cannot have been acknowledged by the
    /// faulted node; `write_gap_ms` ends at the first such write.
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
    /// Fault `restart-old`: the fresh pool's writes.
    pub fresh_pool: Option<FreshPoolWrites>,
    /// Remarks to pass on (e.g. a node that could not be read).
    pub notes: Vec<String>,
}

/// The outcome of one failover drill (see the [module docs](self) for the
/// definitions). Serializes to the drill's JSON output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    /// The store drilled (reports from before Redis drills: Postgres).
    #[serde(default)]
    pub store: Store,
    /// Where the cluster ran (reports from before container drills: local).
    #[serde(default)]
    pub cluster: ClusterKind,
    /// What ran the cluster: for containers the network mode and image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_detail: Option<String>,
    /// The fault injected.
    pub fault: Fault,
    /// Who promoted the new primary.
    pub promotion: Promotion,
    /// The client library.
    pub backend: DrillBackend,
    /// Whether replication was synchronous.
    pub sync: bool,
    /// Redis: the replicas each write waited for (`WAIT`; 0: plain
    /// writes). Absent for Postgres (see `sync`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_replicas: Option<u32>,
    /// The pool's probe interval.
    #[serde(default)]
    pub probe_interval_ms: u64,
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
    /// Sentinel promotion: fault → the first sentinel naming the new master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel_switch_ms: Option<u64>,
    /// Sentinel promotion: Sentinel's switch → the pool's writer switch
    /// (negative when the pool was first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_after_sentinel_ms: Option<i64>,
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
    /// Fault `restart-old`: the writes of a pool started when the old
    /// primary came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh_pool: Option<FreshPoolWrites>,
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

impl DrillReport {
    /// Computes the report from the raw records.
    pub fn from_records(input: ReportInput<'_>) -> DrillReport {
        let fault_at = input.fault_at;
        // "Started after the fault": after it was completely injected (a
        // write sent while the signal was still being delivered was in
        // flight at the fault).
        let fault_done = input.fault_done.max(fault_at);
        let (writes, reads) = (input.writes, input.reads);

        let milestones = Milestones::find(&input.events, fault_at, &input.old_primary);
        let gap = WriteGap::measure(writes, fault_at, fault_done);
        let set = check_sets(writes, input.survivor_ids);
        let (fenced, fenced_after) = fenced_writes(
            writes,
            fault_done,
            milestones.writer_switch.map(Duration::from_millis),
            input.survivor_ids,
            input.other_primary_ids,
        );
        let errors = ErrorTally::count(writes, reads, fault_done);
        let ops_per_sec_before = ops_rate(writes, reads, Duration::ZERO, fault_at);
        let ops_per_sec_after = gap
            .first_after
            .map_or(0.0, |a| ops_rate(writes, reads, a, input.duration));

        let mut report = DrillReport {
            store: input.store,
            cluster: ClusterKind::Local,
            cluster_detail: None,
            fault: input.fault,
            promotion: input.promotion,
            backend: input.backend,
            sync: input.sync,
            ack_replicas: input.ack_replicas,
            probe_interval_ms: ms(input.probe_interval),
            read_preference: input.read_preference,
            writers: input.writers,
            readers: input.readers,
            duration_ms: ms(input.duration),
            fault_at_ms: ms(fault_at),
            detection_ms: milestones.detection_ms,
            promotion_ms: milestones.promotion_ms(input.promotion),
            write_gap_ms: gap.gap_ms,
            first_write_after_fault_ms: gap.first_after.map(ms),
            sentinel_switch_ms: milestones.sentinel_switch_ms(),
            pool_after_sentinel_ms: milestones.pool_after_sentinel_ms(),
            promoted: milestones.promoted() || input.survivor != input.old_primary,
            old_primary: input.old_primary,
            survivor: input.survivor,
            attempted_writes: set.attempted,
            acked_writes: set.acked,
            lost_acked_writes: set.lost.len() as u64,
            lost_ids: set.lost.iter().take(ID_SAMPLE).copied().collect(),
            unexpected_rows: set.unexpected.len() as u64,
            maybe_committed_present: set.maybe_committed_present,
            attempted_reads: reads.len() as u64,
            errors_by_kind: errors.all,
            write_errors_by_kind: errors.writes,
            read_errors_by_kind: errors.reads,
            caller_errors_during_failover: errors.caller_writes + errors.caller_reads,
            caller_write_errors_during_failover: errors.caller_writes,
            caller_read_errors_during_failover: errors.caller_reads,
            stale_reads: reads.iter().filter(|r| r.is_stale()).count() as u64,
            writes_to_fenced_node: fenced,
            writes_to_fenced_node_after_failover: fenced_after,
            fresh_pool: input.fresh_pool,
            ops_per_sec_before,
            ops_per_sec_after,
            events: input.events,
            timeline: timeline(writes, reads, input.duration),
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

    /// How writes were replicated, for headings: Postgres `synchronous` /
    /// `asynchronous replication`; Redis `asynchronous replication` with
    /// the replicas each write waited for.
    pub fn replication_label(&self) -> String {
        let mode = if self.sync {
            "synchronous"
        } else {
            "asynchronous"
        };
        match self.ack_replicas {
            Some(0) => format!("{mode} replication, plain writes"),
            Some(n) => format!("{mode} replication, writes WAIT for {n} replica(s)"),
            None => format!("{mode} replication"),
        }
    }
}
