//! Active health checks against real sockets: a TCP check against a local
//! listener that goes away and comes back, the background loop, and (with
//! the `http` feature) an HTTP check against a tiny HTTP/1.1 responder.

use failover_pool::core::events::{Event, EventBus, EventKind};
use failover_pool::core::health::{HealthCheck, HealthCheckConfig, HealthChecker, TcpCheck};
use failover_pool::core::{BreakerConfig, Endpoint, EndpointSet, Health};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// Upper bound for anything we wait for; generous so slow CI machines pass.
const PATIENCE: Duration = Duration::from_secs(20);

fn set_with(endpoint: Endpoint) -> Arc<EndpointSet> {
    Arc::new(EndpointSet::new(vec![endpoint], Arc::new(BreakerConfig::default())).unwrap())
}

fn checker(
    set: &Arc<EndpointSet>,
    check: Arc<dyn HealthCheck>,
    config: HealthCheckConfig,
) -> (Arc<HealthChecker>, broadcast::Receiver<Event>) {
    let events = EventBus::new("health-test", 256);
    let rx = events.subscribe();
    let hc = HealthChecker::new(Arc::clone(set), check, config, events).unwrap();
    (Arc::new(hc), rx)
}

/// A listener on `addr` (port 0 for any) with SO_REUSEADDR, so the same port
/// can be bound again after it was closed.
fn listen(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    socket.listen(64).unwrap()
}

/// Accepts and immediately closes connections until aborted (the listener
/// is closed when the task ends).
fn serve_tcp(listener: TcpListener) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        }
    })
}

async fn stop(task: JoinHandle<()>) {
    task.abort();
    let _ = task.await;
}

/// Waits for a `HealthChanged` event of `id` to `to`; panics after PATIENCE.
async fn wait_health_event(rx: &mut broadcast::Receiver<Event>, id: &str, to: Health) -> Health {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match rx.recv().await {
                Ok(Event {
                    kind:
                        EventKind::HealthChanged {
                            endpoint,
                            from,
                            to: got,
                        },
                    ..
                }) if &*endpoint == id && got == to => return from,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event bus closed: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no HealthChanged event of {id} to {to}"))
}

fn drain(rx: &mut broadcast::Receiver<Event>) -> Vec<EventKind> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e.kind);
    }
    out
}

#[tokio::test]
async fn tcp_check_follows_a_real_listener_down_and_up() {
    let listener = listen("127.0.0.1:0".parse().unwrap());
    let addr = listener.local_addr().unwrap();
    let server = serve_tcp(listener);

    let set = set_with(Endpoint::new("db-1", "127.0.0.1", addr.port()));
    let config = HealthCheckConfig {
        timeout: Duration::from_secs(5),
        rise: 2,
        fall: 2,
        ..HealthCheckConfig::default()
    };
    let (hc, mut rx) = checker(&set, Arc::new(TcpCheck::new()), config);

    assert_eq!(hc.check("db-1").await.unwrap(), Health::Healthy);
    assert_eq!(
        drain(&mut rx),
        vec![EventKind::HealthChanged {
            endpoint: "db-1".into(),
            from: Health::Unknown,
            to: Health::Healthy
        }]
    );

    // The server goes away: connections are refused.
    stop(server).await;
    let report = hc.check_report("db-1").await.unwrap();
    assert!(!report.passed(), "connect to a closed port passed");
    assert_eq!(
        report.health,
        Health::Healthy,
        "one failure is below fall=2"
    );
    assert_eq!(hc.check("db-1").await.unwrap(), Health::Unhealthy);
    let from = wait_health_event(&mut rx, "db-1", Health::Unhealthy).await;
    assert_eq!(from, Health::Healthy);
    assert_eq!(set.get("db-1").unwrap().health(), Health::Unhealthy);

    // It comes back on the same port: two passes make it healthy again.
    let server = serve_tcp(listen(addr));
    assert_eq!(hc.check("db-1").await.unwrap(), Health::Unhealthy);
    assert_eq!(hc.check("db-1").await.unwrap(), Health::Healthy);
    // The only endpoint was down: panic routing was on meanwhile.
    let kinds = drain(&mut rx);
    assert_eq!(
        kinds,
        vec![
            EventKind::PanicMode { on: true },
            EventKind::HealthChanged {
                endpoint: "db-1".into(),
                from: Health::Unhealthy,
                to: Health::Healthy
            },
            EventKind::Recovered {
                endpoint: "db-1".into()
            },
            EventKind::PanicMode { on: false },
        ]
    );
    assert!(!set.is_panic());
    stop(server).await;
}

#[tokio::test]
async fn background_checker_moves_health_without_manual_checks() {
    let listener = listen("127.0.0.1:0".parse().unwrap());
    let addr = listener.local_addr().unwrap();
    let server = serve_tcp(listener);

    let set = set_with(Endpoint::new("svc-1", "127.0.0.1", addr.port()));
    let config = HealthCheckConfig {
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
        jitter: 0.2,
        rise: 2,
        fall: 2,
        ..HealthCheckConfig::default()
    };
    let (hc, mut rx) = checker(&set, Arc::new(TcpCheck::new()), config);
    let task = Arc::clone(&hc).spawn();

    wait_health_event(&mut rx, "svc-1", Health::Healthy).await;
    assert_eq!(set.get("svc-1").unwrap().health(), Health::Healthy);

    stop(server).await;
    let from = wait_health_event(&mut rx, "svc-1", Health::Unhealthy).await;
    assert_eq!(from, Health::Healthy);
    assert_eq!(set.get("svc-1").unwrap().health(), Health::Unhealthy);
    assert_ne!(set.get("svc-1").unwrap().last_checked(), 0);

    let server = serve_tcp(listen(addr));
    wait_health_event(&mut rx, "svc-1", Health::Healthy).await;
    assert_eq!(set.get("svc-1").unwrap().health(), Health::Healthy);

    task.shutdown().await;
    stop(server).await;
}

#[tokio::test]
async fn check_all_reports_every_endpoint() {
    let up = listen("127.0.0.1:0".parse().unwrap());
    let up_port = up.local_addr().unwrap().port();
    let server = serve_tcp(up);
    // A port that was just free: nothing listens there.
    let down_port = {
        let l = listen("127.0.0.1:0".parse().unwrap());
        l.local_addr().unwrap().port()
    };
    let set = Arc::new(
        EndpointSet::new(
            vec![
                Endpoint::new("up", "127.0.0.1", up_port),
                Endpoint::new("down", "127.0.0.1", down_port),
            ],
            Arc::new(BreakerConfig::default()),
        )
        .unwrap(),
    );
    let config = HealthCheckConfig {
        timeout: Duration::from_secs(5),
        ..HealthCheckConfig::default()
    };
    let (hc, _rx) = checker(&set, Arc::new(TcpCheck::new()), config);
    let all = hc.check_all().await;
    assert_eq!(
        all,
        vec![
            (Arc::from("up"), Health::Healthy),
            (Arc::from("down"), Health::Unhealthy)
        ]
    );
    stop(server).await;
}

#[cfg(feature = "http")]
mod http {
    use super::*;
    use failover_pool::core::health::HttpCheck;
    use std::sync::atomic::{AtomicU16, Ordering::Relaxed};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A minimal HTTP/1.1 responder: reads the request head, answers with
    /// the current status and closes the connection.
    fn serve_http(listener: TcpListener, status: Arc<AtomicU16>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let status = Arc::clone(&status);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let request = String::from_utf8_lossy(&head);
                    let code = if request.starts_with("GET /health ") {
                        status.load(Relaxed)
                    } else {
                        404
                    };
                    let (reason, body) = match code {
                        200 => ("OK", "ok"),
                        429 => ("Too Many Requests", "slow down"),
                        404 => ("Not Found", "no"),
                        _ => ("Service Unavailable", "down"),
                    };
                    let response = format!(
                        "HTTP/1.1 {code} {reason}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        })
    }

    #[tokio::test]
    async fn http_check_against_a_real_responder() {
        let status = Arc::new(AtomicU16::new(200));
        let listener = listen("127.0.0.1:0".parse().unwrap());
        let port = listener.local_addr().unwrap().port();
        let server = serve_http(listener, Arc::clone(&status));

        let set = set_with(Endpoint::new("api-1", "127.0.0.1", port).with_protocol("http"));
        let config = HealthCheckConfig {
            timeout: Duration::from_secs(5),
            fall: 2,
            ..HealthCheckConfig::default()
        };
        let check = HttpCheck::from_config(&config).degraded_status(429);
        let (hc, mut rx) = checker(&set, Arc::new(check), config);

        assert_eq!(hc.check("api-1").await.unwrap(), Health::Healthy);

        status.store(429, Relaxed);
        assert_eq!(hc.check("api-1").await.unwrap(), Health::Degraded);

        status.store(503, Relaxed);
        let report = hc.check_report("api-1").await.unwrap();
        assert!(!report.passed());
        let why = std::error::Error::source(report.outcome.as_ref().unwrap_err())
            .unwrap()
            .to_string();
        assert!(why.contains("503"), "{why}");
        assert_eq!(report.health, Health::Degraded);
        assert_eq!(hc.check("api-1").await.unwrap(), Health::Unhealthy);
        let from = wait_health_event(&mut rx, "api-1", Health::Unhealthy).await;
        assert_eq!(from, Health::Degraded);

        status.store(200, Relaxed);
        hc.check("api-1").await.unwrap();
        assert_eq!(hc.check("api-1").await.unwrap(), Health::Healthy);
        stop(server).await;
    }

    #[tokio::test]
    async fn http_check_wrong_path_fails() {
        let status = Arc::new(AtomicU16::new(200));
        let listener = listen("127.0.0.1:0".parse().unwrap());
        let port = listener.local_addr().unwrap().port();
        let server = serve_http(listener, status);
        let set = set_with(Endpoint::new("api-1", "127.0.0.1", port));
        let config = HealthCheckConfig {
            timeout: Duration::from_secs(5),
            ..HealthCheckConfig::default()
        };
        let (hc, _rx) = checker(&set, Arc::new(HttpCheck::new().path("ready")), config);
        assert_eq!(hc.check("api-1").await.unwrap(), Health::Unhealthy);
        stop(server).await;
    }

    #[tokio::test]
    async fn background_http_checker_sees_503() {
        let status = Arc::new(AtomicU16::new(200));
        let listener = listen("127.0.0.1:0".parse().unwrap());
        let port = listener.local_addr().unwrap().port();
        let server = serve_http(listener, Arc::clone(&status));
        let set = set_with(Endpoint::new("api-1", "127.0.0.1", port));
        let config = HealthCheckConfig {
            interval: Duration::from_millis(50),
            timeout: Duration::from_secs(5),
            fall: 2,
            ..HealthCheckConfig::default()
        };
        let (hc, mut rx) = checker(&set, Arc::new(HttpCheck::from_config(&config)), config);
        let task = Arc::clone(&hc).spawn();
        wait_health_event(&mut rx, "api-1", Health::Healthy).await;
        status.store(503, Relaxed);
        wait_health_event(&mut rx, "api-1", Health::Unhealthy).await;
        task.shutdown().await;
        stop(server).await;
    }

    #[tokio::test]
    async fn http_check_errors_mask_a_token_in_the_path() {
        const SECRET: &str = "t0ken-S3cret";
        // A port nothing listens on: the request fails and its error names the URL.
        let port = listen("127.0.0.1:0".parse().unwrap())
            .local_addr()
            .unwrap()
            .port();
        let set = set_with(Endpoint::new("api-1", "127.0.0.1", port));
        let config = HealthCheckConfig {
            timeout: Duration::from_secs(5),
            ..HealthCheckConfig::default()
        };
        let check = HttpCheck::new().path(format!("/health?token={SECRET}"));
        let (hc, _rx) = checker(&set, Arc::new(check), config);
        let report = hc.check_report("api-1").await.unwrap();
        let err = report.outcome.unwrap_err();
        let shown = format!("{} | {err:?}", failover_pool::error::chain(&err));
        assert!(shown.contains("token=***"), "{shown}");
        assert!(!shown.contains(SECRET), "{shown}");
    }
}
