//! FailoverPool over a real streaming-replication cluster (LocalPgCluster):
//! each test injects a real fault and checks the pool's rules (see `failover_pool::pool`).
//! Timings are printed (eprintln), never asserted.
#![cfg(all(feature = "drill", feature = "sqlx", feature = "deadpool-postgres"))]

use failover_pool::core::events::EventKind;
use failover_pool::drill::{LocalPgCluster, PgClusterOptions};
use failover_pool::pool::{FailoverPool, PoolConfig, PromotionPolicy, ReadPreference, Route};
use failover_pool::postgres::deadpool::DeadpoolPostgres;
use failover_pool::postgres::sqlx::FailoverPgPool;
use failover_pool::{Error, ErrorCode};
use sqlx::{Executor, Postgres};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

const TABLE: &str =
    "CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())";

fn config(promotion: PromotionPolicy) -> PoolConfig {
    PoolConfig {
        name: "test".into(),
        probe_interval: Duration::from_millis(200),
        probe_timeout: Duration::from_millis(500),
        acquire_timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(1),
        promotion,
        max_connections: 8,
        ..PoolConfig::default()
    }
}

fn automatic(confirm_ms: u64) -> PromotionPolicy {
    PromotionPolicy::Automatic {
        confirmation: Duration::from_millis(confirm_ms),
        max_lag_bytes: 64 * 1024 * 1024,
    }
}

async fn cluster(standbys: usize, synchronous: bool) -> LocalPgCluster {
    let c = LocalPgCluster::start(
        PgClusterOptions::new()
            .standbys(standbys)
            .synchronous(synchronous),
    )
    .await
    .expect("start cluster");
    c.exec(0, TABLE).await.unwrap();
    c.wait_caught_up().await.unwrap();
    c
}

async fn sqlx_pool(c: &LocalPgCluster, promotion: PromotionPolicy) -> FailoverPgPool {
    let urls = c.urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    FailoverPgPool::connect_with(&urls, config(promotion))
        .await
        .unwrap()
}

fn id_of(c: &LocalPgCluster, i: usize) -> String {
    format!("127.0.0.1:{}", c.node(i).port)
}

/// Writers insert unique ids until `stop`; returns the acknowledged ids and
/// when the first write after `fault_at` succeeded.
async fn write_until(
    pool: FailoverPgPool,
    stop: Arc<AtomicBool>,
    next: Arc<AtomicI64>,
    fault_at: Arc<std::sync::Mutex<Option<Instant>>>,
) -> (Vec<i64>, Option<Duration>, usize) {
    let mut acked = Vec::new();
    let mut first_after = None;
    let mut errors = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = next.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        match sqlx::query("INSERT INTO t (id) VALUES ($1)")
            .bind(id)
            .execute(&pool)
            .await
        {
            Ok(_) => {
                acked.push(id);
                let fault = *fault_at.lock().unwrap();
                if let Some(f) = fault
                    && first_after.is_none()
                    && started > f
                {
                    first_after = Some(started.elapsed() + started.duration_since(f));
                }
            }
            Err(_) => {
                errors += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    (acked, first_after, errors)
}

async fn ids_on(c: &LocalPgCluster, i: usize) -> BTreeSet<i64> {
    let client = c.connect(i).await.unwrap();
    client
        .query("SELECT id FROM t", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect()
}

async fn wait_writer(pool: &FailoverPgPool, id: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let t = pool.refresh().await;
        if t.writer_status().is_some_and(|w| &*w.id == id) {
            return;
        }
        assert!(Instant::now() < deadline, "writer never became {id}: {t:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Generic code written for `&PgPool` works with `&FailoverPgPool`.
async fn count_rows<'e>(e: impl Executor<'e, Database = Postgres>) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(e)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_in_for_pgpool() {
    let c = cluster(1, false).await;
    let pool = sqlx_pool(&c, PromotionPolicy::External).await;
    assert_eq!(
        pool.topology().writer_status().unwrap().id.as_ref(),
        id_of(&c, 0)
    );

    sqlx::query("INSERT INTO t (id) VALUES ($1)")
        .bind(1i64)
        .execute(&pool)
        .await
        .unwrap();
    let (id,): (i64,) = sqlx::query_as("SELECT id FROM t WHERE id = $1")
        .bind(1i64)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(id, 1);
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO t (id) VALUES (2)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(count_rows(&pool).await, 2);
    let mut tx = sqlx::Acquire::begin(&pool).await.unwrap();
    sqlx::query("INSERT INTO t (id) VALUES (3)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(count_rows(&pool).await, 2);
    let rows = sqlx::query("SELECT id FROM t ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);

    // An application error is returned as is and triggers no failover.
    let err = sqlx::query("INSERT INTO t (id) VALUES (1)")
        .execute(&pool)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().unwrap().code().as_deref(),
        Some("23505")
    );

    // Reads may go to the replica; read-your-writes waits for replay.
    let token = pool.write_token().await.unwrap();
    let reader = pool.reader_after(token).await.unwrap();
    assert_eq!(count_rows(&reader).await, 2);
    let replica = pool.reader_with(ReadPreference::Replica).await.unwrap();
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&replica)
        .await
        .unwrap();
    assert!(in_recovery, "Replica preference reads from the standby");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_under_writes_promotes_and_loses_no_acknowledged_write_with_sync_replication() {
    let c = cluster(1, true).await;
    let pool = sqlx_pool(&c, automatic(1000)).await;
    let mut events = pool.subscribe();
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicI64::new(1));
    let fault = Arc::new(std::sync::Mutex::new(None));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(write_until(
                pool.clone(),
                stop.clone(),
                next.clone(),
                fault.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.kill(0).unwrap();
    *fault.lock().unwrap() = Some(Instant::now());
    wait_writer(&pool, &id_of(&c, 1), Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = BTreeSet::new();
    let mut gaps = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (a, gap, e) = w.await.unwrap();
        acked.extend(a);
        gaps.extend(gap);
        errors += e;
    }
    let on_new = ids_on(&c, 1).await;
    let lost: Vec<_> = acked.difference(&on_new).collect();
    eprintln!(
        "crash: {} acked, {} lost, {} caller errors, kill->first write {:?}",
        acked.len(),
        lost.len(),
        errors,
        gaps.iter().min()
    );
    assert!(
        lost.is_empty(),
        "acknowledged writes lost with synchronous replication: {lost:?}"
    );
    assert!(!gaps.is_empty(), "writes continued on the new primary");
    let (mut started, mut promoted, mut finished) = (false, false, false);
    while let Ok(e) = events.try_recv() {
        started |= matches!(e.kind, EventKind::FailoverStarted { .. });
        promoted |= matches!(e.kind, EventKind::Promoted { .. });
        if let EventKind::FailoverFinished { duration, .. } = e.kind {
            eprintln!("crash: failover finished after {duration:?} (pool's own measure)");
            finished = true;
        }
    }
    assert!(
        started && promoted && finished,
        "started {started} promoted {promoted} finished {finished}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_primary_is_detected_by_timeouts_and_replaced() {
    let c = cluster(1, false).await;
    let pool = sqlx_pool(&c, automatic(1000)).await;
    sqlx::query("INSERT INTO t (id) VALUES (1)")
        .execute(&pool)
        .await
        .unwrap();
    let before = Instant::now();
    c.freeze(0).unwrap();
    // A new write started after the freeze waits for the new writer and succeeds.
    let write = tokio::time::timeout(
        Duration::from_secs(30),
        sqlx::query("INSERT INTO t (id) VALUES (2)").execute(&pool),
    )
    .await
    .expect("write must not hang: the pool waits for the new writer");
    eprintln!(
        "freeze: first write after {:?} ({:?})",
        before.elapsed(),
        write.as_ref().map(|_| ())
    );
    write.unwrap();
    assert_eq!(
        pool.topology().writer_status().unwrap().id.as_ref(),
        id_of(&c, 1)
    );
    c.thaw(0).unwrap();
    // The thawed old primary is on the old timeline: fenced, never written to.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = pool.refresh().await;
        if t.nodes[0].up {
            assert!(t.nodes[0].fenced, "old primary fenced after thaw: {t:?}");
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in 3..20i64 {
        sqlx::query("INSERT INTO t (id) VALUES ($1)")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    assert_eq!(
        c.count(0, "SELECT count(*) FROM t").await.unwrap(),
        1,
        "no write reached the fenced node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_shorter_than_the_confirmation_window_does_not_promote() {
    let c = cluster(1, false).await;
    let pool = sqlx_pool(&c, automatic(4000)).await;
    let mut events = pool.subscribe();
    c.kill(0).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.restart(0).await.unwrap();
    // A write during/after the outage goes to the same primary.
    sqlx::query("INSERT INTO t (id) VALUES (1)")
        .execute(&pool)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let t = pool.refresh().await;
    assert_eq!(t.writer_status().unwrap().id.as_ref(), id_of(&c, 0));
    assert!(c.is_in_recovery(1).await.unwrap(), "standby not promoted");
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(e.kind, EventKind::Promoted { .. }),
            "no promotion: {e:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_promotion_is_followed_and_the_old_primary_fenced() {
    let c = cluster(1, false).await;
    let pool = sqlx_pool(&c, PromotionPolicy::External).await;
    sqlx::query("INSERT INTO t (id) VALUES (1)")
        .execute(&pool)
        .await
        .unwrap();
    c.wait_caught_up().await.unwrap();
    let promoted_at = Instant::now();
    // An orchestrator promotes the standby while the old primary still runs: split brain.
    c.promote(1).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.topology().writer_status().map(|w| w.id.to_string()) != Some(id_of(&c, 1)) {
        assert!(
            Instant::now() < deadline,
            "pool did not follow the promotion"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "external: followed after {:?} (probe interval 200ms)",
        promoted_at.elapsed()
    );
    let t = pool.topology();
    assert!(t.nodes[0].fenced, "old primary fenced: {t:?}");
    for id in 2..10i64 {
        sqlx::query("INSERT INTO t (id) VALUES ($1)")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    assert_eq!(c.count(0, "SELECT count(*) FROM t").await.unwrap(), 1);
    assert_eq!(c.count(1, "SELECT count(*) FROM t").await.unwrap(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_inside_a_transaction_is_not_replayed_and_leaves_no_partial_rows() {
    let c = cluster(1, false).await;
    let pool = sqlx_pool(&c, automatic(500)).await;
    let cluster = Arc::new(c);
    let c2 = Arc::clone(&cluster);
    let runs = Arc::new(AtomicI64::new(0));
    let runs2 = Arc::clone(&runs);
    let err = pool
        .transaction(move |tx| {
            Box::pin(async move {
                runs2.fetch_add(1, Ordering::SeqCst);
                sqlx::query("INSERT INTO t (id) VALUES (100)")
                    .execute(&mut **tx)
                    .await?;
                c2.kill(0).unwrap();
                sqlx::query("INSERT INTO t (id) VALUES (101)")
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            })
        })
        .await
        .unwrap_err();
    assert_eq!(runs.load(Ordering::SeqCst), 1, "never replayed");
    assert!(err.is_failover(), "{err:?}");
    assert!(
        !err.may_have_executed(),
        "cut before COMMIT: rolled back: {err:?}"
    );
    wait_writer(&pool, &id_of(&cluster, 1), Duration::from_secs(30)).await;
    assert_eq!(
        cluster
            .count(1, "SELECT count(*) FROM t WHERE id >= 100")
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_cut_by_a_crash_is_outcome_unknown() {
    // Synchronous replication with the standby gone: COMMIT waits for an
    // acknowledgement that never comes; then the primary crashes.
    let c = cluster(1, true).await;
    let pool = sqlx_pool(&c, PromotionPolicy::External).await;
    c.kill(1).unwrap();
    let cluster = Arc::new(c);
    let killer = {
        let c = Arc::clone(&cluster);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            c.kill(0).unwrap();
        })
    };
    let err = pool
        .transaction(|tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO t (id) VALUES (7)")
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            })
        })
        .await
        .unwrap_err();
    killer.await.unwrap();
    assert_eq!(err.code(), ErrorCode::OutcomeUnknown, "{err:?}");
    assert!(err.may_have_executed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_to_the_dead_node_are_dropped() {
    let c = cluster(1, false).await;
    let pool = sqlx_pool(&c, automatic(500)).await;
    let old = pool.node_pool(&id_of(&c, 0)).unwrap();
    // Fill the old writer's pool with idle connections.
    let conns: Vec<_> = futures_util_join(&old, 4).await;
    drop(conns);
    let deadline = Instant::now() + Duration::from_secs(5);
    while old.num_idle() == 0 {
        assert!(
            Instant::now() < deadline,
            "connections never returned to the pool"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.kill(0).unwrap();
    wait_writer(&pool, &id_of(&c, 1), Duration::from_secs(30)).await;
    assert!(
        old.is_closed(),
        "the dead node's pool generation was retired"
    );
    assert_eq!(old.num_idle(), 0);
}

async fn futures_util_join(
    pool: &sqlx::PgPool,
    n: usize,
) -> Vec<sqlx::pool::PoolConnection<Postgres>> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(pool.acquire().await.unwrap());
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fall_back_to_the_primary_when_every_replica_is_down() {
    let c = cluster(2, false).await;
    let pool = sqlx_pool(&c, PromotionPolicy::External).await;
    c.kill(1).unwrap();
    c.kill(2).unwrap();
    let t = pool.refresh().await;
    assert!(t.readers.is_empty());
    let reader = pool.reader().await.unwrap(); // PreferReplica
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&reader)
        .await
        .unwrap();
    assert!(!in_recovery, "read served by the primary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_nodes_down_is_a_typed_error_after_the_acquire_timeout() {
    let c = cluster(1, false).await;
    let urls = c.urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let pool = FailoverPgPool::connect_with(
        &urls,
        PoolConfig {
            acquire_timeout: Duration::from_secs(2),
            ..config(automatic(500))
        },
    )
    .await
    .unwrap();
    c.kill(0).unwrap();
    c.kill(1).unwrap();
    let started = Instant::now();
    let err = pool.checkout(Route::Writer).await.map(|_| ()).unwrap_err();
    eprintln!("all down: error after {:?}", started.elapsed());
    assert_eq!(err.code(), ErrorCode::NoNode, "{err:?}");
    // The drop-in surface says what PgPool says when it cannot get a connection.
    let err = sqlx::query("SELECT 1").execute(&pool).await.unwrap_err();
    assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_old_primary_is_fenced_and_gets_no_write() {
    let c = cluster(1, false).await;
    let pool = sqlx_pool(&c, automatic(500)).await;
    sqlx::query("INSERT INTO t (id) VALUES (1)")
        .execute(&pool)
        .await
        .unwrap();
    c.wait_caught_up().await.unwrap();
    c.kill(0).unwrap();
    wait_writer(&pool, &id_of(&c, 1), Duration::from_secs(30)).await;
    // The old primary comes back as a primary on the old timeline.
    c.restart(0).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = pool.refresh().await;
        if t.nodes[0].up {
            assert!(t.nodes[0].fenced, "{t:?}");
            assert_eq!(t.writer_status().unwrap().id.as_ref(), id_of(&c, 1));
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in 2..50i64 {
        sqlx::query("INSERT INTO t (id) VALUES ($1)")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    assert_eq!(
        c.count(0, "SELECT count(*) FROM t").await.unwrap(),
        1,
        "no write reached the fenced node"
    );
    assert_eq!(c.count(1, "SELECT count(*) FROM t").await.unwrap(), 49);
    // Rejoined as a standby, it is unfenced and serves reads again.
    c.rejoin_as_standby(0, 1).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = pool.refresh().await;
        if t.nodes[0].up && !t.nodes[0].fenced && t.readers.contains(&0) {
            break;
        }
        assert!(Instant::now() < deadline, "{t:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_most_advanced_of_two_standbys_is_promoted() {
    let c = cluster(2, false).await;
    let pool = sqlx_pool(&c, automatic(500)).await;
    // Standby 2 stops replaying: it lags behind standby 1.
    c.exec(2, "SELECT pg_wal_replay_pause()").await.unwrap();
    for id in 1..200i64 {
        sqlx::query("INSERT INTO t (id) VALUES ($1)")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    let lsn = c.current_lsn(0).await.unwrap();
    c.wait_for_replay(1, lsn).await.unwrap();
    pool.refresh().await;
    c.kill(0).unwrap();
    wait_writer(&pool, &id_of(&c, 1), Duration::from_secs(30)).await;
    assert!(
        c.is_in_recovery(2).await.unwrap(),
        "the lagging standby was not promoted"
    );
    assert_eq!(c.count(1, "SELECT count(*) FROM t").await.unwrap(), 199);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_switchover_waits_for_catch_up() {
    let c = cluster(1, false).await;
    let pool = sqlx_pool(&c, PromotionPolicy::Manual).await;
    for id in 1..100i64 {
        sqlx::query("INSERT INTO t (id) VALUES ($1)")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    let t = pool
        .switchover(None, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(t.writer_status().unwrap().id.as_ref(), id_of(&c, 1));
    assert!(t.nodes[0].fenced);
    assert_eq!(
        c.count(1, "SELECT count(*) FROM t").await.unwrap(),
        99,
        "nothing lost"
    );
    // Writers released by the switchover go to the new primary only: the old
    // one (still a running primary, on the old timeline) gets nothing more.
    for id in 100..150i64 {
        sqlx::query("INSERT INTO t (id) VALUES ($1)")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    assert_eq!(c.count(0, "SELECT count(*) FROM t").await.unwrap(), 99);
    assert_eq!(c.count(1, "SELECT count(*) FROM t").await.unwrap(), 149);
    // Promoting the current writer again is idempotent.
    pool.promote(&id_of(&c, 1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadpool_backend_routes_fails_over_and_retires_old_connections() {
    let c = cluster(1, false).await;
    let urls = c.urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let pool = FailoverPool::<DeadpoolPostgres>::connect(&urls, config(automatic(500)))
        .await
        .unwrap();
    let w = pool.writer().await.unwrap();
    w.execute("INSERT INTO t (id) VALUES (1)", &[])
        .await
        .unwrap();
    drop(w);
    let r = pool.reader_with(ReadPreference::Replica).await.unwrap();
    let rec: bool = r
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(rec);
    drop(r);
    let old_gen = pool.node_pool(&id_of(&c, 0)).unwrap();
    c.kill(0).unwrap();
    let w = tokio::time::timeout(Duration::from_secs(30), pool.writer())
        .await
        .unwrap()
        .unwrap();
    w.execute("INSERT INTO t (id) VALUES (2)", &[])
        .await
        .unwrap();
    assert!(old_gen.is_closed(), "old generation retired");
    let token = pool.write_token().await.unwrap();
    assert!(token.epoch >= 2, "new timeline: {token:?}");
    pool.close().await;
    assert!(matches!(pool.writer().await, Err(Error::Closed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_application_instances_promote_without_racing_into_two_writers() {
    let c = cluster(2, false).await;
    let urls = c.urls();
    let make = |name: &'static str| {
        FailoverPgPool::builder()
            .urls(urls.clone())
            .config(config(automatic(500)))
            .name(name)
            .connect()
    };
    let (a, b) = (make("app-a").await.unwrap(), make("app-b").await.unwrap());
    sqlx::query("INSERT INTO t (id) VALUES (1)")
        .execute(&a)
        .await
        .unwrap();
    c.wait_caught_up().await.unwrap();
    c.kill(0).unwrap();
    // Both instances write; both may try to promote; promotion is idempotent
    // and both choose the same (most advanced, then first) standby.
    let (ra, rb) = tokio::join!(
        sqlx::query("INSERT INTO t (id) VALUES (2)").execute(&a),
        sqlx::query("INSERT INTO t (id) VALUES (3)").execute(&b),
    );
    ra.unwrap();
    rb.unwrap();
    let primaries: Vec<usize> = {
        let mut v = Vec::new();
        for i in 1..3 {
            if !c.is_in_recovery(i).await.unwrap() {
                v.push(i);
            }
        }
        v
    };
    assert_eq!(
        primaries.len(),
        1,
        "exactly one standby was promoted: {primaries:?}"
    );
    let wa = a.refresh().await.writer_status().unwrap().id.clone();
    let wb = b.refresh().await.writer_status().unwrap().id.clone();
    assert_eq!(wa, wb, "both instances agree on the writer");
    assert_eq!(
        c.count(primaries[0], "SELECT count(*) FROM t")
            .await
            .unwrap(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_switchover_does_not_hold_writers_back() {
    let c = cluster(1, false).await;
    let pool = sqlx_pool(&c, PromotionPolicy::Manual).await;
    // The standby stops replaying, so the switchover can never catch up.
    c.exec(1, "SELECT pg_wal_replay_pause()").await.unwrap();
    sqlx::query("INSERT INTO t (id) VALUES (1)")
        .execute(&pool)
        .await
        .unwrap();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(500),
        pool.switchover(None, Duration::from_secs(60)),
    )
    .await;
    assert!(
        cancelled.is_err(),
        "the switchover was still waiting for catch-up"
    );
    // Dropping it released the writers: this write is served at once, by the old primary.
    let started = Instant::now();
    sqlx::query("INSERT INTO t (id) VALUES (2)")
        .execute(&pool)
        .await
        .unwrap();
    eprintln!(
        "write after a cancelled switchover took {:?}",
        started.elapsed()
    );
    assert_eq!(
        pool.topology().writer_status().unwrap().id.as_ref(),
        id_of(&c, 0)
    );
    // A switchover that times out leaves everything as it was.
    let err = pool
        .switchover(None, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Timeout);
    sqlx::query("INSERT INTO t (id) VALUES (3)")
        .execute(&pool)
        .await
        .unwrap();
    assert!(c.is_in_recovery(1).await.unwrap(), "nothing was promoted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_node_pool_is_waited_for_not_failed_over() {
    let c = cluster(1, false).await;
    let urls = c.urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let pool = FailoverPool::<DeadpoolPostgres>::connect(
        &urls,
        PoolConfig {
            max_connections: 1,
            connect_timeout: Duration::from_millis(200),
            acquire_timeout: Duration::from_secs(10),
            ..config(PromotionPolicy::External)
        },
    )
    .await
    .unwrap();
    let epoch = pool.topology().epoch;
    let mut events = pool.subscribe();
    let held = pool.writer().await.unwrap();
    let p2 = pool.clone();
    let second = tokio::spawn(async move { p2.writer().await.map(|_| ()) });
    // Longer than the node pool's wait timeout (200 ms), several times over.
    tokio::time::sleep(Duration::from_millis(800)).await;
    drop(held);
    second
        .await
        .unwrap()
        .expect("the second caller gets the connection once it is free");
    assert_eq!(pool.topology().epoch, epoch, "no topology change");
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(
                e.kind,
                EventKind::NodeDown { .. } | EventKind::FailoverStarted { .. }
            ),
            "a busy pool is not a failure: {e:?}"
        );
    }
}
