//! `FailoverRedis` with Redis Sentinel as its topology source, over real
//! servers and three real sentinels (a `LocalRedisCluster` with sentinels).
//! Timings are printed (eprintln), never asserted.
#![cfg(all(feature = "drill", feature = "redis"))]

use failover_pool::drill::{LocalRedisCluster, RedisClusterOptions, RedisRole};
use failover_pool::pool::{PoolConfig, PromotionPolicy};
use failover_pool::redis::{FailoverRedis, SentinelTopology, is_unconfirmed};
use redis::AsyncCommands;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const WRITERS: usize = 4;

fn config() -> PoolConfig {
    PoolConfig {
        name: "sentinel-test".into(),
        probe_interval: Duration::from_millis(100),
        probe_timeout: Duration::from_millis(300),
        acquire_timeout: Duration::from_secs(15),
        connect_timeout: Duration::from_millis(500),
        promotion: PromotionPolicy::External,
        ..PoolConfig::default()
    }
}

async fn cluster() -> LocalRedisCluster {
    LocalRedisCluster::start(
        RedisClusterOptions::new()
            .replicas(2)
            .sentinels(true)
            .down_after(Duration::from_secs(1)),
    )
    .await
    .expect("start Redis with sentinels")
}

async fn pool(c: &LocalRedisCluster, sentinels: &[String]) -> FailoverRedis {
    let sentinels: Vec<&str> = sentinels.iter().map(String::as_str).collect();
    let source = SentinelTopology::new(c.master_name(), &sentinels, |host, port| {
        format!("redis://{host}:{port}/")
    })
    .unwrap()
    .refresh(Duration::from_millis(500));
    FailoverRedis::builder()
        .source(source)
        .config(config())
        .connect()
        .await
        .expect("connect through the sentinels")
}

fn id_of(c: &LocalRedisCluster, i: usize) -> String {
    format!("127.0.0.1:{}", c.port(i))
}

#[derive(Default)]
struct Seen {
    acked: Vec<u64>,
    unconfirmed: usize,
    errors: Vec<String>,
    first_after: Option<Instant>,
}

/// Writers SET `k:<n>` through `acknowledged(1, …)` until `stop`; records
/// the first acknowledged write after `mark` was set.
fn start_writers(
    pool: &FailoverRedis,
    stop: Arc<AtomicBool>,
    mark: Arc<std::sync::Mutex<Option<Instant>>>,
) -> tokio::task::JoinHandle<Seen> {
    let pool = pool.clone();
    tokio::spawn(async move {
        let next = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (pool, stop, next, mark) =
                    (pool.clone(), stop.clone(), next.clone(), mark.clone());
                tokio::spawn(async move {
                    let mut seen = Seen::default();
                    let mut durable = pool.acknowledged(1, Duration::from_millis(500));
                    while !stop.load(Ordering::Relaxed) {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        match durable.set::<_, _, ()>(format!("k:{n}"), n).await {
                            Ok(()) => {
                                seen.acked.push(n);
                                if seen.first_after.is_none() && mark.lock().unwrap().is_some() {
                                    seen.first_after = Some(Instant::now());
                                }
                            }
                            Err(e) if is_unconfirmed(&e) => seen.unconfirmed += 1,
                            Err(e) => seen.errors.push(describe(&e)),
                        }
                    }
                    seen
                })
            })
            .collect();
        let mut all = Seen::default();
        for t in tasks {
            let s = t.await.unwrap();
            all.acked.extend(s.acked);
            all.unconfirmed += s.unconfirmed;
            all.errors.extend(s.errors);
            all.first_after = match (all.first_after, s.first_after) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        all
    })
}

async fn keys_on(c: &LocalRedisCluster, i: usize) -> BTreeSet<u64> {
    c.keys_with_prefix(i, "k:")
        .await
        .unwrap()
        .iter()
        .filter_map(|k| k.strip_prefix("k:")?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_follows_sentinels_switch_and_the_restarted_old_master_gets_nothing() {
    let c = cluster().await;
    let r = pool(&c, &c.sentinel_urls()).await;
    assert_eq!(
        r.topology().writer_status().map(|w| w.id.to_string()),
        Some(id_of(&c, 0))
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mark = Arc::new(std::sync::Mutex::new(None));
    let load = start_writers(&r, stop.clone(), mark.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fault = Instant::now();
    c.kill(0).unwrap();
    let new = c
        .wait_sentinel_failover(c.port(0), Duration::from_secs(30))
        .await
        .unwrap();
    let switched = Instant::now();
    *mark.lock().unwrap() = Some(switched);
    // The old master comes back as a master (Sentinel demotes it some
    // seconds later): writers keep going, and a fresh pool starts now.
    c.restart(0).await.unwrap();
    let fresh = pool(&c, &c.sentinel_urls()).await;
    let mut f = fresh.clone();
    for n in 0..20u64 {
        let _: () = f.set(format!("k:fresh{n}"), n).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let old_master_keys = keys_on(&c, 0).await;
    stop.store(true, Ordering::Relaxed);
    let seen = load.await.unwrap();
    eprintln!(
        "sentinel switch {:?} after the crash; first write after the switch {:?} later; {} acked, {} unconfirmed, {} errors: {:?}",
        switched - fault,
        seen.first_after
            .map(|t| t.saturating_duration_since(switched)),
        seen.acked.len(),
        seen.unconfirmed,
        seen.errors.len(),
        seen.errors.iter().take(4).collect::<Vec<_>>()
    );
    // Sentinel may have changed its mind since (a failover it aborted and
    // ran again under load): the pool follows what the sentinels say now.
    let now = c
        .wait_sentinel_failover(c.port(0), Duration::from_secs(30))
        .await
        .unwrap();
    if now != new {
        eprintln!("Sentinel moved the master again: node {new}, then node {now}");
    }
    let new = now;
    r.refresh().await;
    fresh.refresh().await;
    assert_eq!(
        r.topology().writer_status().map(|w| w.id.to_string()),
        Some(id_of(&c, new))
    );
    assert_eq!(
        fresh.topology().writer_status().map(|w| w.id.to_string()),
        Some(id_of(&c, new))
    );
    // The restarted old master (empty, no persistence) got none of them,
    // whatever its role was meanwhile.
    assert!(old_master_keys.is_empty(), "{old_master_keys:?}");
    let on_new = keys_on(&c, new).await;
    let lost: Vec<_> = seen.acked.iter().filter(|n| !on_new.contains(n)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
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
async fn a_sentinel_dying_with_the_master_does_not_hide_the_switch() {
    let c = cluster().await;
    // The pool is told about one sentinel only; it learns the others from it.
    let first = c.sentinel_urls()[..1].to_vec();
    let mut r = pool(&c, &first).await;
    let _: () = r.set("k:0", 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await; // a refresh learns the others
    c.kill_sentinel(0).unwrap();
    c.kill(0).unwrap();
    let fault = Instant::now();
    let new = c
        .wait_sentinel_failover(c.port(0), Duration::from_secs(30))
        .await
        .unwrap();
    let switched = fault.elapsed();
    let _: () = r.set("k:1", 1).await.unwrap();
    eprintln!(
        "sentinel 0 and the master killed: the switch after {switched:?}, the write done {:?} after the fault",
        fault.elapsed()
    );
    assert_eq!(
        r.topology().writer_status().map(|w| w.id.to_string()),
        Some(id_of(&c, new))
    );
    assert!(matches!(
        c.role(new).await.unwrap(),
        RedisRole::Master { .. }
    ));
    assert!(keys_on(&c, new).await.contains(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_goes_through_sentinel() {
    let c = cluster().await;
    let mut r = pool(&c, &c.sentinel_urls()).await;
    let _: () = r.set("k:0", 0).await.unwrap();
    let started = Instant::now();
    let t = r.switchover(None, Duration::from_secs(30)).await.unwrap();
    let writer = t.writer_status().unwrap().id.to_string();
    eprintln!(
        "switchover through Sentinel: {writer} after {:?}",
        started.elapsed()
    );
    assert_ne!(writer, id_of(&c, 0));
    let _: () = r.set("k:1", 1).await.unwrap();
    let new = (1..3).find(|&i| id_of(&c, i) == writer).unwrap();
    // Sentinel itself names the new master, and the old one follows it.
    let named = c.sentinel_master_addr(0).await.unwrap();
    assert_eq!(named.map(|(_, p)| p), Some(c.port(new)));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let RedisRole::Replica { master_port, .. } = c.role(0).await.unwrap()
            && master_port == c.port(new)
        {
            break;
        }
        assert!(Instant::now() < deadline, "the old master never followed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(keys_on(&c, new).await, BTreeSet::from([0, 1]));
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
