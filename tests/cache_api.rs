//! The calls of `FailoverCache` over two real Redis servers: typed and raw
//! values, set-if-absent, deletes, `mget`/`mset`, single-flight loading,
//! read repair, and the write policies when a side fails.
#![cfg(all(feature = "drill", feature = "redis"))]

mod cache_support;

use cache_support::*;
use failover_pool::cache::{CacheError, ReadFrom, Stored, WritePolicy};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    name: String,
    visits: u32,
    tags: Vec<String>,
}

fn ada() -> Profile {
    Profile {
        name: "Ada".into(),
        visits: 3,
        tags: vec!["admin".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_and_raw_values_deletes_set_if_absent_and_batches() {
    let (a, b) = two_sides().await;
    let prefix = "api:";
    let mut cfg = config("api", prefix);
    cfg.read_from = ReadFrom::Nearest;
    let cache = cache(&a, &b, cfg).await;

    let ack = cache.set("ada", &ada(), TTL).await.unwrap();
    assert_eq!(ack.queued_for, None);
    assert_eq!(cache.get::<Profile>("ada").await.unwrap(), Some(ada()));
    assert_eq!(cache.get::<Profile>("nobody").await.unwrap(), None);
    let content = assert_same(&a, &b, prefix).await;
    let pttl: i64 = raw(&a).await.pttl("api:ada").await.unwrap();
    assert!(pttl > 0 && pttl <= 60_000, "{pttl}");
    assert_eq!(content["api:ada"].header().unwrap().version, ack.version);

    // Deletes leave tombstones; a tombstone counts as absent.
    let deleted = cache.delete("ada").await.unwrap();
    assert!(deleted.version > ack.version);
    assert_eq!(cache.get::<Profile>("ada").await.unwrap(), None);
    assert!(matches!(
        assert_same(&a, &b, prefix).await["api:ada"].stored(),
        Stored::Entry { header, .. } if header.kind == failover_pool::cache::EntryKind::Tombstone
    ));
    assert!(cache.set_nx("ada", &ada(), TTL).await.unwrap().is_some());
    assert!(cache.set_nx("ada", &ada(), TTL).await.unwrap().is_none());

    // Raw bytes.
    cache.set_raw("blob", b"\x00\x01bytes", TTL).await.unwrap();
    assert_eq!(
        cache.get_raw("blob").await.unwrap().as_deref(),
        Some(&b"\x00\x01bytes"[..])
    );
    assert!(
        cache
            .set_nx_raw("blob", b"other", TTL)
            .await
            .unwrap()
            .is_none()
    );

    // Batches.
    let acks = cache.mset(&[("x", 1u32), ("y", 2u32)], TTL).await.unwrap();
    assert_eq!(acks.len(), 2);
    assert_eq!(
        cache.mget::<u32>(&["x", "nope", "y"]).await.unwrap(),
        vec![Some(1), None, Some(2)]
    );
    cache
        .mset_raw(&[("r1", &b"one"[..]), ("r2", &b"two"[..])], TTL)
        .await
        .unwrap();
    let got = cache.mget_raw(&["r1", "r2"]).await.unwrap();
    assert_eq!(got[1].as_deref(), Some(&b"two"[..]));
    assert_same(&a, &b, prefix).await;
    let stats = cache.stats();
    assert!(
        stats.primary.acked_writes >= 8 && stats.secondary.acked_writes >= 8,
        "{stats:#?}"
    );
    cache.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_loader_call_per_key_at_a_time() {
    let (a, b) = two_sides().await;
    let cache = cache(&a, &b, config("flight", "flight:")).await;
    let calls = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (cache, calls) = (cache.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_set_with("report", TTL, || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok::<_, std::io::Error>(ada())
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), ada());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let stats = cache.stats();
    eprintln!(
        "20 callers: {} loader call, {} waited",
        stats.loader_calls, stats.single_flight_waits
    );
    // Stored: the next caller does not load.
    let again: Profile = cache
        .get_or_set_with("report", TTL, || async {
            Err::<Profile, _>(std::io::Error::other("not called"))
        })
        .await
        .unwrap();
    assert_eq!(again, ada());
    // A failing loader's error reaches every waiter, from one call.
    let failing = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (cache, failing) = (cache.clone(), failing.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_set_with("broken", TTL, || async move {
                    failing.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err::<u32, _>(std::io::Error::other("backend down"))
                })
                .await
        }));
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Err(CacheError::Loader { .. })));
    }
    assert_eq!(failing.load(Ordering::SeqCst), 1);
    cache.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_repair_copies_the_newer_entry_onto_the_side_behind() {
    let (a, b) = two_sides().await;
    let prefix = "rr:";
    let mut cfg = config("rr", prefix);
    cfg.read_repair = true;
    let cache = cache(&a, &b, cfg).await;
    let (mut ra, mut rb) = (raw(&a).await, raw(&b).await);

    cache.set("k", &1u32, TTL).await.unwrap();
    let old: Vec<u8> = ra.get("rr:k").await.unwrap();
    let newer = cache.set("k", &2u32, TTL).await.unwrap();
    // Side b falls behind: it holds the older entry again.
    let _: () = rb.set("rr:k", &old).await.unwrap();
    assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(2));
    let deadline = Instant::now() + Duration::from_secs(5);
    while held(&b, prefix).await["rr:k"].header().unwrap().version != newer.version {
        assert!(Instant::now() < deadline, "b was not repaired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_same(&a, &b, prefix).await;
    // A delete b missed wins over b's value.
    let value_on_b: Vec<u8> = rb.get("rr:k").await.unwrap();
    cache.delete("k").await.unwrap();
    let _: () = rb.set("rr:k", &value_on_b).await.unwrap();
    assert_eq!(cache.get::<u32>("k").await.unwrap(), None);
    let deadline = Instant::now() + Duration::from_secs(5);
    while held(&b, prefix).await["rr:k"].header().unwrap().kind
        != failover_pool::cache::EntryKind::Tombstone
    {
        assert!(Instant::now() < deadline, "the delete was not repaired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cache.stats().secondary.read_repairs >= 2);
    cache.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_policies_when_a_side_fails() {
    let (a, b) = two_sides().await;
    let strict = cache(&a, &b, {
        let mut c = config("strict", "strict:");
        c.write_policy = WritePolicy::RequireBoth;
        c
    })
    .await;
    let fast = cache(&a, &b, {
        let mut c = config("fast", "fast:");
        c.write_policy = WritePolicy::PrimaryThenAsync;
        c
    })
    .await;
    let any = cache(&b, &a, {
        let mut c = config("any", "any:");
        c.write_policy = WritePolicy::Any;
        c
    })
    .await;
    for c in [&strict, &fast, &any] {
        c.set("warm", &0u8, TTL).await.unwrap();
    }
    b.freeze(0).expect("freeze b");

    let err = strict.set("k", &1u8, TTL).await.unwrap_err();
    eprintln!("RequireBoth with b frozen: {err}");
    assert!(
        matches!(err, CacheError::NotAcknowledged { ref written_on, .. } if &**written_on == "a")
    );
    let started = Instant::now();
    fast.set("k", &1u8, TTL).await.unwrap();
    eprintln!(
        "PrimaryThenAsync with the secondary frozen: {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    any.set("k", &1u8, TTL).await.unwrap();
    eprintln!("Any with the primary frozen: {:?}", started.elapsed());
    assert_eq!(strict.get::<u8>("k").await.unwrap(), Some(1));

    b.thaw(0).expect("thaw b");
    for c in [&strict, &fast, &any] {
        assert!(
            c.wait_in_sync(Duration::from_secs(10)).await,
            "{:#?}",
            c.stats()
        );
    }
    for prefix in ["strict:", "fast:", "any:"] {
        let content = assert_same(&a, &b, prefix).await;
        assert_eq!(content.len(), 2, "{prefix}");
    }
    for c in [strict, fast, any] {
        c.close().await;
    }
}
