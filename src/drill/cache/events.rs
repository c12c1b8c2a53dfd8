//! The drill's timeline of events: the cache's own (from
//! [`FailoverCache::subscribe`], `WriteQueued` only counted) and the
//! drill's steps (fault, recovery, end of the load).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::task::JoinHandle;

use super::report::CacheTimelineEvent;
use crate::cache::{CacheEventKind, FailoverCache};

/// Cache events kept in the report (`WriteQueued` are only counted).
const MAX_EVENTS: usize = 500;

/// The cache's events, collected while the drill runs, and the drill's
/// own steps.
pub(super) struct EventLog {
    origin: Instant,
    logged: Arc<Mutex<(Vec<CacheTimelineEvent>, u64)>>,
    task: JoinHandle<()>,
}

impl EventLog {
    pub(super) fn start(cache: &FailoverCache, origin: Instant) -> Self {
        let logged = Arc::new(Mutex::new((Vec::new(), 0u64)));
        let mut rx = cache.subscribe();
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
                match describe(&event.kind) {
                    None => guard.1 += 1,
                    Some(_) if guard.0.len() >= MAX_EVENTS => {}
                    Some((kind, detail)) => guard.0.push(CacheTimelineEvent {
                        t_ms,
                        source: "cache".into(),
                        kind: kind.into(),
                        detail,
                    }),
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
        guard.0.push(CacheTimelineEvent {
            t_ms,
            source: "drill".into(),
            kind: kind.into(),
            detail,
        });
    }

    /// The events in time order and the count of `WriteQueued` events.
    pub(super) fn finish(self) -> (Vec<CacheTimelineEvent>, u64) {
        self.task.abort();
        let mut guard = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        let (mut events, queued) = (std::mem::take(&mut guard.0), guard.1);
        events.sort_by_key(|e| e.t_ms);
        (events, queued)
    }
}

/// An event's kind and details; `None` for `WriteQueued` (only counted).
fn describe(kind: &CacheEventKind) -> Option<(&'static str, String)> {
    Some(match kind {
        CacheEventKind::WriteQueued { .. } => return None,
        CacheEventKind::SideDown { side, reason } => ("SideDown", format!("{side}: {reason}")),
        CacheEventKind::SideUp { side, down_for } => {
            ("SideUp", format!("{side}, down for {down_for:.1?}"))
        }
        CacheEventKind::Divergent {
            side,
            reason,
            dropped,
        } => (
            "Divergent",
            format!("{side}: {reason} ({dropped} queued entries dropped)"),
        ),
        CacheEventKind::InSync { side } => ("InSync", side.to_string()),
        CacheEventKind::Reconciled { report } => (
            "Reconciled",
            format!(
                "scanned {}, copied onto a {} and onto b {} ({} tombstones) in {:.1?}",
                report.scanned,
                report.copied_to_primary,
                report.copied_to_secondary,
                report.tombstones_copied,
                report.duration
            ),
        ),
        CacheEventKind::ReplayRejected { side, key, reason } => {
            ("ReplayRejected", format!("{side}: {key}: {reason}"))
        }
        CacheEventKind::ReadRepaired { side, key } => ("ReadRepaired", format!("{side}: {key}")),
        CacheEventKind::FailSafeServed { key, age } => {
            ("FailSafeServed", format!("{key}, {age:.1?} old"))
        }
    })
}
