//! The automatic-promotion decision of the [`Reconciler`]: when the
//! confirmation window is over, and which replica to promote.

use super::Reconciler;
use crate::pool::config::PromotionPolicy;
use tokio::time::Instant;

impl Reconciler {
    /// Step 7: whether to promote now (automatic policy, no orchestrator
    /// claim, confirmation window over, not blocked by a failed attempt).
    pub(super) fn promotion_decision(&self, now: Instant) -> Option<usize> {
        match &self.rules.policy {
            PromotionPolicy::Automatic {
                confirmation,
                max_lag_bytes,
            } if self.writer.is_none()
                && self.had_writer
                && self.claim.is_none()
                && self.pending.is_none()
                && self.promotion_blocked_until.is_none_or(|t| now >= t)
                && self
                    .writer_lost_at
                    .is_some_and(|t| now.saturating_duration_since(t) >= *confirmation) =>
            {
                self.promotion_candidate(*max_lag_bytes)
            }
            _ => None,
        }
    }

    /// When the automatic policy's confirmation window ends, while no writer is known.
    pub(crate) fn promotion_due(&self) -> Option<Instant> {
        match &self.rules.policy {
            PromotionPolicy::Automatic { confirmation, .. }
                if self.writer.is_none()
                    && self.had_writer
                    && self.claim.is_none()
                    && self.pending.is_none() =>
            {
                let due = self.writer_lost_at.map(|t| t + *confirmation);
                due.max(self.promotion_blocked_until)
            }
            _ => None,
        }
    }

    /// Whether a reachable node has failed a probe softly (a timeout) and
    /// needs another look soon.
    pub(crate) fn suspect(&self) -> bool {
        self.nodes
            .iter()
            .any(|t| t.status.up && t.soft_failures > 0)
    }

    /// An automatic promotion failed: do not try again before `until`.
    pub(crate) fn promotion_failed(&mut self, until: Instant) {
        self.promotion_blocked_until = Some(until);
    }

    /// The most advanced reachable, unfenced replica within `max_lag_bytes`
    /// of the last position seen on the writer.
    pub(crate) fn promotion_candidate(&self, max_lag_bytes: u64) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                let n = &self.nodes[i].status;
                n.is_replica()
                    && self.last_writer_position.saturating_sub(n.position) <= max_lag_bytes
            })
            .max_by(|&a, &b| {
                // Everything received is replayed on promotion, so the most
                // WAL received wins, then the most replayed. The timeline is
                // left out: for users without `pg_read_all_stats` a standby
                // reports the timeline of its last restartpoint, which lags.
                let key = |i: usize| {
                    let n = &self.nodes[i].status;
                    (n.received.unwrap_or(n.position).max(n.position), n.position)
                };
                // The smallest id wins ties: every application instance
                // sharing the cluster picks the same node.
                key(a)
                    .cmp(&key(b))
                    .then_with(|| self.nodes[b].status.id.cmp(&self.nodes[a].status.id))
            })
    }
}
