//! `FailoverCache` at its edges, over two real Redis servers: both sides
//! down (typed errors, the fail-safe, no hang), and values written under
//! the cache's prefix by another client (no header, no version).
#![cfg(all(feature = "drill", feature = "redis"))]

mod cache_support;

use cache_support::*;
use failover_pool::ErrorCode;
use failover_pool::cache::{CacheError, FailSafeConfig, SideErrorKind};
use redis::AsyncCommands;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_down_give_typed_errors_or_the_fail_safe_value_without_hanging() {
    let (a, b) = two_sides().await;
    let prefix = "down:";
    let plain = cache(&a, &b, config("plain", prefix)).await;
    let mut cfg = config("safe", prefix);
    cfg.fail_safe = Some(FailSafeConfig {
        max_age: Duration::from_secs(60),
        max_entries: 100,
    });
    let safe = cache(&a, &b, cfg).await;
    safe.set("seen", &"last known", TTL).await.expect("set");
    assert_eq!(
        safe.get::<String>("seen").await.unwrap().as_deref(),
        Some("last known")
    );
    a.kill(0).expect("kill a");
    b.kill(0).expect("kill b");

    let started = Instant::now();
    let err = no_hang("get", plain.get::<String>("seen"))
        .await
        .unwrap_err();
    eprintln!("get with both sides down: {err} ({:?})", started.elapsed());
    assert!(
        matches!(
            err,
            CacheError::Unavailable { .. } | CacheError::Timeout { .. }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.code(),
        if matches!(err, CacheError::Timeout { .. }) {
            ErrorCode::Timeout
        } else {
            ErrorCode::AllEndpointsDown
        }
    );
    assert!(!err.to_string().contains("redis://"), "{err}");

    let started = Instant::now();
    let err = no_hang("set", plain.set("k", &1u32, TTL))
        .await
        .unwrap_err();
    eprintln!("set with both sides down: {err} ({:?})", started.elapsed());
    let CacheError::Unavailable {
        primary, secondary, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!((&*primary.side, &*secondary.side), ("a", "b"));
    // Known to be down now: the next calls skip both sides at once.
    let started = Instant::now();
    let err = no_hang("delete", plain.delete("k")).await.unwrap_err();
    eprintln!(
        "delete with both sides known down: {err} ({:?})",
        started.elapsed()
    );
    assert!(matches!(
        err,
        CacheError::Unavailable { ref primary, .. } if matches!(primary.kind, SideErrorKind::Down)
    ));
    assert!(
        no_hang("mget", plain.mget::<u32>(&["k", "j"]))
            .await
            .is_err()
    );
    assert!(
        no_hang("mset", plain.mset(&[("k", 1u32)], TTL))
            .await
            .is_err()
    );
    assert!(
        no_hang("set_nx", plain.set_nx("k", &1u32, TTL))
            .await
            .is_err()
    );
    assert!(no_hang("reconcile", plain.reconcile()).await.is_err());

    // The loader still answers, and the fail-safe serves what it saw.
    let loaded: u32 = no_hang(
        "get_or_set_with",
        plain.get_or_set_with("k", TTL, || async { Ok::<_, std::io::Error>(7) }),
    )
    .await
    .expect("the loader's value");
    assert_eq!(loaded, 7);
    let started = Instant::now();
    let served = no_hang("fail-safe get", safe.get::<String>("seen")).await;
    eprintln!(
        "fail-safe get with both sides down: {served:?} ({:?})",
        started.elapsed()
    );
    assert_eq!(
        served.expect("the fail-safe value").as_deref(),
        Some("last known")
    );
    assert!(safe.get::<String>("never-seen").await.is_err());
    assert_eq!(safe.stats().fail_safe_hits, 1);

    // Back up: calls work again once the health checks see it.
    a.restart(0).await.expect("restart a");
    b.restart(0).await.expect("restart b");
    assert!(
        plain.wait_in_sync(Duration::from_secs(10)).await,
        "{:#?}",
        plain.stats()
    );
    plain
        .set("k", &2u32, TTL)
        .await
        .expect("set after the outage");
    assert_eq!(plain.get::<u32>("k").await.unwrap(), Some(2));
    plain.close().await;
    safe.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_written_by_another_client_are_read_replaced_and_left_alone_by_the_key_scan() {
    let (a, b) = two_sides().await;
    let prefix = "raw:";
    let cache = cache(&a, &b, config("raw", prefix)).await;
    let (mut ra, mut rb) = (raw(&a).await, raw(&b).await);

    // A plain string: read as it is; typed reads fail naming key and side.
    let _: () = ra.set("raw:greeting", "hello").await.unwrap();
    assert_eq!(
        cache.get_raw("greeting").await.unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    let err = cache.get::<String>("greeting").await.unwrap_err();
    eprintln!("typed read of a foreign value: {err}");
    assert!(
        matches!(err, CacheError::Decode { ref key, ref side, .. } if key == "greeting" && &**side == "a")
    );
    // MessagePack written by another client decodes.
    let packed = failover_pool::cache::codec::to_vec(&"packed").unwrap();
    let _: () = ra.set("raw:packed", packed).await.unwrap();
    assert_eq!(
        cache.get::<String>("packed").await.unwrap().as_deref(),
        Some("packed")
    );

    // The key scan neither copies nor removes foreign values.
    let _: () = rb.set("raw:only-on-b", "b's").await.unwrap();
    let report = cache.reconcile().await.unwrap();
    eprintln!("key scan over foreign values: {report:?}");
    assert_eq!(report.copied_to_primary + report.copied_to_secondary, 0);
    assert!(report.foreign_skipped >= 3, "{report:?}");
    let on_a: Option<String> = ra.get("raw:only-on-b").await.unwrap();
    assert_eq!(on_a, None);

    // A cache write replaces a foreign value (and another Redis type).
    let _: () = ra.hset("raw:hash", "f", "v").await.unwrap();
    cache.set("greeting", &"versioned", TTL).await.unwrap();
    cache.set("hash", &1u8, TTL).await.unwrap();
    assert_eq!(
        cache.get::<String>("greeting").await.unwrap().as_deref(),
        Some("versioned")
    );
    assert_eq!(cache.get::<u8>("hash").await.unwrap(), Some(1));
    let content = held(&a, prefix).await;
    assert!(content["raw:greeting"].header().is_some());
    cache.close().await;
}
