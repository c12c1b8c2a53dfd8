//! The end of a drill: what the primaries hold ([`read_final_data`]: the
//! survivor's rows and those of any other primary) and the report built
//! from it and the workload's records ([`build_report`]).

use std::collections::BTreeSet;
use std::time::Duration;

use super::options::{DrillError, DrillOptions, cluster_err};
use crate::drill::report::{DrillReport, ReportInput, TimelineEvent};
use crate::drill::scenario::{DrillReadPreference, Fault};
use crate::drill::workload::{ALL_IDS_SQL, WorkloadRecords};
use crate::drill::{ClusterError, LocalPgCluster};

/// What the primaries hold at the end of the drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FinalData {
    /// The surviving primary's name.
    pub(super) survivor: String,
    /// Every id on the survivor.
    pub(super) survivor_ids: BTreeSet<i64>,
    /// Every id on the other nodes that report themselves primary.
    pub(super) other_primary_ids: BTreeSet<i64>,
}

/// When the drill's workload stopped and its fault happened, since the
/// drill's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Times {
    /// When the workload was told to stop.
    pub(super) stopped_at: Duration,
    /// When the fault was injected.
    pub(super) fault_at: Duration,
    /// When its injection had completed.
    pub(super) fault_done: Duration,
}

/// Reads every id from the surviving primary (the pool's `writer`, else
/// the node out of recovery on the highest timeline) and from every
/// other primary. What could not be read is added to `notes`.
///
/// # Errors
///
/// [`DrillError::NoPrimary`] when no node is a primary;
/// [`DrillError::Cluster`] when the survivor cannot be read.
pub(super) async fn read_final_data(
    cluster: &LocalPgCluster,
    writer: Option<usize>,
    notes: &mut Vec<String>,
) -> Result<FinalData, DrillError> {
    let survivor = match writer {
        Some(i) => i,
        None => highest_timeline_primary(cluster, notes).await?,
    };
    let survivor_ids = ids_on(cluster, survivor).await?;
    let other_primary_ids = ids_on_other_primaries(cluster, survivor, notes).await;
    Ok(FinalData {
        survivor: cluster.node(survivor).name,
        survivor_ids,
        other_primary_ids,
    })
}

/// The running, unfrozen node out of recovery on the highest timeline
/// (when the pool had no writer at the end), with a note saying so.
async fn highest_timeline_primary(
    cluster: &LocalPgCluster,
    notes: &mut Vec<String>,
) -> Result<usize, DrillError> {
    let mut best: Option<(i64, usize)> = None;
    for n in cluster.nodes() {
        if !n.running || n.frozen {
            continue;
        }
        if let Ok(false) = cluster.is_in_recovery(n.index).await
            && let Ok(tl) = cluster.timeline(n.index).await
            && best.is_none_or(|(b, _)| tl > b)
        {
            best = Some((tl, n.index));
        }
    }
    match best {
        Some((_, i)) => {
            notes.push(format!(
                "the pool had no writer at the end; checked {} (highest timeline)",
                cluster.node(i).name
            ));
            Ok(i)
        }
        None => Err(DrillError::NoPrimary(
            "no node is a primary at the end of the drill".into(),
        )),
    }
}

/// Every id on the running, unfrozen nodes other than `survivor` that
/// report themselves primary (a fenced old primary, in a split brain).
async fn ids_on_other_primaries(
    cluster: &LocalPgCluster,
    survivor: usize,
    notes: &mut Vec<String>,
) -> BTreeSet<i64> {
    let mut other_ids = BTreeSet::new();
    for n in cluster.nodes() {
        if n.index == survivor || !n.running || n.frozen {
            continue;
        }
        match cluster.is_in_recovery(n.index).await {
            Ok(true) => {}
            Ok(false) => match ids_on(cluster, n.index).await {
                Ok(ids) => other_ids.extend(ids),
                Err(e) => notes.push(crate::error::chain(&e)),
            },
            Err(e) => notes.push(format!(
                "could not ask {} for its role: {}",
                n.name,
                crate::error::chain(&e)
            )),
        }
    }
    other_ids
}

/// Every id in `drill_writes` on node `index`.
async fn ids_on(cluster: &LocalPgCluster, index: usize) -> Result<BTreeSet<i64>, DrillError> {
    let name = cluster.node(index).name;
    let context = format!("could not read the rows of {name}");
    let client = cluster
        .connect(index)
        .await
        .map_err(cluster_err(&*context))?;
    let limit = Duration::from_secs(30);
    let rows = match tokio::time::timeout(limit, client.query(ALL_IDS_SQL, &[])).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(source)) => {
            return Err(cluster_err(context)(ClusterError::Query {
                node: name,
                sql: ALL_IDS_SQL.to_owned(),
                source,
            }));
        }
        Err(_) => {
            return Err(cluster_err(context)(ClusterError::QueryTimeout {
                node: name,
                sql: ALL_IDS_SQL.to_owned(),
                timeout: limit,
            }));
        }
    };
    Ok(rows.iter().map(|r| r.get::<_, i64>(0)).collect())
}

/// Computes the report from what the workload recorded and what the
/// primaries hold, and adds the notes that help reading it.
pub(super) fn build_report(
    opts: &DrillOptions,
    records: &WorkloadRecords,
    times: Times,
    data: &FinalData,
    events: Vec<TimelineEvent>,
    notes: Vec<String>,
) -> DrillReport {
    let mut report = DrillReport::from_records(ReportInput {
        fault: opts.fault,
        promotion: opts.promotion,
        backend: opts.backend,
        sync: opts.sync,
        read_preference: opts.read_preference.as_str().to_owned(),
        writers: opts.writers,
        readers: opts.readers,
        duration: times.stopped_at,
        fault_at: times.fault_at,
        fault_done: times.fault_done,
        writes: &records.writes,
        reads: &records.reads,
        events,
        old_primary: "pg0".to_owned(),
        survivor: data.survivor.clone(),
        survivor_ids: &data.survivor_ids,
        other_primary_ids: &data.other_primary_ids,
        notes,
    });
    explain(&mut report, opts);
    report
}

/// Adds the notes that help reading a report.
fn explain(report: &mut DrillReport, opts: &DrillOptions) {
    let mut notes = Vec::new();
    if opts.fault == Fault::Flap {
        notes.push(format!(
            "flap: pg0 was killed and restarted after {} ms (half the {} ms confirmation window); {}",
            opts.confirmation.as_millis() / 2,
            opts.confirmation.as_millis(),
            if report.promoted {
                "the pool promoted anyway (the restart took longer than the window)"
            } else {
                "no promotion happened, as intended"
            }
        ));
    }
    if report.lost_acked_writes > 0 && !report.sync {
        notes.push(
            "asynchronous replication: writes acknowledged by the old primary but not yet \
             replicated are lost in a failover; run with --sync to require none"
                .into(),
        );
    }
    if report.stale_reads > 0 && opts.read_preference != DrillReadPreference::Primary {
        notes.push(format!(
            "stale reads are expected with {} (replicas lag a little behind the writer)",
            opts.read_preference.as_str()
        ));
    }
    if report.writes_to_fenced_node > report.writes_to_fenced_node_after_failover {
        notes.push(format!(
            "{} writes started after the fault but before the pool switched writers reached \
             the old primary (sent to it before the fault was detected; the callers got errors)",
            report.writes_to_fenced_node - report.writes_to_fenced_node_after_failover
        ));
    }
    if report.write_gap_ms.is_none() {
        notes.push("no write was acknowledged after the fault".into());
    }
    report.notes.extend(notes);
}
