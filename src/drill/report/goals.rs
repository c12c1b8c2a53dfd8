//! The goals a drill is held to ([`goals`]): which targets apply to which
//! fault and promotion, and whether the report meets them.

use super::{DrillReport, Goal};
use crate::drill::scenario::{Fault, Promotion};

/// The goals that apply to a drill with these settings.
pub(super) fn goals(r: &DrillReport) -> Vec<Goal> {
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
