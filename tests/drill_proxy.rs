#![cfg(feature = "drill")]
//! Integration tests for `failover_pool::drill::FaultProxy`: every mode
//! against real local TCP servers started in the test (an echo server and a
//! server that talks first), and once against a real PostgreSQL through
//! tokio-postgres.
//!
//! Timeouts here assert behaviour (nothing arrives), never speed; measured
//! delays are printed, not asserted.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use failover_pool::drill::{FaultProxy, LocalPgCluster, PgClusterOptions, ProxyMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long a read must stay silent to count as "nothing arrives".
const SILENCE: Duration = Duration::from_millis(400);
/// Upper bound for anything that is expected to happen.
const PATIENCE: Duration = Duration::from_secs(10);

/// A server on 127.0.0.1 that runs `serve` on every connection; aborted on
/// drop.
struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server<F, Fut>(serve: F) -> Server
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            conns.spawn(serve(socket));
        }
    });
    Server { addr, task }
}

/// Echoes everything back until end-of-stream.
async fn echo_server() -> Server {
    server(|mut socket| async move {
        let (mut rd, mut wr) = socket.split();
        let _ = tokio::io::copy(&mut rd, &mut wr).await;
    })
    .await
}

/// The byte at offset `i` of what [`talker_server`] sends.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// Sends `len` pattern bytes as soon as a client connects, then waits for
/// the client to go away.
async fn talker_server(len: usize) -> Server {
    server(move |mut socket| async move {
        let data: Vec<u8> = (0..len).map(pattern).collect();
        if socket.write_all(&data).await.is_ok() {
            let mut sink = Vec::new();
            let _ = socket.read_to_end(&mut sink).await;
        }
    })
    .await
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    TcpStream::connect(proxy.local_addr()).await.unwrap()
}

/// Writes `msg` and expects it echoed back.
async fn roundtrip(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut back))
        .await
        .expect("echo did not come back")
        .unwrap();
    assert_eq!(back, msg);
}

/// Asserts that nothing arrives on `stream` for [`SILENCE`].
async fn assert_silent(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(SILENCE, stream.read(&mut buf)).await {
        Err(_elapsed) => {}
        Ok(result) => panic!("{what}: expected silence, the read returned {result:?}"),
    }
}

/// Reads until end-of-stream or an error; returns what arrived and how the
/// stream ended.
async fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, io::Result<()>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("the connection was not closed");
        match read {
            Ok(0) => return (data, Ok(())),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) => return (data, Err(e)),
        }
    }
}

/// Asserts that the stream is closed (end-of-stream or reset) without any
/// further data.
async fn assert_closed(stream: &mut TcpStream, what: &str) {
    let (data, end) = read_until_closed(stream).await;
    assert!(data.is_empty(), "{what}: unexpected data {data:?}");
    if let Err(e) = &end {
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ),
            "{what}: unexpected error {e}"
        );
    }
    eprintln!("{what}: closed with {end:?}");
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn pass_echoes_and_counts() {
    let echo = echo_server().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    assert_eq!(proxy.target(), echo.addr);
    assert_eq!(proxy.port(), proxy.local_addr().port());
    assert!(proxy.local_addr().ip().is_loopback());
    assert_eq!(proxy.mode(), ProxyMode::Pass);
    eprintln!("{proxy:?}");

    let mut a = connect(&proxy).await;
    roundtrip(&mut a, b"hello").await;
    // A chunk larger than the proxy's buffer.
    let big: Vec<u8> = (0..100_000).map(pattern).collect();
    let (mut rd, mut wr) = a.split();
    let (_, back) = tokio::join!(wr.write_all(&big), async {
        let mut back = vec![0u8; big.len()];
        rd.read_exact(&mut back).await.unwrap();
        back
    });
    assert!(back == big, "large echo corrupted");
    wait_until("bytes are counted", || {
        proxy.bytes_forwarded() == 2 * (5 + big.len() as u64)
    })
    .await;

    let mut b = connect(&proxy).await;
    let mut c = connect(&proxy).await;
    roundtrip(&mut b, b"b").await;
    roundtrip(&mut c, b"c").await;
    wait_until("three connections", || proxy.connections() == 3).await;
    drop(b);
    wait_until("two connections", || proxy.connections() == 2).await;
    // A half-close is passed on: the echo server sees end-of-stream and
    // closes, which the client sees as end-of-stream.
    c.shutdown().await.unwrap();
    let (data, end) = read_until_closed(&mut c).await;
    assert!(data.is_empty() && end.is_ok(), "{data:?} {end:?}");
    wait_until("one connection", || proxy.connections() == 1).await;
    roundtrip(&mut a, b"still there").await;
    proxy.shutdown().await;
    assert_closed(&mut a, "after shutdown").await;
}

#[tokio::test]
async fn blackhole_silences_existing_and_new_connections_then_pass_resets_them() {
    let echo = echo_server().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    let mut existing = connect(&proxy).await;
    roundtrip(&mut existing, b"before").await;

    proxy.set_mode(ProxyMode::Blackhole);
    assert_eq!(proxy.mode(), ProxyMode::Blackhole);
    let before = proxy.bytes_forwarded();
    existing.write_all(b"into the void").await.unwrap();
    assert_silent(&mut existing, "existing connection in blackhole").await;

    // A new connection is accepted (the handshake completes) but never
    // answered.
    let mut fresh = connect(&proxy).await;
    fresh.write_all(b"anyone?").await.unwrap();
    assert_silent(&mut fresh, "new connection in blackhole").await;
    wait_until("both connections held", || proxy.connections() == 2).await;
    assert_eq!(proxy.bytes_forwarded(), before, "nothing was forwarded");

    // The partition heals: connections that saw it are broken, new ones work.
    proxy.set_mode(ProxyMode::Pass);
    assert_closed(&mut existing, "existing connection after the blackhole").await;
    assert_closed(&mut fresh, "blackholed new connection after the blackhole").await;
    wait_until("broken connections released", || proxy.connections() == 0).await;
    let mut after = connect(&proxy).await;
    roundtrip(&mut after, b"after").await;
}

#[tokio::test]
async fn blackhole_hides_a_close() {
    let echo = echo_server().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    let mut a = connect(&proxy).await;
    roundtrip(&mut a, b"x").await;
    proxy.set_mode(ProxyMode::Blackhole);
    // The client half-closes; the echo server must not learn about it (it
    // would close its side, which would show up as end-of-stream).
    a.shutdown().await.unwrap();
    assert_silent(&mut a, "half-closed connection in blackhole").await;
    proxy.set_mode(ProxyMode::Pass);
    assert_closed(&mut a, "after the blackhole").await;
}

#[tokio::test]
async fn reset_resets_new_and_existing_connections() {
    let echo = echo_server().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    let mut existing = connect(&proxy).await;
    roundtrip(&mut existing, b"before").await;

    proxy.set_mode(ProxyMode::Reset);
    let mut fresh = connect(&proxy).await;
    let mut buf = [0u8; 16];
    let first = tokio::time::timeout(PATIENCE, fresh.read(&mut buf))
        .await
        .expect("a reset connection must not hang");
    match &first {
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => assert_eq!(*n, 0, "a reset connection delivered data"),
    }
    eprintln!("first read on a new connection in Reset mode: {first:?}");
    assert_closed(&mut existing, "existing connection in Reset mode").await;
    wait_until("no connections", || proxy.connections() == 0).await;

    proxy.set_mode(ProxyMode::Pass);
    let mut after = connect(&proxy).await;
    roundtrip(&mut after, b"after").await;
}

#[tokio::test]
async fn latency_delays_but_delivers_intact() {
    let echo = echo_server().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    let mut a = connect(&proxy).await;
    let began = Instant::now();
    roundtrip(&mut a, b"warm-up").await;
    let baseline = began.elapsed();

    let delay = Duration::from_millis(100);
    proxy.set_mode(ProxyMode::Latency(delay));
    assert_eq!(proxy.mode(), ProxyMode::Latency(delay));
    let msg: Vec<u8> = (0..50_000).map(pattern).collect();
    let began = Instant::now();
    roundtrip(&mut a, &msg).await;
    let delayed = began.elapsed();
    let mut b = connect(&proxy).await;
    let began = Instant::now();
    roundtrip(&mut b, b"new connection").await;
    eprintln!(
        "[timing] round trip: {baseline:?} in Pass; with Latency({delay:?}) each way: \
         {delayed:?} (existing connection, 50 kB), {:?} (new connection, 14 bytes)",
        began.elapsed()
    );
}

#[tokio::test]
async fn cut_after_delivers_exactly_n_bytes_then_closes() {
    // The server talks first: the client gets exactly n bytes.
    let talker = talker_server(100_000).await;
    let proxy = FaultProxy::start(talker.addr).await.unwrap();
    let n = 20_000;
    proxy.set_mode(ProxyMode::CutAfter(n));
    let mut a = connect(&proxy).await;
    let (data, end) = read_until_closed(&mut a).await;
    eprintln!("CutAfter({n}): received {} bytes, then {end:?}", data.len());
    assert_eq!(data.len() as u64, n);
    assert!(data.iter().enumerate().all(|(i, b)| *b == pattern(i)));
    assert_eq!(proxy.bytes_forwarded(), n);
    wait_until("the cut connection is gone", || proxy.connections() == 0).await;

    // Each new connection gets its own budget.
    let mut b = connect(&proxy).await;
    let (data, _) = read_until_closed(&mut b).await;
    assert_eq!(data.len() as u64, n);
}

#[tokio::test]
async fn cut_after_counts_both_directions_from_when_it_is_set() {
    let echo = echo_server().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    let mut a = connect(&proxy).await;
    // Bytes forwarded before the mode is set do not count.
    roundtrip(&mut a, &[7u8; 1000]).await;

    proxy.set_mode(ProxyMode::CutAfter(100));
    let before = proxy.bytes_forwarded();
    roundtrip(&mut a, &[1u8; 30]).await; // 60 of 100
    // 40 more bytes reach the echo server, then the connection is cut:
    // the client gets nothing of this second echo.
    a.write_all(&[2u8; 64]).await.unwrap();
    let (data, end) = read_until_closed(&mut a).await;
    eprintln!("echo cut: client received {data:?}, then {end:?}");
    assert!(data.is_empty());
    assert_eq!(proxy.bytes_forwarded() - before, 100);

    // Setting the mode again grants a fresh budget; CutAfter(0) cuts open
    // connections at once.
    proxy.set_mode(ProxyMode::CutAfter(10));
    let mut b = connect(&proxy).await;
    b.write_all(b"12345").await.unwrap();
    let mut back = [0u8; 5];
    b.read_exact(&mut back).await.unwrap(); // 10 of 10: cut
    assert_eq!(&back, b"12345");
    assert_closed(&mut b, "after 10 bytes").await;
    let mut c = connect(&proxy).await;
    roundtrip(&mut c, b"1").await; // 2 of 10
    proxy.set_mode(ProxyMode::CutAfter(0));
    assert_closed(&mut c, "CutAfter(0)").await;
}

#[tokio::test]
async fn unreachable_target_closes_the_client() {
    // A port nothing listens on.
    let target = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let proxy = FaultProxy::start(target).await.unwrap();
    let mut a = connect(&proxy).await;
    assert_closed(&mut a, "target refused").await;
    wait_until("no connections", || proxy.connections() == 0).await;
}

#[tokio::test]
async fn drop_closes_everything() {
    let echo = echo_server().await;
    let proxy = FaultProxy::start(echo.addr).await.unwrap();
    let addr = proxy.local_addr();
    let mut a = connect(&proxy).await;
    let mut b = connect(&proxy).await;
    roundtrip(&mut a, b"a").await;
    roundtrip(&mut b, b"b").await;
    proxy.set_mode(ProxyMode::Latency(Duration::from_secs(3600)));
    // `b` has a chunk held by the latency when the proxy goes away.
    b.write_all(b"held").await.unwrap();
    drop(proxy);
    assert_closed(&mut a, "idle connection after drop").await;
    assert_closed(&mut b, "connection with a held chunk after drop").await;
    // The listener is gone too.
    let deadline = Instant::now() + PATIENCE;
    loop {
        match TcpStream::connect(addr).await {
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
                break;
            }
            Ok(_) => {
                assert!(Instant::now() < deadline, "the listener is still open");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn select_one(
    client: &tokio_postgres::Client,
) -> Result<tokio_postgres::Row, tokio_postgres::Error> {
    client.query_one("SELECT 1", &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_through_the_proxy() {
    let cluster = LocalPgCluster::start(PgClusterOptions::new().standbys(0))
        .await
        .unwrap_or_else(|e| panic!("starting PostgreSQL failed: {e}"));
    let node = cluster.node(0);
    let target: SocketAddr = ([127, 0, 0, 1], node.port).into();
    let proxy = FaultProxy::start(target).await.unwrap();
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        proxy.port()
    );
    let pg_connect = || async {
        let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    };

    let old = pg_connect().await;
    let one: i32 = select_one(&old).await.unwrap().get(0);
    assert_eq!(one, 1);
    wait_until("one proxied connection", || proxy.connections() == 1).await;

    proxy.set_mode(ProxyMode::Blackhole);
    let silent = tokio::time::timeout(Duration::from_secs(1), select_one(&old)).await;
    assert!(
        silent.is_err(),
        "SELECT 1 answered in Blackhole: {silent:?}"
    );
    let new = tokio::time::timeout(
        Duration::from_secs(1),
        tokio_postgres::connect(&conninfo, tokio_postgres::NoTls),
    )
    .await;
    assert!(new.is_err(), "connected through a Blackhole");

    proxy.set_mode(ProxyMode::Pass);
    let broken = tokio::time::timeout(PATIENCE, select_one(&old))
        .await
        .expect("the old connection must fail, not hang");
    assert!(broken.is_err(), "a blackholed connection kept working");
    eprintln!(
        "old connection after the blackhole: {}",
        broken.unwrap_err()
    );
    let fresh = pg_connect().await;
    let one: i32 = select_one(&fresh).await.unwrap().get(0);
    assert_eq!(one, 1);
    wait_until("only the fresh connection", || proxy.connections() == 1).await;
    eprintln!(
        "{} bytes forwarded to and from PostgreSQL",
        proxy.bytes_forwarded()
    );
}
