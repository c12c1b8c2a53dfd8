//! A changing node set and long-lived handles, against a real
//! streaming-replication cluster (LocalPgCluster): a scripted topology
//! source adds a standby under read load and removes the old primary after
//! a failover; `writer()`/`reader()` handles taken before a failover keep
//! working after it, on both backends; the deadpool facade's transactions
//! follow the same outcome rules as sqlx's. Timings are printed, never asserted.
#![cfg(all(feature = "drill", feature = "sqlx", feature = "deadpool-postgres"))]

use failover_pool::core::events::EventKind;
use failover_pool::drill::{LocalPgCluster, PgClusterOptions};
use failover_pool::pool::{
    FailoverPool, ManualTopology, NodeSpec, PoolConfig, PromotionPolicy, ReadPreference, Route,
    TopologyView,
};
use failover_pool::postgres::{DeadpoolPostgres, FailoverPgPool};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

fn config() -> PoolConfig {
    PoolConfig {
        name: "topology".into(),
        probe_interval: Duration::from_millis(200),
        probe_timeout: Duration::from_millis(500),
        acquire_timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(1),
        promotion: PromotionPolicy::Automatic {
            confirmation: Duration::from_millis(500),
            max_lag_bytes: 64 << 20,
        },
        max_connections: 4,
        ..PoolConfig::default()
    }
}

async fn cluster(standbys: usize) -> LocalPgCluster {
    let c = LocalPgCluster::start(PgClusterOptions::new().standbys(standbys))
        .await
        .expect("start cluster");
    c.exec(0, "CREATE TABLE t (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    c.wait_caught_up().await.unwrap();
    c
}

fn spec(c: &LocalPgCluster, i: usize) -> NodeSpec {
    NodeSpec::from_url(&c.node(i).url(), 5432).unwrap()
}

async fn wait_for(what: &str, within: Duration, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads on `Route::Reader(Replica)` in a loop until `stop`; counts
/// successes and errors, and which server answered (`inet_server_port()`).
fn read_load(
    pool: &FailoverPgPool,
    stop: &Arc<AtomicBool>,
    ports: Arc<std::sync::Mutex<std::collections::BTreeMap<i32, u64>>>,
) -> (Arc<AtomicU64>, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let (ok, err) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reader = pool.route(Route::Reader(ReadPreference::Replica));
    let task = tokio::spawn({
        let (ok, err, stop) = (Arc::clone(&ok), Arc::clone(&err), Arc::clone(stop));
        async move {
            while !stop.load(Relaxed) {
                match sqlx::query_scalar::<_, i32>("SELECT inet_server_port()")
                    .fetch_one(&reader)
                    .await
                {
                    Ok(port) => {
                        ok.fetch_add(1, Relaxed);
                        *ports.lock().unwrap().entry(port).or_default() += 1;
                    }
                    Err(e) => {
                        err.fetch_add(1, Relaxed);
                        eprintln!("read error: {e}");
                    }
                }
            }
        }
    });
    (ok, err, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_source_adds_a_standby_under_load_and_removes_the_old_primary() {
    let c = cluster(2).await;
    let (source, handle) = ManualTopology::new(TopologyView::new(vec![spec(&c, 0), spec(&c, 1)]));
    let pool = FailoverPgPool::builder()
        .source(source)
        .config(config())
        .connect()
        .await
        .unwrap();
    let mut events = pool.subscribe();
    assert_eq!(pool.topology().nodes.len(), 2);

    // Add the second standby while readers are busy on the first.
    let stop = Arc::new(AtomicBool::new(false));
    let ports = Arc::default();
    let (ok, err, readers) = read_load(&pool, &stop, Arc::clone(&ports));
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.add(spec(&c, 2));
    let added = Instant::now();
    let new_port = c.node(2).port as i32;
    wait_for(
        "reads served by the added standby",
        Duration::from_secs(10),
        async || ports.lock().unwrap().get(&new_port).is_some_and(|&n| n > 0),
    )
    .await;
    eprintln!(
        "added standby served its first read {:?} after the source added it",
        added.elapsed()
    );
    stop.store(true, Relaxed);
    readers.await.unwrap();
    assert_eq!(err.load(Relaxed), 0, "adding a node disturbed no reader");
    assert!(ok.load(Relaxed) > 0);
    eprintln!("reads by server port: {:?}", ports.lock().unwrap());

    // Fail over: the primary crashes, the pool promotes a standby.
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&pool)
        .await
        .unwrap();
    let old = spec(&c, 0).id;
    c.kill(0).unwrap();
    wait_for("a new writer", Duration::from_secs(30), async || {
        pool.topology().writer_status().is_some_and(|w| w.id != old)
    })
    .await;
    let new_writer = pool.topology().writer_status().unwrap().id.clone();
    // Writes go on while the source removes the dead node.
    let writes = tokio::spawn({
        let pool = pool.clone();
        async move {
            for id in 2..200_i64 {
                sqlx::query("INSERT INTO t VALUES ($1)")
                    .bind(id)
                    .execute(&pool)
                    .await
                    .expect("a write during the removal");
            }
        }
    });
    let old_pool = pool.node_pool(&old).unwrap();
    handle.remove(&old);
    wait_for(
        "the old primary gone",
        Duration::from_secs(10),
        async || pool.topology().node(&old).is_none(),
    )
    .await;
    writes.await.unwrap();
    assert!(old_pool.is_closed(), "the removed node's pool was closed");
    assert_eq!(pool.topology().writer_status().unwrap().id, new_writer);
    let mut removed = false;
    while let Ok(e) = events.try_recv() {
        if let EventKind::EndpointsChanged { removed: r, .. } = &e.kind {
            removed |= r.contains(&old);
        }
    }
    assert!(removed, "an EndpointsChanged event named the removed node");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t WHERE id >= 2")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 198, "every write of the loop is on the new primary");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_taken_before_a_failover_keep_working_after_it() {
    let c = cluster(1).await;
    let urls = c.urls();
    let sqlx_pool = FailoverPgPool::connect_with(&urls, config()).await.unwrap();
    let deadpool = FailoverPool::<DeadpoolPostgres>::connect_with(&urls, config())
        .await
        .unwrap();
    // Taken before the failover, kept across it.
    let writer = sqlx_pool.writer().await.unwrap();
    let reader = sqlx_pool.reader().await.unwrap();
    let dp_writer = deadpool.route(Route::Writer);
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&writer)
        .await
        .unwrap();
    dp_writer
        .checkout()
        .await
        .unwrap()
        .execute("INSERT INTO t VALUES (2)", &[])
        .await
        .unwrap();

    c.kill(0).unwrap();
    let started = Instant::now();
    // The first write through the old handle waits for the new writer.
    sqlx::query("INSERT INTO t VALUES (3)")
        .execute(&writer)
        .await
        .expect("the writer handle follows the failover");
    eprintln!(
        "sqlx writer handle: first write after the kill in {:?}",
        started.elapsed()
    );
    let rec: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&reader)
        .await
        .expect("the reader handle follows the failover");
    assert!(!rec, "the only node left is the new primary");
    let conn = dp_writer
        .checkout()
        .await
        .expect("the deadpool handle follows the failover");
    conn.execute("INSERT INTO t VALUES (4)", &[]).await.unwrap();
    assert_eq!(conn.node_id().as_ref(), spec(&c, 1).id.as_ref());
    drop(conn);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t WHERE id IN (3, 4)")
        .fetch_one(&writer)
        .await
        .unwrap();
    assert_eq!(n, 2);
    sqlx_pool.close().await;
    deadpool.close().await;
}

/// The deadpool facade's `transaction` keeps the same outcome rules as the
/// sqlx one: committed on success; the body's own error rolls back and says
/// it did not execute; a crash between two statements is failover-class,
/// not executed, never replayed, and leaves no partial rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadpool_transactions_commit_roll_back_and_are_never_replayed() {
    let c = Arc::new(cluster(1).await);
    let pool = FailoverPool::<DeadpoolPostgres>::connect_with(&c.urls(), config())
        .await
        .unwrap();
    pool.transaction(|tx| {
        Box::pin(async move {
            tx.execute("INSERT INTO t VALUES (1)", &[]).await?;
            tx.execute("INSERT INTO t VALUES (2)", &[]).await
        })
    })
    .await
    .expect("committed");
    let err = pool
        .transaction(|tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO t VALUES (3)", &[]).await?;
                tx.execute("INSERT INTO t VALUES (1)", &[]).await // unique violation
            })
        })
        .await
        .unwrap_err();
    assert!(!err.is_failover(), "{err:?}");
    assert!(!err.may_have_executed(), "rolled back: {err:?}");
    let runs = Arc::new(AtomicU64::new(0));
    let (c2, runs2) = (Arc::clone(&c), Arc::clone(&runs));
    let err = pool
        .transaction(move |tx| {
            Box::pin(async move {
                runs2.fetch_add(1, Relaxed);
                tx.execute("INSERT INTO t VALUES (100)", &[]).await?;
                c2.kill(0).unwrap();
                tx.execute("INSERT INTO t VALUES (101)", &[]).await
            })
        })
        .await
        .unwrap_err();
    assert_eq!(runs.load(Relaxed), 1, "never replayed");
    assert!(err.is_failover(), "{err:?}");
    assert!(!err.may_have_executed(), "cut before COMMIT: {err:?}");
    let new_writer = spec(&c, 1).id;
    wait_for(
        "the standby promoted",
        Duration::from_secs(30),
        async || {
            pool.topology()
                .writer_status()
                .is_some_and(|w| w.id == new_writer)
        },
    )
    .await;
    assert_eq!(
        c.count(1, "SELECT count(*) FROM t WHERE id = 3 OR id >= 100")
            .await
            .unwrap(),
        0
    );
    pool.close().await;
}
