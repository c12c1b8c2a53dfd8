//! `FailoverLayer` around a hyper client (hyper-util's legacy `Client`
//! over `Full<Bytes>`), against real local backends: the same scenario as
//! the client's kill test. One backend is killed mid-load; GETs see no
//! error, POSTs without a key fail only when they may have run, and no
//! POST runs twice.
#![cfg(feature = "drill")]

use bytes::Bytes;
use failover_pool::core::{Backoff, Endpoint, Failover, Jitter, RetryPolicy};
use failover_pool::drill::http::LocalHttpBackends;
use failover_pool::http::{FailoverLayer, ServedBy};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_over_a_hyper_client_survives_a_killed_backend() {
    let b = LocalHttpBackends::start(3).await.expect("backends");
    let mut core = Failover::builder("tower").retry(RetryPolicy {
        max_attempts: 3,
        backoff: Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(50),
            multiplier: 2.0,
            jitter: Jitter::Full,
        },
        attempt_timeout: Some(Duration::from_millis(500)),
        ..RetryPolicy::default()
    });
    for i in 0..3 {
        core = core.endpoint(Endpoint::new(b.id(i), "127.0.0.1", b.port(i)));
    }
    let failover = core.build().expect("failover");
    let hyper: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let service = FailoverLayer::new(failover.clone()).layer(hyper);

    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default()); // get ok, get err, post ok, post err
    let post_errors_not_executed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..6 {
        let (mut service, stop, counts, not_exec) = (
            service.clone(),
            stop.clone(),
            counts.clone(),
            post_errors_not_executed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let post = t % 2 == 1;
                let request = http::Request::builder()
                    .method(if post { "POST" } else { "GET" })
                    .uri(format!("http://service/items/{n}"))
                    .header("x-request-id", format!("{t}-{n}"))
                    .body(Full::new(Bytes::from_static(b"v")))
                    .unwrap();
                let result = service.ready().await.unwrap().call(request).await;
                let slot = usize::from(post) * 2;
                match result {
                    Ok(response) if response.status().is_success() => {
                        assert!(response.extensions().get::<ServedBy>().is_some());
                        let _ = response.into_body().collect().await;
                        counts[slot].fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(response) => panic!("status {}", response.status()),
                    Err(e) => {
                        counts[slot + 1].fetch_add(1, Ordering::Relaxed);
                        if post && !e.may_have_executed() {
                            not_exec.fetch_add(1, Ordering::Relaxed);
                        }
                        if !post {
                            eprintln!("GET error: {}", failover_pool::error::chain(&e));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    b.kill(1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("task");
    }
    let c: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    eprintln!(
        "GET ok {} err {}; POST ok {} err {}; failovers {}",
        c[0],
        c[1],
        c[2],
        c[3],
        failover.stats().totals.failovers
    );
    assert!(c[0] > 0 && c[2] > 0);
    assert_eq!(c[1], 0, "GETs failed");
    assert_eq!(post_errors_not_executed.load(Ordering::Relaxed), 0);
    assert!(b.duplicated().is_empty(), "{:?}", b.duplicated());
    assert!(failover.stats().totals.failovers > 0);
}
