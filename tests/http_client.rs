//! `FailoverClient` against real local HTTP backends (hyper servers
//! started by the tests on free ports): a backend killed mid-load, a hung
//! backend, 503 with `Retry-After`, a reset mid-body, 4xx and 429, the
//! retry budget with every backend failing, hedging, and the breaker
//! opening and closing again. Counts are asserted; latencies are printed.
#![cfg(feature = "drill")]

mod http_support;

use failover_pool::core::{
    BreakerConfig, BreakerState, BudgetConfig, HedgeDelay, OutlierConfig, RetryPolicy,
};
use failover_pool::drill::http::{BackendMode, LocalHttpBackends};
use failover_pool::http::{Fallback, served_by};
use http::StatusCode;
use http_support::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The client's endpoint id of backend `i`.
fn ep_id(b: &LocalHttpBackends, i: usize) -> String {
    format!("127.0.0.1:{}", b.port(i))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_mid_load_costs_idempotent_calls_nothing() {
    let b = LocalHttpBackends::start(3).await.expect("backends");
    let client = builder("kill", &b).build().expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let kinds = [Kind::Get, Kind::Put, Kind::Post, Kind::KeyedPost];
    let load = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move { load(&client, &kinds, 3, stop).await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    b.kill(1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = load.await.expect("load");

    for kind in [Kind::Get, Kind::Put, Kind::KeyedPost] {
        let s = of(&seen, kind);
        eprintln!(
            "{kind:?}: ok {}, errors {}, {}",
            s.ok(),
            s.errors(),
            s.latency()
        );
        assert!(s.ok() > 0, "{kind:?} made no call");
        assert_eq!(s.errors(), 0, "{kind:?}: {:?}", s.samples.lock().unwrap());
    }
    let post = of(&seen, Kind::Post);
    eprintln!(
        "Post: ok {}, errors {} (not executed {}), {}",
        post.ok(),
        post.errors(),
        post.errors_not_executed.load(Ordering::Relaxed),
        post.latency()
    );
    // A POST without a key fails only when it may have run, and says so.
    assert_eq!(
        post.errors_not_executed.load(Ordering::Relaxed),
        0,
        "{:?}",
        post.samples.lock().unwrap()
    );
    // No request ran twice: retries only where that is safe (keyed POSTs
    // may run twice by design; the server dedupes them by key).
    let twice: Vec<_> = (b.duplicated().into_iter())
        .filter(|(id, _)| !id.starts_with("KeyedPost"))
        .filter(|(id, _)| id.starts_with("Post"))
        .collect();
    assert!(
        twice.is_empty(),
        "non-idempotent requests ran twice: {twice:?}"
    );
    let stats = client.stats();
    let dead = stats
        .endpoints
        .iter()
        .find(|e| *e.id == ep_id(&b, 1))
        .expect("endpoint");
    eprintln!(
        "killed endpoint: ejected {}, breaker {:?}, failovers {}",
        dead.ejected, dead.breaker, stats.totals.failovers
    );
    assert!(stats.totals.failovers > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_backend_is_timed_out_and_ejected() {
    let b = LocalHttpBackends::start(3).await.expect("backends");
    b.set_mode(0, BackendMode::Hang);
    let mut retry = retry();
    retry.attempt_timeout = Some(Duration::from_millis(200));
    let client = builder("hang", &b).retry(retry).build().expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move { load(&client, &[Kind::Get], 4, stop).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = load.await.expect("load");
    let get = of(&seen, Kind::Get);
    eprintln!("hung backend: GET {} (try timeout 200ms)", get.latency());
    assert_eq!(get.errors(), 0, "{:?}", get.samples.lock().unwrap());
    let stats = client.stats();
    let hung = (stats.endpoints.iter())
        .find(|e| *e.id == ep_id(&b, 0))
        .expect("endpoint");
    assert!(hung.ejected, "the hung endpoint was not ejected: {hung:?}");
    assert_eq!(b.stats(0).executed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_503_pauses_the_endpoint_and_a_post_gets_the_503() {
    let b = LocalHttpBackends::start(3).await.expect("backends");
    b.set_mode(
        0,
        BackendMode::status_retry_after(503, Duration::from_secs(5)),
    );
    let client = builder("retry-after", &b).build().expect("client");
    for n in 0..60 {
        let r = client.get(format!("/a/{n}")).send().await.expect("get");
        assert_eq!(r.status(), StatusCode::OK);
    }
    // Paused for 5 s after its first 503: no further request reached it.
    assert_eq!(b.stats(0).received, 1, "{:?}", b.stats(0));

    // Every backend refuses: a POST without a key is not sent twice, and
    // the caller gets the last 503 as a response (not an error).
    for i in 0..3 {
        b.set_mode(i, BackendMode::status(503));
    }
    let client = builder("post-503", &b).build().expect("client");
    let r = client.post("/orders").body("x").send().await.expect("post");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(served_by(&r).expect("served_by").attempts, 1);
    // A GET tries every backend and returns the last 503.
    let r = client.get("/a").send().await.expect("get");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(served_by(&r).expect("served_by").attempts, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_body_is_retried_by_fetch_and_reported_by_send() {
    let b = LocalHttpBackends::start(2).await.expect("backends");
    b.set_mode(0, BackendMode::ResetMidBody);
    let client = builder("reset", &b)
        .outlier(OutlierConfig {
            enabled: false,
            ..OutlierConfig::default()
        })
        .breaker(BreakerConfig {
            enabled: false,
            ..BreakerConfig::default()
        })
        .build()
        .expect("client");
    // fetch reads the body inside the try: a cut body is the endpoint's
    // failure, and a GET moves on.
    for n in 0..20 {
        let f = client.get(format!("/r/{n}")).fetch().await.expect("fetch");
        assert_eq!(f.status, StatusCode::OK);
        assert!(f.text().contains("\"backend\":\"b1\""), "{}", f.text());
    }
    // A POST cut mid-body may have run (it did): the error says so.
    let mut cut = 0;
    for _ in 0..10 {
        match client.post("/p").body("x").fetch().await {
            Ok(f) => assert!(f.text().contains("b1")),
            Err(e) => {
                assert!(e.may_have_executed(), "{e}");
                cut += 1;
            }
        }
    }
    assert!(cut > 0, "no POST reached the resetting backend");
    // send returns at the headers: the cut shows when the body is read.
    let mut body_errors = 0;
    for _ in 0..10 {
        let r = client.get("/s").send().await.expect("headers arrive");
        if r.bytes().await.is_err() {
            body_errors += 1;
        }
    }
    assert!(body_errors > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_never_eject_and_429_is_honoured() {
    let b = LocalHttpBackends::start(3).await.expect("backends");
    b.set_mode(0, BackendMode::status(404));
    let client = builder("4xx", &b).build().expect("client");
    let mut not_found = 0;
    for n in 0..90 {
        let r = client.get(format!("/x/{n}")).send().await.expect("get");
        assert_eq!(served_by(&r).unwrap().attempts, 1, "a 4xx is not retried");
        not_found += u32::from(r.status() == StatusCode::NOT_FOUND);
    }
    assert_eq!(not_found, 30, "round robin: every third call is b0's 404");
    let e = (client.stats().endpoints.into_iter())
        .find(|e| *e.id == ep_id(&b, 0))
        .unwrap();
    assert!(!e.ejected && e.breaker == BreakerState::Closed, "{e:?}");

    b.set_mode(
        0,
        BackendMode::status_retry_after(429, Duration::from_secs(5)),
    );
    let client = builder("429", &b).build().expect("client");
    for _ in 0..30 {
        // Even a POST moves on after a 429: it was not processed.
        let r = client.post("/y").body("x").send().await.expect("post");
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(
        b.stats(0).answered_with(429),
        1,
        "paused after the first 429"
    );
    let e = (client.stats().endpoints.into_iter())
        .find(|e| *e.id == ep_id(&b, 0))
        .unwrap();
    assert!(!e.ejected && e.breaker == BreakerState::Closed, "{e:?}");
    assert_eq!(e.counters.failures, 0, "a 429 is not held against it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_backend_failing_retries_stay_within_the_budget() {
    let b = LocalHttpBackends::start(3).await.expect("backends");
    for i in 0..3 {
        b.set_mode(i, BackendMode::status(503));
    }
    let budget = BudgetConfig {
        ttl: Duration::from_secs(10),
        min_per_sec: 2,
        retry_ratio: 0.2,
    };
    let retry = RetryPolicy {
        budget: Some(budget),
        ..retry()
    };
    let client = builder("budget", &b)
        .retry(retry)
        .outlier(OutlierConfig {
            enabled: false,
            ..OutlierConfig::default()
        })
        .breaker(BreakerConfig {
            enabled: false,
            ..BreakerConfig::default()
        })
        .build()
        .expect("client");
    let calls = 300u64;
    for n in 0..calls {
        let r = client.get(format!("/z/{n}")).send().await.expect("get");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let tries: u64 = (0..3).map(|i| b.stats(i).received).sum();
    let totals = client.stats().totals;
    eprintln!(
        "{calls} calls: {tries} tries, {} retries, {} refused by the budget",
        totals.retries, totals.budget_refusals
    );
    // No success deposits anything: the reserve (2/s over 10 s) is all.
    assert!(totals.retries <= 20, "retries {}", totals.retries);
    assert_eq!(tries, calls + totals.retries);
    assert!(totals.budget_refusals > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedging_answers_from_a_fast_backend_and_never_copies_a_post() {
    let b = LocalHttpBackends::start(3).await.expect("backends");
    b.set_mode(0, BackendMode::Slow(Duration::from_millis(300)));
    let plain = builder("no-hedge", &b).build().expect("client");
    let hedged = builder("hedge", &b)
        .hedging(HedgeDelay::Fixed(Duration::from_millis(30)))
        .build()
        .expect("client");
    for (name, client) in [("without hedging", &plain), ("with hedging", &hedged)] {
        let mut d = Vec::new();
        for n in 0..30 {
            let started = std::time::Instant::now();
            let r = client.get(format!("/h/{n}")).send().await.expect("get");
            assert_eq!(r.status(), StatusCode::OK);
            d.push(started.elapsed());
        }
        d.sort();
        eprintln!("{name}: p50 {:?}, p99 {:?}", d[15], d[29]);
    }
    let hedges = hedged.stats().totals.hedges;
    assert!(hedges >= 5, "hedges {hedges}");
    for n in 0..30 {
        let r = hedged
            .post("/orders")
            .header("x-request-id", format!("post-{n}"))
            .body("x")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(hedged.stats().totals.hedges, hedges, "a POST was hedged");
    assert!(b.duplicated().is_empty(), "{:?}", b.duplicated());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_then_lets_a_recovered_backend_back_in() {
    let b = LocalHttpBackends::start(2).await.expect("backends");
    b.set_mode(0, BackendMode::status(503));
    let client = builder("breaker", &b)
        .outlier(OutlierConfig {
            enabled: false,
            ..OutlierConfig::default()
        })
        .breaker(BreakerConfig {
            consecutive_failures: Some(3),
            open_duration: Duration::from_millis(500),
            half_open_max_calls: 1,
            ..BreakerConfig::default()
        })
        .build()
        .expect("client");
    let mut events = client.failover().subscribe();
    let breaker_of = |c: &failover_pool::http::FailoverClient| {
        (c.stats().endpoints.into_iter())
            .find(|e| *e.id == ep_id(&b, 0))
            .unwrap()
            .breaker
    };
    for n in 0..20 {
        let r = client.get(format!("/b/{n}")).send().await.expect("get");
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(breaker_of(&client), BreakerState::Open);
    b.set_mode(0, BackendMode::Ok);
    let executed_before = b.stats(0).executed;
    tokio::time::sleep(Duration::from_millis(700)).await;
    for n in 0..20 {
        let r = client.get(format!("/c/{n}")).send().await.expect("get");
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(breaker_of(&client), BreakerState::Closed);
    assert!(
        b.stats(0).executed > executed_before + 5,
        "traffic did not return"
    );
    let mut states = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let failover_pool::core::EventKind::BreakerStateChanged { to, .. } = e.kind {
            states.push(to);
        }
    }
    assert!(
        states.starts_with(&[
            BreakerState::Open,
            BreakerState::HalfOpen,
            BreakerState::Closed
        ]),
        "{states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_answers_when_no_backend_can_be_reached() {
    let b = LocalHttpBackends::start(2).await.expect("backends");
    b.kill(0);
    b.kill(1);
    let client = builder("fallback", &b)
        .fallback(Fallback::fixed(StatusCode::OK, "cached"))
        .build()
        .expect("client");
    let r = client.get("/f").send().await.expect("fallback");
    assert_eq!(served_by(&r).unwrap().endpoint, None);
    assert_eq!(r.text().await.unwrap(), "cached");
    // Connections refused: a POST certainly did not run, the fallback answers too.
    let r = client.post("/f").body("x").send().await.expect("fallback");
    assert_eq!(r.status(), StatusCode::OK);
    // Without a fallback: a typed error that says nothing ran.
    let bare = builder("bare", &b).build().expect("client");
    let e = bare.get("/f").send().await.expect_err("nothing answers");
    assert!(!e.may_have_executed(), "{e}");
    assert!(e.is_failover(), "{e}");
}
