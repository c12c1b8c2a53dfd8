//! Reconciliation over two real Redis servers: a repair queue that
//! overflows makes its side divergent, and the key scan the cache then
//! runs by itself brings it back; a process that dies with writes queued
//! loses them, and `reconcile()` in the next process repairs them —
//! deletes included.
#![cfg(all(feature = "drill", feature = "redis"))]

mod cache_support;

use cache_support::*;
use failover_pool::cache::{CacheEventKind, QueueConfig};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(120);

/// Sets keys `0..n` to `value`, then deletes every fifth; returns the
/// last operation per key.
async fn write_round(
    cache: &failover_pool::FailoverCache,
    n: usize,
    value: u64,
) -> BTreeMap<String, LastOp> {
    let mut last = BTreeMap::new();
    for k in 0..n {
        let key = k.to_string();
        let ack = cache.set(&key, &value, TTL).await.expect("set");
        last.insert(key, LastOp::Set { value, ack });
    }
    for k in (0..n).step_by(5) {
        let key = k.to_string();
        let ack = cache.delete(&key).await.expect("delete");
        last.insert(key, LastOp::Deleted { ack });
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflowing_queue_makes_the_side_divergent_and_a_key_scan_brings_it_back() {
    let (a, b) = two_sides().await;
    let prefix = "overflow:";
    let mut cfg = config("overflow", prefix);
    cfg.queue = QueueConfig {
        max_entries: 50,
        ..cfg.queue
    };
    let cache = cache(&a, &b, cfg).await;
    let mut events = cache.subscribe();
    write_round(&cache, 300, 1).await;

    // Frozen, side b keeps its old entries; it misses 300 sets and 60
    // deletes, far more than its queue holds.
    b.freeze(0).expect("freeze b");
    let last = write_round(&cache, 300, 2).await;
    let stats = cache.stats();
    eprintln!(
        "while frozen: side b divergent {}, backlog {}, divergent keys {}",
        stats.secondary.divergent,
        stats.secondary.backlog,
        stats.secondary.divergent_keys()
    );
    assert!(stats.secondary.divergent, "{stats:#?}");
    assert!(stats.secondary.backlog <= 50);
    b.thaw(0).expect("thaw b");
    let thawed = Instant::now();

    let synced = no_hang("reconcile", cache.wait_in_sync(Duration::from_secs(20))).await;
    let stats = cache.stats();
    assert!(synced, "not repaired: {stats:#?}");
    eprintln!(
        "repaired {:?} after the thaw: {} entries copied to b by the key scan, {} key scans",
        thawed.elapsed(),
        stats.secondary.reconciled_keys,
        stats.reconciliations
    );
    let content = assert_same(&a, &b, prefix).await;
    assert_matches(&content, prefix, &last);

    let mut saw = (false, false);
    while let Ok(e) = events.try_recv() {
        match e.kind {
            CacheEventKind::Divergent { .. } => saw.0 = true,
            CacheEventKind::Reconciled { report } => {
                eprintln!("key scan: {report:?}");
                saw.1 = true;
            }
            _ => {}
        }
    }
    assert_eq!(saw, (true, true), "divergence and reconciliation events");
    cache.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_by_a_process_that_died_are_repaired_by_reconcile_at_start() {
    let (a, b) = two_sides().await;
    let prefix = "crash:";
    let first = cache(&a, &b, config("first", prefix)).await;
    write_round(&first, 100, 1).await;
    b.freeze(0).expect("freeze b");
    let last = write_round(&first, 100, 2).await;
    let queued = first.stats().secondary.backlog;
    // The process dies: its queue is gone.
    first.close().await;
    drop(first);
    b.thaw(0).expect("thaw b");

    let second = cache(&a, &b, config("second", prefix)).await;
    let report = no_hang("reconcile", second.reconcile())
        .await
        .expect("reconcile");
    eprintln!("{queued} writes were queued when the first process died; reconcile: {report:?}");
    assert_eq!(report.copied_to_primary, 0);
    assert_eq!(report.copied_to_secondary, 100);
    assert_eq!(report.tombstones_copied, 20);
    let content = assert_same(&a, &b, prefix).await;
    assert_matches(&content, prefix, &last);
    // A second pass finds nothing to do.
    let again = second.reconcile().await.expect("reconcile");
    assert_eq!(again.copied_to_primary + again.copied_to_secondary, 0);
    second.close().await;
}
