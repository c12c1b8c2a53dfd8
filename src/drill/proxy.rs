//! [`FaultProxy`]: an in-process TCP proxy that injects network faults
//! between a client (typically a failover pool) and one node.
//!
//! The proxy listens on `127.0.0.1:<free port>` and forwards every accepted
//! connection to a fixed target address. Its [`ProxyMode`] can be switched
//! at any time with [`FaultProxy::set_mode`]; the change applies at once to
//! new connections *and* to connections that are already open, which lets a
//! test cut a node off the network, make it slow, or kill its connections
//! mid-stream without root privileges, `iptables` or an external binary.
//!
//! Each proxied connection is one tokio task with one 16 KiB buffer per
//! direction; both directions and a watcher of the mode run concurrently
//! inside that task, so a mode change is observed even while a direction is
//! blocked reading or writing.
//!
//! Semantics, mode by mode:
//!
//! * [`Pass`](ProxyMode::Pass): bytes are forwarded both ways as they come.
//!   An end-of-stream from one side is passed on as a half-close
//!   (`shutdown(Write)`) to the other; the connection ends when both
//!   directions have ended. A read or write error on either side resets both.
//! * [`Blackhole`](ProxyMode::Blackhole): a network partition as the client
//!   sees it. New connections are accepted (the kernel completes the TCP
//!   handshake) but no connection to the target is made and nothing is ever
//!   answered (what they send is read and discarded; they are closed when
//!   the client closes them, else reset when the blackhole ends). On
//!   existing connections the proxy *keeps reading* from both sockets and
//!   discards what it reads, so neither peer gets a single byte, and
//!   neither peer's writes block (they look sent). End-of-stream and
//!   errors seen during a blackhole are not passed on either. Every
//!   connection that saw the blackhole is marked broken and is **reset
//!   (RST) when the mode changes to anything else**: bytes were lost, so
//!   resuming the stream would corrupt it; a real partition also usually
//!   ends with broken connections. Connections opened after the blackhole
//!   work normally.
//! * [`Reset`](ProxyMode::Reset): new connections are accepted and reset at
//!   once (`SO_LINGER` 0, then closed: the client's first read fails with
//!   `ConnectionReset`); existing connections are reset on both sides.
//! * [`Latency(d)`](ProxyMode::Latency): every chunk read from either side
//!   is held for `d` before it is written to the other side. Each direction
//!   holds one chunk at a time, so a long stream of chunks accumulates one
//!   delay per chunk (a chunk is whatever one `read` returned, up to
//!   16 KiB).
//! * [`CutAfter(n)`](ProxyMode::CutAfter): each connection may forward `n`
//!   more bytes, **counted in total over both directions**, from the moment
//!   it first observes this mode (for a new connection, from its start); the
//!   chunk that reaches the limit is truncated to fit, and as soon as the
//!   `n`-th byte has been handed to the kernel both sides are reset. Setting
//!   `CutAfter(n)` again, even with the same `n`, grants a fresh budget of
//!   `n`; `CutAfter(0)` resets open connections immediately (new ones right
//!   after they are accepted). The last bytes are written before the reset;
//!   over loopback they reach the peer unless its receive window is full
//!   (a reset discards whatever is still unsent in the kernel).
//!
//! [`FaultProxy::shutdown`] stops accepting and closes every connection,
//! waiting until they are closed; dropping the [`FaultProxy`] aborts the
//! accept loop and every connection task (the peers see end-of-stream or a
//! reset).
//!
//! ```no_run
//! # async fn demo(node: std::net::SocketAddr) -> std::io::Result<()> {
//! use std::time::Duration;
//! use failover_pool::drill::{FaultProxy, ProxyMode};
//!
//! let proxy = FaultProxy::start(node).await?;
//! // point the pool at `proxy.local_addr()` instead of `node`, then:
//! proxy.set_mode(ProxyMode::Blackhole); // partition
//! proxy.set_mode(ProxyMode::Pass); // heal: old connections are reset
//! proxy.set_mode(ProxyMode::Latency(Duration::from_millis(50)));
//! proxy.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

/// The size of the buffer per connection and direction.
const BUF_SIZE: usize = 16 * 1024;

/// What a [`FaultProxy`] does with the traffic it carries. See the
/// [module documentation](self) for the exact semantics of each mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward bytes both ways.
    Pass,
    /// A network partition: new connections are accepted but never
    /// answered; on existing connections bytes read in either direction are
    /// discarded (the sockets stay open). Connections that saw a blackhole
    /// are reset when the mode changes again.
    Blackhole,
    /// New connections are reset at once; existing connections are reset.
    Reset,
    /// Hold every chunk for this long before forwarding it, in each
    /// direction.
    Latency(Duration),
    /// Forward this many more bytes per connection (both directions
    /// together), then reset the connection.
    CutAfter(u64),
}

/// The current mode and how many times it has been set (so that setting
/// `CutAfter(n)` twice grants two budgets).
#[derive(Debug, Clone, Copy)]
struct ModeState {
    mode: ProxyMode,
    generation: u64,
}

/// Counters shared by the proxy handle and its tasks.
#[derive(Debug, Default)]
struct Stats {
    connections: AtomicUsize,
    bytes: AtomicU64,
}

/// An in-process TCP proxy in front of one target address that injects
/// faults (partition, resets, latency, connections cut mid-stream) chosen
/// with [`set_mode`](Self::set_mode). See the [module documentation](self).
pub struct FaultProxy {
    local_addr: SocketAddr,
    target: SocketAddr,
    mode: watch::Sender<ModeState>,
    stats: Arc<Stats>,
    stop: Arc<Notify>,
    accept: Option<JoinHandle<()>>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("local_addr", &self.local_addr)
            .field("target", &self.target)
            .field("mode", &self.mode())
            .field("connections", &self.connections())
            .field("bytes_forwarded", &self.bytes_forwarded())
            .finish()
    }
}

impl FaultProxy {
    /// Starts a proxy to `target`, listening on `127.0.0.1` on a free port,
    /// in [`ProxyMode::Pass`]. Must be called inside a tokio runtime; the
    /// proxy's tasks run on it.
    ///
    /// # Errors
    ///
    /// When the listening socket cannot be bound.
    pub async fn start(target: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let local_addr = listener.local_addr()?;
        let (mode, rx) = watch::channel(ModeState {
            mode: ProxyMode::Pass,
            generation: 0,
        });
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(Notify::new());
        let accept = tokio::spawn(accept_loop(
            listener,
            target,
            rx,
            Arc::clone(&stats),
            Arc::clone(&stop),
        ));
        tracing::debug!(%local_addr, %target, "fault proxy started");
        Ok(FaultProxy {
            local_addr,
            target,
            mode,
            stats,
            stop,
            accept: Some(accept),
        })
    }

    /// The address the proxy listens on (`127.0.0.1:<port>`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The port the proxy listens on.
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The address every connection is forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Switches the mode. It applies immediately to new connections and to
    /// every open connection.
    pub fn set_mode(&self, mode: ProxyMode) {
        self.mode.send_modify(|state| {
            state.mode = mode;
            state.generation += 1;
        });
        tracing::debug!(proxy = %self.local_addr, ?mode, "fault proxy mode set");
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        self.mode.borrow().mode
    }

    /// How many client connections the proxy holds open right now
    /// (including connections accepted during a blackhole, which have no
    /// connection to the target).
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::Relaxed)
    }

    /// Bytes forwarded so far, both directions and all connections
    /// together (discarded bytes are not counted).
    pub fn bytes_forwarded(&self) -> u64 {
        self.stats.bytes.load(Ordering::Relaxed)
    }

    /// Stops accepting connections and closes every open one, returning
    /// once all of them are closed.
    pub async fn shutdown(mut self) {
        self.stop.notify_one();
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its `JoinSet`, which aborts every
        // connection task; dropping `self.mode` also makes them reset their
        // sockets if they run before being cancelled.
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
    }
}

/// Counts a connection for as long as it lives.
#[derive(Debug)]
struct ConnGuard(Arc<Stats>);

impl ConnGuard {
    fn new(stats: &Arc<Stats>) -> Self {
        stats.connections.fetch_add(1, Ordering::Relaxed);
        ConnGuard(Arc::clone(stats))
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    mode: watch::Receiver<ModeState>,
    stats: Arc<Stats>,
    stop: Arc<Notify>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = stop.notified() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    tracing::trace!(%peer, %target, "fault proxy accepted a connection");
                    let guard = ConnGuard::new(&stats);
                    tasks.spawn(connection(
                        client,
                        target,
                        mode.clone(),
                        Arc::clone(&stats),
                        guard,
                    ));
                }
                Err(error) => {
                    // Typically out of file descriptors; do not spin.
                    tracing::warn!(%error, "fault proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    drop(listener);
    tasks.shutdown().await;
}

/// Per-connection fault state, shared by the two directions and the mode
/// watcher (all in the same task).
#[derive(Debug)]
struct ConnState {
    /// The connection saw a blackhole: it is reset when the mode changes.
    broken: AtomicBool,
    /// `(mode generation, bytes left)` of the current `CutAfter` budget.
    budget: Mutex<Option<(u64, u64)>>,
}

impl ConnState {
    fn new() -> Self {
        ConnState {
            broken: AtomicBool::new(false),
            budget: Mutex::new(None),
        }
    }

    fn mark_broken(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }

    fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    /// Takes up to `want` bytes from the budget of `CutAfter(limit)` set as
    /// generation `generation` (starting a fresh budget of `limit` the first
    /// time this generation is seen). Returns the bytes granted and the
    /// bytes left afterwards.
    fn take(&self, generation: u64, limit: u64, want: u64) -> (u64, u64) {
        let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        let left = match *budget {
            Some((g, left)) if g == generation => left,
            _ => limit,
        };
        let granted = left.min(want);
        *budget = Some((generation, left - granted));
        (granted, left - granted)
    }
}

/// Why a direction stopped.
#[derive(Debug)]
enum Stop {
    /// The `CutAfter` budget is spent.
    Cut,
    /// A read or write failed.
    Io(io::Error),
}

/// Watches the mode for one connection; returns when the connection must be
/// reset (or the proxy is gone).
async fn watch_mode(mode: &mut watch::Receiver<ModeState>, conn: &ConnState) {
    loop {
        let state = *mode.borrow_and_update();
        match state.mode {
            ProxyMode::Reset => return,
            ProxyMode::Blackhole => conn.mark_broken(),
            ProxyMode::CutAfter(limit) => {
                if conn.is_broken() || conn.take(state.generation, limit, 0).1 == 0 {
                    return;
                }
            }
            ProxyMode::Pass | ProxyMode::Latency(_) => {
                if conn.is_broken() {
                    return;
                }
            }
        }
        if mode.changed().await.is_err() {
            return;
        }
    }
}

/// Closes a socket, abortively (RST) when `reset`.
fn close(socket: TcpStream, reset: bool) {
    if reset {
        let _ = socket.set_zero_linger();
    }
    drop(socket);
}

/// Reads and discards until end-of-stream or an error.
async fn discard(socket: &mut TcpStream) {
    let mut buf = vec![0u8; BUF_SIZE];
    while let Ok(n) = socket.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

async fn connection(
    mut client: TcpStream,
    target: SocketAddr,
    mut mode: watch::Receiver<ModeState>,
    stats: Arc<Stats>,
    _guard: ConnGuard,
) {
    let conn = ConnState::new();
    let initial = *mode.borrow_and_update();
    match initial.mode {
        ProxyMode::Reset => return close(client, true),
        ProxyMode::Blackhole => {
            // Accept, never answer, never reach the target.
            conn.mark_broken();
            let reset = tokio::select! {
                () = watch_mode(&mut mode, &conn) => true,
                () = discard(&mut client) => false,
            };
            return close(client, reset);
        }
        ProxyMode::Pass | ProxyMode::Latency(_) | ProxyMode::CutAfter(_) => {}
    }
    let _ = client.set_nodelay(true);
    let server = tokio::select! {
        () = watch_mode(&mut mode, &conn) => return close(client, true),
        connected = TcpStream::connect(target) => match connected {
            Ok(server) => server,
            Err(error) => {
                tracing::debug!(%target, %error, "fault proxy: target refused the connection");
                return close(client, true);
            }
        },
    };
    let mut server = server;
    let _ = server.set_nodelay(true);
    let reset = {
        let (mut client_rd, mut client_wr) = client.split();
        let (mut server_rd, mut server_wr) = server.split();
        let upstream = pump(&mut client_rd, &mut server_wr, mode.clone(), &conn, &stats);
        let downstream = pump(&mut server_rd, &mut client_wr, mode.clone(), &conn, &stats);
        tokio::select! {
            () = watch_mode(&mut mode, &conn) => true,
            ended = async { tokio::try_join!(upstream, downstream) } => match ended {
                Ok(_) => false,
                Err(Stop::Cut) => true,
                Err(Stop::Io(error)) => {
                    tracing::trace!(%error, "fault proxy: connection failed");
                    true
                }
            },
        }
    };
    close(client, reset);
    close(server, reset);
}

/// Forwards one direction of a connection according to the current mode.
async fn pump(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    mode: watch::Receiver<ModeState>,
    conn: &ConnState,
    stats: &Stats,
) -> Result<(), Stop> {
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let read = from.read(&mut buf).await;
        let current = *mode.borrow();
        let n = match read {
            Ok(0) | Err(_) if current.mode == ProxyMode::Blackhole => {
                // Hide the end-of-stream or error, as a partition would;
                // the connection is reset when the blackhole ends.
                conn.mark_broken();
                return std::future::pending().await;
            }
            Ok(0) => {
                // Pass the end-of-stream on as a half-close.
                let _ = to.shutdown().await;
                return Ok(());
            }
            Ok(n) => n,
            Err(error) => return Err(Stop::Io(error)),
        };
        let mut state = current;
        if let ProxyMode::Latency(delay) = state.mode {
            tokio::time::sleep(delay).await;
            state = *mode.borrow();
        }
        let (len, cut) = match state.mode {
            ProxyMode::Pass | ProxyMode::Latency(_) => (n, false),
            ProxyMode::Blackhole => {
                conn.mark_broken();
                continue;
            }
            // The mode watcher resets the connection.
            ProxyMode::Reset => continue,
            ProxyMode::CutAfter(limit) => {
                let (granted, left) = conn.take(state.generation, limit, n as u64);
                (granted as usize, left == 0)
            }
        };
        if len > 0 {
            to.write_all(&buf[..len]).await.map_err(Stop::Io)?;
            stats.bytes.fetch_add(len as u64, Ordering::Relaxed);
        }
        if cut {
            return Err(Stop::Cut);
        }
    }
}
