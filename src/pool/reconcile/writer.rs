//! The writer rules of the [`Reconciler`]: fencing stale primaries (older
//! epoch, superseded replication history), electing the writer, the
//! promotion reservation, and resolving a split brain.

use super::{Outcome, Reconciler};
use crate::core::endpoint::Role;
use crate::core::events::EventKind;
use std::sync::Arc;
use tokio::time::Instant;

impl Reconciler {
    /// Step 2: a primary on an older epoch than the highest seen, or on a
    /// replication history another node continued from at a promotion, is
    /// fenced; a fenced node that reports itself a replica is unfenced.
    pub(super) fn fence_stale_primaries(&mut self, out: &mut Outcome) {
        let highest = self.highest_epoch;
        let superseded = &self.superseded;
        for n in self.nodes.iter_mut().map(|t| &mut t.status) {
            if !n.up {
                continue;
            }
            match n.role {
                Some(Role::Primary) if !n.fenced => {
                    let reason = if n.epoch < highest {
                        format!(
                            "reports primary on epoch {} but epoch {highest} exists",
                            n.epoch
                        )
                    } else if let Some(l) =
                        n.lineage.as_ref().filter(|l| superseded.contains(&l.id))
                    {
                        format!(
                            "reports primary on replication history `{}`, which a promoted node continued",
                            l.id
                        )
                    } else {
                        continue;
                    };
                    n.fenced = true;
                    out.events.push(EventKind::Fenced {
                        node: Arc::clone(&n.id),
                        reason,
                    });
                }
                Some(Role::Replica) if n.fenced => {
                    n.fenced = false;
                    out.events.push(EventKind::Unfenced {
                        node: Arc::clone(&n.id),
                    });
                }
                _ => {}
            }
        }
    }

    /// Step 3: at most one writer. While an orchestrator names a writer, or
    /// a node this pool promoted has not reported itself primary yet, only
    /// that node may be it (others are held back, not fenced: they are being
    /// demoted, and the view may still move); a claim naming a node the pool
    /// does not have holds every write back. Otherwise, of several primaries
    /// on the highest epoch the current writer wins, then the node promoted
    /// or followed last, and the others are fenced.
    pub(super) fn elect_writer(&mut self, now: Instant, out: &mut Outcome) -> Option<usize> {
        let claimants: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].status.is_writable())
            .collect();
        if let Some(only) = self.reserved_for(now) {
            return claimants
                .into_iter()
                .find(|&i| self.nodes[i].status.id == only);
        }
        match claimants.as_slice() {
            [] => None,
            [one] => Some(*one),
            many => Some(self.resolve_split_brain(many, out)),
        }
    }

    /// The node the writer role is reserved for, if any: the orchestrator's
    /// claim, else a pending promotion of this pool (dropped once it is the
    /// writer, fenced, or past its deadline).
    fn reserved_for(&mut self, now: Instant) -> Option<Arc<str>> {
        if let Some(claim) = &self.claim {
            return Some(Arc::clone(claim));
        }
        let (id, until) = self.pending.as_ref()?;
        let done = now >= *until
            || self
                .index_of(id)
                .is_none_or(|i| self.writer == Some(i) || self.nodes[i].status.fenced);
        if done {
            self.pending = None;
            return None;
        }
        Some(Arc::clone(id))
    }

    fn resolve_split_brain(&mut self, many: &[usize], out: &mut Outcome) -> usize {
        let top = many
            .iter()
            .map(|&i| self.nodes[i].status.epoch)
            .max()
            .unwrap_or(0);
        let best: Vec<usize> = many
            .iter()
            .copied()
            .filter(|&i| self.nodes[i].status.epoch == top)
            .collect();
        let preferred = self.preferred.as_deref().and_then(|p| self.index_of(p));
        let winner = [self.writer, preferred]
            .into_iter()
            .flatten()
            .find(|w| best.contains(w))
            .unwrap_or_else(|| self.most_followed(&best));
        let winner_id = Arc::clone(&self.nodes[winner].status.id);
        out.events.push(EventKind::SplitBrainDetected {
            nodes: many
                .iter()
                .map(|&i| Arc::clone(&self.nodes[i].status.id))
                .collect(),
            winner: Arc::clone(&winner_id),
        });
        for &i in many.iter().filter(|&&i| i != winner) {
            let n = &mut self.nodes[i].status;
            n.fenced = true;
            out.events.push(EventKind::Fenced {
                node: Arc::clone(&n.id),
                reason: format!(
                    "split brain: lost to `{winner_id}` (epoch {} vs {top})",
                    n.epoch
                ),
            });
        }
        winner
    }

    /// Of several primaries this pool knows nothing else about, the one most
    /// other nodes replicate from, then the furthest ahead, then the
    /// smallest id: the same answer in every application instance.
    fn most_followed(&self, candidates: &[usize]) -> usize {
        let followers = |i: usize| {
            let id = &self.nodes[i].status.id;
            self.nodes
                .iter()
                .filter(|t| t.status.up && t.status.upstream.as_ref() == Some(id))
                .count()
        };
        candidates
            .iter()
            .copied()
            .max_by(|&a, &b| {
                let (na, nb) = (&self.nodes[a].status, &self.nodes[b].status);
                (followers(a), na.position)
                    .cmp(&(followers(b), nb.position))
                    .then_with(|| nb.id.cmp(&na.id))
            })
            .unwrap_or(candidates[0])
    }
}
