//! Helpers shared by the `cache_*` tests: two independent Redis servers
//! (two `LocalRedisCluster`s without replicas), caches with short timeouts
//! over them, and checks of what each side holds (over the drill's
//! `inspect` and `load` helpers).
#![allow(dead_code)]

use failover_pool::cache::{CacheConfig, CacheSide, FailoverCache, QueueConfig, Stored, Version};
use failover_pool::drill::cache::inspect::{self, check};
use failover_pool::drill::cache::load::{LoadOptions, run_load};
use failover_pool::drill::{LocalRedisCluster, RedisClusterOptions};
use failover_pool::pool::PoolConfig;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

// For the tests (not every test uses all of them).
#[allow(unused_imports)]
pub(crate) use failover_pool::drill::cache::{
    inspect::Held,
    load::{LastOp, LoadRecord, preload},
};

/// Starts two single-server "deployments" at once.
pub(crate) async fn two_sides() -> (LocalRedisCluster, LocalRedisCluster) {
    let (a, b) = tokio::join!(
        LocalRedisCluster::start(RedisClusterOptions::new().replicas(0)),
        LocalRedisCluster::start(RedisClusterOptions::new().replicas(0)),
    );
    (a.expect("start side a"), b.expect("start side b"))
}

/// A side's pool: quick probes and short waits.
pub(crate) fn pool(name: &str) -> PoolConfig {
    PoolConfig {
        name: name.into(),
        probe_interval: Duration::from_millis(100),
        probe_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(300),
        acquire_timeout: Duration::from_secs(1),
        max_connections: 4,
        ..PoolConfig::default()
    }
}

/// Cache settings with short timeouts.
pub(crate) fn config(name: &str, prefix: &str) -> CacheConfig {
    CacheConfig {
        name: name.into(),
        prefix: prefix.into(),
        write_timeout: Duration::from_millis(300),
        read_soft_timeout: Duration::from_millis(50),
        read_timeout: Duration::from_secs(1),
        health_interval: Duration::from_millis(100),
        queue: QueueConfig {
            replay_rate: 20_000,
            ..QueueConfig::default()
        },
        ..CacheConfig::default()
    }
}

/// A cache whose primary is at `a_url` and secondary at `b_url`.
pub(crate) async fn cache_at(a_url: &str, b_url: &str, config: CacheConfig) -> FailoverCache {
    let name = config.name.clone();
    FailoverCache::builder()
        .primary(CacheSide::url("a", a_url).with_pool_config(pool(&format!("{name}-a"))))
        .secondary(CacheSide::url("b", b_url).with_pool_config(pool(&format!("{name}-b"))))
        .config(config)
        .build()
        .await
        .expect("build the cache")
}

/// A cache over node 0 of each cluster.
pub(crate) async fn cache(
    a: &LocalRedisCluster,
    b: &LocalRedisCluster,
    config: CacheConfig,
) -> FailoverCache {
    cache_at(&a.url(0), &b.url(0), config).await
}

/// A plain connection to node 0 of a cluster.
pub(crate) async fn raw(c: &LocalRedisCluster) -> redis::aio::MultiplexedConnection {
    redis::Client::open(c.url(0))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// Everything a side (node 0) holds under `prefix`, by full key.
pub(crate) async fn held(c: &LocalRedisCluster, prefix: &str) -> BTreeMap<String, Held> {
    inspect::held(c, 0, prefix).await.expect("read the side")
}

/// Checks that both sides hold exactly the same entries (bytes and
/// expiry) under `prefix`, and that every expiry is the one in the
/// entry's header (never extended, never shortened). Returns the common
/// content.
pub(crate) async fn assert_same(
    a: &LocalRedisCluster,
    b: &LocalRedisCluster,
    prefix: &str,
) -> BTreeMap<String, Held> {
    let (x, y) = tokio::join!(held(a, prefix), held(b, prefix));
    let v = check(&x, &y, prefix, &BTreeMap::new());
    assert!(
        v.divergent_keys == 0
            && v.ttls_extended == 0
            && v.resurrected_deletes == 0
            && v.lost_acked_writes == 0,
        "sides differ: {v:#?}"
    );
    // `check` flags only expiries later than the header's.
    for (k, h) in &x {
        if let Some(header) = h.header() {
            assert_eq!(
                h.pexpiretime, header.expires_at as i64,
                "{k}: the key's expiry is not the entry's absolute expiry"
            );
        }
    }
    x
}

/// The newest of two versions.
pub(crate) fn newest(a: Option<Version>, b: Version) -> Version {
    a.map_or(b, |a| a.max(b))
}

/// Runs `f` with a generous bound: a hang fails the test instead of
/// stalling the suite.
pub(crate) async fn no_hang<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

/// `writers` tasks set (3 in 4) or delete (1 in 4) keys `0..keys` (writer
/// `w` owns the keys `k % writers == w`, so each key's last operation is
/// known) until `stop`, one operation per millisecond per writer; call
/// times are measured from `origin`.
pub(crate) async fn mixed_load(
    cache: FailoverCache,
    writers: usize,
    keys: usize,
    ttl: Duration,
    origin: Instant,
    stop: Arc<AtomicBool>,
) -> LoadRecord {
    let opts = LoadOptions {
        writers,
        readers: 0,
        keys,
        ttl,
        pace: Duration::from_millis(1),
    };
    run_load(cache, opts, origin, stop, Arc::default()).await
}

/// Latency percentiles of the calls started in `[from, to)` (since the
/// load's origin), as text.
pub(crate) fn latency(load: &LoadRecord, from: Duration, to: Duration) -> String {
    let mut d: Vec<Duration> = load
        .calls
        .iter()
        .filter(|c| c.at >= from && c.at < to)
        .map(|c| c.took)
        .collect();
    if d.is_empty() {
        return "no calls".into();
    }
    d.sort();
    let p = |q: f64| d[((d.len() - 1) as f64 * q) as usize];
    format!(
        "{} calls, p50 {:?}, p99 {:?}, max {:?}",
        d.len(),
        p(0.5),
        p(0.99),
        d[d.len() - 1]
    )
}

/// Checks what both sides hold (already found equal) against the last
/// acknowledged operation of every key: a set key holds that value with
/// that version and expiry; a deleted key holds no value (its tombstone,
/// if any, has the delete's version).
pub(crate) fn assert_matches(
    content: &BTreeMap<String, Held>,
    prefix: &str,
    last: &BTreeMap<String, LastOp>,
) {
    let v = check(content, content, prefix, last);
    assert!(
        v.lost_acked_writes == 0 && v.resurrected_deletes == 0 && v.ttls_extended == 0,
        "{v:#?}"
    );
    // `check` also accepts a newer version than the acknowledged one, or
    // an earlier expiry; each key has one writer here, so its last
    // acknowledged operation must be exactly what stands.
    for (key, op) in last {
        let Some(held) = content.get(&format!("{prefix}{key}")) else {
            continue; // a lost set was counted above; a delete may leave nothing
        };
        let stored = held.stored();
        let Stored::Entry { header, .. } = &stored else {
            panic!("{key}: not a versioned entry");
        };
        assert_eq!(
            header.version,
            op.ack().version,
            "{key}: not the last version"
        );
        if let LastOp::Set { value, ack } = op {
            assert_eq!(header.expires_at, ack.expires_at, "{key}: expiry changed");
            let payload = stored.payload().expect("a value");
            let got: u64 = failover_pool::cache::codec::decode(&payload).expect("decodes");
            assert_eq!(got, *value, "{key}");
        }
    }
}
