//! [`Running`]: one backend while it listens: its listener, its accept
//! loop and its connections, all torn down synchronously when it is
//! dropped.
//!
//! The listener sits in a slot shared with the accept loop, which borrows
//! it only for the duration of each `poll_accept`; dropping a [`Running`]
//! takes it out of the slot and closes it on the spot, so a connect made
//! right after a kill is refused even before the runtime has run the
//! cancelled tasks. The connections are cut the same way through
//! [`Connections`].

use std::future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::connections::{Connections, Registration};
use super::handler;
use super::state::BackendState;

/// The listener of a running backend; `None` once killed.
type ListenerSlot = Arc<Mutex<Option<TcpListener>>>;

/// A backend while it listens. Dropping it kills the backend: the listener
/// is closed, every connection is shut down, and every task is aborted.
#[derive(Debug)]
pub(super) struct Running {
    listener: ListenerSlot,
    connections: Arc<Connections>,
    accept: JoinHandle<()>,
}

impl Running {
    /// Listens on `127.0.0.1:port` (`0`: a free port) and serves the
    /// backend `state` there. Returns the port listened on.
    pub(super) async fn start(port: u16, state: Arc<BackendState>) -> io::Result<(Running, u16)> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let port = listener.local_addr()?.port();
        let listener = Arc::new(Mutex::new(Some(listener)));
        let connections = Connections::new();
        let accept = tokio::spawn(accept_loop(
            Arc::clone(&listener),
            Arc::clone(&connections),
            state,
        ));
        let running = Running {
            listener,
            connections,
            accept,
        };
        Ok((running, port))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Close the listener first so that no connection is accepted
        // after the cut; a connection accepted just before it finds the
        // registry closed and is dropped.
        drop(lock(&self.listener).take());
        self.connections.cut_all();
        // Dropping the accept loop drops its `JoinSet`, which aborts every
        // connection task (and the request handlers they run).
        self.accept.abort();
    }
}

fn lock(slot: &ListenerSlot) -> MutexGuard<'_, Option<TcpListener>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Accepts connections until the listener is taken away, each served by
/// its own task.
async fn accept_loop(
    listener: ListenerSlot,
    connections: Arc<Connections>,
    state: Arc<BackendState>,
) {
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = accept(&listener) => accepted,
        };
        match accepted {
            None => break,
            Some(Ok((stream, peer))) => match connections.register(&stream) {
                Ok(registration) => {
                    tracing::trace!(backend = state.id(), %peer, "drill HTTP backend: connection");
                    tasks.spawn(serve(stream, registration, Arc::clone(&state)));
                }
                Err(error) => {
                    tracing::debug!(backend = state.id(), %error, "drill HTTP backend: connection dropped");
                }
            },
            Some(Err(error)) => {
                // Typically out of file descriptors; do not spin.
                tracing::warn!(backend = state.id(), %error, "drill HTTP backend: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Accepts one connection; `None` once the listener has been taken away.
async fn accept(listener: &ListenerSlot) -> Option<io::Result<(TcpStream, SocketAddr)>> {
    future::poll_fn(|cx| match lock(listener).as_ref() {
        Some(listener) => listener.poll_accept(cx).map(Some),
        None => Poll::Ready(None),
    })
    .await
}

/// Serves HTTP/1.1 (with keep-alive) on one connection.
async fn serve(stream: TcpStream, registration: Registration, state: Arc<BackendState>) {
    state.tally.connection();
    let _ = stream.set_nodelay(true);
    let id = state.id().to_owned();
    let service = service_fn(move |request| handler::handle(Arc::clone(&state), request));
    let result = http1::Builder::new()
        // Idle keep-alive connections stay open until the client closes
        // them (or the backend is killed); no timer is needed.
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = result {
        tracing::trace!(backend = %id, %error, "drill HTTP backend: connection ended");
    }
    drop(registration);
}
