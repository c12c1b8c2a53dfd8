//! The background prober: one probe round every `probe_interval` (faster
//! while no writer is known), at once (coalesced) when a caller reports a
//! failover-class error, and exactly when the confirmation window of an
//! automatic promotion ends.

use crate::pool::backend::Backend;
use crate::pool::inner::Inner;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// While no writer is known, rounds come at least this often.
const FAST_INTERVAL: Duration = Duration::from_millis(100);

/// Holds only a weak reference to the pool between rounds, so dropping the
/// last pool handle stops it.
pub(crate) struct Prober<B: Backend> {
    pub(crate) inner: Weak<Inner<B>>,
    pub(crate) probe_now: Arc<Notify>,
}

impl<B: Backend> Prober<B> {
    pub(crate) async fn run(self) {
        let mut last_round = Instant::now();
        let mut due: Option<Instant> = None;
        loop {
            let Some(inner) = self.inner.upgrade() else {
                return;
            };
            let (wait, gap) = Self::next_wait(&inner, due);
            drop(inner);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.probe_now.notified() => {
                    tokio::time::sleep_until(last_round + gap).await;
                }
            }
            let Some(inner) = self.inner.upgrade() else {
                return;
            };
            if inner.closed.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            due = Inner::probe_round(&inner).await;
            last_round = Instant::now();
        }
    }

    /// How long to sleep before the next round, and the least gap between
    /// two rounds asked for by failing callers (at most one round per gap,
    /// however many errors arrive).
    fn next_wait(inner: &Inner<B>, due: Option<Instant>) -> (Duration, Duration) {
        let interval = inner.config.probe_interval;
        let mut wait = if inner.routing.load().topology.writer.is_none() {
            interval.min(FAST_INTERVAL)
        } else {
            interval
        };
        let gap = (interval / 4).min(Duration::from_millis(25));
        // Wake up exactly when the confirmation window ends, or at once
        // (after the coalescing gap) when a node needs another look.
        if let Some(d) = due {
            wait = wait.min(d.saturating_duration_since(Instant::now()).max(gap));
        }
        (wait, gap)
    }
}
