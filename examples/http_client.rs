//! `FailoverClient` against three real local HTTP backends (the crate's
//! drill servers): GETs and keyed POSTs keep working while one backend is
//! killed, a POST without a key reports whether it may have run, and the
//! client's stats show the failovers, retries and the ejected endpoint.
//!
//! Run: `cargo run --features drill --example http_client`

use failover_pool::core::{HttpCheck, OutlierConfig};
use failover_pool::drill::http::LocalHttpBackends;
use failover_pool::http::{FailoverClient, served_by};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backends = LocalHttpBackends::start(3).await?;
    let mut builder = FailoverClient::builder("example")
        .health_check(HttpCheck::new()) // GET /health
        .outlier(OutlierConfig {
            consecutive_failures: 3,
            ..OutlierConfig::default()
        });
    for url in backends.urls() {
        builder = builder.url(&url)?;
    }
    let client = builder.build()?;

    for n in 0..3 {
        let r = client.get(format!("/items/{n}")).send().await?;
        println!(
            "GET  /items/{n} -> {} from {:?}",
            r.status(),
            served_by(&r).and_then(|s| s.endpoint.clone())
        );
    }

    println!("-- killing {}", backends.id(1));
    backends.kill(1);
    for n in 0..6 {
        let r = client
            .get(format!("/items/{n}"))
            .timeout(Duration::from_secs(1))
            .send()
            .await?;
        let by = served_by(&r).expect("set by the client");
        println!(
            "GET  /items/{n} -> {} from {:?} after {} tries",
            r.status(),
            by.endpoint,
            by.attempts
        );
    }
    // Safe to retry on another backend: the key lets the server dedupe.
    let r = client
        .post("/orders")
        .json(&serde_json::json!({"sku": "A-1"}))
        .idempotency_key()
        .send()
        .await?;
    println!("POST /orders (keyed) -> {}", r.status());
    // Without a key a POST is retried only when it certainly was not sent.
    match client.post("/orders").body("x").send().await {
        Ok(r) => println!("POST /orders -> {}", r.status()),
        Err(e) => println!(
            "POST /orders failed; may have run: {} ({e})",
            e.may_have_executed()
        ),
    }

    let stats = client.stats();
    println!(
        "calls {}, attempts {}, retries {}, failovers {}",
        stats.totals.requests, stats.totals.attempts, stats.totals.retries, stats.totals.failovers
    );
    for e in &stats.endpoints {
        println!(
            "  {}: health {:?}, ejected {}, breaker {:?}",
            e.id, e.health, e.ejected, e.breaker
        );
    }
    Ok(())
}
