//! `FailoverCache` over two real Redis servers while one side fails under
//! a mixed set/delete load: killed and restarted empty, or frozen
//! (`SIGSTOP`). Callers must see no error (policy `Both`), and once the
//! side is repaired both sides must hold the same entries: every
//! acknowledged value with its version, no deleted value, every expiry the
//! absolute one the write set. Latencies are printed, never asserted.
#![cfg(all(feature = "drill", feature = "redis"))]

mod cache_support;

use cache_support::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const KEYS: usize = 300;
const TTL: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_killed_under_load_and_restarted_empty_is_repaired() {
    let (a, b) = two_sides().await;
    let prefix = "kill:";
    let cache = cache(&a, &b, config("kill", prefix)).await;
    // Every key written once, so a side restarted empty misses them all.
    let mut expected = preload(&cache, KEYS, TTL).await.expect("preload");

    let stop = Arc::new(AtomicBool::new(false));
    let origin = Instant::now();
    let writes = mixed_load(cache.clone(), 4, KEYS, TTL, origin, stop.clone());
    let load = tokio::spawn(writes);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = origin.elapsed();
    b.kill(0).expect("kill b");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.restart(0).await.expect("restart b");
    let restarted = origin.elapsed();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = load.await.expect("load");
    let stopped = Instant::now();
    assert_eq!(
        seen.caller_errors(),
        0,
        "callers saw errors: {:?}",
        seen.error_samples
    );

    let synced = no_hang("repair", cache.wait_in_sync(Duration::from_secs(20))).await;
    let stats = cache.stats();
    assert!(synced, "not repaired: {stats:#?}");
    eprintln!(
        "kill/restart: {} writes ({} queued for a side); repaired {:?} after the load stopped",
        seen.calls.len(),
        seen.queued,
        stopped.elapsed()
    );
    eprintln!(
        "  before the kill: {}",
        latency(&seen, Duration::ZERO, killed)
    );
    eprintln!("  side down:       {}", latency(&seen, killed, restarted));
    eprintln!(
        "  after restart:   {}",
        latency(&seen, restarted, Duration::MAX)
    );
    eprintln!(
        "  side b: acked {}, queued {}, replayed {}, superseded {}, reconciled {}, divergences {}; key scans {}",
        stats.secondary.acked_writes,
        stats.secondary.queued_writes,
        stats.secondary.replayed,
        stats.secondary.superseded,
        stats.secondary.reconciled_keys,
        stats.secondary.divergences,
        stats.reconciliations
    );
    assert!(seen.queued > 0, "the outage queued nothing");
    assert!(stats.reconciliations > 0, "the empty side was not scanned");

    expected.extend(seen.last);
    let content = assert_same(&a, &b, prefix).await;
    assert_matches(&content, prefix, &expected);
    cache.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_side_costs_callers_no_error_and_is_repaired_after_thaw() {
    let (a, b) = two_sides().await;
    let prefix = "freeze:";
    let cache = cache(&a, &b, config("freeze", prefix)).await;
    // Every key written once.
    let mut expected = preload(&cache, KEYS, TTL).await.expect("preload");

    let stop = Arc::new(AtomicBool::new(false));
    let origin = Instant::now();
    let writes = mixed_load(cache.clone(), 4, KEYS, TTL, origin, stop.clone());
    let load = tokio::spawn(writes);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen = origin.elapsed();
    b.freeze(0).expect("freeze b");
    tokio::time::sleep(Duration::from_secs(2)).await;
    b.thaw(0).expect("thaw b");
    let thawed = origin.elapsed();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = load.await.expect("load");
    let stopped = Instant::now();
    assert_eq!(
        seen.caller_errors(),
        0,
        "callers saw errors: {:?}",
        seen.error_samples
    );

    let synced = no_hang("repair", cache.wait_in_sync(Duration::from_secs(20))).await;
    let stats = cache.stats();
    assert!(synced, "not repaired: {stats:#?}");
    eprintln!(
        "freeze/thaw: {} writes ({} queued for a side); repaired {:?} after the load stopped",
        seen.calls.len(),
        seen.queued,
        stopped.elapsed()
    );
    eprintln!(
        "  before the freeze: {}",
        latency(&seen, Duration::ZERO, frozen)
    );
    eprintln!("  side frozen:       {}", latency(&seen, frozen, thawed));
    eprintln!(
        "  after the thaw:    {}",
        latency(&seen, thawed, Duration::MAX)
    );
    eprintln!(
        "  side b: acked {}, queued {}, replayed {}, superseded {}",
        stats.secondary.acked_writes,
        stats.secondary.queued_writes,
        stats.secondary.replayed,
        stats.secondary.superseded
    );
    assert!(seen.queued > 0, "the freeze queued nothing");

    expected.extend(seen.last);
    let content = assert_same(&a, &b, prefix).await;
    assert_matches(&content, prefix, &expected);
    cache.close().await;
}
