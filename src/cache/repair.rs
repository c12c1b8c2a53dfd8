//! Each side's repair loop: while the side is down, a `PING` every health
//! interval; once it answers, the side is used again, a key scan runs if
//! the side is divergent (or came back with another data set), and its
//! queue is replayed by compare-and-set in pipelines, at most
//! `queue.replay_rate` entries a second. The loop holds only a weak
//! reference to the cache between steps, so dropping the cache ends it.

use super::Inner;
use super::entry::CasReply;
use super::events::CacheEventKind;
use super::queue::{Pending, Pushed};
use super::side::{Side, is_outage};
use super::version::wall_millis;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// Runs side `index`'s repair loop until the cache is dropped or closed.
pub(crate) async fn run(weak: Weak<Inner>, index: usize) {
    let (wake, interval) = match weak.upgrade() {
        Some(inner) => (
            Arc::clone(&inner.sides[index].wake),
            inner.config.health_interval,
        ),
        None => return,
    };
    let mut lagging = false;
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(interval) => {}
        }
        let Some(inner) = weak.upgrade() else {
            return;
        };
        if inner.is_closed() {
            return;
        }
        let side = &inner.sides[index];
        lagging |= side.lagging() || !side.is_up();
        let more = inner.repair_step(index).await;
        if lagging && side.is_up() && !side.lagging() {
            lagging = false;
            inner.events.emit(CacheEventKind::InSync {
                side: Arc::clone(&side.name),
            });
        }
        if more {
            wake.notify_one();
        }
    }
}

impl Inner {
    /// One step of the loop; `true` when there is more to replay now.
    async fn repair_step(self: &Arc<Self>, index: usize) -> bool {
        let side = &self.sides[index];
        if !side.is_up() {
            if side.ping().await.is_err() {
                return false;
            }
            side.mark_up();
        }
        side.check_identity();
        let expired = side.queue.sweep_expired(wall_millis());
        if expired > 0 {
            side.counters.expired.add(expired as u64);
            side.update_gauges();
        }
        if side.divergent()
            && let Err(e) = self.reconcile_due(index).await
        {
            tracing::warn!(side = %side.name, error = %crate::error::chain(&e), "cache key scan failed");
            return false;
        }
        if side.queue.len() == 0 || !side.available() {
            return false;
        }
        self.replay_batch(side).await
    }

    /// Replays one batch of the side's queue, then waits out the rate.
    async fn replay_batch(&self, side: &Side) -> bool {
        let started = Instant::now();
        let batch = side.queue.take(self.config.queue.replay_batch);
        side.update_gauges();
        if batch.is_empty() {
            return false;
        }
        let taken = batch.len();
        let sent = {
            let items: Vec<(&[u8], &[u8], u64)> = batch
                .iter()
                .map(|p| (&p.key[..], &p.entry[..], p.expires_at))
                .collect();
            side.cas_many(&self.script, &items).await
        };
        let replies = match sent {
            Ok(replies) => replies,
            Err(_) => {
                // Down again (marked so): everything goes back.
                for p in batch {
                    requeue(side, p);
                }
                return false;
            }
        };
        let mut down = false;
        for (p, reply) in batch.into_iter().zip(replies) {
            match reply {
                Ok(CasReply::Written | CasReply::Removed) => side.counters.replayed.inc(),
                Ok(CasReply::Kept | CasReply::Exists) => side.counters.superseded.inc(),
                Err(e) if is_outage(&e) => {
                    down = true;
                    requeue(side, p);
                }
                Err(e) => {
                    side.counters.rejected.inc();
                    tracing::warn!(side = %side.name, error = %e, "cache replay rejected");
                    self.events.emit(CacheEventKind::ReplayRejected {
                        side: Arc::clone(&side.name),
                        key: String::from_utf8_lossy(&p.key).into_owned(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        if down {
            side.mark_down(|| "a replayed write failed".to_owned());
        }
        side.update_gauges();
        self.pace(taken, started).await;
        !down && side.queue.len() > 0
    }

    /// Sleeps so that `count` entries since `started` stay within the rate.
    pub(crate) async fn pace(&self, count: usize, started: Instant) {
        let rate = f64::from(self.config.queue.replay_rate.max(1));
        let budget = Duration::from_secs_f64(count as f64 / rate);
        if let Some(rest) = budget.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
}

/// Puts a replay that did not reach the side back, unless a newer write
/// of the key was queued meanwhile.
fn requeue(side: &Side, p: Pending) {
    if side.queue.push(p) == Pushed::Overflow {
        side.counters.dropped_overflow.inc();
        side.diverge("its repair queue is full", true);
    }
}
