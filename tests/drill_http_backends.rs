#![cfg(feature = "drill")]
//! Integration tests for `failover_pool::drill::http::LocalHttpBackends`:
//! every backend mode, health checks, kill and restart, and the request
//! ledger, driven by a real HTTP client (reqwest) and, where the connection
//! itself is under test, by raw TCP.
//!
//! Timeouts here bound "did not hang forever" or make a hang observable;
//! the only timing assertions are lower bounds of deliberate delays.

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use failover_pool::drill::http::{BackendMode, LocalHttpBackends};
use reqwest::{Client, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound for anything that is expected to happen.
const PATIENCE: Duration = Duration::from_secs(10);
/// The client timeout that observes a hang.
const SHORT: Duration = Duration::from_millis(300);

/// A client that talks to the backends directly, never retries, and gives
/// up after `timeout`.
fn client_with_timeout(timeout: Duration) -> Client {
    Client::builder()
        .no_proxy()
        .retry(reqwest::retry::never())
        .timeout(timeout)
        .build()
        .expect("client")
}

fn client() -> Client {
    client_with_timeout(PATIENCE)
}

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {PATIENCE:?}"))
}

/// Waits until `condition` holds.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

async fn post(client: &Client, url: &str, id: &str) -> reqwest::Result<Response> {
    client
        .post(format!("{url}/x"))
        .header("x-request-id", id)
        .body("hello")
        .send()
        .await
}

async fn health(client: &Client, url: &str) -> reqwest::Result<Response> {
    client.get(format!("{url}/health")).send().await
}

async fn health_status(client: &Client, url: &str) -> StatusCode {
    within("health check", health(client, url))
        .await
        .expect("health check")
        .status()
}

/// Sends `GET /x` over `stream` and reads the whole response (headers and a
/// `Content-Length` body), leaving the connection open.
async fn raw_get(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /x HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed mid-response");
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .expect("content-length");
            if response.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// Whether the server closed `stream`: the next read sees end-of-stream or
/// a reset.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        within("read after the kill", stream.read(&mut buf)).await,
        Ok(0) | Err(_)
    )
}

#[tokio::test]
async fn ok_mode_answers_json_and_counts_executions() {
    let backends = LocalHttpBackends::start(3).await.unwrap();
    assert_eq!(backends.len(), 3);
    assert!(!backends.is_empty());
    let mut ports: Vec<u16> = (0..3).map(|i| backends.port(i)).collect();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    for i in 0..3 {
        assert_eq!(backends.id(i), format!("b{i}"));
        assert_eq!(
            backends.url(i),
            format!("http://127.0.0.1:{}", backends.port(i))
        );
        assert_eq!(backends.mode(i), BackendMode::Ok);
        assert!(backends.is_running(i));
    }
    assert_eq!(backends.urls().len(), 3);

    let client = client();
    let response = within("POST", post(&client, &backends.url(1), "r1"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-backend"], "b1");
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "backend": "b1", "method": "POST", "path": "/x", "body_len": 5, "request_id": "r1"
        })
    );
    let response = within("GET", client.get(format!("{}/a/b", backends.url(1))).send())
        .await
        .unwrap();
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        json,
        serde_json::json!({ "backend": "b1", "method": "GET", "path": "/a/b", "body_len": 0 })
    );
    assert_eq!(
        health_status(&client, &backends.url(1)).await,
        StatusCode::OK
    );

    let stats = backends.stats(1);
    assert_eq!(stats.received, 3);
    assert_eq!(stats.health_checks, 1);
    assert_eq!(stats.executed, 2);
    assert_eq!(stats.executed_with("POST"), 1);
    assert_eq!(stats.executed_with("GET"), 1);
    assert_eq!(stats.answered_with(200), 3);
    assert!(stats.connections >= 1);
    assert_eq!(backends.stats(0).received, 0);
    assert_eq!(backends.executions("r1"), 1);

    backends.reset_stats();
    assert_eq!(backends.stats(1).received, 0);
    assert_eq!(backends.executions("r1"), 0);
}

#[tokio::test]
async fn health_answers_ok_unless_slow_hung_or_failing() {
    let backends = LocalHttpBackends::start(1).await.unwrap();
    let url = backends.url(0);
    let client = client();
    for mode in [
        BackendMode::Ok,
        BackendMode::ResetMidBody,
        BackendMode::DropAfterWork,
        BackendMode::every_nth(1, BackendMode::status(503)),
    ] {
        backends.set_mode(0, mode.clone());
        let response = within("health", health(&client, &url)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{mode:?}");
        assert_eq!(response.text().await.unwrap(), "ok");
    }
    backends.set_mode(0, BackendMode::status(503));
    assert_eq!(
        health_status(&client, &url).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    backends.set_mode(0, BackendMode::Slow(Duration::from_millis(200)));
    let started = Instant::now();
    assert_eq!(health_status(&client, &url).await, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(200));
    backends.set_mode(0, BackendMode::Hang);
    let error = health(&client_with_timeout(SHORT), &url).await.unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    // Health checks are never executed.
    assert_eq!(backends.stats(0).executed, 0);
    assert_eq!(backends.stats(0).health_checks, 7);
}

#[tokio::test]
async fn slow_answers_after_the_delay_and_executes_first() {
    let backends = LocalHttpBackends::start(1).await.unwrap();
    let url = backends.url(0);
    let delay = Duration::from_millis(300);
    backends.set_mode(0, BackendMode::Slow(delay));
    let started = Instant::now();
    let response = within("slow POST", post(&client(), &url, "s1"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= delay);
    assert_eq!(backends.stats(0).executed, 1);

    // A client that gives up during the delay leaves the execution behind.
    let error = post(&client_with_timeout(Duration::from_millis(50)), &url, "s2")
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    eventually("the abandoned request is executed", || {
        backends.executions("s2") == 1
    })
    .await;
    assert_eq!(backends.stats(0).answered_with(200), 1);
}

#[tokio::test]
async fn hang_never_answers_and_never_executes() {
    let backends = LocalHttpBackends::start(1).await.unwrap();
    let url = backends.url(0);
    backends.set_mode(0, BackendMode::Hang);
    let error = within("hung POST", post(&client_with_timeout(SHORT), &url, "h1"))
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    eventually("the request is received", || {
        backends.stats(0).received == 1
    })
    .await;
    let stats = backends.stats(0);
    assert_eq!(stats.executed, 0);
    assert_eq!(stats.answered_total(), 0);
    assert_eq!(backends.executions("h1"), 0);

    backends.set_mode(0, BackendMode::Ok);
    let response = within("POST", post(&client(), &url, "h2")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn status_answers_the_code_with_retry_after() {
    let backends = LocalHttpBackends::start(1).await.unwrap();
    let url = backends.url(0);
    let client = client();
    backends.set_mode(
        0,
        BackendMode::status_retry_after(503, Duration::from_millis(1500)),
    );
    let response = within("POST", post(&client, &url, "st1")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "2");
    assert_eq!(response.headers()["x-backend"], "b0");
    let health = within("health", health(&client, &url)).await.unwrap();
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.headers()["retry-after"], "2");

    backends.set_mode(0, BackendMode::status(429));
    let response = within("POST", post(&client, &url, "st2")).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_none());

    let stats = backends.stats(0);
    assert_eq!(stats.executed, 0);
    assert_eq!(stats.answered_with(503), 2);
    assert_eq!(stats.answered_with(429), 1);
    assert!(backends.duplicated().is_empty());
    assert_eq!(backends.executions("st1"), 0);
}

#[tokio::test]
async fn reset_mid_body_fails_the_body_read_after_executing() {
    let backends = LocalHttpBackends::start(1).await.unwrap();
    backends.set_mode(0, BackendMode::ResetMidBody);
    let response = within("POST", post(&client(), &backends.url(0), "r1"))
        .await
        .expect("the status and headers arrive");
    assert_eq!(response.status(), StatusCode::OK);
    let declared = response.content_length().expect("content-length");
    assert!(declared > 0);
    let error = within("body read", response.bytes()).await.unwrap_err();
    assert!(error.is_body() || error.is_decode(), "{error:?}");
    assert_eq!(backends.stats(0).executed, 1);
    assert_eq!(backends.executions("r1"), 1);
}

#[tokio::test]
async fn drop_after_work_fails_the_request_after_executing() {
    let backends = LocalHttpBackends::start(1).await.unwrap();
    backends.set_mode(0, BackendMode::DropAfterWork);
    let error = within("POST", post(&client(), &backends.url(0), "d1"))
        .await
        .unwrap_err();
    assert!(!error.is_timeout(), "{error:?}");
    let stats = backends.stats(0);
    assert_eq!(stats.executed, 1);
    assert_eq!(stats.answered_total(), 0);
    assert_eq!(backends.executions("d1"), 1);
}

#[tokio::test]
async fn every_nth_applies_the_inner_mode_on_every_nth_request() {
    let backends = LocalHttpBackends::start(1).await.unwrap();
    let url = backends.url(0);
    let client = client();
    backends.set_mode(0, BackendMode::every_nth(3, BackendMode::status(503)));
    let mut statuses = Vec::new();
    for i in 0..6 {
        // Health checks in between are not counted.
        assert_eq!(health_status(&client, &url).await, StatusCode::OK);
        let response = within("POST", post(&client, &url, &format!("e{i}")))
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 503, 200, 200, 503]);
    assert_eq!(backends.stats(0).executed, 4);

    // Setting the mode again starts a fresh count.
    backends.set_mode(0, BackendMode::every_nth(2, BackendMode::DropAfterWork));
    let mut outcomes = Vec::new();
    for i in 0..4 {
        outcomes.push(post(&client, &url, &format!("f{i}")).await.is_ok());
    }
    assert_eq!(outcomes, [true, false, true, false]);
    assert_eq!(backends.stats(0).executed, 8);
}

#[tokio::test]
async fn kill_refuses_connects_and_cuts_open_connections() {
    let backends = LocalHttpBackends::start(2).await.unwrap();
    let addr = ("127.0.0.1", backends.port(0));
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert!(raw_get(&mut idle).await.starts_with("HTTP/1.1 200 OK"));

    backends.kill(0);
    assert!(!backends.is_running(0));
    assert!(
        closed_by_server(&mut idle).await,
        "the keep-alive connection stays open"
    );
    let error = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
    let error = post(&client(), &backends.url(0), "k1").await.unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    backends.kill(0); // a second kill does nothing

    // The other backend is untouched.
    let response = within("POST", post(&client(), &backends.url(1), "k2"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn kill_fails_a_request_in_flight() {
    let backends = LocalHttpBackends::start(1).await.unwrap();
    backends.set_mode(0, BackendMode::Hang);
    let url = backends.url(0);
    let request = tokio::spawn(async move { post(&client(), &url, "k1").await });
    eventually("the request is received", || {
        backends.stats(0).received == 1
    })
    .await;
    backends.kill(0);
    let error = within("the cut request", request)
        .await
        .unwrap()
        .unwrap_err();
    assert!(!error.is_timeout(), "{error:?}");
    assert_eq!(backends.stats(0).executed, 0);
}

#[tokio::test]
async fn restart_listens_again_on_the_same_port_in_ok_mode() {
    let backends = LocalHttpBackends::start(1).await.unwrap();
    let port = backends.port(0);
    let client = client();
    within("POST", post(&client, &backends.url(0), "a"))
        .await
        .unwrap();
    // Leave connections closed by the server behind (TIME_WAIT on `port`).
    let mut idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    raw_get(&mut idle).await;
    backends.set_mode(0, BackendMode::Hang);
    backends.kill(0);

    backends
        .restart(0)
        .await
        .expect("the same port can be bound again");
    assert!(backends.is_running(0));
    assert_eq!(backends.port(0), port);
    assert_eq!(backends.mode(0), BackendMode::Ok);
    // A fresh client: the first one's pooled connection was cut by the
    // kill, and its next request on it may fail as after a real crash.
    let client = self::client();
    let response = within("POST", post(&client, &backends.url(0), "b"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Statistics survive the restart.
    assert_eq!(backends.stats(0).executed, 3);

    // Restarting a running backend kills it first: its connections are cut.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    raw_get(&mut idle).await;
    backends.restart(0).await.unwrap();
    assert!(closed_by_server(&mut idle).await);
    let response = within("POST", post(&self::client(), &backends.url(0), "c"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn dropping_the_backends_stops_everything() {
    let backends = LocalHttpBackends::start(1).await.unwrap();
    let port = backends.port(0);
    let mut idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    raw_get(&mut idle).await;
    drop(backends);
    assert!(closed_by_server(&mut idle).await);
    let error = TcpStream::connect(("127.0.0.1", port)).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn executions_and_duplicates_are_tracked_by_request_id() {
    let backends = LocalHttpBackends::start(3).await.unwrap();
    let client = client();
    for (i, id) in [(0, "a"), (1, "a"), (0, "b"), (2, "c"), (2, "c"), (1, "c")] {
        let response = within("POST", post(&client, &backends.url(i), id))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    // Not executed, so not counted.
    backends.set_mode(0, BackendMode::status(503));
    within("POST", post(&client, &backends.url(0), "b"))
        .await
        .unwrap();
    // Requests without an id are executed but not in the ledger.
    within("GET", client.get(backends.url(1)).send())
        .await
        .unwrap();

    assert_eq!(backends.executions("a"), 2);
    assert_eq!(backends.executions("b"), 1);
    assert_eq!(backends.executions("c"), 3);
    assert_eq!(backends.executions("unknown"), 0);
    assert_eq!(
        backends.duplicated(),
        [("a".to_owned(), 2), ("c".to_owned(), 3)]
    );
    assert_eq!(backends.stats(1).executed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_each_executed_once() {
    let backends = LocalHttpBackends::start(3).await.unwrap();
    let client = client();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..90 {
        let client = client.clone();
        let url = backends.url(i % 3);
        requests.spawn(async move { post(&client, &url, &format!("id{i}")).await });
    }
    while let Some(result) = within("requests", requests.join_next()).await {
        assert_eq!(result.unwrap().unwrap().status(), StatusCode::OK);
    }
    let executed: u64 = (0..3).map(|i| backends.stats(i).executed).sum();
    assert_eq!(executed, 90);
    assert!(backends.duplicated().is_empty());
    assert!((0..90).all(|i| backends.executions(&format!("id{i}")) == 1));
}

#[tokio::test]
async fn no_backends_is_allowed() {
    let backends = LocalHttpBackends::start(0).await.unwrap();
    assert!(backends.is_empty());
    assert!(backends.urls().is_empty());
    assert!(backends.duplicated().is_empty());
}

#[tokio::test]
#[should_panic(expected = "no backend 2")]
async fn an_index_out_of_range_panics() {
    let backends = LocalHttpBackends::start(2).await.unwrap();
    backends.kill(2);
}
