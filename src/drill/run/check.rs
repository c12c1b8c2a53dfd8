//! The end of a drill: what the primaries hold ([`read_final_data`]: the
//! survivor's records and those of any other primary) and the report built
//! from it and the workload's records ([`build_report`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::cluster::DrillCluster;
use super::fresh::FreshRun;
use super::notes::explain;
use super::options::{DrillError, DrillOptions};
use crate::drill::report::{DrillReport, FreshPoolWrites, ReportInput, TimelineEvent};
use crate::drill::scenario::Store;
use crate::drill::workload::WorkloadRecords;

/// What the primaries hold at the end of the drill. Negative ids are the
/// fresh pool's (fault `restart-old`), kept apart from the workload's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FinalData {
    /// The old primary's name (node 0, the one the fault hit).
    pub(super) old_primary: String,
    /// The surviving primary's name.
    pub(super) survivor: String,
    /// Every workload id on the survivor.
    pub(super) survivor_ids: BTreeSet<i64>,
    /// Every workload id on the other nodes that report themselves primary.
    pub(super) other_primary_ids: BTreeSet<i64>,
    /// The fresh pool's ids on the survivor.
    pub(super) fresh_on_survivor: BTreeSet<i64>,
    /// The fresh pool's ids on the other primaries.
    pub(super) fresh_on_others: BTreeSet<i64>,
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
/// the running primary of the highest rank: timeline or replication
/// offset) and from every other primary. What could not be read is added
/// to `notes`.
///
/// # Errors
///
/// [`DrillError::NoPrimary`] when no node is a primary;
/// [`DrillError::Cluster`] when the survivor cannot be read.
pub(super) async fn read_final_data<C: DrillCluster>(
    cluster: &C,
    writer: Option<usize>,
    notes: &mut Vec<String>,
) -> Result<FinalData, DrillError> {
    let survivor = match writer {
        Some(i) => i,
        None => highest_ranked_primary(cluster, notes).await?,
    };
    let (fresh_on_survivor, survivor_ids) = split_fresh(cluster.ids_on(survivor).await?);
    let (fresh_on_others, other_primary_ids) =
        split_fresh(ids_on_other_primaries(cluster, survivor, notes).await);
    Ok(FinalData {
        old_primary: cluster.name(0),
        survivor: cluster.name(survivor),
        survivor_ids,
        other_primary_ids,
        fresh_on_survivor,
        fresh_on_others,
    })
}

/// (the fresh pool's negative ids, the workload's ids).
fn split_fresh(ids: BTreeSet<i64>) -> (BTreeSet<i64>, BTreeSet<i64>) {
    ids.into_iter().partition(|&id| id < 0)
}

/// The running, unfrozen primary of the highest rank (when the pool had
/// no writer at the end), with a note saying so.
async fn highest_ranked_primary<C: DrillCluster>(
    cluster: &C,
    notes: &mut Vec<String>,
) -> Result<usize, DrillError> {
    let mut best: Option<(i64, usize)> = None;
    for i in 0..cluster.node_count() {
        if !cluster.is_up(i) {
            continue;
        }
        if let Ok(Some(rank)) = cluster.primary_rank(i).await
            && best.is_none_or(|(b, _)| rank > b)
        {
            best = Some((rank, i));
        }
    }
    match best {
        Some((_, i)) => {
            notes.push(format!(
                "the pool had no writer at the end; checked {} ({})",
                cluster.name(i),
                C::RANK
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
async fn ids_on_other_primaries<C: DrillCluster>(
    cluster: &C,
    survivor: usize,
    notes: &mut Vec<String>,
) -> BTreeSet<i64> {
    let mut other_ids = BTreeSet::new();
    for i in 0..cluster.node_count() {
        if i == survivor || !cluster.is_up(i) {
            continue;
        }
        match cluster.primary_rank(i).await {
            Ok(None) => {}
            Ok(Some(_)) => match cluster.ids_on(i).await {
                Ok(ids) => other_ids.extend(ids),
                Err(e) => notes.push(crate::error::chain(&e)),
            },
            Err(e) => notes.push(format!(
                "could not ask {} for its role: {}",
                cluster.name(i),
                crate::error::chain(&e)
            )),
        }
    }
    other_ids
}

/// Computes the report from what the workload recorded and what the
/// primaries hold, and adds the notes that help reading it.
pub(super) fn build_report(
    opts: &DrillOptions,
    records: &WorkloadRecords,
    times: Times,
    data: &FinalData,
    events: Vec<TimelineEvent>,
    mut notes: Vec<String>,
    fresh: Option<FreshRun>,
) -> DrillReport {
    if let Some(error) = fresh.as_ref().and_then(|f| f.error.as_ref()) {
        notes.push(format!("the fresh pool did not write: {error}"));
    }
    let mut report = DrillReport::from_records(ReportInput {
        store: opts.store,
        fault: opts.fault,
        promotion: opts.promotion,
        backend: opts.backend,
        sync: opts.sync,
        ack_replicas: (opts.store == Store::Redis).then_some(opts.ack),
        probe_interval: opts.probe_interval,
        read_preference: opts.read_preference.as_str().to_owned(),
        writers: opts.writers,
        readers: opts.readers,
        duration: times.stopped_at,
        fault_at: times.fault_at,
        fault_done: times.fault_done,
        writes: &records.writes,
        reads: &records.reads,
        events,
        old_primary: data.old_primary.clone(),
        survivor: data.survivor.clone(),
        survivor_ids: &data.survivor_ids,
        other_primary_ids: &data.other_primary_ids,
        fresh_pool: fresh.map(|f| fresh_pool_figures(&f, data)),
        notes,
    });
    report.cluster = opts.cluster;
    report.cluster_detail = cluster_detail(opts);
    explain(&mut report, opts);
    report
}

/// What ran a container cluster: the network mode and the image.
fn cluster_detail(opts: &DrillOptions) -> Option<String> {
    #[cfg(feature = "testcontainers")]
    if opts.cluster == crate::drill::scenario::ClusterKind::Containers {
        let settings = opts.container_settings();
        let image = match opts.store {
            Store::Postgres => settings.pg_image,
            Store::Redis => settings.redis_image,
        };
        return Some(format!(
            "{} network, image {image}",
            settings.network.as_str()
        ));
    }
    let _ = opts;
    None
}

/// Where the fresh pool's writes ended up.
fn fresh_pool_figures(run: &FreshRun, data: &FinalData) -> FreshPoolWrites {
    let mut errors_by_kind = BTreeMap::new();
    for kind in run.writes.iter().filter_map(|w| w.error.as_deref()) {
        *errors_by_kind.entry(kind.to_owned()).or_insert(0) += 1;
    }
    let acked = run.writes.iter().filter(|w| w.is_ok());
    FreshPoolWrites {
        started_ms: run.started.as_millis() as u64,
        writer: run.writer.clone(),
        attempted: run.writes.len() as u64,
        acked: acked.clone().count() as u64,
        errors_by_kind,
        acked_on_survivor: acked
            .filter(|w| data.fresh_on_survivor.contains(&w.id))
            .count() as u64,
        on_other_primary: data.fresh_on_others.len() as u64,
    }
}
