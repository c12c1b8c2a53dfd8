//! `FailoverRedis` and `FailoverPool<DeadpoolRedis>` over real Redis
//! servers (a `LocalRedisCluster`: a master and replicas as processes on
//! free ports): each test injects a real fault and checks what the pool
//! guarantees. Timings are printed (eprintln), never asserted.
#![cfg(all(feature = "drill", feature = "deadpool-redis"))]

use failover_pool::drill::{LocalRedisCluster, RedisClusterOptions, RedisRole};
use failover_pool::pool::{Backend, FailoverPool, PoolConfig, PromotionPolicy, Route};
use failover_pool::redis::{DeadpoolRedis, FailoverRedis, is_unconfirmed};
use failover_pool::{Error, ErrorCode};
use redis::AsyncCommands;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn config(promotion: PromotionPolicy) -> PoolConfig {
    PoolConfig {
        name: "test".into(),
        probe_interval: Duration::from_millis(100),
        probe_timeout: Duration::from_millis(300),
        acquire_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_millis(500),
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

async fn cluster(replicas: usize) -> LocalRedisCluster {
    LocalRedisCluster::start(RedisClusterOptions::new().replicas(replicas))
        .await
        .expect("start a Redis cluster")
}

fn urls(c: &LocalRedisCluster) -> Vec<String> {
    c.urls()
}

async fn pool(c: &LocalRedisCluster, promotion: PromotionPolicy) -> FailoverRedis {
    FailoverRedis::connect_with(&urls(c), config(promotion))
        .await
        .expect("connect")
}

fn id_of(c: &LocalRedisCluster, i: usize) -> String {
    format!("127.0.0.1:{}", c.port(i))
}

async fn masters(c: &LocalRedisCluster, among: impl IntoIterator<Item = usize>) -> Vec<usize> {
    let mut v = Vec::new();
    for i in among {
        if let Ok(RedisRole::Master { .. }) = c.role(i).await {
            v.push(i);
        }
    }
    v
}

async fn wait_writer<B: Backend>(pool: &FailoverPool<B>, id: &str, within: Duration) {
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

/// What a set of writers saw.
#[derive(Default)]
struct Seen {
    acked: Vec<u64>,
    unconfirmed: usize,
    errors: Vec<String>,
    /// The first write acknowledged after the fault, measured from it.
    first_after_fault: Option<Duration>,
}

/// `writers` tasks SET `k:<n>` for fresh `n` (through `acknowledged(1, …)`
/// when `ack`) until `stop`.
async fn write_until(
    pool: &FailoverRedis,
    writers: usize,
    ack: bool,
    stop: Arc<AtomicBool>,
    fault_at: Arc<std::sync::Mutex<Option<Instant>>>,
) -> Seen {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (pool, stop, next, fault_at) =
            (pool.clone(), stop.clone(), next.clone(), fault_at.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut plain = pool.clone();
            let mut durable = pool.acknowledged(1, Duration::from_millis(500));
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let key = format!("k:{n}");
                let r: redis::RedisResult<()> = if ack {
                    durable.set(&key, n).await
                } else {
                    plain.set(&key, n).await
                };
                match r {
                    Ok(()) => {
                        seen.acked.push(n);
                        let at = *fault_at.lock().unwrap();
                        if let Some(at) = at
                            && seen.first_after_fault.is_none()
                        {
                            seen.first_after_fault = Some(at.elapsed());
                        }
                    }
                    Err(e) if is_unconfirmed(&e) => seen.unconfirmed += 1,
                    Err(e) => seen.errors.push(describe(&e)),
                }
            }
            seen
        }));
    }
    let mut all = Seen::default();
    for t in tasks {
        let s = t.await.unwrap();
        all.acked.extend(s.acked);
        all.unconfirmed += s.unconfirmed;
        all.errors.extend(s.errors);
        all.first_after_fault = match (all.first_after_fault, s.first_after_fault) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    all
}

async fn keys_on(c: &LocalRedisCluster, i: usize) -> BTreeSet<u64> {
    c.keys_with_prefix(i, "k:")
        .await
        .unwrap()
        .iter()
        .filter_map(|k| k.strip_prefix("k:")?.parse().ok())
        .collect()
}

/// Runs writers, injects `fault` after 300 ms, stops them `after` later.
async fn under_load(
    pool: &FailoverRedis,
    ack: bool,
    after: Duration,
    fault: impl AsyncFnOnce(),
) -> Seen {
    let stop = Arc::new(AtomicBool::new(false));
    let fault_at = Arc::new(std::sync::Mutex::new(None));
    let load = tokio::spawn({
        let (pool, stop, fault_at) = (pool.clone(), stop.clone(), fault_at.clone());
        async move { write_until(&pool, 4, ack, stop, fault_at).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    *fault_at.lock().unwrap() = Some(Instant::now());
    fault().await;
    tokio::time::sleep(after).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_pipelines_transactions_and_scripts_work_as_on_a_connection_manager() {
    let c = cluster(1).await;
    let mut r = pool(&c, PromotionPolicy::External).await;
    let _: () = r.set("a", 1).await.unwrap();
    let a: i64 = r.incr("a", 2).await.unwrap();
    assert_eq!(a, 3);
    let (x, y): (i64, String) = redis::pipe()
        .set("b", "x")
        .ignore()
        .incr("a", 1)
        .get("b")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!((x, y.as_str()), (4, "x"));
    let (z,): (i64,) = redis::pipe()
        .atomic()
        .incr("a", 1)
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(z, 5);
    let script = redis::Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    let s: i64 = script.key("a").arg(10).invoke_async(&mut r).await.unwrap();
    assert_eq!(s, 15);
    // The caller's own errors come back untouched, at once.
    let wrong: redis::RedisResult<i64> = r.lpush("a", 1).await;
    assert_eq!(wrong.unwrap_err().code(), Some("WRONGTYPE"));
    // Reads from the replica once it has the write.
    c.wait_caught_up().await.unwrap();
    let mut reader = r.reader().await.unwrap();
    let v: i64 = reader.get("a").await.unwrap();
    assert_eq!(v, 15);
    // The replica refuses writes; the reader handle does not route them to the master.
    let refused: redis::RedisResult<()> = reader.set("c", 1).await;
    eprintln!("a write on a reader handle: {refused:?}");
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_automatic_promotes_a_replica_and_loses_no_acknowledged_write() {
    let c = cluster(2).await;
    let r = pool(&c, automatic(300)).await;
    let seen = under_load(&r, true, Duration::from_secs(3), async || {
        c.kill(0).unwrap();
    })
    .await;
    eprintln!(
        "crash/automatic: {} acked, {} unconfirmed, {} errors, first write after the fault in {:?}; errors: {:?}",
        seen.acked.len(),
        seen.unconfirmed,
        seen.errors.len(),
        seen.first_after_fault,
        seen.errors.iter().take(5).collect::<Vec<_>>()
    );
    let promoted = masters(&c, [1, 2]).await;
    assert_eq!(promoted.len(), 1, "exactly one replica promoted");
    let new = promoted[0];
    assert_eq!(
        r.topology().writer_status().map(|w| w.id.to_string()),
        Some(id_of(&c, new))
    );
    // The other replica follows the new master.
    let other = 3 - new;
    c.wait_link_up(other).await.unwrap();
    match c.role(other).await.unwrap() {
        RedisRole::Replica { master_port, .. } => assert_eq!(master_port, c.port(new)),
        role => panic!("node {other} is {role:?}"),
    }
    // Every write a replica confirmed survived the crash.
    let on_new = keys_on(&c, new).await;
    let lost: Vec<_> = seen.acked.iter().filter(|n| !on_new.contains(n)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(seen.first_after_fault.is_some(), "writes resumed");
    // Only operations cut off in flight by the crash fail (a reset or a
    // broken pipe: they may have run); none is refused, none waits in vain
    // (how many there are is timing: the drill reports it).
    assert!(
        seen.errors.iter().all(|e| in_flight(e)),
        "caller errors: {:?}",
        seen.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_old_master_gets_no_write_from_the_running_pool_or_a_fresh_one() {
    let c = cluster(2).await;
    let r = pool(&c, automatic(300)).await;
    let seen = under_load(&r, false, Duration::from_millis(1500), async || {
        c.kill(0).unwrap();
    })
    .await;
    let new = masters(&c, [1, 2]).await[0];
    // The old master comes back as a master (empty: no persistence) while
    // writers keep going, and a fresh pool starts at that moment.
    let late = under_load(&r, false, Duration::from_secs(2), async || {
        c.restart(0).await.unwrap();
        let fresh = pool(&c, automatic(300)).await;
        let mut f = fresh.clone();
        for n in 0..50u64 {
            let _: () = f.set(format!("k:fresh{n}"), n).await.unwrap();
        }
        assert_eq!(
            fresh.topology().writer_status().map(|w| w.id.to_string()),
            Some(id_of(&c, new)),
            "the fresh pool writes to the promoted node"
        );
    })
    .await;
    assert!(matches!(c.role(0).await.unwrap(), RedisRole::Master { .. }));
    assert_eq!(
        c.dbsize(0).await.unwrap(),
        0,
        "the restarted old master got writes"
    );
    // Everything written once the promoted node had the role is on it.
    let on_new = keys_on(&c, new).await;
    let lost: Vec<_> = late.acked.iter().filter(|n| !on_new.contains(n)).collect();
    assert!(lost.is_empty(), "writes lost: {lost:?}");
    let fenced = r
        .topology()
        .nodes
        .iter()
        .find(|n| *n.id == *id_of(&c, 0))
        .map(|n| n.fenced);
    eprintln!(
        "restart-old: {} + {} writes, old master fenced in the pool's view: {fenced:?}",
        seen.acked.len(),
        late.acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thawed_old_master_is_fenced_by_lineage() {
    let c = cluster(2).await;
    let r = pool(&c, automatic(300)).await;
    let _ = under_load(&r, false, Duration::from_secs(2), async || {
        c.freeze(0).unwrap();
    })
    .await;
    let new = masters(&c, [1, 2]).await[0];
    let before = c.dbsize(0).await;
    assert!(before.is_err(), "node 0 is frozen");
    c.thaw(0).unwrap();
    // It still claims master, on the history the promotion continued.
    assert!(matches!(c.role(0).await.unwrap(), RedisRole::Master { .. }));
    let keys_then = keys_on(&c, 0).await;
    let seen = under_load(&r, false, Duration::from_secs(1), async || {}).await;
    let fresh = pool(&c, automatic(300)).await;
    let mut f = fresh.clone();
    for n in 0..50u64 {
        let _: () = f.set(format!("k:fresh{n}"), n).await.unwrap();
    }
    assert_eq!(
        keys_on(&c, 0).await,
        keys_then,
        "the thawed old master got writes"
    );
    assert_eq!(
        fresh.topology().writer_status().map(|w| w.id.to_string()),
        Some(id_of(&c, new))
    );
    eprintln!(
        "thaw-old: {} writes after the thaw, none on it",
        seen.acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_live_master_is_left_without_callers_getting_readonly() {
    let c = cluster(1).await;
    let r = pool(&c, PromotionPolicy::External).await;
    let old_pool = r.node_pool(&id_of(&c, 0)).unwrap();
    let seen = under_load(&r, false, Duration::from_secs(2), async || {
        c.promote(1).await.unwrap();
        c.replicaof(0, 1).await.unwrap();
    })
    .await;
    eprintln!(
        "demotion: {} writes, errors {:?}, first after {:?}",
        seen.acked.len(),
        seen.errors,
        seen.first_after_fault
    );
    // No caller got READONLY (or anything else): refused commands waited
    // for the new master.
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    assert_eq!(
        r.topology().writer_status().map(|w| w.id.to_string()),
        Some(id_of(&c, 1))
    );
    assert!(
        old_pool.is_closed(),
        "the demoted master's connections were retired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_shorter_than_the_confirmation_window_promotes_nobody() {
    let c = cluster(1).await;
    let r = pool(&c, automatic(2000)).await;
    let seen = under_load(&r, false, Duration::from_secs(2), async || {
        c.freeze(0).unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        c.thaw(0).unwrap();
    })
    .await;
    eprintln!(
        "short outage: {} writes, {} errors",
        seen.acked.len(),
        seen.errors.len()
    );
    assert!(matches!(
        c.role(1).await.unwrap(),
        RedisRole::Replica { .. }
    ));
    assert_eq!(
        r.topology().writer_status().map(|w| w.id.to_string()),
        Some(id_of(&c, 0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_is_skipped_and_read_your_writes_holds() {
    let c = cluster(2).await;
    let mut cfg = config(PromotionPolicy::External);
    cfg.max_replica_lag_bytes = Some(1024);
    let mut r = FailoverRedis::connect_with(&urls(&c), cfg).await.unwrap();
    c.pause_replication(1).await.unwrap();
    let big = "x".repeat(4096);
    for n in 0..20u64 {
        let _: () = r.set(format!("big:{n}"), &big).await.unwrap();
        let token = r.write_token().await.unwrap();
        let mut after = r.reader_after(token).await.unwrap();
        let v: Option<String> = after.get(format!("big:{n}")).await.unwrap();
        assert_eq!(v.as_deref(), Some(big.as_str()), "read your write {n}");
    }
    // Plain reads: the lagging replica is past the byte bound, so they go to
    // the other replica (or the master), which has every key.
    r.refresh().await;
    let mut reader = r.reader().await.unwrap();
    for _ in 0..20 {
        let v: Option<String> = reader.get("big:19").await.unwrap();
        assert!(v.is_some(), "a read went to the lagging replica");
    }
    c.resume_replication(1).await.unwrap();
    c.wait_caught_up().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_application_instances_promote_exactly_one_replica() {
    let c = cluster(2).await;
    let cfg = |name: &str| PoolConfig {
        name: name.into(),
        ..config(automatic(300))
    };
    let a = FailoverRedis::connect_with(&urls(&c), cfg("app-a"))
        .await
        .unwrap();
    let b = FailoverRedis::connect_with(&urls(&c), cfg("app-b"))
        .await
        .unwrap();
    let (mut wa, mut wb) = (a.clone(), b.clone());
    let _: () = wa.set("k:0", 0).await.unwrap();
    c.wait_caught_up().await.unwrap();
    c.kill(0).unwrap();
    // Writes started after the crash (their connections are idle and
    // dead): they wait for the new master instead of failing.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (ra, rb): (redis::RedisResult<()>, redis::RedisResult<()>) =
        tokio::join!(wa.set("k:1", 1), wb.set("k:2", 2));
    ra.unwrap();
    rb.unwrap();
    let promoted = masters(&c, [1, 2]).await;
    assert_eq!(
        promoted.len(),
        1,
        "exactly one replica promoted: {promoted:?}"
    );
    let ida = a.refresh().await.writer_status().unwrap().id.clone();
    let idb = b.refresh().await.writer_status().unwrap().id.clone();
    assert_eq!(ida, idb, "both instances agree on the writer");
    assert_eq!(keys_on(&c, promoted[0]).await.len(), 3);
}

/// Runs on one thread (a current-thread runtime), so that the CPU time of
/// that thread is the pool's, whatever the other tests do meanwhile.
#[test]
fn all_nodes_down_is_a_typed_error_after_the_acquire_timeout() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = cluster(1).await;
        let mut cfg = config(automatic(300));
        cfg.acquire_timeout = Duration::from_secs(1);
        let mut r = FailoverRedis::connect_with(&urls(&c), cfg).await.unwrap();
        c.kill(0).unwrap();
        c.kill(1).unwrap();
        let cpu_before = thread_cpu_ticks();
        let started = Instant::now();
        let err = match r.checkout(Route::Writer).await {
            Err(e) => e,
            Ok(_) => panic!("a connection with every node down"),
        };
        eprintln!("all down: {err} after {:?}", started.elapsed());
        assert_eq!(err.code(), ErrorCode::NoNode);
        assert!(matches!(err, Error::NoNode { .. }));
        // Through the Redis surface: an I/O error (timed out), like a
        // ConnectionManager's for an unreachable server.
        let e: redis::RedisError = r.set::<_, _, ()>("x", 1).await.unwrap_err();
        assert!(e.is_timeout() || e.is_io_error(), "{e:?}");
        // Waiting is not a busy loop: far less than a core's worth of CPU.
        let cpu = thread_cpu_ticks() - cpu_before;
        let wall = started.elapsed().as_millis() as u64 / 10;
        eprintln!("{cpu} CPU ticks over {wall} ticks of waiting");
        assert!(cpu * 4 < wall, "{cpu} CPU ticks in {wall}: a busy loop");
    });
}

/// This thread's user + system CPU time, in clock ticks (1/100 s).
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadpool_backend_routes_fails_over_and_retires_the_old_generation() {
    let c = cluster(1).await;
    let pool: FailoverPool<DeadpoolRedis> =
        FailoverPool::connect_with(&urls(&c), config(automatic(300)))
            .await
            .unwrap();
    {
        let mut w = pool.writer().await.unwrap();
        let _: () = w.set("k:1", 1).await.unwrap();
    }
    c.wait_caught_up().await.unwrap();
    {
        let mut rd = pool.reader().await.unwrap();
        assert_eq!(rd.node_id().as_ref(), id_of(&c, 1));
        let v: i64 = rd.get("k:1").await.unwrap();
        assert_eq!(v, 1);
    }
    let old = pool.node_pool(&id_of(&c, 0)).unwrap();
    c.kill(0).unwrap();
    let started = Instant::now();
    let mut w = pool.writer().await.unwrap();
    eprintln!(
        "deadpool: a writer after the crash in {:?}",
        started.elapsed()
    );
    assert_eq!(w.node_id().as_ref(), id_of(&c, 1));
    let _: () = w.set("k:2", 2).await.unwrap();
    drop(w);
    assert!(old.is_closed(), "the dead master's pool was closed");
    // The old master restarted as a master gets nothing from this pool.
    c.restart(0).await.unwrap();
    pool.refresh().await;
    for n in 3..20 {
        let mut w = pool.writer().await.unwrap();
        let _: () = w.set(format!("k:{n}"), n).await.unwrap();
    }
    assert_eq!(c.dbsize(0).await.unwrap(), 0);
    wait_writer(&pool, &id_of(&c, 1), Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_switchover_waits_for_catch_up_and_swaps_roles() {
    let c = cluster(1).await;
    let mut r = pool(&c, PromotionPolicy::Manual).await;
    let _: () = r.set("k:1", 1).await.unwrap();
    let started = Instant::now();
    r.switchover(None, Duration::from_secs(10)).await.unwrap();
    eprintln!("switchover took {:?}", started.elapsed());
    wait_writer(&r, &id_of(&c, 1), Duration::from_secs(5)).await;
    let _: () = r.set("k:2", 2).await.unwrap();
    assert!(matches!(
        c.role(0).await.unwrap(),
        RedisRole::Replica { .. }
    ));
    c.wait_caught_up().await.unwrap();
    assert_eq!(keys_on(&c, 1).await.len(), 2);
    assert_eq!(keys_on(&c, 0).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadpool_never_hands_out_a_connection_to_a_demoted_master() {
    let c = cluster(1).await;
    let pool: FailoverPool<DeadpoolRedis> =
        FailoverPool::connect_with(&urls(&c), config(PromotionPolicy::External))
            .await
            .unwrap();
    // A connection to the master, checked out across the demotion.
    let mut held = pool.writer().await.unwrap();
    let _: () = held.set("k:1", 1).await.unwrap();
    let old = pool.node_pool(&id_of(&c, 0)).unwrap();
    c.promote(1).await.unwrap();
    c.replicaof(0, 1).await.unwrap();
    wait_writer(&pool, &id_of(&c, 1), Duration::from_secs(5)).await;
    // The held connection now gets READONLY; reporting it is the caller's part.
    let refused: redis::RedisResult<()> = held.set("k:2", 2).await;
    let e = refused.unwrap_err();
    assert_eq!(e.code(), Some("READONLY"));
    held.report(&failover_pool::redis::RedisDeadpoolError::Redis(e));
    drop(held);
    assert!(
        old.is_closed(),
        "the demoted master's pool generation was retired"
    );
    // Every connection handed out from now on is on the new master.
    for n in 3..30 {
        let mut w = pool.writer().await.unwrap();
        assert_eq!(w.node_id().as_ref(), id_of(&c, 1));
        let _: () = w.set(format!("k:{n}"), n).await.unwrap();
    }
}

/// A caller's error, marked `in flight:` when it is of the kinds an
/// operation cut off by a crash gets (I/O: reset, broken pipe, timeout).
fn describe(e: &redis::RedisError) -> String {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
        format!("in flight: {e}")
    } else {
        e.to_string()
    }
}

/// Whether a caller's error is one an operation in flight at a crash gets.
fn in_flight(error: &str) -> bool {
    error.starts_with("in flight: ")
}
