//! Following a [`TopologySource`]: the background task that applies each
//! view the source gives to the pool (nodes added and removed, the claimed
//! writer recorded), backing off while the source fails.

use crate::core::events::EventKind;
use crate::error::Result;
use crate::pool::backend::Backend;
use crate::pool::inner::{Inner, Slot};
use crate::pool::node::check_unique;
use crate::pool::source::{TopologySource, TopologyView};
use crate::pool::stats::names;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How long the pool waits before asking a failed source again: doubling
/// from 200 ms up to 10 s.
fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(6);
    Duration::from_millis(200 << exp).min(Duration::from_secs(10))
}

/// Follows a source in the background, applying every view to the pool.
pub(crate) async fn follow<B: Backend>(inner: Weak<Inner<B>>, source: Arc<dyn TopologySource>) {
    let mut failures = 0u32;
    loop {
        let view = source.next_view().await;
        let Some(this) = inner.upgrade() else {
            return;
        };
        match view {
            Ok(view) => {
                failures = 0;
                if let Err(e) = Inner::apply_view(&this, view).await {
                    tracing::warn!(pool = %this.name, source = source.name(), error = %e, "topology view rejected; keeping the current nodes");
                }
            }
            Err(e) => {
                failures += 1;
                let pause = backoff(failures);
                tracing::warn!(pool = %this.name, source = source.name(), error = %crate::error::chain(&e), ?pause, "topology source failed; keeping the current nodes");
                drop(this);
                tokio::time::sleep(pause).await;
            }
        }
    }
}

impl<B: Backend> Inner<B> {
    /// Applies a view: new nodes get a slot (and no traffic until probed),
    /// nodes that are gone (or whose URL changed) are removed and their
    /// pools closed, the claimed writer is recorded, and a probe round is
    /// requested. Nodes that stay keep their slot, connections and callers.
    pub(crate) async fn apply_view(this: &Arc<Self>, view: TopologyView) -> Result<()> {
        check_unique(&view.nodes)?;
        let mut reconciler = this.reconciler.lock().await;
        let current = Arc::clone(&this.routing.load().slots);
        let mut events = Vec::new();
        let now = Instant::now();
        let mut slots: Vec<Arc<Slot<B>>> = Vec::with_capacity(view.nodes.len());
        let mut removed = Vec::new();
        let mut lost_writer = false;
        for slot in current.iter() {
            if view.nodes.contains(&slot.spec) {
                slots.push(Arc::clone(slot));
            } else {
                // The reconciler's node list is aligned with `slots` so far.
                lost_writer |= reconciler.remove(slots.len(), now, &mut events);
                removed.push(Arc::clone(slot));
            }
        }
        let mut added = Vec::new();
        for spec in &view.nodes {
            if slots.iter().any(|s| s.spec.id == spec.id) {
                continue;
            }
            match Self::make_slot(&this.backend, &this.name, spec.clone()) {
                Ok(slot) => {
                    reconciler.add(Arc::clone(&spec.id));
                    added.push(Arc::clone(&spec.id));
                    slots.push(slot);
                }
                Err(e) => {
                    tracing::error!(pool = %this.name, node = %spec.id, error = %e, "node from the topology source skipped");
                }
            }
        }
        let claim_changed = reconciler.set_claim(view.writer.clone());
        let set_changed = !added.is_empty() || !removed.is_empty();
        if !set_changed && !claim_changed {
            return Ok(());
        }
        if set_changed {
            let removed_ids: Vec<Arc<str>> =
                removed.iter().map(|s| Arc::clone(&s.spec.id)).collect();
            tracing::info!(pool = %this.name, ?added, removed = ?removed_ids, "topology source changed the node set");
            reconciler.node_set_changed(&mut events);
            events.push(EventKind::EndpointsChanged {
                added,
                removed: removed_ids,
                updated: Vec::new(),
            });
            metrics::gauge!(names::POOL_NODES, "manager" => this.label.clone())
                .set(slots.len() as f64);
        }
        if claim_changed {
            tracing::info!(pool = %this.name, writer = ?view.writer, "topology source names a writer");
        }
        // The rules run again at once (a claim may take the writer away);
        // the probe round requested below brings the new nodes' roles.
        let mut out = reconciler.reevaluate(now);
        events.append(&mut out.events);
        out.events = events;
        out.promote = None;
        out.writer_changed |= lost_writer;
        let slots: Arc<[Arc<Slot<B>>]> = slots.into();
        this.publish(&reconciler, &slots, &out);
        for slot in removed {
            slot.mark_removed();
            tokio::spawn(this.backend.close_pool(slot.live.load().pool.clone()));
        }
        drop(reconciler);
        this.wake_waiters();
        this.probe_now.notify_one();
        Ok(())
    }
}
