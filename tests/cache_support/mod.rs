//! Helpers shared by the `cache_*` tests: two independent Redis servers
//! (two `LocalRedisCluster`s without replicas), caches with short timeouts
//! over them, and raw inspection of what each side holds.
#![allow(dead_code)]

use failover_pool::cache::{
    CacheConfig, CacheSide, FailoverCache, Header, QueueConfig, Stored, Version,
};
use failover_pool::drill::{LocalRedisCluster, RedisClusterOptions};
use failover_pool::pool::PoolConfig;
use std::collections::BTreeMap;
use std::time::Duration;

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

/// One key as stored, with its `PEXPIRETIME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) raw: Vec<u8>,
    pub(crate) pexpiretime: i64,
}

impl Held {
    pub(crate) fn header(&self) -> Option<Header> {
        Header::decode(&self.raw)
    }

    pub(crate) fn stored(&self) -> Stored {
        Stored::parse(Some(self.raw.clone().into()))
    }
}

/// Everything a side holds under `prefix`.
pub(crate) async fn held(c: &LocalRedisCluster, prefix: &str) -> BTreeMap<String, Held> {
    let keys = c.keys_with_prefix(0, prefix).await.expect("scan");
    let mut conn = raw(c).await;
    let mut out = BTreeMap::new();
    for chunk in keys.chunks(200) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("GET").arg(k).cmd("PEXPIRETIME").arg(k);
        }
        let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await.expect("read");
        for (k, pair) in chunk.iter().zip(replies.chunks(2)) {
            let value: Option<Vec<u8>> = redis::from_redis_value(pair[0].clone()).unwrap_or(None);
            let at: i64 = redis::from_redis_value(pair[1].clone()).unwrap_or(-2);
            if let Some(raw) = value {
                out.insert(
                    k.clone(),
                    Held {
                        raw,
                        pexpiretime: at,
                    },
                );
            }
        }
    }
    out
}

/// Checks that both sides hold exactly the same entries (bytes and
/// expiry) under `prefix`, and that every expiry is the one in the
/// entry's header (never extended). Returns the common content.
pub(crate) async fn assert_same(
    a: &LocalRedisCluster,
    b: &LocalRedisCluster,
    prefix: &str,
) -> BTreeMap<String, Held> {
    let (x, y) = tokio::join!(held(a, prefix), held(b, prefix));
    let only_a: Vec<_> = x.keys().filter(|k| !y.contains_key(*k)).collect();
    let only_b: Vec<_> = y.keys().filter(|k| !x.contains_key(*k)).collect();
    let differ: Vec<_> = x
        .iter()
        .filter(|(k, v)| y.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        only_a.is_empty() && only_b.is_empty() && differ.is_empty(),
        "sides differ: only on a {only_a:?}, only on b {only_b:?}, different {differ:?}"
    );
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

/// The last acknowledged operation on a key.
#[derive(Debug, Clone)]
pub(crate) enum Last {
    /// Set to this value.
    Set(u64, failover_pool::cache::WriteAck),
    /// Deleted.
    Deleted(failover_pool::cache::WriteAck),
}

impl Last {
    pub(crate) fn ack(&self) -> &failover_pool::cache::WriteAck {
        match self {
            Last::Set(_, ack) | Last::Deleted(ack) => ack,
        }
    }
}

/// What a mixed load saw.
#[derive(Debug, Default)]
pub(crate) struct Load {
    /// Per key, the last acknowledged operation.
    pub(crate) last: BTreeMap<String, Last>,
    /// Errors returned to callers.
    pub(crate) errors: Vec<String>,
    /// (when the call started, how long it took).
    pub(crate) calls: Vec<(std::time::Instant, Duration)>,
    /// Acknowledged writes that were queued for a side.
    pub(crate) queued: u64,
}

/// `writers` tasks set (3 in 4) or delete (1 in 4) keys `0..keys` (writer
/// `w` owns the keys `k % writers == w`, so each key's last operation is
/// known) until `stop`, one operation per millisecond per writer.
pub(crate) async fn mixed_load(
    cache: FailoverCache,
    writers: usize,
    keys: usize,
    ttl: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Load {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (cache, stop) = (cache.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut load = Load::default();
            let mine: Vec<usize> = (0..keys).filter(|k| k % writers == w).collect();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let key = format!("{}", mine[fastrand::usize(..mine.len())]);
                let started = std::time::Instant::now();
                let result = if fastrand::u8(..4) == 0 {
                    cache.delete(&key).await.map(Last::Deleted)
                } else {
                    let value = (w as u64) << 32 | n;
                    cache
                        .set(&key, &value, ttl)
                        .await
                        .map(|ack| Last::Set(value, ack))
                };
                load.calls.push((started, started.elapsed()));
                match result {
                    Ok(last) => {
                        load.queued += u64::from(last.ack().queued_for.is_some());
                        load.last.insert(key, last);
                    }
                    Err(e) => load.errors.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            load
        }));
    }
    let mut all = Load::default();
    for t in tasks {
        let l = t.await.expect("writer");
        all.last.extend(l.last);
        all.errors.extend(l.errors);
        all.calls.extend(l.calls);
        all.queued += l.queued;
    }
    all
}

/// Latency percentiles of the calls started in `[from, to)`, as text.
pub(crate) fn latency(load: &Load, from: std::time::Instant, to: std::time::Instant) -> String {
    let mut d: Vec<Duration> = load
        .calls
        .iter()
        .filter(|(at, _)| *at >= from && *at < to)
        .map(|(_, d)| *d)
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
/// that version and expiry; a deleted key holds no value.
pub(crate) fn assert_matches(
    content: &BTreeMap<String, Held>,
    prefix: &str,
    last: &BTreeMap<String, Last>,
) {
    for (key, op) in last {
        let held = content.get(&format!("{prefix}{key}"));
        match op {
            Last::Set(value, ack) => {
                let held = held.unwrap_or_else(|| panic!("{key}: acknowledged value {value} lost"));
                let Stored::Entry { header, raw } = held.stored() else {
                    panic!("{key}: not an entry");
                };
                assert_eq!(header.version, ack.version, "{key}: not the last version");
                assert_eq!(header.expires_at, ack.expires_at, "{key}: expiry changed");
                let got: u64 = failover_pool::cache::codec::decode(
                    &raw[failover_pool::cache::entry::HEADER_LEN..],
                )
                .expect("decodes");
                assert_eq!(got, *value, "{key}");
            }
            Last::Deleted(ack) => {
                if let Some(held) = held {
                    let header = held.header().expect("a header");
                    assert_eq!(
                        header.kind,
                        failover_pool::cache::EntryKind::Tombstone,
                        "{key}: deleted value came back"
                    );
                    assert_eq!(header.version, ack.version, "{key}");
                }
            }
        }
    }
}
