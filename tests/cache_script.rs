//! The cache's compare-and-set script (`cache::entry::CAS_LUA`) on a real
//! Redis server, case by case: a newer version is written, an older or
//! equal one is kept, the writer id breaks ties, the high and low halves of
//! the version compare in order, set-if-absent keeps a live value but not a
//! tombstone, a foreign string is replaced (or kept by set-if-absent), a
//! key of another type is replaced (as documented), and an entry whose
//! expiry has passed leaves no key behind.
#![cfg(all(feature = "drill", feature = "redis"))]

use failover_pool::cache::entry::CAS_LUA;
use failover_pool::cache::{EntryKind, Header, Version};
use failover_pool::drill::{LocalRedisCluster, RedisClusterOptions};
use redis::aio::MultiplexedConnection;

/// An hour from now, Unix ms.
fn later() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    now.as_millis() as u64 + 3_600_000
}

fn entry(kind: EntryKind, hlc: u64, writer: u32, expires_at: u64) -> Vec<u8> {
    let header = Header {
        kind,
        version: Version { hlc, writer },
        expires_at,
    };
    let mut raw = header.encode().to_vec();
    raw.extend_from_slice(b"payload");
    raw
}

async fn cas(conn: &mut MultiplexedConnection, key: &str, raw: &[u8], at: u64, nx: bool) -> i64 {
    redis::cmd("EVAL")
        .arg(CAS_LUA)
        .arg(1)
        .arg(key)
        .arg(raw)
        .arg(at)
        .arg(if nx { "1" } else { "0" })
        .query_async(conn)
        .await
        .expect("script runs")
}

async fn version_at(conn: &mut MultiplexedConnection, key: &str) -> Option<Version> {
    let raw: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(conn).await.unwrap();
    raw.and_then(|r| Header::decode(&r)).map(|h| h.version)
}

#[tokio::test]
async fn the_script_writes_only_newer_entries() {
    let cluster = LocalRedisCluster::start(RedisClusterOptions::new().replicas(0))
        .await
        .expect("redis");
    let client = redis::Client::open(cluster.url(0)).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let at = later();
    let v = EntryKind::Value;

    assert_eq!(
        cas(&mut c, "k", &entry(v, 100, 1, at), at, false).await,
        1,
        "empty"
    );
    assert_eq!(
        cas(&mut c, "k", &entry(v, 99, 9, at), at, false).await,
        0,
        "older"
    );
    assert_eq!(
        cas(&mut c, "k", &entry(v, 100, 1, at), at, false).await,
        0,
        "equal"
    );
    assert_eq!(
        cas(&mut c, "k", &entry(v, 100, 2, at), at, false).await,
        1,
        "writer breaks the tie"
    );
    assert_eq!(
        version_at(&mut c, "k").await,
        Some(Version {
            hlc: 100,
            writer: 2
        })
    );
    // The version's 12 bytes compare as two 48-bit halves: the high half
    // first (hlc's top bytes), then the low one (hlc's bottom, the writer).
    let high = 1u64 << 40;
    assert_eq!(
        cas(&mut c, "k", &entry(v, high, 0, at), at, false).await,
        1,
        "higher high half"
    );
    assert_eq!(
        cas(&mut c, "k", &entry(v, high - 1, u32::MAX, at), at, false).await,
        0
    );
    let pexpiretime: i64 = redis::cmd("PEXPIRETIME")
        .arg("k")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(pexpiretime, at as i64, "the absolute expiry is set");

    // Set-if-absent: a live value stays, a tombstone does not.
    assert_eq!(
        cas(&mut c, "k", &entry(v, high + 5, 0, at), at, true).await,
        -1
    );
    let tomb = entry(EntryKind::Tombstone, high + 6, 0, at);
    assert_eq!(
        cas(&mut c, "k", &tomb, at, false).await,
        1,
        "a newer tombstone"
    );
    assert_eq!(
        cas(&mut c, "k", &entry(v, high + 7, 0, at), at, true).await,
        1
    );

    // A foreign string: replaced by a write, kept by set-if-absent.
    let _: () = redis::cmd("SET")
        .arg("f")
        .arg("hello")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(cas(&mut c, "f", &entry(v, 1, 1, at), at, true).await, -1);
    assert_eq!(cas(&mut c, "f", &entry(v, 1, 1, at), at, false).await, 1);

    // A key of another type under the prefix is replaced, as documented
    // (a cache write owns its key).
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("a")
        .arg("b")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(cas(&mut c, "h", &entry(v, 1, 1, at), at, false).await, 1);
    let kind: String = redis::cmd("TYPE")
        .arg("h")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(kind, "string");

    // An entry already expired leaves no key (an older live one removed).
    assert_eq!(cas(&mut c, "e", &entry(v, 10, 1, at), at, false).await, 1);
    assert_eq!(cas(&mut c, "e", &entry(v, 11, 1, 1), 1, false).await, 1);
    let exists: i64 = redis::cmd("EXISTS")
        .arg("e")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(exists, 0);
}
