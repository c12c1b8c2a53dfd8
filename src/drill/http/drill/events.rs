//! The HTTP drill's timeline of events: the client's own about the
//! failing backend (health, ejection, breaker, recovery; failovers are
//! only counted) and the drill's steps.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::task::JoinHandle;

use super::report::HttpTimelineEvent;
use crate::core::{EventKind, Failover};

/// Events kept in the report.
const MAX_EVENTS: usize = 500;

/// The collected events and the count of `Failover` events.
type Log = Arc<Mutex<(Vec<HttpTimelineEvent>, u64)>>;

/// Collects events while the drill runs.
pub(super) struct EventLog {
    origin: Instant,
    logged: Log,
    task: JoinHandle<()>,
}

impl EventLog {
    pub(super) fn start(failover: &Failover, target: Arc<str>, origin: Instant) -> Self {
        let logged: Log = Arc::default();
        let mut rx = failover.subscribe();
        let sink = logged.clone();
        let task = tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let event = match rx.recv().await {
                    Ok(e) => e,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                };
                let t_ms = origin.elapsed().as_millis() as u64;
                let mut guard = sink.lock().unwrap_or_else(|p| p.into_inner());
                if matches!(event.kind, EventKind::Failover { .. }) {
                    guard.1 += 1;
                    continue;
                }
                if guard.0.len() >= MAX_EVENTS {
                    continue;
                }
                if let Some((kind, detail)) = describe(&event.kind, &target) {
                    guard.0.push(HttpTimelineEvent {
                        t_ms,
                        source: "client".into(),
                        kind: kind.into(),
                        detail,
                    });
                }
            }
        });
        EventLog {
            origin,
            logged,
            task,
        }
    }

    /// Logs one of the drill's steps.
    pub(super) fn drill(&self, kind: &str, detail: String) {
        let t_ms = self.origin.elapsed().as_millis() as u64;
        let mut guard = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.push(HttpTimelineEvent {
            t_ms,
            source: "drill".into(),
            kind: kind.into(),
            detail,
        });
    }

    /// The events in time order, and how many failovers were seen.
    pub(super) fn finish(self) -> (Vec<HttpTimelineEvent>, u64) {
        self.task.abort();
        let mut guard = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        let (mut events, failovers) = (std::mem::take(&mut guard.0), guard.1);
        events.sort_by_key(|e| e.t_ms);
        (events, failovers)
    }
}

/// An event about `target` as (kind, detail); other endpoints' events and
/// the rest are left out.
fn describe(kind: &EventKind, target: &str) -> Option<(&'static str, String)> {
    let about = |e: &Arc<str>| &**e == target;
    Some(match kind {
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
        _ => return None,
    })
}

/// Whether an event takes the target out of rotation (for `eject_ms`).
pub(super) fn takes_out(e: &HttpTimelineEvent) -> bool {
    e.source == "client"
        && (e.kind == "Ejected"
            || (e.kind == "HealthChanged" && e.detail.ends_with("Unhealthy"))
            || (e.kind == "BreakerStateChanged"
                && e.detail.ends_with("Open")
                && !e.detail.ends_with("HalfOpen")))
}
