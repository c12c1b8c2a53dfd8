//! A drill's timeline: [`LoggedEvent`]s collected while it runs from the
//! event stream of the library under test (a cache's, an HTTP client's)
//! and from the drill's own steps; written once for the cache and HTTP
//! drills.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// Events kept in a report (the rest are counted, not kept).
const MAX_EVENTS: usize = 500;

/// One event on a drill's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedEvent {
    /// ms since the load started.
    pub t_ms: u64,
    /// `drill`, or who emitted it (`cache`, `client`).
    pub source: String,
    /// The event's kind (`fault`, `SideDown`, `Ejected`, ...).
    pub kind: String,
    /// Details.
    pub detail: String,
}

/// What to do with one event of the stream.
pub(crate) enum Logged {
    /// Keep it, with this kind and these details.
    Keep(&'static str, String),
    /// Only count it (frequent events: a queued write, a failover).
    Count,
    /// Leave it out.
    Skip,
}

/// The events collected so far and the count of those only counted.
type Log = Arc<Mutex<(Vec<LoggedEvent>, u64)>>;

/// Collects a drill's events while it runs.
pub(crate) struct EventLog {
    origin: Instant,
    logged: Log,
    task: JoinHandle<()>,
}

impl EventLog {
    /// Starts collecting from `rx`, each event judged by `describe` and
    /// logged as coming from `source`.
    pub(crate) fn start<E: Clone + Send + 'static>(
        mut rx: broadcast::Receiver<E>,
        origin: Instant,
        source: &'static str,
        describe: impl Fn(&E) -> Logged + Send + 'static,
    ) -> Self {
        let logged: Log = Arc::default();
        let sink = Arc::clone(&logged);
        let task = tokio::spawn(async move {
            use broadcast::error::RecvError;
            loop {
                let event = match rx.recv().await {
                    Ok(e) => e,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                };
                let t_ms = origin.elapsed().as_millis() as u64;
                let mut guard = sink.lock().unwrap_or_else(|p| p.into_inner());
                match describe(&event) {
                    Logged::Count => guard.1 += 1,
                    Logged::Keep(kind, detail) if guard.0.len() < MAX_EVENTS => {
                        guard.0.push(LoggedEvent {
                            t_ms,
                            source: source.into(),
                            kind: kind.into(),
                            detail,
                        });
                    }
                    Logged::Keep(..) | Logged::Skip => {}
                }
            }
        });
        EventLog {
            origin,
            logged,
            task,
        }
    }

    /// Logs one of the drill's own steps.
    pub(crate) fn drill(&self, kind: &str, detail: String) {
        let t_ms = self.origin.elapsed().as_millis() as u64;
        let mut guard = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.push(LoggedEvent {
            t_ms,
            source: "drill".into(),
            kind: kind.into(),
            detail,
        });
    }

    /// The events in time order, and how many were only counted.
    pub(crate) fn finish(self) -> (Vec<LoggedEvent>, u64) {
        self.task.abort();
        let mut guard = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        let (mut events, counted) = (std::mem::take(&mut guard.0), guard.1);
        events.sort_by_key(|e| e.t_ms);
        (events, counted)
    }
}
