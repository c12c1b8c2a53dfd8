//! What the HTTP drill logs of the client's events: what happens to the
//! failing backend (health, ejection, breaker, recovery) and panic mode;
//! failovers only counted.

use std::sync::Arc;

use crate::core::{Event, EventKind};
use crate::drill::event_log::{Logged, LoggedEvent};

/// What the drill logs of a client event: what happened to `target`
/// (health, ejection, breaker, recovery) and panic mode; failovers are only
/// counted, the rest left out.
pub(super) fn describe(event: &Event, target: &str) -> Logged {
    let about = |e: &Arc<str>| &**e == target;
    let (kind, detail) = match &event.kind {
        EventKind::Failover { .. } => return Logged::Count,
        EventKind::HealthChanged { endpoint, from, to } if about(endpoint) => {
            ("HealthChanged", format!("{endpoint}: {from:?} -> {to:?}"))
        }
        EventKind::Ejected {
            endpoint,
            duration,
            ejections,
        } if about(endpoint) => (
            "Ejected",
            format!("{endpoint} for {duration:.1?} (ejection {ejections})"),
        ),
        EventKind::Unejected { endpoint } if about(endpoint) => ("Unejected", endpoint.to_string()),
        EventKind::BreakerStateChanged { endpoint, from, to } if about(endpoint) => (
            "BreakerStateChanged",
            format!("{endpoint}: {from:?} -> {to:?}"),
        ),
        EventKind::Recovered { endpoint } if about(endpoint) => ("Recovered", endpoint.to_string()),
        EventKind::PanicMode { on } => ("PanicMode", format!("on: {on}")),
        _ => return Logged::Skip,
    };
    Logged::Keep(kind, detail)
}

/// Whether an event takes the target out of rotation (for `eject_ms`).
pub(super) fn takes_out(e: &LoggedEvent) -> bool {
    e.source == "client"
        && (e.kind == "Ejected"
            || (e.kind == "HealthChanged" && e.detail.ends_with("Unhealthy"))
            || (e.kind == "BreakerStateChanged"
                && e.detail.ends_with("Open")
                && !e.detail.ends_with("HalfOpen")))
}
