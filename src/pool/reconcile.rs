//! The rules that derive the [`Topology`] from probes: role discovery,
//! fencing, split-brain resolution, the orchestrator's claim, failover
//! tracking, reader eligibility and the automatic-promotion decision.
//!
//! The [`Reconciler`] is a pure function of the probe results, the node set,
//! the time and its own state, so every rule is unit-tested without a
//! server. [`Reconciler::apply`] runs the rules as named steps, in order;
//! the writer rules (fencing, election, split brain) are in `writer`, the
//! automatic-promotion decision in `promotion`.

use crate::core::endpoint::Role;
use crate::core::events::EventKind;
use crate::pool::backend::Probe;
use crate::pool::config::{PoolConfig, PromotionPolicy};
use crate::pool::topology::{NodeStatus, Topology};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The result of one probe of one node.
#[derive(Debug, Clone)]
pub(crate) struct ProbeResult {
    pub(crate) probe: Result<Probe, String>,
    pub(crate) rtt: Duration,
    /// A failure that says the node is gone (refused, reset, closed), as
    /// opposed to one that may be a slow moment (a timeout) or a server
    /// that answered with an error: those count only after `soft_limit`
    /// in a row.
    pub(crate) hard: bool,
}

/// What the pool must do after a reconcile.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) events: Vec<EventKind>,
    /// Nodes whose pooled connections must be retired (role, fencing,
    /// reachability or writer status changed).
    pub(crate) retire: Vec<usize>,
    /// A node to promote now (automatic policy).
    pub(crate) promote: Option<usize>,
    /// The writer changed.
    pub(crate) writer_changed: bool,
}

/// The rules' fixed settings, from the pool's configuration.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) policy: PromotionPolicy,
    pub(crate) max_lag: Option<Duration>,
    pub(crate) max_lag_bytes: Option<u64>,
    /// Soft probe failures in a row that make a node down.
    pub(crate) soft_limit: u32,
}

impl Rules {
    pub(crate) fn of(config: &PoolConfig) -> Self {
        Rules {
            policy: config.promotion.clone(),
            max_lag: config.max_replica_lag,
            max_lag_bytes: config.max_replica_lag_bytes,
            soft_limit: config.probe_timeouts_to_down.max(1),
        }
    }
}

#[derive(Debug, Clone)]
struct Tracked {
    status: NodeStatus,
    /// Soft probe failures in a row.
    soft_failures: u32,
}

/// Derives the topology from probe results and node-set changes.
#[derive(Debug)]
pub(crate) struct Reconciler {
    rules: Rules,
    nodes: Vec<Tracked>,
    writer: Option<usize>,
    readers: Vec<usize>,
    epoch: u64,
    highest_epoch: u64,
    writer_lost_at: Option<Instant>,
    last_writer_position: u64,
    /// The node this pool promoted or followed last: wins ties.
    preferred: Option<Arc<str>>,
    /// The writer an orchestrator names (topology source); only it may be the writer.
    claim: Option<Arc<str>>,
    /// A node this pool just promoted, until it reports itself primary (or
    /// the deadline passes, or it is fenced): only it may become the writer
    /// meanwhile, so writes do not go back to the old primary, which
    /// nothing has demoted yet.
    pending: Option<(Arc<str>, Instant)>,
    /// Replication histories some node continued from at a promotion: a
    /// primary still on one of them was superseded (never forgotten).
    superseded: HashSet<Arc<str>>,
    /// Whether any writer was ever seen (finding the first one is not a
    /// failover, and automatic promotion needs a writer to have been lost).
    had_writer: bool,
    /// After a failed automatic promotion, the next try waits until then.
    promotion_blocked_until: Option<Instant>,
}

impl Reconciler {
    pub(crate) fn new(ids: &[Arc<str>], rules: Rules, now: Instant) -> Self {
        Reconciler {
            rules,
            nodes: ids
                .iter()
                .map(|id| Tracked {
                    status: NodeStatus::unprobed(Arc::clone(id)),
                    soft_failures: 0,
                })
                .collect(),
            writer: None,
            readers: Vec::new(),
            epoch: 0,
            highest_epoch: 0,
            // Until a writer is seen, the clock of the confirmation window runs.
            writer_lost_at: Some(now),
            last_writer_position: 0,
            preferred: None,
            claim: None,
            pending: None,
            superseded: HashSet::new(),
            had_writer: false,
            promotion_blocked_until: None,
        }
    }

    pub(crate) fn topology(&self) -> Topology {
        Topology {
            epoch: self.epoch,
            writer: self.writer,
            readers: self.readers.clone(),
            nodes: self.nodes.iter().map(|t| t.status.clone()).collect(),
            highest_epoch: self.highest_epoch,
            claimed_writer: self.claim.clone(),
        }
    }

    /// Remembers a node this pool promoted (it wins ties from now on).
    pub(crate) fn set_preferred(&mut self, index: usize) {
        self.preferred = Some(Arc::clone(&self.nodes[index].status.id));
    }

    /// This pool promoted (or may have promoted) the node at `index`: until
    /// it reports itself primary, or `until`, no other node gets writes.
    pub(crate) fn promoted(&mut self, index: usize, until: Instant) {
        self.set_preferred(index);
        self.pending = Some((Arc::clone(&self.nodes[index].status.id), until));
    }

    /// The writer an orchestrator names (or `None`). Returns whether it changed.
    pub(crate) fn set_claim(&mut self, claim: Option<Arc<str>>) -> bool {
        if self.claim == claim {
            return false;
        }
        if claim.is_some() {
            self.preferred.clone_from(&claim);
        }
        self.claim = claim;
        true
    }

    /// Adds a node (not probed yet: it gets no traffic until a probe says
    /// what it is). Call [`Reconciler::node_set_changed`] after a batch.
    pub(crate) fn add(&mut self, id: Arc<str>) {
        self.nodes.push(Tracked {
            status: NodeStatus::unprobed(id),
            soft_failures: 0,
        });
    }

    /// Removes the node at `index`; removing the writer starts a failover
    /// (returns whether it was the writer). Call
    /// [`Reconciler::node_set_changed`] after a batch.
    pub(crate) fn remove(
        &mut self,
        index: usize,
        now: Instant,
        events: &mut Vec<EventKind>,
    ) -> bool {
        let removed = self.nodes.remove(index);
        let shift = |i: usize| if i > index { i - 1 } else { i };
        let lost_writer = self.writer == Some(index);
        match self.writer {
            Some(w) if w == index => {
                events.push(EventKind::FailoverStarted {
                    old_writer: Some(Arc::clone(&removed.status.id)),
                    reason: "removed from the node set by the topology source".into(),
                });
                self.writer = None;
                self.writer_lost_at = Some(now);
            }
            w => self.writer = w.map(shift),
        }
        self.readers = self
            .readers
            .iter()
            .filter(|&&r| r != index)
            .map(|&r| shift(r))
            .collect();
        lost_writer
    }

    /// Ends a batch of [`Reconciler::add`] / [`Reconciler::remove`]: the
    /// routing changed, so the epoch grows.
    pub(crate) fn node_set_changed(&mut self, events: &mut Vec<EventKind>) {
        self.bump_epoch(events);
    }

    /// Applies one round of probe results (aligned with the node set) and
    /// says what the pool must do.
    pub(crate) fn apply(&mut self, results: &[ProbeResult], now: Instant) -> Outcome {
        debug_assert_eq!(results.len(), self.nodes.len());
        let before = self.statuses();
        let mut out = Outcome::default();
        for (i, r) in results.iter().enumerate() {
            self.record_probe(i, r, &mut out);
        }
        self.decide(&before, now, &mut out);
        out
    }

    /// Applies one fresh probe of one node (the others keep what this round
    /// already recorded for them).
    pub(crate) fn apply_one(
        &mut self,
        index: usize,
        result: &ProbeResult,
        now: Instant,
    ) -> Outcome {
        let before = self.statuses();
        let mut out = Outcome::default();
        self.record_probe(index, result, &mut out);
        self.decide(&before, now, &mut out);
        out
    }

    /// Runs the rules again on what is known (after the node set or the
    /// orchestrator's claim changed), without new probes.
    pub(crate) fn reevaluate(&mut self, now: Instant) -> Outcome {
        let before = self.statuses();
        let mut out = Outcome::default();
        self.decide(&before, now, &mut out);
        out
    }

    fn statuses(&self) -> Vec<NodeStatus> {
        self.nodes.iter().map(|t| t.status.clone()).collect()
    }

    /// Steps 2 to 7, from the node statuses as they are now.
    fn decide(&mut self, before: &[NodeStatus], now: Instant, out: &mut Outcome) {
        let old_writer = self.writer;
        self.fence_stale_primaries(out);
        let writer = self.elect_writer(now, out);
        self.track_writer_change(writer, now, out);
        self.update_lag_and_readers();
        self.collect_retirements(before, old_writer, out);
        let routing_changed = old_writer != self.writer
            || !out.retire.is_empty()
            || before
                .iter()
                .zip(&self.nodes)
                .any(|(a, b)| a.up != b.status.up);
        if routing_changed {
            self.bump_epoch(&mut out.events);
        }
        out.promote = self.promotion_decision(now);
    }

    /// Step 1: reachability and role of one node, from its probe.
    fn record_probe(&mut self, index: usize, r: &ProbeResult, out: &mut Outcome) {
        let soft_limit = self.rules.soft_limit;
        let t = &mut self.nodes[index];
        let n = &mut t.status;
        match &r.probe {
            Ok(p) => {
                if !n.up {
                    out.events.push(EventKind::NodeUp {
                        node: Arc::clone(&n.id),
                        role: p.role,
                    });
                }
                if n.role.is_some_and(|r| r != p.role) {
                    out.events.push(EventKind::RoleChanged {
                        node: Arc::clone(&n.id),
                        from: n.role,
                        to: p.role,
                    });
                }
                t.soft_failures = 0;
                n.up = true;
                n.role = Some(p.role);
                n.epoch = p.epoch;
                n.position = p.position;
                n.received = p.received;
                n.lag = p.lag;
                n.rtt = Some(r.rtt);
                n.last_error = None;
                n.lineage.clone_from(&p.lineage);
                n.upstream.clone_from(&p.upstream);
                self.highest_epoch = self.highest_epoch.max(p.epoch);
                if let Some(previous) = p.lineage.as_ref().and_then(|l| l.previous.as_ref()) {
                    self.superseded.insert(Arc::clone(previous));
                }
            }
            Err(e) => {
                n.last_error = Some(e.clone());
                if !r.hard {
                    t.soft_failures += 1;
                    if n.up && t.soft_failures < soft_limit {
                        // One slow probe: keep the node as it was.
                        return;
                    }
                }
                if n.up {
                    out.events.push(EventKind::NodeDown {
                        node: Arc::clone(&n.id),
                        reason: e.clone(),
                    });
                }
                n.up = false;
                n.rtt = None;
            }
        }
    }

    /// Step 4: writer changes and failover tracking (started, finished).
    fn track_writer_change(&mut self, writer: Option<usize>, now: Instant, out: &mut Outcome) {
        if writer != self.writer {
            out.writer_changed = true;
            match (self.writer, writer) {
                (Some(old), None) => {
                    let reason = self.nodes[old]
                        .status
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "the writer is no longer eligible".into());
                    out.events.push(EventKind::FailoverStarted {
                        old_writer: Some(Arc::clone(&self.nodes[old].status.id)),
                        reason,
                    });
                    self.writer_lost_at = Some(now);
                }
                (old, Some(new)) => {
                    if let (Some(old), None) = (old, self.writer_lost_at) {
                        // Lost and found within one round (e.g. an external switchover).
                        out.events.push(EventKind::FailoverStarted {
                            old_writer: Some(Arc::clone(&self.nodes[old].status.id)),
                            reason: "another node became the writer".into(),
                        });
                        self.writer_lost_at = Some(now);
                    }
                    if let Some(lost) = self.writer_lost_at.take()
                        && self.had_writer
                    {
                        out.events.push(EventKind::FailoverFinished {
                            new_writer: Arc::clone(&self.nodes[new].status.id),
                            duration: now.saturating_duration_since(lost),
                        });
                    }
                    if self.preferred.is_none() || old.is_some() {
                        self.preferred = Some(Arc::clone(&self.nodes[new].status.id));
                    }
                }
                (None, None) => {}
            }
            self.writer = writer;
        }
        if let Some(w) = self.writer {
            self.last_writer_position = self.nodes[w].status.position;
            self.writer_lost_at = None;
            self.had_writer = true;
        }
    }

    /// Step 5: replica lag against the writer (or its last known position),
    /// and which replicas may serve reads.
    fn update_lag_and_readers(&mut self) {
        let reference = self.last_writer_position;
        for n in self.nodes.iter_mut().map(|t| &mut t.status) {
            n.lag_bytes = match (n.up, n.role) {
                (true, Some(Role::Replica)) => Some(reference.saturating_sub(n.position)),
                _ => None,
            };
        }
        let rules = &self.rules;
        self.readers = (0..self.nodes.len())
            .filter(|&i| {
                let n = &self.nodes[i].status;
                n.is_replica()
                    && rules
                        .max_lag_bytes
                        .is_none_or(|m| n.lag_bytes.is_some_and(|l| l <= m))
                    && rules.max_lag.is_none_or(|m| n.lag.is_none_or(|l| l <= m))
            })
            .collect();
    }

    /// Step 6: whose pooled connections must go. A primary that stopped
    /// being one (demoted, fenced), the writer that stopped being the writer
    /// while still up (fenced, or held back by an orchestrator's claim),
    /// and a node that went down lose their connections. A replica that
    /// became the writer keeps them: they are connections to the new writer.
    fn collect_retirements(
        &self,
        before: &[NodeStatus],
        old_writer: Option<usize>,
        out: &mut Outcome,
    ) {
        for (i, (old, new)) in before
            .iter()
            .zip(self.nodes.iter().map(|t| &t.status))
            .enumerate()
        {
            let demoted =
                old.role == Some(Role::Primary) && new.up && new.role != Some(Role::Primary);
            let fenced = new.fenced && !old.fenced;
            let unseated = old_writer == Some(i) && self.writer != Some(i) && new.up;
            if demoted || fenced || unseated || (old.up && !new.up) {
                out.retire.push(i);
            }
        }
    }

    fn bump_epoch(&mut self, events: &mut Vec<EventKind>) {
        self.epoch += 1;
        events.push(EventKind::TopologyChanged {
            epoch: self.epoch,
            writer: self.writer.map(|w| Arc::clone(&self.nodes[w].status.id)),
        });
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|t| &*t.status.id == id)
    }
}

mod promotion;
#[cfg(test)]
mod tests;
mod writer;
