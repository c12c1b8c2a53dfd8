//! The rules of `FailoverPool` on the in-memory mock backend, under paused
//! time: waiting for a writer, reader routes, retiring pool generations,
//! fencing, automatic promotion, switchover, cancellation, exhaustion versus
//! failure, topology sources, and credentials that never get printed.

use failover_pool::ErrorCode;
use failover_pool::core::Endpoint;
use failover_pool::core::Role::{self, Primary, Replica};
use failover_pool::core::events::{Event, EventKind};
use failover_pool::discovery::MockDiscovery;
use failover_pool::error::chain;
use failover_pool::pool::mock::{MockBackend, MockCluster, MockHealth};
use failover_pool::pool::{
    DiscoveredTopology, FailoverPool, ManualTopology, NodeSpec, PoolConfig, Pooled,
    PromotionPolicy, ReadPreference, Route, Topology, TopologyHandle, TopologyView,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

type Pool = FailoverPool<MockBackend>;

const ACQUIRE: Duration = Duration::from_secs(5);
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
const PATIENCE: Duration = Duration::from_secs(30);
/// Primary `a`, replica `b`.
const AB: &[(&str, Role)] = &[("a", Primary), ("b", Replica)];
/// Primary `a`, replicas `b` and `c`.
const ABC: &[(&str, Role)] = &[("a", Primary), ("b", Replica), ("c", Replica)];
const REPLICA: Route = Route::Reader(ReadPreference::Replica);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(promotion: PromotionPolicy) -> PoolConfig {
    PoolConfig {
        name: "rules".into(),
        probe_interval: PROBE_INTERVAL,
        probe_timeout: ms(300),
        acquire_timeout: ACQUIRE,
        connect_timeout: ms(500),
        promotion_timeout: Duration::from_secs(2),
        promotion,
        ..PoolConfig::default()
    }
}

fn automatic() -> PromotionPolicy {
    PromotionPolicy::Automatic {
        confirmation: Duration::from_secs(2),
        max_lag_bytes: 1024,
    }
}

fn cluster_of(nodes: &[(&str, Role)]) -> MockCluster {
    let cluster = MockCluster::new();
    for &(id, role) in nodes {
        cluster.add(id, role, 1);
    }
    cluster
}

/// A cluster with `nodes` (all on epoch 1) and a pool over all of them.
async fn setup(nodes: &[(&str, Role)], promotion: PromotionPolicy) -> (MockCluster, Pool) {
    setup_with(nodes, config(promotion)).await
}

/// A cluster with `nodes` and a pool over all of them with `config`.
async fn setup_with(nodes: &[(&str, Role)], config: PoolConfig) -> (MockCluster, Pool) {
    let cluster = cluster_of(nodes);
    let backend = MockBackend::new(&cluster, &config);
    let pool = FailoverPool::new(backend, cluster.specs(), config)
        .await
        .expect("pool");
    (cluster, pool)
}

/// A cluster with `nodes` and a pool whose node set is `initial`, driven by a `ManualTopology`.
async fn setup_with_source(
    nodes: &[(&str, Role)],
    initial: &[&str],
) -> (MockCluster, Pool, TopologyHandle) {
    let cluster = cluster_of(nodes);
    let view = TopologyView::new(initial.iter().map(|id| cluster.spec(id)).collect());
    let (source, handle) = ManualTopology::new(view);
    let config = config(PromotionPolicy::External);
    let backend = MockBackend::new(&cluster, &config);
    let pool = FailoverPool::with_source(backend, source, config)
        .await
        .expect("pool");
    (cluster, pool, handle)
}

/// Polls `cond` every 10 ms of (paused) time; panics after PATIENCE.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(ms(10)).await;
    }
}

fn writer(pool: &Pool) -> Option<String> {
    pool.topology().writer_status().map(|w| w.id.to_string())
}

fn fenced(pool: &Pool, id: &str) -> bool {
    pool.topology().node(id).is_some_and(|n| n.fenced)
}

/// A `get(route)` running in its own task, answering the node it got.
fn spawn_get(pool: &Pool, route: Route) -> JoinHandle<failover_pool::Result<String>> {
    let pool = pool.clone();
    tokio::spawn(async move { pool.checkout(route).await.map(|c| c.node().to_owned()) })
}

/// A connection for `route` that must come without waiting for a probe round.
async fn get_now(pool: &Pool, route: Route) -> Pooled<MockBackend> {
    timeout(ms(50), pool.checkout(route))
        .await
        .unwrap_or_else(|_| panic!("{route} was held back"))
        .expect("connection")
}

/// One write through the writer route; returns the node it went to.
async fn write_once(pool: &Pool) -> String {
    let mut conn = get_now(pool, Route::Writer).await;
    conn.write().expect("write");
    conn.node().to_owned()
}

/// Asserts that one of the events `seen` matches `pred`.
fn assert_event(seen: &[Event], pred: impl Fn(&EventKind) -> bool) {
    assert!(seen.iter().any(|e| pred(&e.kind)), "{seen:?}");
}

/// Waits until the published writer is `id` (`None`: until there is none).
async fn wait_writer(pool: &Pool, id: Option<&str>) {
    wait_until(&format!("writer {id:?}"), || writer(pool).as_deref() == id).await;
}

/// The events received so far.
fn drain(rx: &mut broadcast::Receiver<Event>) -> Vec<Event> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

// ---- 1. waiting for a writer ----

/// A writer request made while no node is primary waits, and is served by the node that becomes primary.
#[tokio::test(start_paused = true)]
async fn writer_request_waits_for_the_new_primary() {
    let (cluster, pool) = setup(ABC, PromotionPolicy::External).await;
    assert_eq!(writer(&pool).as_deref(), Some("a"));
    cluster.set_health("a", MockHealth::Down);
    let call = spawn_get(&pool, Route::Writer);
    sleep(Duration::from_secs(1)).await;
    assert!(!call.is_finished(), "the call must wait for a writer");
    assert_eq!(writer(&pool), None);
    cluster.set_role("b", Primary, 2);
    assert_eq!(call.await.unwrap().expect("served"), "b");
    assert_eq!(write_once(&pool).await, "b");
    assert_eq!(cluster.writes("b"), 1);
}

/// With no writer ever appearing, a writer request fails with NoNode (naming the writer, not executed) after the acquire timeout.
#[tokio::test(start_paused = true)]
async fn writer_request_fails_with_no_node_after_the_acquire_timeout() {
    let (cluster, pool) = setup(AB, PromotionPolicy::External).await;
    cluster.set_health("a", MockHealth::Down);
    wait_writer(&pool, None).await;
    let started = Instant::now();
    let err = pool.checkout(Route::Writer).await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.code(), ErrorCode::NoNode, "{err}");
    assert!(!err.may_have_executed());
    assert!(err.to_string().contains("writer"), "{err}");
    assert!(
        waited >= ACQUIRE && waited < ACQUIRE + PROBE_INTERVAL * 2,
        "{waited:?}"
    );
}

// ---- 2. reader routes ----

/// `Replica` reads wait for a replica and fail with NoNode naming one; `PreferReplica` falls back to the writer.
#[tokio::test(start_paused = true)]
async fn replica_reads_wait_and_prefer_replica_falls_back_to_the_writer() {
    let (cluster, pool) = setup(ABC, PromotionPolicy::External).await;
    cluster.set_health("b", MockHealth::Down);
    cluster.set_health("c", MockHealth::Down);
    wait_until("no readers", || pool.topology().readers.is_empty()).await;
    let started = Instant::now();
    let err = pool.checkout(REPLICA).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoNode, "{err}");
    assert!(err.to_string().contains("replica"), "{err}");
    assert!(started.elapsed() >= ACQUIRE);
    let prefer = Route::Reader(ReadPreference::PreferReplica);
    assert_eq!(get_now(&pool, prefer).await.node(), "a");
    cluster.set_health("c", MockHealth::Up);
    wait_until("c to serve reads", || !pool.topology().readers.is_empty()).await;
    assert_eq!(get_now(&pool, prefer).await.node(), "c");
    assert_eq!(get_now(&pool, REPLICA).await.node(), "c");
}

/// A read after a write token goes to the writer until a replica has replayed the token, then to that replica only.
#[tokio::test(start_paused = true)]
async fn read_after_a_token_goes_to_a_caught_up_replica_only() {
    let (cluster, pool) = setup(ABC, PromotionPolicy::External).await;
    for _ in 0..3 {
        write_once(&pool).await;
    }
    let token = pool.write_token().await.expect("token");
    assert_eq!((token.epoch, token.position), (1, 3));
    pool.refresh().await;
    for _ in 0..4 {
        assert_eq!(get_now(&pool, Route::After(token)).await.node(), "a");
    }
    cluster.set_position("b", 3);
    pool.refresh().await;
    for _ in 0..4 {
        assert_eq!(get_now(&pool, Route::After(token)).await.node(), "b");
    }
}

// ---- 3. retiring generations ----

/// A writer that goes down loses its pool generation (closed, replaced); the replica promoted in its place keeps its own.
#[tokio::test(start_paused = true)]
async fn lost_writer_generation_is_retired_and_promoted_replica_keeps_its_own() {
    let (cluster, pool) = setup(AB, PromotionPolicy::Manual).await;
    let old_a = pool.node_pool("a").unwrap();
    let old_b = pool.node_pool("b").unwrap();
    let held = get_now(&pool, Route::Writer).await;
    assert_eq!(held.node(), "a");
    cluster.set_health("a", MockHealth::Down);
    wait_writer(&pool, None).await;
    let topo = pool.promote("b").await.expect("promote");
    assert_eq!(topo.writer_status().map(|w| &*w.id), Some("b"));
    assert_eq!(cluster.promotions("b"), 1);
    wait_until("the old generation to close", || old_a.is_closed()).await;
    assert!(!held.generation_is_current());
    let new_a = pool.node_pool("a").unwrap();
    assert!(new_a.generation() > old_a.generation());
    assert!(!new_a.is_closed());
    let new_b = pool.node_pool("b").unwrap();
    assert!(
        !old_b.is_closed(),
        "the promoted replica's connections stay"
    );
    assert_eq!(new_b.generation(), old_b.generation());
    assert_eq!(write_once(&pool).await, "b");
}

// ---- 4. fencing ----

/// An old primary back on a lower epoch is fenced (no writes, a Fenced event) until it reports itself a replica.
#[tokio::test(start_paused = true)]
async fn stale_primary_is_fenced_until_it_reports_replica() {
    let (cluster, pool) = setup(AB, PromotionPolicy::External).await;
    let mut events = pool.subscribe();
    cluster.set_health("a", MockHealth::Down);
    cluster.set_role("b", Primary, 2);
    wait_writer(&pool, Some("b")).await;
    // a comes back while the higher-epoch primary is unreachable: still no writer.
    cluster.set_health("b", MockHealth::Down);
    cluster.set_health("a", MockHealth::Up);
    wait_until("a to be fenced", || fenced(&pool, "a")).await;
    assert_eq!(writer(&pool), None);
    assert!(
        timeout(ms(500), pool.checkout(Route::Writer))
            .await
            .is_err()
    );
    cluster.set_health("b", MockHealth::Up);
    wait_writer(&pool, Some("b")).await;
    let before = cluster.writes("a");
    for _ in 0..5 {
        assert_eq!(write_once(&pool).await, "b");
        sleep(PROBE_INTERVAL).await;
    }
    assert_eq!(cluster.writes("a"), before);
    assert_eq!(cluster.writes("b"), 5);
    assert!(fenced(&pool, "a"));
    assert_event(
        &drain(&mut events),
        |e| matches!(e, EventKind::Fenced { node, .. } if &**node == "a"),
    );
    cluster.set_role("a", Replica, 2);
    wait_until("a to be unfenced", || !fenced(&pool, "a")).await;
    assert_event(
        &drain(&mut events),
        |e| matches!(e, EventKind::Unfenced { node } if &**node == "a"),
    );
    assert_eq!(get_now(&pool, REPLICA).await.node(), "a");
}

/// Two primaries on the same epoch: the current writer keeps the writes and the other one is fenced.
#[tokio::test(start_paused = true)]
async fn same_epoch_split_brain_keeps_the_current_writer() {
    // The current writer is second in node order, so "first node wins" would pick the wrong one.
    let (cluster, pool) = setup(&[("a", Replica), ("b", Primary)], PromotionPolicy::External).await;
    let mut events = pool.subscribe();
    assert_eq!(write_once(&pool).await, "b");
    cluster.set_role("a", Primary, 1);
    wait_until("a to be fenced", || fenced(&pool, "a")).await;
    for _ in 0..5 {
        assert_eq!(write_once(&pool).await, "b");
        sleep(PROBE_INTERVAL).await;
    }
    assert_eq!(cluster.writes("a"), 0);
    assert_eq!(writer(&pool).as_deref(), Some("b"));
    let seen = drain(&mut events);
    assert_event(
        &seen,
        |e| matches!(e, EventKind::SplitBrainDetected { winner, .. } if &**winner == "b"),
    );
    assert_event(
        &seen,
        |e| matches!(e, EventKind::Fenced { node, .. } if &**node == "a"),
    );
}

// ---- 5. automatic promotion ----

/// Automatic policy: nothing before the confirmation window, then the most advanced replica is promoted and waiting writers get it.
#[tokio::test(start_paused = true)]
async fn automatic_promotion_after_the_confirmation_window() {
    let (cluster, pool) = setup(ABC, automatic()).await;
    cluster.set_position("a", 10);
    cluster.set_position("b", 5);
    cluster.set_position("c", 9);
    pool.refresh().await;
    let lost = Instant::now();
    cluster.set_health("a", MockHealth::Down);
    let call = spawn_get(&pool, Route::Writer);
    sleep(ms(1500)).await;
    assert_eq!(cluster.promotions("b") + cluster.promotions("c"), 0);
    assert!(!call.is_finished(), "the caller waits for the promotion");
    wait_until("a promotion", || {
        cluster.promotions("b") + cluster.promotions("c") > 0
    })
    .await;
    assert!(
        lost.elapsed() >= Duration::from_secs(2),
        "{:?}",
        lost.elapsed()
    );
    assert_eq!(cluster.promotions("c"), 1, "the most advanced replica");
    assert_eq!(cluster.promotions("b"), 0);
    assert_eq!(call.await.unwrap().expect("served"), "c");
    assert_eq!(write_once(&pool).await, "c");
}

/// Automatic policy: a writer outage shorter than the confirmation window promotes nothing.
#[tokio::test(start_paused = true)]
async fn short_outage_promotes_nothing() {
    let (cluster, pool) = setup(ABC, automatic()).await;
    cluster.set_health("a", MockHealth::Down);
    wait_writer(&pool, None).await;
    sleep(Duration::from_secs(1)).await;
    cluster.set_health("a", MockHealth::Up);
    wait_writer(&pool, Some("a")).await;
    sleep(Duration::from_secs(5)).await;
    assert_eq!(cluster.promotions("b") + cluster.promotions("c"), 0);
    assert_eq!(writer(&pool).as_deref(), Some("a"));
    assert_eq!(write_once(&pool).await, "a");
}

// ---- 6. switchover ----

/// Switchover setup: a writes at 10, b has replayed only 5.
async fn lagging_pair() -> (MockCluster, Pool) {
    let (cluster, pool) = setup(AB, PromotionPolicy::Manual).await;
    cluster.set_position("a", 10);
    cluster.set_position("b", 5);
    pool.refresh().await;
    (cluster, pool)
}

/// A switchover to `b` (10 s timeout) running in its own task.
fn spawn_switchover(pool: &Pool) -> JoinHandle<failover_pool::Result<Arc<Topology>>> {
    let pool = pool.clone();
    tokio::spawn(async move { pool.switchover(Some("b"), Duration::from_secs(10)).await })
}

/// A switchover holds writers back until the new writer is published, then they go only there; readers go on meanwhile.
#[tokio::test(start_paused = true)]
async fn switchover_holds_writers_and_releases_them_to_the_new_writer() {
    let (cluster, pool) = lagging_pair().await;
    let switch = spawn_switchover(&pool);
    sleep(ms(100)).await;
    assert!(!switch.is_finished(), "b has not caught up yet");
    let writes_a = cluster.writes("a");
    let held = spawn_get(&pool, Route::Writer);
    assert_eq!(get_now(&pool, REPLICA).await.node(), "b", "readers go on");
    sleep(ms(500)).await;
    assert!(!held.is_finished(), "writers are held back");
    cluster.set_position("b", 10);
    let topo = switch.await.unwrap().expect("switchover");
    assert_eq!(topo.writer_status().map(|w| &*w.id), Some("b"));
    assert_eq!(held.await.unwrap().expect("served"), "b");
    assert_eq!(write_once(&pool).await, "b");
    assert_eq!(cluster.writes("a"), writes_a);
    assert_eq!(cluster.promotions("b"), 1);
    assert!(fenced(&pool, "a"));
}

/// A switchover whose target never catches up fails with Timeout, promotes nothing, and writers resume on the old writer.
#[tokio::test(start_paused = true)]
async fn switchover_that_cannot_catch_up_times_out_and_writes_resume() {
    let (cluster, pool) = lagging_pair().await;
    let held = {
        let p = pool.clone();
        tokio::spawn(async move {
            sleep(ms(200)).await;
            p.checkout(Route::Writer).await.map(|c| c.node().to_owned())
        })
    };
    let started = Instant::now();
    let err = pool
        .switchover(Some("b"), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Timeout, "{err}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(cluster.promotions("b"), 0);
    assert_eq!(held.await.unwrap().expect("released"), "a");
    assert_eq!(write_once(&pool).await, "a");
    assert_eq!(writer(&pool).as_deref(), Some("a"));
}

/// A switchover future dropped half-way releases the writers it held back.
#[tokio::test(start_paused = true)]
async fn dropped_switchover_releases_writers() {
    let (cluster, pool) = lagging_pair().await;
    let slow = pool.switchover(Some("b"), Duration::from_secs(10));
    assert!(timeout(ms(300), slow).await.is_err());
    assert_eq!(write_once(&pool).await, "a");
    // Also when a writer is already waiting and the switchover task is aborted.
    let switch = spawn_switchover(&pool);
    sleep(ms(100)).await;
    let held = spawn_get(&pool, Route::Writer);
    sleep(ms(100)).await;
    assert!(!held.is_finished());
    switch.abort();
    assert!(switch.await.unwrap_err().is_cancelled());
    let node = timeout(PROBE_INTERVAL, held)
        .await
        .expect("released at once");
    assert_eq!(node.unwrap().expect("served"), "a");
    assert_eq!(cluster.promotions("b"), 0);
}

// ---- 7. cancellation ----

/// A writer request dropped while waiting leaves nothing stuck: once a writer exists, the next request is served at once.
#[tokio::test(start_paused = true)]
async fn cancelled_writer_wait_leaves_nothing_stuck() {
    let (cluster, pool) = setup(AB, PromotionPolicy::External).await;
    cluster.set_health("a", MockHealth::Down);
    wait_writer(&pool, None).await;
    assert!(
        timeout(ms(500), pool.checkout(Route::Writer))
            .await
            .is_err()
    );
    let aborted = spawn_get(&pool, Route::Writer);
    sleep(ms(200)).await;
    aborted.abort();
    assert!(aborted.await.unwrap_err().is_cancelled());
    cluster.set_role("b", Primary, 2);
    wait_writer(&pool, Some("b")).await;
    assert_eq!(write_once(&pool).await, "b");
    assert_eq!(
        get_now(&pool, Route::Reader(ReadPreference::PreferReplica))
            .await
            .node(),
        "b"
    );
}

// ---- 8. exhaustion vs failure ----

/// A config whose scheduled probe rounds are 10 s apart, so a round within a second was asked for.
fn slow_probes() -> PoolConfig {
    PoolConfig {
        probe_interval: Duration::from_secs(10),
        ..config(PromotionPolicy::External)
    }
}

/// A busy node pool is waited for, not failed over: no re-probe, the topology stays, nobody else gets the connection.
#[tokio::test(start_paused = true)]
async fn busy_writer_is_waited_for_not_failed_over() {
    let (cluster, pool) = setup_with(AB, slow_probes()).await;
    let epoch = pool.topology().epoch;
    cluster.set_health("a", MockHealth::Busy);
    cluster.set_position("b", 7); // seen only by a probe round
    let call = spawn_get(&pool, Route::Writer);
    sleep(Duration::from_secs(2)).await;
    assert!(!call.is_finished(), "the caller waits for a connection");
    assert_eq!(pool.topology().node("b").unwrap().position, 0, "re-probed");
    assert_eq!(pool.topology().epoch, epoch);
    assert_eq!(writer(&pool).as_deref(), Some("a"));
    cluster.set_health("a", MockHealth::Up);
    assert_eq!(call.await.unwrap().expect("served"), "a");
    assert_eq!(pool.topology().epoch, epoch);
    assert_eq!(cluster.acquires("b"), 0);
    // Busy for longer than the acquire timeout: NoNode, with the exhaustion as its cause.
    cluster.set_health("a", MockHealth::Busy);
    let started = Instant::now();
    let err = pool.checkout(Route::Writer).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoNode, "{err}");
    assert!(started.elapsed() >= ACQUIRE);
    assert!(chain(&err).contains("no free connection"), "{err:?}");
    assert_eq!(cluster.acquires("b"), 0);
}

/// A caller kept waiting by a busy writer gets its error within the acquire timeout, and the error says how long it waited.
#[tokio::test(start_paused = true)]

async fn busy_writer_error_comes_within_the_acquire_timeout() {
    let (cluster, pool) = setup(AB, PromotionPolicy::External).await;
    cluster.set_health("a", MockHealth::Busy);
    let started = Instant::now();
    let err = pool.checkout(Route::Writer).await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.code(), ErrorCode::NoNode, "{err}");
    assert!(
        waited <= ACQUIRE,
        "waited {waited:?} with an acquire timeout of {ACQUIRE:?}"
    );
    assert!(
        err.to_string().contains(&format!("{waited:?}")),
        "{err} (waited {waited:?})"
    );
}

/// A node that refuses connections is re-probed at once, and the call moves on to the new writer once the topology changes.
#[tokio::test(start_paused = true)]
async fn refusing_writer_makes_the_call_move_on() {
    let (cluster, pool) = setup_with(AB, slow_probes()).await;
    let epoch = pool.topology().epoch;
    cluster.set_health("a", MockHealth::Down);
    let call = spawn_get(&pool, Route::Writer);
    sleep(Duration::from_secs(1)).await;
    assert!(pool.topology().epoch > epoch, "no re-probe after a refusal");
    assert_eq!(writer(&pool), None);
    assert!(!call.is_finished());
    cluster.set_role("b", Primary, 2);
    assert_eq!(call.await.unwrap().expect("served"), "b");
    assert_eq!(writer(&pool).as_deref(), Some("b"));
}

// ---- 9. topology source ----

/// Spawns `n` loops of calls on `route` until `stop`; returns the counters of
/// calls that went right and wrong (a write that failed, or a read served by
/// a node not probed up as a replica).
fn load(pool: &Pool, route: Route, n: usize, stop: &Arc<AtomicBool>) -> [Arc<AtomicU64>; 2] {
    let counters = [(); 2].map(|()| Arc::new(AtomicU64::new(0)));
    for _ in 0..n {
        let (pool, stop, counters) = (pool.clone(), Arc::clone(stop), counters.clone());
        tokio::spawn(async move {
            while !stop.load(SeqCst) {
                let ok = pool
                    .checkout(route)
                    .await
                    .is_ok_and(|mut conn| match route {
                        Route::Writer => conn.write().is_ok(),
                        _ => pool
                            .topology()
                            .node(conn.node())
                            .is_some_and(|n| n.up && n.role == Some(Replica)),
                    });
                counters[usize::from(!ok)].fetch_add(1, SeqCst);
                sleep(ms(10)).await;
            }
        });
    }
    counters
}

/// A replica the source adds starts getting reads after its first probe, and no concurrent read fails.
#[tokio::test(start_paused = true)]
async fn source_adds_a_replica_under_read_load() {
    let (cluster, pool, handle) = setup_with_source(ABC, &["a", "b"]).await;
    assert_eq!(pool.topology().nodes.len(), 2);
    let stop = Arc::new(AtomicBool::new(false));
    let [reads, errors] = load(&pool, REPLICA, 4, &stop);
    sleep(ms(300)).await;
    assert_eq!(cluster.acquires("c"), 0);
    handle.add(cluster.spec("c"));
    wait_until("c to get reads", || cluster.acquires("c") > 0).await;
    sleep(ms(200)).await;
    stop.store(true, SeqCst);
    sleep(ms(50)).await;
    assert_eq!(errors.load(SeqCst), 0, "a read failed");
    assert!(reads.load(SeqCst) > 0);
    assert_eq!(pool.topology().nodes.len(), 3);
}

/// A node the source removes leaves the topology, its pool is closed, an event names it, and writes elsewhere are undisturbed.
#[tokio::test(start_paused = true)]
async fn source_removes_the_old_writer_without_disturbing_others() {
    let (cluster, pool, handle) = setup_with_source(ABC, &["a", "b", "c"]).await;
    cluster.set_health("a", MockHealth::Down);
    cluster.set_role("b", Primary, 2);
    wait_writer(&pool, Some("b")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let [written, errors] = load(&pool, Route::Writer, 1, &stop);
    sleep(ms(200)).await;
    let mut events = pool.subscribe();
    let old_a = pool.node_pool("a").unwrap();
    handle.remove("a");
    wait_until("a to leave", || pool.topology().node("a").is_none()).await;
    assert!(pool.node_pool("a").is_none());
    wait_until("a's pool to close", || old_a.is_closed()).await;
    sleep(ms(300)).await;
    stop.store(true, SeqCst);
    sleep(ms(50)).await;
    assert_eq!(errors.load(SeqCst), 0, "a write failed");
    assert!(written.load(SeqCst) > 0);
    assert_eq!(cluster.writes("b"), written.load(SeqCst));
    assert_eq!(writer(&pool).as_deref(), Some("b"));
    assert_event(&drain(&mut events), |e| {
        matches!(e, EventKind::EndpointsChanged { removed, .. }
            if removed.iter().any(|r| &**r == "a"))
    });
}

/// A writer the source names gets writes only once it reports itself primary; meanwhile writes wait and the old primary gets none.
#[tokio::test(start_paused = true)]
async fn source_named_writer_gets_writes_once_it_reports_primary() {
    let (cluster, pool, handle) = setup_with_source(ABC, &["a", "b", "c"]).await;
    assert_eq!(write_once(&pool).await, "a");
    let writes_a = cluster.writes("a");
    handle.set_writer(Some("b"));
    wait_until("the claim", || writer(&pool).is_none()).await;
    let call = spawn_get(&pool, Route::Writer);
    sleep(Duration::from_secs(1)).await;
    assert!(!call.is_finished(), "writes wait for the named writer");
    assert!(
        timeout(ms(300), pool.checkout(Route::Writer))
            .await
            .is_err()
    );
    assert_eq!(cluster.writes("a"), writes_a);
    cluster.set_role("b", Primary, 2);
    assert_eq!(call.await.unwrap().expect("served"), "b");
    assert_eq!(write_once(&pool).await, "b");
    assert_eq!(cluster.writes("a"), writes_a);
}

// ---- 10. secrets ----

/// Passwords in node URLs never show in a spec's, the pool's, the topology's, an event's or a URL error's output.
#[tokio::test(start_paused = true)]
async fn passwords_are_never_printed() {
    let secret = "hunter2";
    let spec = NodeSpec::from_url("postgres://app:hunter2@db-a/app", 5432).unwrap();
    assert!(!format!("{spec:?}").contains(secret));
    let cluster = cluster_of(AB);
    let specs = vec![
        NodeSpec::new("a", "mock://u:hunter2@a"),
        NodeSpec::new("b", "mock://u:hunter2@b"),
    ];
    assert!(!format!("{specs:?}").contains(secret));
    let config = config(PromotionPolicy::Manual);
    let pool = FailoverPool::new(MockBackend::new(&cluster, &config), specs, config.clone())
        .await
        .unwrap();
    let mut events = pool.subscribe();
    cluster.set_health("a", MockHealth::Down);
    wait_writer(&pool, None).await;
    pool.promote("b").await.unwrap();
    cluster.set_health("a", MockHealth::Up);
    wait_until("a to be fenced", || fenced(&pool, "a")).await;
    assert!(!format!("{pool:?}").contains(secret));
    assert!(!format!("{:?}", pool.topology()).contains(secret));
    let seen = drain(&mut events);
    assert!(
        seen.len() >= 4,
        "down, failover, promoted, fenced: {seen:?}"
    );
    for e in &seen {
        assert!(!format!("{e:?}").contains(secret), "{e:?}");
    }
    for bad in [
        "postgres://u:hunter2@db:notaport/app",
        "postgres://u:hunter2@a,b/app",
        "host=a,b password=hunter2",
    ] {
        let err = NodeSpec::from_url(bad, 5432).unwrap_err();
        let err2 = Pool::connect_with(&[bad], config.clone())
            .await
            .unwrap_err();
        for text in [
            err.to_string(),
            format!("{err:?}"),
            chain(&err2),
            format!("{err2:?}"),
        ] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(err2.code(), ErrorCode::Config);
    }
}

/// A pool fed by an endpoint discovery: nodes follow the discovered list,
/// and the endpoint discovery marks primary is the named writer.
#[tokio::test(start_paused = true)]
async fn discovery_feeds_the_node_set_and_names_the_writer() {
    let cluster = cluster_of(ABC);
    let endpoint = |id: &str, role| Endpoint::new(id, "mock", 1).with_role(role);
    let (discovery, handle) =
        MockDiscovery::new(vec![endpoint("a", Primary), endpoint("b", Replica)]);
    let source = DiscoveredTopology::new(discovery, |ep| format!("mock://{}", ep.id));
    let config = config(PromotionPolicy::External);
    let backend = MockBackend::new(&cluster, &config);
    let pool = FailoverPool::with_source(backend, source, config)
        .await
        .expect("pool");
    assert_eq!(write_once(&pool).await, "a");
    assert_eq!(pool.topology().claimed_writer.as_deref(), Some("a"));
    handle.add(endpoint("c", Replica));
    wait_until("c probed as a reader", || {
        let t = pool.topology();
        t.index_of("c").is_some_and(|i| t.readers.contains(&i))
    })
    .await;
    // The orchestrator moves the writer to b; b still reports replica, so
    // writes wait, and a gets none meanwhile.
    handle.replace(vec![
        endpoint("a", Replica),
        endpoint("b", Primary),
        endpoint("c", Replica),
    ]);
    wait_writer(&pool, None).await;
    let before = cluster.writes("a");
    let call = spawn_get(&pool, Route::Writer);
    sleep(ms(500)).await;
    assert!(
        !call.is_finished(),
        "a write was routed before b reported primary"
    );
    cluster.set_role("b", Primary, 2);
    cluster.set_role("a", Replica, 2);
    assert_eq!(call.await.unwrap().expect("served"), "b");
    assert_eq!(cluster.writes("a"), before);
    handle.remove("a");
    wait_until("a removed", || pool.topology().node("a").is_none()).await;
    assert_eq!(write_once(&pool).await, "b");
}

// ---- review findings, kept as regressions ----

/// Every acquire attempt, the first included, is bounded by the caller's deadline.
#[tokio::test(start_paused = true)]
async fn the_first_attempt_is_bounded_by_the_acquire_timeout() {
    let cluster = cluster_of(&[("a", Replica)]);
    cluster.set_health("a", MockHealth::Busy); // probes answer, acquires take connect_timeout
    let config = PoolConfig {
        acquire_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..config(PromotionPolicy::External)
    };
    let pool = FailoverPool::new(MockBackend::new(&cluster, &config), cluster.specs(), config)
        .await
        .expect("pool");
    let c2 = cluster.clone();
    tokio::spawn(async move {
        sleep(ms(1500)).await;
        c2.set_role("a", Primary, 1);
    });
    let started = Instant::now();
    let err = pool.checkout(Route::Writer).await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.code(), ErrorCode::NoNode, "{err}");
    assert!(
        waited <= Duration::from_secs(2),
        "waited {waited:?} with acquire_timeout 2s"
    );
}

/// A writer named by the source but not (yet) in the node set holds every write back.
#[tokio::test(start_paused = true)]
async fn a_claim_of_an_unknown_node_holds_writes_back() {
    let (cluster, pool, handle) = setup_with_source(AB, &["a", "b"]).await;
    handle.set_writer(Some("c"));
    wait_until("the claim applied", || {
        pool.topology().claimed_writer.as_deref() == Some("c")
    })
    .await;
    wait_writer(&pool, None).await;
    let call = spawn_get(&pool, Route::Writer);
    sleep(ms(500)).await;
    assert!(
        !call.is_finished(),
        "a write was routed while an unknown node is named"
    );
    assert_eq!(cluster.writes("a"), 0);
    handle.set_writer(None);
    assert_eq!(call.await.unwrap().expect("served"), "a");
}

/// In the round that promotes, one probe timeout of another replica counts once.
#[tokio::test(start_paused = true)]
async fn one_probe_timeout_in_the_promotion_round_counts_once() {
    let confirmation = Duration::from_secs(2);
    let (cluster, pool) = setup(
        ABC,
        PromotionPolicy::Automatic {
            confirmation,
            max_lag_bytes: 1024,
        },
    )
    .await;
    let mut events = pool.subscribe();
    cluster.set_health("a", MockHealth::Down);
    wait_writer(&pool, None).await;
    let lost = Instant::now();
    // `c` is frozen for less than one probe timeout, just before the window ends.
    tokio::time::sleep_until(lost + confirmation - ms(60)).await;
    cluster.set_health("c", MockHealth::Frozen);
    sleep(ms(150)).await;
    cluster.set_health("c", MockHealth::Up);
    wait_until("a promoted writer", || writer(&pool).is_some()).await;
    let c_down = drain(&mut events)
        .iter()
        .any(|e| matches!(&e.kind, EventKind::NodeDown { node, .. } if &**node == "c"));
    assert!(!c_down, "c was marked down after a single probe timeout");
}
