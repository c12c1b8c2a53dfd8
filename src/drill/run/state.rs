//! [`DrillState`]: what the drill's own tasks (the fault injector, the
//! simulated orchestrator, the Sentinel watcher, the fresh pool of
//! `restart-old`, the final checks) share: the cluster, the drill's start
//! and the drill's side of the timeline.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::cluster::DrillCluster;
use crate::drill::report::TimelineEvent;

/// State shared by the drill's tasks.
#[derive(Debug)]
pub(super) struct DrillState<C> {
    /// The cluster under test.
    pub(super) cluster: C,
    /// The drill's start (the workload's time origin).
    pub(super) t0: Instant,
    /// What the drill did, in the order it did it.
    events: Mutex<Vec<TimelineEvent>>,
    fault_at: Mutex<Option<Duration>>,
    fault_done: Mutex<Option<Duration>>,
    /// When the old primary was restarted during the workload.
    restarted_at: Mutex<Option<Duration>>,
    /// Notified once the old primary was restarted during the workload.
    restarted: Notify,
}

impl<C: DrillCluster> DrillState<C> {
    /// The state of a drill on `cluster` that starts now.
    pub(super) fn new(cluster: C) -> Self {
        DrillState {
            cluster,
            t0: Instant::now(),
            events: Mutex::new(Vec::new()),
            fault_at: Mutex::new(None),
            fault_done: Mutex::new(None),
            restarted_at: Mutex::new(None),
            restarted: Notify::new(),
        }
    }

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The old primary's name (node 0).
    pub(super) fn old_primary(&self) -> String {
        self.cluster.name(0)
    }

    /// Records something the drill did to the old primary, now.
    pub(super) fn mark(&self, kind: &str, detail: String) {
        self.mark_node(kind, detail, &self.old_primary());
    }

    /// Records something the drill did to `node`, now.
    pub(super) fn mark_node(&self, kind: &str, detail: String, node: &str) {
        self.record(self.t0.elapsed(), kind, detail, node, "drill");
    }

    /// Records what the drill saw `source` (e.g. `sentinel`) do to `node`, now.
    pub(super) fn mark_seen(&self, source: &str, kind: &str, detail: String, node: &str) {
        self.record(self.t0.elapsed(), kind, detail, node, source);
    }

    fn record(&self, at: Duration, kind: &str, detail: String, node: &str, source: &str) {
        Self::lock(&self.events).push(TimelineEvent {
            t_ms: at.as_millis() as u64,
            kind: kind.to_owned(),
            detail,
            node: Some(node.to_owned()),
            source: source.to_owned(),
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
        self.record(at, kind, detail, &self.old_primary(), "drill");
    }

    /// Moves the end of the fault's injection to now: a graceful stop is
    /// complete only once the server has exited (until then it may still
    /// acknowledge writes).
    pub(super) fn set_fault_done(&self) {
        *Self::lock(&self.fault_done) = Some(self.t0.elapsed());
    }

    /// Records that the old primary was restarted during the workload, now,
    /// and wakes whoever waits for it ([`restart_seen`](Self::restart_seen)).
    pub(super) fn set_restarted(&self) {
        *Self::lock(&self.restarted_at) = Some(self.t0.elapsed());
        self.restarted.notify_one();
    }

    /// When the old primary was restarted during the workload, if it was.
    pub(super) fn restarted_at(&self) -> Option<Duration> {
        *Self::lock(&self.restarted_at)
    }

    /// Waits until the old primary was restarted during the workload.
    pub(super) async fn restart_seen(&self) {
        self.restarted.notified().await;
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
