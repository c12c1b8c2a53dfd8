//! The endpoint-failover core on real sockets: three local TCP services,
//! round-robin with active TCP health checks; one service is stopped and the
//! calls move to the others without an error; stats and events are printed.
//!
//! Run: `cargo run --example endpoints`

use failover_pool::core::health::HealthCheckConfig;
use failover_pool::core::{Classified, Endpoint, Failover, RoundRobin, TcpCheck};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// A tiny service that answers every connection with its own name.
async fn serve(name: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let _ = tokio::io::AsyncWriteExt::write_all(&mut s, name.as_bytes()).await;
        }
    });
    (port, task)
}

async fn call(ep: std::sync::Arc<failover_pool::core::LiveEndpoint>) -> Result<String, Classified> {
    let mut s = TcpStream::connect(ep.endpoint().authority()).await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    if buf.is_empty() {
        return Err(Classified::maybe_executed("empty answer"));
    }
    Ok(buf)
}

#[tokio::main]
async fn main() -> failover_pool::Result<()> {
    let (pa, a) = serve("a").await;
    let (pb, _b) = serve("b").await;
    let (pc, _c) = serve("c").await;
    let failover = Failover::builder("demo")
        .endpoint(Endpoint::new("a", "127.0.0.1", pa))
        .endpoint(Endpoint::new("b", "127.0.0.1", pb))
        .endpoint(Endpoint::new("c", "127.0.0.1", pc))
        .strategy(RoundRobin::new())
        .health_check(TcpCheck)
        .health_config(HealthCheckConfig {
            interval: Duration::from_millis(200),
            ..HealthCheckConfig::default()
        })
        .build()?;
    let mut events = failover.subscribe();

    let mut served = Vec::new();
    for _ in 0..6 {
        served.push(failover.execute_idempotent(call).await?.value);
    }
    println!("before: {served:?}");

    a.abort(); // service `a` goes away: connections are refused
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut served = Vec::new();
    for _ in 0..6 {
        served.push(failover.execute_idempotent(call).await?.value);
    }
    println!("after a stopped: {served:?} (no caller saw an error)");
    // The background checks (every 200 ms, `fall` = 3) mark `a` unhealthy;
    // from then on no call is even tried on it.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    println!(
        "health: {:?}",
        failover
            .stats()
            .endpoints
            .iter()
            .map(|e| (e.id.clone(), e.health))
            .collect::<Vec<_>>()
    );

    while let Ok(e) = events.try_recv() {
        println!("event: {:?}", e.kind);
    }
    let stats = failover.stats();
    println!(
        "requests {} successes {} failures {} failovers {} p50 {:?}",
        stats.totals.requests,
        stats.totals.successes,
        stats.totals.failures,
        stats.totals.failovers,
        stats.latency.p50
    );
    Ok(())
}
