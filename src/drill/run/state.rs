//! [`DrillState`]: what the drill's own tasks (the fault injector, the
//! simulated orchestrator, the final checks) share: the cluster, the
//! drill's start and the drill's side of the timeline.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::drill::LocalPgCluster;
use crate::drill::report::TimelineEvent;

/// State shared by the drill's tasks.
#[derive(Debug)]
pub(super) struct DrillState {
    /// The cluster under test.
    pub(super) cluster: LocalPgCluster,
    /// The drill's start (the workload's time origin).
    pub(super) t0: Instant,
    /// What the drill did, in the order it did it.
    events: Mutex<Vec<TimelineEvent>>,
    fault_at: Mutex<Option<Duration>>,
    fault_done: Mutex<Option<Duration>>,
}

impl DrillState {
    /// The state of a drill on `cluster` that starts now.
    pub(super) fn new(cluster: LocalPgCluster) -> Self {
        DrillState {
            cluster,
            t0: Instant::now(),
            events: Mutex::new(Vec::new()),
            fault_at: Mutex::new(None),
            fault_done: Mutex::new(None),
        }
    }

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records something the drill did to `pg0`, now.
    pub(super) fn mark(&self, kind: &str, detail: String) {
        self.mark_node(kind, detail, "pg0");
    }

    /// Records something the drill did to `node`, now.
    pub(super) fn mark_node(&self, kind: &str, detail: String, node: &str) {
        Self::lock(&self.events).push(TimelineEvent {
            t_ms: self.t0.elapsed().as_millis() as u64,
            kind: kind.to_owned(),
            detail,
            node: Some(node.to_owned()),
            source: "drill".to_owned(),
        });
    }

    /// When the fault was injected, once it was.
    pub(super) fn fault_at(&self) -> Option<Duration> {
        *Self::lock(&self.fault_at)
    }

    /// When the fault's injection had completed, once it had.
    pub(super) fn fault_done(&self) -> Option<Duration> {
        *Self::lock(&self.fault_done)
    }

    /// Records the fault as happening at `at` (drill time taken just before
    /// the signal or mode change, so that a pool reacting while the fault
    /// is still being injected is not measured as reacting before it).
    pub(super) fn set_fault(&self, at: Duration, kind: &str, detail: String) {
        *Self::lock(&self.fault_at) = Some(at);
        *Self::lock(&self.fault_done) = Some(self.t0.elapsed());
        Self::lock(&self.events).push(TimelineEvent {
            t_ms: at.as_millis() as u64,
            kind: kind.to_owned(),
            detail,
            node: Some("pg0".to_owned()),
            source: "drill".to_owned(),
        });
    }

    /// The whole timeline: the drill's events and then `pool`'s, in time
    /// order (the drill's first at equal times).
    pub(super) fn timeline(&self, pool: Vec<TimelineEvent>) -> Vec<TimelineEvent> {
        let mut events = std::mem::take(&mut *Self::lock(&self.events));
        events.extend(pool);
        events.sort_by_key(|e| e.t_ms);
        events
    }
}
