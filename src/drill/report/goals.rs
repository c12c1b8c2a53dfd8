//! The goals a drill is held to ([`goals`]): which targets apply to which
//! store, fault and promotion, and whether the report meets them.

use super::{DrillReport, Goal};
use crate::drill::scenario::{Fault, Promotion};

/// The goals that apply to a drill with these settings.
pub(super) fn goals(r: &DrillReport) -> Vec<Goal> {
    let mut goals = Vec::new();
    goals.extend(gap_goal(r));
    let zero = Goal::zero;
    goals.push(zero(
        "caller_errors_during_failover",
        r.caller_errors_during_failover,
    ));
    if no_acknowledged_write_may_be_lost(r) {
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
    if let Some(fresh) = &r.fresh_pool {
        goals.push(zero(
            "fresh_pool_writes_to_old_primary",
            fresh.on_other_primary,
        ));
        goals.push(Goal {
            name: "fresh_pool_acked_on_survivor".into(),
            target: "every write, at least one".into(),
            actual: format!(
                "{} of {} attempted",
                fresh.acked_on_survivor, fresh.attempted
            ),
            met: fresh.acked_on_survivor > 0 && fresh.acked_on_survivor == fresh.attempted,
        });
    }
    goals
}

/// The write-gap target: 500 ms for a crash with automatic promotion, 2 s
/// for a freeze; with Sentinel, Sentinel's own switch plus one probe
/// interval (when Sentinel switched at all).
fn gap_goal(r: &DrillReport) -> Option<Goal> {
    let (max, target) = match (r.promotion, r.fault) {
        (Promotion::Sentinel, _) => {
            let switch = r.sentinel_switch_ms?;
            let max = switch + r.probe_interval_ms;
            let target = format!(
                "<= {max} (Sentinel's switch {switch} + probe interval {})",
                r.probe_interval_ms
            );
            (max, target)
        }
        (Promotion::Automatic, Fault::Crash) => (500, "<= 500".to_owned()),
        (_, Fault::Freeze) => (2000, "<= 2000".to_owned()),
        _ => return None,
    };
    Some(Goal {
        name: "write_gap_ms".into(),
        target,
        actual: r
            .write_gap_ms
            .map_or_else(|| "no write after the fault".into(), |g| g.to_string()),
        met: r.write_gap_ms.is_some_and(|g| g <= max),
    })
}

/// Whether no acknowledged write may be lost: synchronous replication
/// (Postgres), or writes that waited for a replica (Redis `--ack`), except
/// for a flap: a Redis master restarted without persistence comes back
/// empty and its replicas resynchronise from it, losing everything.
fn no_acknowledged_write_may_be_lost(r: &DrillReport) -> bool {
    r.sync || (r.ack_replicas.is_some_and(|n| n > 0) && r.fault != Fault::Flap)
}
