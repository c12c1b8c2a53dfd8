//! Two `FailoverCache` instances writing the same keys across a network
//! partition (through `FaultProxy`s): instance 1 reaches side a directly
//! and side b through a proxy, instance 2 side b directly and side a
//! through a proxy. Both proxies blackhole at once, so each instance
//! writes only to "its" side and queues for the other; after the heal,
//! both sides must hold the newest version of every key, whichever
//! instance wrote it.
#![cfg(all(feature = "drill", feature = "redis"))]

mod cache_support;

use cache_support::*;
use failover_pool::cache::Version;
use failover_pool::drill::{FaultProxy, ProxyMode};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const KEYS: usize = 100;
const TTL: Duration = Duration::from_secs(120);

fn addr(c: &failover_pool::drill::LocalRedisCluster) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], c.port(0)))
}

fn via(proxy: &FaultProxy) -> String {
    format!("redis://127.0.0.1:{}/", proxy.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_across_a_partition_converge_on_the_newest_version() {
    let (a, b) = two_sides().await;
    let to_b = FaultProxy::start(addr(&b)).await.expect("proxy to b");
    let to_a = FaultProxy::start(addr(&a)).await.expect("proxy to a");
    let prefix = "split:";
    let one = cache_at(&a.url(0), &via(&to_b), config("one", prefix)).await;
    let two = cache_at(&via(&to_a), &b.url(0), config("two", prefix)).await;
    assert_ne!(one.writer_id(), two.writer_id());

    let stop = Arc::new(AtomicBool::new(false));
    // Both instances write all keys (each with 2 writers over its keys).
    let origin = Instant::now();
    let l1 = tokio::spawn(mixed_load(one.clone(), 2, KEYS, TTL, origin, stop.clone()));
    let l2 = tokio::spawn(mixed_load(two.clone(), 2, KEYS, TTL, origin, stop.clone()));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let cut = origin.elapsed();
    to_b.set_mode(ProxyMode::Blackhole);
    to_a.set_mode(ProxyMode::Blackhole);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    to_b.set_mode(ProxyMode::Pass);
    to_a.set_mode(ProxyMode::Pass);
    let healed = origin.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (s1, s2) = (l1.await.expect("load one"), l2.await.expect("load two"));
    let stopped = Instant::now();
    for (name, s) in [("one", &s1), ("two", &s2)] {
        assert_eq!(
            s.caller_errors(),
            0,
            "{name} saw errors: {:?}",
            s.error_samples
        );
        eprintln!(
            "instance {name}: {} writes, {} queued; during the partition {}",
            s.calls.len(),
            s.queued,
            latency(s, cut, healed)
        );
    }
    let (in_sync_1, in_sync_2) = tokio::join!(
        one.wait_in_sync(Duration::from_secs(20)),
        two.wait_in_sync(Duration::from_secs(20))
    );
    assert!(in_sync_1, "one not repaired: {:#?}", one.stats());
    assert!(in_sync_2, "two not repaired: {:#?}", two.stats());
    eprintln!(
        "both repaired {:?} after the writers stopped",
        stopped.elapsed()
    );
    assert!(
        s1.queued > 0 && s2.queued > 0,
        "the partition queued nothing"
    );

    // The newest acknowledged version of each key, over both instances.
    let mut newest_of: BTreeMap<String, Version> = BTreeMap::new();
    for (key, last) in s1.last.iter().chain(s2.last.iter()) {
        let v = newest(newest_of.get(key).copied(), last.ack().version);
        newest_of.insert(key.clone(), v);
    }
    let content = assert_same(&a, &b, prefix).await;
    for (key, v) in &newest_of {
        // Each instance's last write of a key is its newest; the newest of
        // the two must stand on both sides (a tombstone may have expired
        // only if its TTL had passed, which it has not).
        let held = content
            .get(&format!("{prefix}{key}"))
            .unwrap_or_else(|| panic!("{key}: nothing on either side"));
        let header = held.header().expect("a versioned entry");
        assert_eq!(header.version, *v, "{key}: not the newest version");
    }
    eprintln!(
        "{} keys hold the newest version on both sides",
        newest_of.len()
    );
    one.close().await;
    two.close().await;
}
