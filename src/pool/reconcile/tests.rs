//! Unit tests of the reconciler's rules (no server, no runtime).
use super::*;

fn rec(n: usize, policy: PromotionPolicy, soft_limit: u32, t0: Instant) -> Reconciler {
    let rules = Rules {
        policy,
        max_lag: None,
        max_lag_bytes: None,
        soft_limit,
    };
    Reconciler::new(&ids(n), rules, t0)
}

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
            lineage: None,
            upstream: None,
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
            lineage: None,
            upstream: None,
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
    let mut r = rec(2, auto(10), 2, t0);
    r.apply(&[primary(1, 10), replica(1, 10)], t0);
    let out = r.apply(&[timed_out(), replica(1, 10)], t0);
    assert_eq!(r.topology().writer, Some(0));
    assert!(out.retire.is_empty());
    // A second timeout in a row: down, failover starts.
    let out = r.apply(&[timed_out(), replica(1, 10)], t0);
    assert_eq!(r.topology().writer, None);
    assert!(out.retire.contains(&0));
    // A refused connection is down at once.
    let mut r = rec(2, auto(10), 2, t0);
    r.apply(&[primary(1, 10), replica(1, 10)], t0);
    r.apply(&[down(), replica(1, 10)], t0);
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
    let mut r = rec(2, PromotionPolicy::External, 1, t0);
    // The "configured primary" n0 is in fact the replica.
    let out = r.apply(&[replica(1, 10), primary(1, 10)], t0);
    assert_eq!(r.topology().writer, Some(1));
    assert_eq!(r.topology().readers, vec![0]);
    assert!(out.writer_changed);
}

#[test]
fn stale_primary_is_fenced_until_it_reports_replica() {
    let t0 = Instant::now();
    let mut r = rec(2, PromotionPolicy::External, 1, t0);
    r.apply(&[primary(1, 100), replica(1, 100)], t0);
    // n1 promoted (timeline 2), n0 comes back as primary on timeline 1.
    let out = r.apply(&[primary(1, 120), primary(2, 130)], t0);
    let topo = r.topology();
    assert_eq!(topo.writer, Some(1));
    assert!(topo.nodes[0].fenced);
    assert!(has(
        &out,
        |e| matches!(e, EventKind::Fenced { node, .. } if &**node == "n0")
    ));
    assert!(out.retire.contains(&0));
    // n1 goes down: n0 is still fenced, there is no writer.
    r.apply(&[primary(1, 120), down()], t0);
    assert_eq!(r.topology().writer, None);
    assert!(r.topology().nodes[0].fenced);
    // n0 is rejoined as a replica: unfenced.
    let out = r.apply(&[replica(2, 130), primary(2, 140)], t0);
    assert!(!r.topology().nodes[0].fenced);
    assert!(has(&out, |e| matches!(e, EventKind::Unfenced { .. })));
    assert_eq!(r.topology().writer, Some(1));
}

#[test]
fn split_brain_on_same_epoch_keeps_current_writer() {
    let t0 = Instant::now();
    let mut r = rec(3, PromotionPolicy::External, 1, t0);
    r.apply(&[primary(2, 1), replica(2, 1), replica(2, 1)], t0);
    let out = r.apply(&[primary(2, 5), primary(2, 5), replica(2, 5)], t0);
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
    let mut r = rec(3, auto(500), 1, t0);
    r.apply(&[primary(1, 1000), replica(1, 900), replica(1, 990)], t0);
    let out = r.apply(&[down(), replica(1, 900), replica(1, 990)], t0);
    assert!(has(&out, |e| matches!(
        e,
        EventKind::FailoverStarted { .. }
    )));
    assert_eq!(out.promote, None, "inside the confirmation window");
    let t1 = t0 + Duration::from_millis(200);
    assert_eq!(
        r.apply(&[down(), replica(1, 900), replica(1, 990)], t1)
            .promote,
        None
    );
    let t2 = t0 + Duration::from_millis(600);
    let out = r.apply(&[down(), replica(1, 900), replica(1, 990)], t2);
    assert_eq!(out.promote, Some(2), "the most advanced replica");
    // After promotion n2 reports primary on timeline 2.
    let out = r.apply(&[down(), replica(2, 995), primary(2, 1000)], t2);
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
    let mut r = rec(2, auto(10), 1, t0);
    let t1 = t0 + Duration::from_secs(60);
    assert_eq!(r.apply(&[down(), replica(1, 10)], t1).promote, None);
    assert_eq!(r.promotion_due(), None);
}

#[test]
fn failed_promotion_backs_off() {
    let t0 = Instant::now();
    let mut r = rec(2, auto(10), 1, t0);
    r.apply(&[primary(1, 10), replica(1, 10)], t0);
    r.apply(&[down(), replica(1, 10)], t0);
    let t1 = t0 + Duration::from_millis(50);
    assert_eq!(r.apply(&[down(), replica(1, 10)], t1).promote, Some(1));
    r.promotion_failed(t1 + Duration::from_secs(2));
    let t2 = t1 + Duration::from_millis(100);
    assert_eq!(r.apply(&[down(), replica(1, 10)], t2).promote, None);
    let t3 = t1 + Duration::from_secs(3);
    assert_eq!(r.apply(&[down(), replica(1, 10)], t3).promote, Some(1));
}

#[test]
fn short_outage_does_not_promote() {
    let t0 = Instant::now();
    let mut r = rec(2, auto(1000), 1, t0);
    r.apply(&[primary(1, 10), replica(1, 10)], t0);
    let t1 = t0 + Duration::from_millis(100);
    assert_eq!(r.apply(&[down(), replica(1, 10)], t1).promote, None);
    let t2 = t0 + Duration::from_millis(900);
    let out = r.apply(&[primary(1, 10), replica(1, 10)], t2);
    assert_eq!(out.promote, None);
    assert_eq!(r.topology().writer, Some(0));
    let t3 = t0 + Duration::from_millis(5000);
    assert_eq!(r.apply(&[primary(1, 10), replica(1, 10)], t3).promote, None);
}

#[test]
fn lagging_replica_is_neither_promoted_nor_read() {
    let t0 = Instant::now();
    let mut r = rec(2, auto(10), 1, t0);
    r.rules.max_lag_bytes = Some(100);
    r.apply(&[primary(1, 10_000), replica(1, 1_000)], t0);
    assert!(r.topology().readers.is_empty());
    let t1 = t0 + Duration::from_secs(1);
    r.apply(&[down(), replica(1, 1_000)], t0);
    assert_eq!(r.apply(&[down(), replica(1, 1_000)], t1).promote, None);
}

#[test]
fn external_policy_never_promotes_but_follows() {
    let t0 = Instant::now();
    let mut r = rec(2, PromotionPolicy::External, 1, t0);
    r.apply(&[primary(1, 10), replica(1, 10)], t0);
    let t1 = t0 + Duration::from_secs(60);
    assert_eq!(r.apply(&[down(), replica(1, 10)], t1).promote, None);
    r.apply(&[down(), primary(2, 11)], t1);
    assert_eq!(r.topology().writer, Some(1));
}

#[test]
fn node_down_retires_its_connections() {
    let t0 = Instant::now();
    let mut r = rec(2, PromotionPolicy::External, 1, t0);
    r.apply(&[primary(1, 10), replica(1, 10)], t0);
    let out = r.apply(&[primary(1, 10), down()], t0);
    assert_eq!(out.retire, vec![1]);
    assert!(r.topology().readers.is_empty());
}

#[test]
fn a_claimed_writer_gets_writes_only_once_it_reports_primary() {
    let t0 = Instant::now();
    let mut r = rec(2, PromotionPolicy::External, 1, t0);
    r.apply(&[primary(1, 10), replica(1, 10)], t0);
    assert_eq!(r.topology().writer, Some(0));
    // The orchestrator names n1 while n1 still reports replica: no writer.
    assert!(r.set_claim(Some(Arc::from("n1"))));
    let out = r.reevaluate(t0);
    assert_eq!(r.topology().writer, None);
    assert!(
        out.retire.contains(&0),
        "the unseated writer's connections go"
    );
    assert!(has(&out, |e| matches!(
        e,
        EventKind::FailoverStarted { .. }
    )));
    // Both report primary on the same epoch: the claim decides, nobody is fenced.
    let out = r.apply(&[primary(1, 12), primary(1, 12)], t0);
    assert_eq!(r.topology().writer, Some(1));
    assert!(!r.topology().nodes[0].fenced);
    assert!(!has(&out, |e| matches!(
        e,
        EventKind::SplitBrainDetected { .. }
    )));
    // The old primary is demoted: still no writes for it, n1 stays the writer.
    r.apply(&[replica(1, 12), primary(1, 13)], t0);
    assert_eq!(r.topology().writer, Some(1));
    assert_eq!(r.topology().readers, vec![0]);
    // A claim naming a node outside the set holds every write back.
    r.set_claim(Some(Arc::from("elsewhere")));
    r.reevaluate(t0);
    assert_eq!(r.topology().writer, None);
}

#[test]
fn a_claim_suppresses_automatic_promotion() {
    let t0 = Instant::now();
    let mut r = rec(2, auto(10), 1, t0);
    r.apply(&[primary(1, 10), replica(1, 10)], t0);
    r.set_claim(Some(Arc::from("n0")));
    r.apply(&[down(), replica(1, 10)], t0);
    let later = t0 + Duration::from_secs(10);
    assert_eq!(r.apply(&[down(), replica(1, 10)], later).promote, None);
    assert_eq!(r.promotion_due(), None);
    // Without the claim the same state promotes.
    r.set_claim(None);
    assert_eq!(r.apply(&[down(), replica(1, 10)], later).promote, Some(1));
}

#[test]
fn removing_nodes_keeps_indices_consistent_and_removing_the_writer_starts_a_failover() {
    let t0 = Instant::now();
    let mut r = rec(3, PromotionPolicy::External, 1, t0);
    r.apply(&[replica(1, 10), primary(1, 10), replica(1, 10)], t0);
    assert_eq!(r.topology().writer, Some(1));
    assert_eq!(r.topology().readers, vec![0, 2]);
    let mut events = Vec::new();
    r.remove(0, t0, &mut events);
    r.node_set_changed(&mut events);
    let topo = r.topology();
    assert_eq!(topo.nodes.len(), 2);
    assert_eq!(topo.writer, Some(0), "n1 moved to index 0");
    assert_eq!(&*topo.nodes[0].id, "n1");
    assert_eq!(topo.readers, vec![1], "n2 moved to index 1");
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, EventKind::FailoverStarted { .. }))
    );
    let epoch = topo.epoch;
    let mut events = Vec::new();
    r.remove(0, t0, &mut events);
    r.node_set_changed(&mut events);
    assert_eq!(r.topology().writer, None);
    assert!(r.topology().epoch > epoch);
    assert!(events.iter().any(
        |e| matches!(e, EventKind::FailoverStarted { old_writer: Some(w), .. } if &**w == "n1")
    ));
}

#[test]
fn an_added_node_gets_no_traffic_until_probed() {
    let t0 = Instant::now();
    let mut r = rec(2, PromotionPolicy::External, 1, t0);
    r.apply(&[primary(1, 10), replica(1, 10)], t0);
    r.add(Arc::from("n2"));
    let mut events = Vec::new();
    r.node_set_changed(&mut events);
    let topo = r.topology();
    assert_eq!(topo.nodes.len(), 3);
    assert!(!topo.nodes[2].up);
    assert_eq!(topo.readers, vec![1]);
    r.apply(&[primary(1, 10), replica(1, 10), replica(1, 10)], t0);
    assert_eq!(r.topology().readers, vec![1, 2]);
}

#[test]
fn a_promoted_node_holds_writes_back_until_it_reports_primary() {
    let t0 = Instant::now();
    let mut r = rec(2, PromotionPolicy::Manual, 1, t0);
    r.apply(&[primary(1, 10), replica(1, 10)], t0);
    assert_eq!(r.topology().writer, Some(0));
    // This pool promoted n1; its probe is slow, n0 still says primary.
    r.promoted(1, t0 + Duration::from_secs(5));
    let out = r.reevaluate(t0);
    assert_eq!(r.topology().writer, None, "no write goes back to n0");
    assert!(out.retire.contains(&0));
    let out = r.apply(&[primary(1, 11), timed_out()], t0);
    assert_eq!(r.topology().writer, None);
    assert_eq!(out.promote, None);
    // n1 reports primary on the new timeline: it is the writer, n0 is fenced.
    r.apply(&[primary(1, 11), primary(2, 12)], t0);
    assert_eq!(r.topology().writer, Some(1));
    assert!(r.topology().nodes[0].fenced);
}

#[test]
fn a_pending_promotion_expires() {
    let t0 = Instant::now();
    let mut r = rec(2, PromotionPolicy::Manual, 1, t0);
    r.apply(&[primary(1, 10), replica(1, 10)], t0);
    r.promoted(1, t0 + Duration::from_secs(5));
    r.reevaluate(t0);
    assert_eq!(r.topology().writer, None);
    // The promotion never happened: after the deadline n0 is the writer again.
    r.apply(
        &[primary(1, 10), replica(1, 10)],
        t0 + Duration::from_secs(6),
    );
    assert_eq!(r.topology().writer, Some(0));
}

#[test]
fn one_slow_probe_in_a_partial_round_counts_once() {
    let t0 = Instant::now();
    let mut r = rec(2, PromotionPolicy::External, 2, t0);
    r.apply(&[primary(1, 10), replica(1, 10)], t0);
    r.apply(&[primary(1, 10), timed_out()], t0);
    // Re-applying only n0's fresh probe must not count n1's timeout again.
    r.apply_one(0, &primary(1, 11), t0);
    assert!(r.topology().nodes[1].up);
}

/// A Redis-style probe: epoch 0, a replication history, an upstream.
fn redis(
    role: Role,
    pos: u64,
    id: &str,
    previous: Option<&str>,
    upstream: Option<&str>,
) -> ProbeResult {
    let mut p = Probe::new(role, 0, pos);
    p.lineage = Some(crate::pool::Lineage {
        id: Arc::from(id),
        previous: previous.map(Arc::from),
    });
    p.upstream = upstream.map(Arc::from);
    ProbeResult {
        probe: Ok(p),
        rtt: Duration::from_millis(1),
        hard: false,
    }
}

#[test]
fn a_master_whose_history_was_continued_elsewhere_is_fenced_and_stays_so() {
    use Role::{Primary, Replica};
    let t0 = Instant::now();
    let mut r = rec(3, PromotionPolicy::External, 1, t0);
    r.apply(
        &[
            redis(Primary, 100, "A", None, None),
            redis(Replica, 100, "A", None, Some("n0")),
            redis(Replica, 100, "A", None, Some("n0")),
        ],
        t0,
    );
    assert_eq!(r.topology().writer, Some(0));
    // n1 was promoted (history B continues A); n0 is still up as a master.
    let out = r.apply(
        &[
            redis(Primary, 120, "A", None, None),
            redis(Primary, 110, "B", Some("A"), None),
            redis(Replica, 110, "B", Some("A"), Some("n1")),
        ],
        t0,
    );
    let t = r.topology();
    assert_eq!(t.writer, Some(1));
    assert!(t.nodes[0].fenced);
    assert!(has(
        &out,
        |e| matches!(e, EventKind::Fenced { node, .. } if &**node == "n0")
    ));
    // The promoted node goes down: n0 (history A) is still not a writer,
    // although no up node says so any more.
    r.apply(
        &[
            redis(Primary, 120, "A", None, None),
            down(),
            redis(Replica, 110, "B", Some("A"), None),
        ],
        t0,
    );
    assert_eq!(r.topology().writer, None);
    assert!(r.topology().nodes[0].fenced);
}

#[test]
fn of_unrelated_masters_a_fresh_pool_picks_the_one_replicas_follow() {
    use Role::{Primary, Replica};
    let t0 = Instant::now();
    // n0: an old master restarted empty (new history Z); n1: the master the
    // replica follows. Nothing else tells them apart for a new pool.
    let mut r = rec(3, PromotionPolicy::External, 1, t0);
    r.apply(
        &[
            redis(Primary, 0, "Z", None, None),
            redis(Primary, 500, "B", Some("A"), None),
            redis(Replica, 500, "B", Some("A"), Some("n1")),
        ],
        t0,
    );
    assert_eq!(r.topology().writer, Some(1));
    assert!(r.topology().nodes[0].fenced);
}

#[test]
fn promotion_candidate_ties_are_broken_by_id_not_order() {
    let t0 = Instant::now();
    let rules = Rules {
        policy: auto(10),
        max_lag: None,
        max_lag_bytes: None,
        soft_limit: 1,
    };
    // The same nodes listed in another order: the same candidate.
    let ids: Vec<Arc<str>> = ["n0", "n2", "n1"].iter().map(|s| Arc::from(*s)).collect();
    let mut r = Reconciler::new(&ids, rules, t0);
    r.apply(&[primary(1, 10), replica(1, 10), replica(1, 10)], t0);
    r.apply(&[down(), replica(1, 10), replica(1, 10)], t0);
    let out = r.apply(
        &[down(), replica(1, 10), replica(1, 10)],
        t0 + Duration::from_secs(1),
    );
    assert_eq!(
        out.promote,
        Some(2),
        "n1, the smallest id, wherever it is listed"
    );
}
