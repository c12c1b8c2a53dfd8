//! Helpers shared by the HTTP failover tests: clients with short timeouts
//! over `LocalHttpBackends`, and a mixed load that records what callers
//! saw per kind of request.
#![allow(dead_code)]

use failover_pool::core::{
    Backoff, BreakerConfig, BudgetConfig, Jitter, OutlierConfig, RetryPolicy,
};
use failover_pool::drill::http::LocalHttpBackends;
use failover_pool::http::{FailoverClient, FailoverClientBuilder};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Retries for tests: 3 tries, short backoff, a 500 ms try timeout.
pub(crate) fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        backoff: Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(50),
            multiplier: 2.0,
            jitter: Jitter::Full,
        },
        attempt_timeout: Some(Duration::from_millis(500)),
        deadline: None,
        budget: Some(BudgetConfig::default()),
    }
}

/// A client builder over every backend, with test timeouts.
pub(crate) fn builder(name: &str, backends: &LocalHttpBackends) -> FailoverClientBuilder {
    let mut b = FailoverClient::builder(name.to_owned())
        .retry(retry())
        .outlier(OutlierConfig {
            consecutive_failures: 3,
            interval: Duration::from_millis(100),
            base_ejection: Duration::from_secs(5),
            ..OutlierConfig::default()
        })
        .breaker(BreakerConfig::default());
    for url in backends.urls() {
        b = b.url(&url).expect("backend URL");
    }
    b
}

/// What one kind of request saw under a load.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) ok: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// Errors whose `may_have_executed()` was false.
    pub(crate) errors_not_executed: AtomicU64,
    pub(crate) samples: std::sync::Mutex<Vec<String>>,
    pub(crate) latencies: std::sync::Mutex<Vec<Duration>>,
}

impl Seen {
    pub(crate) fn record(&self, result: &failover_pool::Result<u16>, took: Duration) {
        self.latencies.lock().unwrap().push(took);
        match result {
            Ok(status) if *status < 500 => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(status) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.samples.lock().unwrap().push(format!("HTTP {status}"));
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                if !e.may_have_executed() {
                    self.errors_not_executed.fetch_add(1, Ordering::Relaxed);
                }
                let mut s = self.samples.lock().unwrap();
                if s.len() < 10 {
                    s.push(failover_pool::error::chain(e));
                }
            }
        }
    }

    pub(crate) fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// p50 and p99 of the recorded latencies, as text.
    pub(crate) fn latency(&self) -> String {
        let mut d = self.latencies.lock().unwrap().clone();
        if d.is_empty() {
            return "no calls".into();
        }
        d.sort();
        let p = |q: f64| d[((d.len() - 1) as f64 * q) as usize];
        format!("{} calls, p50 {:?}, p99 {:?}", d.len(), p(0.5), p(0.99))
    }
}

/// Which request a load task sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Get,
    Put,
    Post,
    KeyedPost,
}

/// Runs `tasks` tasks per kind until `stop`, each sending one request at a
/// time with a unique `x-request-id`; returns what each kind saw.
pub(crate) async fn load(
    client: &FailoverClient,
    kinds: &[Kind],
    tasks: usize,
    stop: Arc<AtomicBool>,
) -> Vec<(Kind, Arc<Seen>)> {
    let mut handles = Vec::new();
    let mut seen = Vec::new();
    for &kind in kinds {
        let s = Arc::new(Seen::default());
        seen.push((kind, s.clone()));
        for t in 0..tasks {
            let (client, stop, s) = (client.clone(), stop.clone(), s.clone());
            handles.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let id = format!("{kind:?}-{t}-{n}");
                    let req = match kind {
                        Kind::Get => client.get(format!("/items/{n}")),
                        Kind::Put => client.put(format!("/items/{n}")).body("v"),
                        Kind::Post => client.post("/items").body("new"),
                        Kind::KeyedPost => client.post("/items").body("new").idempotency_key(),
                    };
                    let started = Instant::now();
                    let result = req
                        .header("x-request-id", id)
                        .send()
                        .await
                        .map(|r| r.status().as_u16());
                    s.record(&result, started.elapsed());
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }));
        }
    }
    for h in handles {
        h.await.expect("load task");
    }
    seen
}

/// The `Seen` of `kind`.
pub(crate) fn of(seen: &[(Kind, Arc<Seen>)], kind: Kind) -> &Seen {
    &seen
        .iter()
        .find(|(k, _)| *k == kind)
        .expect("kind in the load")
        .1
}
