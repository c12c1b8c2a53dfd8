//! The notes that help reading a drill's report ([`explain`]): what was
//! expected, what a figure means for this store, and which figures do not
//! apply.

use super::options::DrillOptions;
use crate::drill::report::DrillReport;
use crate::drill::scenario::{DrillReadPreference, Fault, Promotion, Store};

/// Adds the notes that help reading a report.
pub(super) fn explain(report: &mut DrillReport, opts: &DrillOptions) {
    let mut notes = Vec::new();
    let old = report.old_primary.clone();
    if opts.fault == Fault::Flap {
        notes.push(format!(
            "flap: {old} was killed and restarted after {} ms (half the {} ms confirmation window); {}",
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
        notes.push(match opts.store {
            Store::Postgres => "asynchronous replication: writes acknowledged by the old primary but not yet \
                 replicated are lost in a failover; run with --sync to require none"
                .to_owned(),
            Store::Redis if opts.fault == Fault::Flap => format!(
                "without persistence {old} came back empty and its replicas resynchronised from it: \
                 every write before the flap is gone (Redis's behaviour, not the pool's; a master \
                 without persistence must not restart by itself)"
            ),
            Store::Redis => "asynchronous replication: writes the old master acknowledged but had not \
                 yet streamed to a replica are lost in a failover; run with --ack 1 to require none"
                .to_owned(),
        });
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
    if opts.store == Store::Redis {
        notes.extend(redis_notes(report, opts));
    }
    report.notes.extend(notes);
}

/// The notes only Redis drills need.
fn redis_notes(report: &DrillReport, opts: &DrillOptions) -> Vec<String> {
    let old = &report.old_primary;
    let mut notes = vec![
        "sync does not apply to Redis (its replication is always asynchronous); \
         ack_replicas says how many replicas each write waited for (WAIT)"
            .to_owned(),
    ];
    if opts.ack > 0 && opts.ack as usize >= opts.replicas && report.promoted {
        notes.push(format!(
            "--ack {} with {} replica(s): after the failover the new master has fewer replicas \
             than each write waits for, so writes fail as unconfirmed; run with --replicas {}",
            opts.ack,
            opts.replicas,
            opts.ack + 1
        ));
    }
    if opts.fault == Fault::Graceful
        && let Some(stopped) = report.events.iter().find(|e| e.kind == "Stopped")
    {
        notes.push(format!(
            "a Redis master stopping gracefully pauses its clients while it waits for its \
             replicas to acknowledge its last offset (they do so once a second): {old} took \
             {} ms to exit; commands sent to it meanwhile hang and fail with the client's \
             response timeout (500 ms) or when it exits",
            stopped.t_ms.saturating_sub(report.fault_at_ms)
        ));
    }
    if opts.promotion == Promotion::Sentinel {
        if report.sentinel_switch_ms.is_none() {
            notes.push("Sentinel did not switch masters during the drill".into());
        }
        if opts.fault == Fault::Blackhole {
            notes.push(format!(
                "the sentinels reach {old} directly, not through the application's proxy: \
                 they see it healthy and do not fail over"
            ));
        }
        if opts.fault == Fault::RestartOld {
            notes.push(format!(
                "Sentinel turns the restarted {old} into a replica of the new master (it \
                 resynchronises, dropping its keys): a write it had taken in between would show \
                 as lost, not as a write to the fenced node"
            ));
        }
    } else if opts.fault == Fault::Blackhole {
        notes.push(format!(
            "the replicas reach {old} directly, not through the application's proxy: the \
             partition is between the application and the master"
        ));
    }
    notes
}
