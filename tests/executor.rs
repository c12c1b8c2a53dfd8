//! `Failover::execute`: pick → breaker → timeout → run → classify → record → retry,
//! against real TCP endpoints where a real thing exists.

use failover_pool::core::breaker::{BreakerConfig, BreakerState};
use failover_pool::core::events::EventKind;
use failover_pool::core::health::OutlierConfig;
use failover_pool::core::retry::{Backoff, BudgetConfig, Jitter, RetryPolicy};
use failover_pool::core::strategy::Priority;
use failover_pool::core::{Classified, Endpoint, Failover};
use failover_pool::{Error, ErrorCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        backoff: Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(5),
            multiplier: 2.0,
            jitter: Jitter::Full,
        },
        attempt_timeout: Some(Duration::from_secs(5)),
        deadline: None,
        budget: None,
    }
}

/// A port on which nothing listens (bound, then closed).
async fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

async fn live_listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

async fn connect(ep: Arc<failover_pool::core::LiveEndpoint>) -> Result<u16, Classified> {
    let s = TcpStream::connect(ep.endpoint().authority()).await?;
    Ok(s.peer_addr().unwrap().port())
}

#[tokio::test]
async fn refused_endpoint_fails_over_to_a_live_one() {
    let dead = dead_port().await;
    let (_live, live) = live_listener().await;
    let f = Failover::builder("t")
        .endpoint(Endpoint::new("dead", "127.0.0.1", dead))
        .endpoint(Endpoint::new("live", "127.0.0.1", live))
        .strategy(Priority::default())
        .retry(fast_retry(3))
        .build()
        .unwrap();
    let mut events = f.subscribe();
    let served = f.execute(connect).await.unwrap();
    assert_eq!(served.value, live);
    assert_eq!(served.endpoint.id(), "live");
    assert_eq!(served.attempts, 2);
    let mut saw_failover = false;
    while let Ok(e) = events.try_recv() {
        if let EventKind::Failover { from, to, attempt } = e.kind {
            assert_eq!((&*from, &*to, attempt), ("dead", "live", 2));
            saw_failover = true;
        }
    }
    assert!(saw_failover);
    let stats = f.stats();
    assert_eq!(stats.totals.requests, 1);
    assert_eq!(stats.totals.successes, 1);
    assert_eq!(stats.totals.failovers, 1);
    assert_eq!(stats.endpoints[0].counters.failures, 1);
    assert_eq!(stats.endpoints[1].counters.successes, 1);
}

#[tokio::test]
async fn every_endpoint_refusing_exhausts_retries_with_the_last_error() {
    let (a, b) = (dead_port().await, dead_port().await);
    let f = Failover::builder("t")
        .endpoints([
            Endpoint::new("a", "127.0.0.1", a),
            Endpoint::new("b", "127.0.0.1", b),
        ])
        .retry(fast_retry(3))
        .build()
        .unwrap();
    let err = f.execute(connect).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::RetryExhausted);
    assert!(
        !err.may_have_executed(),
        "refused connections never executed"
    );
    let Error::RetryExhausted { attempts, last, .. } = err else {
        unreachable!()
    };
    assert_eq!(attempts, 3);
    assert_eq!(last.code(), ErrorCode::Backend);
    assert_eq!(f.stats().totals.failures, 1);
}

#[tokio::test]
async fn maybe_executed_failure_is_not_retried_unless_idempotent() {
    let f = Failover::builder("t")
        .endpoints([
            Endpoint::new("a", "127.0.0.1", 1),
            Endpoint::new("b", "127.0.0.1", 2),
        ])
        .retry(fast_retry(3))
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let err = f
        .execute(|_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(Classified::maybe_executed("connection reset mid-request")) }
        })
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "never replayed");
    assert!(err.may_have_executed());

    let calls = AtomicU32::new(0);
    let served = f
        .execute_idempotent(|ep| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let id = ep.id().to_owned();
            async move {
                if n == 0 {
                    Err(Classified::maybe_executed("reset"))
                } else {
                    Ok(id)
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(served.attempts, 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn application_errors_are_returned_at_once_and_keep_the_endpoint_healthy() {
    let f = Failover::builder("t")
        .endpoints([
            Endpoint::new("a", "127.0.0.1", 1),
            Endpoint::new("b", "127.0.0.1", 2),
        ])
        .retry(fast_retry(3))
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let err = f
        .execute(|_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(Classified::application("duplicate key")) }
        })
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(err.code(), ErrorCode::Backend);
    assert!(!err.is_failover());
    let s = f.stats();
    assert!(s.endpoints.iter().all(|e| e.consecutive_failures == 0));
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_is_a_maybe_executed_timeout() {
    let f = Failover::builder("t")
        .endpoint(Endpoint::new("a", "127.0.0.1", 1))
        .retry(RetryPolicy {
            attempt_timeout: Some(Duration::from_millis(100)),
            ..fast_retry(1)
        })
        .build()
        .unwrap();
    let err = f
        .execute(|_| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, Classified>(())
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Timeout);
    assert!(err.may_have_executed());
}

#[tokio::test(start_paused = true)]
async fn retry_budget_stops_a_retry_storm() {
    tokio::time::advance(Duration::from_secs(1)).await;
    let f = Failover::builder("t")
        .endpoints([Endpoint::new("a", "h", 1), Endpoint::new("b", "h", 2)])
        .outlier(OutlierConfig {
            enabled: false,
            ..OutlierConfig::default()
        })
        .breaker(BreakerConfig {
            enabled: false,
            ..BreakerConfig::default()
        })
        .retry(RetryPolicy {
            budget: Some(BudgetConfig {
                ttl: Duration::from_secs(10),
                min_per_sec: 1,
                retry_ratio: 0.0,
            }),
            ..fast_retry(3)
        })
        .build()
        .unwrap();
    let mut budget_errors = 0;
    let mut attempts = 0;
    for _ in 0..20 {
        let err = f
            .execute(|_| {
                attempts += 1;
                async { Err::<(), _>(Classified::not_executed("refused")) }
            })
            .await
            .unwrap_err();
        if err.code() == ErrorCode::RetryBudgetExhausted {
            budget_errors += 1;
        }
    }
    // 20 first attempts + at most 10 retries (1/s over a 10 s window).
    assert!(attempts <= 30, "{attempts} attempts");
    assert!(budget_errors >= 10, "{budget_errors}");
}

#[tokio::test(start_paused = true)]
async fn open_breaker_skips_the_endpoint_and_half_open_permit_survives_cancellation() {
    tokio::time::advance(Duration::from_secs(1)).await;
    let f = Failover::builder("t")
        .endpoints([Endpoint::new("a", "h", 1), Endpoint::new("b", "h", 2)])
        .strategy(Priority::new(Duration::ZERO))
        .outlier(OutlierConfig {
            enabled: false,
            ..OutlierConfig::default()
        })
        .breaker(BreakerConfig {
            consecutive_failures: Some(2),
            open_duration: Duration::from_secs(5),
            half_open_max_calls: 1,
            ..BreakerConfig::default()
        })
        .retry(fast_retry(2))
        .build()
        .unwrap();
    // Two failures on `a` open its breaker.
    for _ in 0..2 {
        let _ = f
            .execute(|ep| {
                let fail = ep.id() == "a";
                async move {
                    if fail {
                        Err(Classified::not_executed("refused"))
                    } else {
                        Ok(())
                    }
                }
            })
            .await;
    }
    let a = f.endpoints().get("a").unwrap();
    assert_eq!(a.breaker().state(), BreakerState::Open);
    // While open, calls go straight to `b`.
    let served = f
        .execute(|ep| {
            let id = ep.id().to_owned();
            async move { Ok::<_, Classified>(id) }
        })
        .await
        .unwrap();
    assert_eq!((served.value.as_str(), served.attempts), ("b", 1));

    // After open_duration a single half-open probe is allowed. Start one and cancel it.
    tokio::time::advance(Duration::from_secs(6)).await;
    let _ = f.pick(); // priority notices `a` is back (zero hold-down: next pick fails back)
    let f2 = f.clone();
    let call = tokio::spawn(async move {
        f2.execute(|_| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, Classified>(())
        })
        .await
    });
    tokio::task::yield_now().await;
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(a.breaker().state(), BreakerState::HalfOpen);
    assert_eq!(a.in_flight(), 1);
    call.abort();
    let _ = call.await;
    assert_eq!(a.in_flight(), 0, "in-flight released on cancel");
    // The cancelled probe gave its slot back: a new probe may go to `a` and close it.
    let served = f
        .execute(|ep| {
            let id = ep.id().to_owned();
            async move { Ok::<_, Classified>(id) }
        })
        .await
        .unwrap();
    assert_eq!(served.value, "a");
    assert_eq!(a.breaker().state(), BreakerState::Closed);
}

#[tokio::test]
async fn no_endpoints_is_a_typed_error() {
    let f = Failover::builder("t").build().unwrap();
    let err = f
        .execute(|_| async { Ok::<_, Classified>(()) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoEndpoints);
}

#[tokio::test]
async fn outlier_ejection_moves_traffic_and_panic_routing_uses_all_when_none_left() {
    let f = Failover::builder("t")
        .endpoints([Endpoint::new("a", "h", 1), Endpoint::new("b", "h", 2)])
        .strategy(Priority::default())
        .breaker(BreakerConfig {
            enabled: false,
            ..BreakerConfig::default()
        })
        .outlier(OutlierConfig {
            consecutive_failures: 3,
            ..OutlierConfig::default()
        })
        .retry(fast_retry(1))
        .build()
        .unwrap();
    for _ in 0..3 {
        let _ = f
            .execute(|ep| {
                let fail = ep.id() == "a";
                async move {
                    if fail {
                        Err(Classified::not_executed("refused"))
                    } else {
                        Ok(())
                    }
                }
            })
            .await;
    }
    let s = f.stats();
    assert!(
        s.endpoints[0].ejected,
        "a ejected after 3 consecutive failures"
    );
    let served = f
        .execute(|ep| {
            let id = ep.id().to_owned();
            async move { Ok::<_, Classified>(id) }
        })
        .await
        .unwrap();
    assert_eq!(served.value, "b");
    // Mark b unhealthy too: with nothing available, panic routing still serves.
    f.endpoints()
        .get("b")
        .unwrap()
        .set_health(failover_pool::core::Health::Unhealthy);
    let served = f
        .execute(|ep| {
            let id = ep.id().to_owned();
            async move { Ok::<_, Classified>(id) }
        })
        .await;
    assert!(served.is_ok(), "panic routing: use all rather than none");
}
