//! The pool's view of the cluster ([`Topology`]) and the rules that derive it
//! from probes: role discovery, fencing, split-brain resolution, failover
//! tracking and the automatic-promotion decision.
//!
//! The reconciler is a pure function of the probe results, the time
//! and its own state, so every rule is unit-tested without a server.

use crate::core::endpoint::Role;
use crate::core::events::EventKind;
use crate::pool::backend::Probe;
use crate::pool::config::PromotionPolicy;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What the pool knows about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Node id.
    pub id: Arc<str>,
    /// Whether the last probe succeeded.
    pub up: bool,
    /// Role from the last successful probe.
    pub role: Option<Role>,
    /// Fenced: claims to be primary but must not get writes (stale timeline
    /// or lost a split brain). Cleared only when it reports itself a replica.
    pub fenced: bool,
    /// Fencing epoch (Postgres timeline) from the last successful probe.
    pub epoch: u64,
    /// Write position (primary) or replay position (replica).
    pub position: u64,
    /// Received position (replicas): everything received is replayed on
    /// promotion, so this ranks promotion candidates.
    pub received: Option<u64>,
    /// Bytes behind the writer (replicas; `None` when unknown).
    pub lag_bytes: Option<u64>,
    /// Replay delay reported by the replica.
    pub lag: Option<Duration>,
    /// Round-trip of the last probe.
    pub rtt: Option<Duration>,
    /// Why the last probe failed.
    pub last_error: Option<String>,
}

/// A consistent snapshot of the cluster as the pool routes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Grows with every change of writer, fencing or node role.
    pub epoch: u64,
    /// Position of the writer in `nodes`, if one is known.
    pub writer: Option<usize>,
    /// Replicas that may serve reads (up, not fenced, within the lag bounds).
    pub readers: Vec<usize>,
    /// Every node, in configured order.
    pub nodes: Vec<NodeStatus>,
    /// The highest fencing epoch seen on any node.
    pub highest_epoch: u64,
}

impl Topology {
    /// The writer's status.
    pub fn writer_status(&self) -> Option<&NodeStatus> {
        self.writer.map(|i| &self.nodes[i])
    }

    /// Index of a node by id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| &*n.id == id)
    }
}

/// The result of one probe round for one node.
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

/// Limits on which replicas may serve reads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReaderLimits {
    pub(crate) max_lag: Option<Duration>,
    pub(crate) max_lag_bytes: Option<u64>,
}

/// What the pool must do after a reconcile.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) events: Vec<EventKind>,
    /// Nodes whose pooled connections must be retired (role, fencing or reachability changed).
    pub(crate) retire: Vec<usize>,
    /// Whether the published topology changed.
    pub(crate) changed: bool,
    /// A node to promote now (automatic policy).
    pub(crate) promote: Option<usize>,
    /// The writer changed (for the failover counter).
    pub(crate) writer_changed: bool,
}

/// Derives the topology from probe results.
#[derive(Debug)]
pub(crate) struct Reconciler {
    nodes: Vec<NodeStatus>,
    writer: Option<usize>,
    epoch: u64,
    highest_epoch: u64,
    writer_lost_at: Option<Instant>,
    last_writer_position: u64,
    /// The node this pool promoted or followed last: wins ties.
    preferred: Option<usize>,
    readers: Vec<usize>,
    /// Whether any writer was ever seen (finding the first one is not a
    /// failover, and automatic promotion needs a writer to have been lost).
    had_writer: bool,
    /// After a failed automatic promotion, the next try waits until then.
    promotion_blocked_until: Option<Instant>,
    /// Soft probe failures in a row, per node.
    soft_failures: Vec<u32>,
    /// Soft failures in a row that make a node down.
    soft_limit: u32,
}

impl Reconciler {
    pub(crate) fn new(ids: &[Arc<str>], now: Instant) -> Self {
        Reconciler {
            nodes: ids
                .iter()
                .map(|id| NodeStatus {
                    id: Arc::clone(id),
                    up: false,
                    role: None,
                    fenced: false,
                    epoch: 0,
                    position: 0,
                    received: None,
                    lag_bytes: None,
                    lag: None,
                    rtt: None,
                    last_error: Some("not probed yet".into()),
                })
                .collect(),
            writer: None,
            epoch: 0,
            highest_epoch: 0,
            // Until a writer is seen, the clock of the confirmation window runs.
            writer_lost_at: Some(now),
            last_writer_position: 0,
            preferred: None,
            readers: Vec::new(),
            had_writer: false,
            promotion_blocked_until: None,
            soft_failures: vec![0; ids.len()],
            soft_limit: 1,
        }
    }

    /// How many soft probe failures (timeouts, server errors) in a row mark
    /// a node down (hard ones — refused, reset — always do at once).
    pub(crate) fn with_soft_limit(mut self, limit: u32) -> Self {
        self.soft_limit = limit.max(1);
        self
    }

    pub(crate) fn topology(&self) -> Topology {
        Topology {
            epoch: self.epoch,
            writer: self.writer,
            readers: self.readers.clone(),
            nodes: self.nodes.clone(),
            highest_epoch: self.highest_epoch,
        }
    }

    /// Remembers a node this pool promoted (it wins ties from now on).
    pub(crate) fn set_preferred(&mut self, index: usize) {
        self.preferred = Some(index);
    }

    pub(crate) fn apply(
        &mut self,
        results: &[ProbeResult],
        now: Instant,
        policy: &PromotionPolicy,
        limits: ReaderLimits,
    ) -> Outcome {
        let mut out = Outcome::default();
        let before = (self.writer, self.nodes.clone());

        // 1. Reachability and roles.
        for (i, r) in results.iter().enumerate() {
            let n = &mut self.nodes[i];
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
                    n.up = true;
                    n.role = Some(p.role);
                    n.epoch = p.epoch;
                    self.soft_failures[i] = 0;
                    n.position = p.position;
                    n.received = p.received;
                    n.lag = p.lag;
                    n.rtt = Some(r.rtt);
                    n.last_error = None;
                    self.highest_epoch = self.highest_epoch.max(p.epoch);
                }
                Err(e) => {
                    n.last_error = Some(e.clone());
                    if !r.hard {
                        self.soft_failures[i] += 1;
                        if n.up && self.soft_failures[i] < self.soft_limit {
                            // One slow probe: keep the node as it was.
                            continue;
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

        // 2. Fencing by epoch, unfencing by reported role.
        for n in &mut self.nodes {
            if !n.up {
                continue;
            }
            match n.role {
                Some(Role::Primary) if n.epoch < self.highest_epoch && !n.fenced => {
                    n.fenced = true;
                    out.events.push(EventKind::Fenced {
                        node: Arc::clone(&n.id),
                        reason: format!(
                            "reports primary on epoch {} but epoch {} exists",
                            n.epoch, self.highest_epoch
                        ),
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

        // 3. Exactly one writer.
        let claimants: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                let n = &self.nodes[i];
                n.up && n.role == Some(Role::Primary) && !n.fenced
            })
            .collect();
        let writer = match claimants.as_slice() {
            [] => None,
            [one] => Some(*one),
            many => {
                let top = many.iter().map(|&i| self.nodes[i].epoch).max().unwrap_or(0);
                let best: Vec<usize> = many
                    .iter()
                    .copied()
                    .filter(|&i| self.nodes[i].epoch == top)
                    .collect();
                let winner = [self.writer, self.preferred]
                    .into_iter()
                    .flatten()
                    .find(|w| best.contains(w))
                    .unwrap_or(best[0]);
                out.events.push(EventKind::SplitBrainDetected {
                    nodes: many
                        .iter()
                        .map(|&i| Arc::clone(&self.nodes[i].id))
                        .collect(),
                    winner: Arc::clone(&self.nodes[winner].id),
                });
                for &i in many {
                    if i != winner {
                        let n = &mut self.nodes[i];
                        n.fenced = true;
                        out.events.push(EventKind::Fenced {
                            node: Arc::clone(&n.id),
                            reason: format!(
                                "split brain: lost to `{}` (epoch {} vs {})",
                                before.1[winner].id, n.epoch, top
                            ),
                        });
                    }
                }
                Some(winner)
            }
        };

        // 4. Writer changes and failover tracking.
        if writer != self.writer {
            out.writer_changed = true;
            match (self.writer, writer) {
                (Some(old), None) => {
                    let reason = self.nodes[old]
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "writer no longer reports itself primary".into());
                    out.events.push(EventKind::FailoverStarted {
                        old_writer: Some(Arc::clone(&self.nodes[old].id)),
                        reason,
                    });
                    self.writer_lost_at = Some(now);
                }
                (old, Some(new)) => {
                    if let (Some(old), None) = (old, self.writer_lost_at) {
                        // Lost and found within one probe round (e.g. an external switchover).
                        out.events.push(EventKind::FailoverStarted {
                            old_writer: Some(Arc::clone(&self.nodes[old].id)),
                            reason: "another node became the writer".into(),
                        });
                        self.writer_lost_at = Some(now);
                    }
                    if let Some(lost) = self.writer_lost_at.take()
                        && self.had_writer
                    {
                        out.events.push(EventKind::FailoverFinished {
                            new_writer: Arc::clone(&self.nodes[new].id),
                            duration: now.saturating_duration_since(lost),
                        });
                    }
                    if self.preferred.is_none() || old.is_some() {
                        self.preferred = Some(new);
                    }
                }
                (None, None) => {}
            }
            self.writer = writer;
        }
        if let Some(w) = self.writer {
            self.last_writer_position = self.nodes[w].position;
            self.writer_lost_at = None;
            self.had_writer = true;
        }

        // 5. Replica lag against the writer (or its last known position).
        let reference = self.last_writer_position;
        for n in &mut self.nodes {
            n.lag_bytes = match (n.up, n.role) {
                (true, Some(Role::Replica)) => Some(reference.saturating_sub(n.position)),
                _ => None,
            };
        }
        self.readers = (0..self.nodes.len())
            .filter(|&i| {
                let n = &self.nodes[i];
                n.up && n.role == Some(Role::Replica)
                    && !n.fenced
                    && limits
                        .max_lag_bytes
                        .is_none_or(|m| n.lag_bytes.is_some_and(|l| l <= m))
                    && limits.max_lag.is_none_or(|m| n.lag.is_none_or(|l| l <= m))
            })
            .collect();

        // 6. Which nodes' connections must go, and did the topology change.
        // A primary that stopped being one (demoted, fenced) or a node that
        // went down loses its pooled connections. A replica that became the
        // primary keeps them: they are connections to the new writer, and
        // closing them would only fail the readers holding them.
        for (i, (old, new)) in before.1.iter().zip(&self.nodes).enumerate() {
            let demoted =
                old.role == Some(Role::Primary) && new.up && new.role != Some(Role::Primary);
            let fenced = new.fenced && !old.fenced;
            if demoted || fenced || (old.up && !new.up) {
                out.retire.push(i);
            }
        }
        let routing_changed = before.0 != self.writer
            || !out.retire.is_empty()
            || before.1.iter().zip(&self.nodes).any(|(a, b)| a.up != b.up);
        if routing_changed {
            self.epoch += 1;
            out.events.push(EventKind::TopologyChanged {
                epoch: self.epoch,
                writer: self.writer.map(|w| Arc::clone(&self.nodes[w].id)),
            });
        }
        out.changed = true; // positions and lags always move

        // 7. Automatic promotion.
        if let PromotionPolicy::Automatic {
            confirmation,
            max_lag_bytes,
        } = policy
            && self.writer.is_none()
            && self.had_writer
            && self.promotion_blocked_until.is_none_or(|t| now >= t)
            && self
                .writer_lost_at
                .is_some_and(|t| now.saturating_duration_since(t) >= *confirmation)
        {
            out.promote = self.promotion_candidate(*max_lag_bytes);
        }
        out
    }

    /// When the automatic policy's confirmation window ends, while no writer is known.
    pub(crate) fn promotion_due(&self, policy: &PromotionPolicy) -> Option<Instant> {
        match policy {
            PromotionPolicy::Automatic { confirmation, .. }
                if self.writer.is_none() && self.had_writer =>
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
            .zip(&self.soft_failures)
            .any(|(n, &f)| n.up && f > 0)
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
                let n = &self.nodes[i];
                n.up && n.role == Some(Role::Replica)
                    && !n.fenced
                    && self.last_writer_position.saturating_sub(n.position) <= max_lag_bytes
            })
            .max_by(|&a, &b| {
                // Everything received is replayed on promotion, so the most
                // WAL received wins, then the most replayed. The timeline is
                // left out: for users without `pg_read_all_stats` a standby
                // reports the timeline of its last restartpoint, which lags.
                let (na, nb) = (&self.nodes[a], &self.nodes[b]);
                let key =
                    |n: &NodeStatus| (n.received.unwrap_or(n.position).max(n.position), n.position);
                key(na)
                    .cmp(&key(nb))
                    // earlier in configured order wins ties
                    .then(b.cmp(&a))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Arc<str>> {
        (0..n).map(|i| Arc::from(format!("n{i}"))).collect()
    }

    fn primary(epoch: u64, pos: u64) -> ProbeResult {
        ProbeResult {
            probe: Ok(Probe {
                role: Role::Primary,
                epoch,
                position: pos,
                received: None,
                lag: None,
            }),
            rtt: Duration::from_millis(1),
            hard: false,
        }
    }

    fn replica(epoch: u64, pos: u64) -> ProbeResult {
        ProbeResult {
            probe: Ok(Probe {
                role: Role::Replica,
                epoch,
                position: pos,
                received: Some(pos),
                lag: Some(Duration::ZERO),
            }),
            rtt: Duration::from_millis(1),
            hard: false,
        }
    }

    fn down() -> ProbeResult {
        ProbeResult {
            probe: Err("connection refused".into()),
            rtt: Duration::from_millis(1),
            hard: true,
        }
    }

    fn timed_out() -> ProbeResult {
        ProbeResult {
            probe: Err("probe timed out".into()),
            rtt: Duration::from_millis(1),
            hard: false,
        }
    }

    #[test]
    fn one_slow_probe_does_not_take_the_writer_away() {
        let t0 = Instant::now();
        let mut r = Reconciler::new(&ids(2), t0).with_soft_limit(2);
        r.apply(
            &[primary(1, 10), replica(1, 10)],
            t0,
            &auto(10),
            ReaderLimits::default(),
        );
        let out = r.apply(
            &[timed_out(), replica(1, 10)],
            t0,
            &auto(10),
            ReaderLimits::default(),
        );
        assert_eq!(r.topology().writer, Some(0));
        assert!(out.retire.is_empty());
        // A second timeout in a row: down, failover starts.
        let out = r.apply(
            &[timed_out(), replica(1, 10)],
            t0,
            &auto(10),
            ReaderLimits::default(),
        );
        assert_eq!(r.topology().writer, None);
        assert!(out.retire.contains(&0));
        // A refused connection is down at once.
        let mut r = Reconciler::new(&ids(2), t0).with_soft_limit(2);
        r.apply(
            &[primary(1, 10), replica(1, 10)],
            t0,
            &auto(10),
            ReaderLimits::default(),
        );
        r.apply(
            &[down(), replica(1, 10)],
            t0,
            &auto(10),
            ReaderLimits::default(),
        );
        assert_eq!(r.topology().writer, None);
    }

    fn auto(ms: u64) -> PromotionPolicy {
        PromotionPolicy::Automatic {
            confirmation: Duration::from_millis(ms),
            max_lag_bytes: 1000,
        }
    }

    fn has(out: &Outcome, f: impl Fn(&EventKind) -> bool) -> bool {
        out.events.iter().any(f)
    }

    #[test]
    fn discovers_roles_not_assumes() {
        let t0 = Instant::now();
        let mut r = Reconciler::new(&ids(2), t0);
        // The "configured primary" n0 is in fact the replica.
        let out = r.apply(
            &[replica(1, 10), primary(1, 10)],
            t0,
            &PromotionPolicy::External,
            ReaderLimits::default(),
        );
        assert_eq!(r.topology().writer, Some(1));
        assert_eq!(r.topology().readers, vec![0]);
        assert!(out.writer_changed);
    }

    #[test]
    fn stale_primary_is_fenced_until_it_reports_replica() {
        let t0 = Instant::now();
        let mut r = Reconciler::new(&ids(2), t0);
        r.apply(
            &[primary(1, 100), replica(1, 100)],
            t0,
            &PromotionPolicy::External,
            ReaderLimits::default(),
        );
        // n1 promoted (timeline 2), n0 comes back as primary on timeline 1.
        let out = r.apply(
            &[primary(1, 120), primary(2, 130)],
            t0,
            &PromotionPolicy::External,
            ReaderLimits::default(),
        );
        let topo = r.topology();
        assert_eq!(topo.writer, Some(1));
        assert!(topo.nodes[0].fenced);
        assert!(has(
            &out,
            |e| matches!(e, EventKind::Fenced { node, .. } if &**node == "n0")
        ));
        assert!(out.retire.contains(&0));
        // n1 goes down: n0 is still fenced, there is no writer.
        r.apply(
            &[primary(1, 120), down()],
            t0,
            &PromotionPolicy::External,
            ReaderLimits::default(),
        );
        assert_eq!(r.topology().writer, None);
        assert!(r.topology().nodes[0].fenced);
        // n0 is rejoined as a replica: unfenced.
        let out = r.apply(
            &[replica(2, 130), primary(2, 140)],
            t0,
            &PromotionPolicy::External,
            ReaderLimits::default(),
        );
        assert!(!r.topology().nodes[0].fenced);
        assert!(has(&out, |e| matches!(e, EventKind::Unfenced { .. })));
        assert_eq!(r.topology().writer, Some(1));
    }

    #[test]
    fn split_brain_on_same_epoch_keeps_current_writer() {
        let t0 = Instant::now();
        let mut r = Reconciler::new(&ids(3), t0);
        r.apply(
            &[primary(2, 1), replica(2, 1), replica(2, 1)],
            t0,
            &PromotionPolicy::External,
            ReaderLimits::default(),
        );
        let out = r.apply(
            &[primary(2, 5), primary(2, 5), replica(2, 5)],
            t0,
            &PromotionPolicy::External,
            ReaderLimits::default(),
        );
        assert_eq!(r.topology().writer, Some(0));
        assert!(r.topology().nodes[1].fenced);
        assert!(has(
            &out,
            |e| matches!(e, EventKind::SplitBrainDetected { winner, .. } if &**winner == "n0")
        ));
    }

    #[test]
    fn automatic_promotion_waits_for_confirmation_and_picks_most_advanced() {
        let t0 = Instant::now();
        let mut r = Reconciler::new(&ids(3), t0);
        r.apply(
            &[primary(1, 1000), replica(1, 900), replica(1, 990)],
            t0,
            &auto(500),
            ReaderLimits::default(),
        );
        let out = r.apply(
            &[down(), replica(1, 900), replica(1, 990)],
            t0,
            &auto(500),
            ReaderLimits::default(),
        );
        assert!(has(&out, |e| matches!(
            e,
            EventKind::FailoverStarted { .. }
        )));
        assert_eq!(out.promote, None, "inside the confirmation window");
        let t1 = t0 + Duration::from_millis(200);
        assert_eq!(
            r.apply(
                &[down(), replica(1, 900), replica(1, 990)],
                t1,
                &auto(500),
                ReaderLimits::default()
            )
            .promote,
            None
        );
        let t2 = t0 + Duration::from_millis(600);
        let out = r.apply(
            &[down(), replica(1, 900), replica(1, 990)],
            t2,
            &auto(500),
            ReaderLimits::default(),
        );
        assert_eq!(out.promote, Some(2), "the most advanced replica");
        // After promotion n2 reports primary on timeline 2.
        let out = r.apply(
            &[down(), replica(2, 995), primary(2, 1000)],
            t2,
            &auto(500),
            ReaderLimits::default(),
        );
        assert_eq!(r.topology().writer, Some(2));
        assert!(has(
            &out,
            |e| matches!(e, EventKind::FailoverFinished { duration, .. } if *duration == Duration::from_millis(600))
        ));
    }

    #[test]
    fn never_promotes_before_a_writer_was_seen() {
        // An instance starting while the primary is unreachable must not
        // promote a replica of unknown lag.
        let t0 = Instant::now();
        let mut r = Reconciler::new(&ids(2), t0);
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(
            r.apply(
                &[down(), replica(1, 10)],
                t1,
                &auto(10),
                ReaderLimits::default()
            )
            .promote,
            None
        );
        assert_eq!(r.promotion_due(&auto(10)), None);
    }

    #[test]
    fn failed_promotion_backs_off() {
        let t0 = Instant::now();
        let mut r = Reconciler::new(&ids(2), t0);
        r.apply(
            &[primary(1, 10), replica(1, 10)],
            t0,
            &auto(10),
            ReaderLimits::default(),
        );
        r.apply(
            &[down(), replica(1, 10)],
            t0,
            &auto(10),
            ReaderLimits::default(),
        );
        let t1 = t0 + Duration::from_millis(50);
        assert_eq!(
            r.apply(
                &[down(), replica(1, 10)],
                t1,
                &auto(10),
                ReaderLimits::default()
            )
            .promote,
            Some(1)
        );
        r.promotion_failed(t1 + Duration::from_secs(2));
        let t2 = t1 + Duration::from_millis(100);
        assert_eq!(
            r.apply(
                &[down(), replica(1, 10)],
                t2,
                &auto(10),
                ReaderLimits::default()
            )
            .promote,
            None
        );
        let t3 = t1 + Duration::from_secs(3);
        assert_eq!(
            r.apply(
                &[down(), replica(1, 10)],
                t3,
                &auto(10),
                ReaderLimits::default()
            )
            .promote,
            Some(1)
        );
    }

    #[test]
    fn short_outage_does_not_promote() {
        let t0 = Instant::now();
        let mut r = Reconciler::new(&ids(2), t0);
        r.apply(
            &[primary(1, 10), replica(1, 10)],
            t0,
            &auto(1000),
            ReaderLimits::default(),
        );
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(
            r.apply(
                &[down(), replica(1, 10)],
                t1,
                &auto(1000),
                ReaderLimits::default()
            )
            .promote,
            None
        );
        let t2 = t0 + Duration::from_millis(900);
        let out = r.apply(
            &[primary(1, 10), replica(1, 10)],
            t2,
            &auto(1000),
            ReaderLimits::default(),
        );
        assert_eq!(out.promote, None);
        assert_eq!(r.topology().writer, Some(0));
        let t3 = t0 + Duration::from_millis(5000);
        assert_eq!(
            r.apply(
                &[primary(1, 10), replica(1, 10)],
                t3,
                &auto(1000),
                ReaderLimits::default()
            )
            .promote,
            None
        );
    }

    #[test]
    fn lagging_replica_is_neither_promoted_nor_read() {
        let t0 = Instant::now();
        let mut r = Reconciler::new(&ids(2), t0);
        let limits = ReaderLimits {
            max_lag: None,
            max_lag_bytes: Some(100),
        };
        r.apply(
            &[primary(1, 10_000), replica(1, 1_000)],
            t0,
            &auto(10),
            limits,
        );
        assert!(r.topology().readers.is_empty());
        let t1 = t0 + Duration::from_secs(1);
        r.apply(&[down(), replica(1, 1_000)], t0, &auto(10), limits);
        assert_eq!(
            r.apply(&[down(), replica(1, 1_000)], t1, &auto(10), limits)
                .promote,
            None
        );
    }

    #[test]
    fn external_policy_never_promotes_but_follows() {
        let t0 = Instant::now();
        let mut r = Reconciler::new(&ids(2), t0);
        r.apply(
            &[primary(1, 10), replica(1, 10)],
            t0,
            &PromotionPolicy::External,
            ReaderLimits::default(),
        );
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(
            r.apply(
                &[down(), replica(1, 10)],
                t1,
                &PromotionPolicy::External,
                ReaderLimits::default()
            )
            .promote,
            None
        );
        r.apply(
            &[down(), primary(2, 11)],
            t1,
            &PromotionPolicy::External,
            ReaderLimits::default(),
        );
        assert_eq!(r.topology().writer, Some(1));
    }

    #[test]
    fn node_down_retires_its_connections() {
        let t0 = Instant::now();
        let mut r = Reconciler::new(&ids(2), t0);
        r.apply(
            &[primary(1, 10), replica(1, 10)],
            t0,
            &PromotionPolicy::External,
            ReaderLimits::default(),
        );
        let out = r.apply(
            &[primary(1, 10), down()],
            t0,
            &PromotionPolicy::External,
            ReaderLimits::default(),
        );
        assert_eq!(out.retire, vec![1]);
        assert!(r.topology().readers.is_empty());
    }
}
