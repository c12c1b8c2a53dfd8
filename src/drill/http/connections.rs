//! [`Connections`]: the open connections of one running backend, kept so
//! that a kill can cut all of them at once, synchronously.
//!
//! Each connection is registered with a duplicate of its socket's file
//! descriptor. [`Connections::cut_all`] calls `shutdown(2)` on every
//! duplicate, which shuts the socket down for every descriptor at once: the
//! peer sees end-of-stream right away, and the hyper connection sees its
//! socket closed, before the task that owns it has even been cancelled.

use std::collections::HashMap;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::net::TcpStream;

/// The open connections of one running backend; closed for good by
/// [`cut_all`](Self::cut_all).
#[derive(Debug)]
pub(super) struct Connections {
    /// Duplicates of the open sockets by connection number; `None` once
    /// cut.
    open: Mutex<Option<HashMap<u64, std::net::TcpStream>>>,
    next: AtomicU64,
}

/// A registered connection; dropping it unregisters the connection (and
/// closes the duplicate descriptor).
#[derive(Debug)]
pub(super) struct Registration {
    connections: Arc<Connections>,
    number: u64,
}

impl Connections {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Connections {
            open: Mutex::new(Some(HashMap::new())),
            next: AtomicU64::new(0),
        })
    }

    /// Registers `stream`.
    ///
    /// # Errors
    ///
    /// When its descriptor cannot be duplicated, or (`NotConnected`) when
    /// the connections have already been cut: the caller drops the stream.
    pub(super) fn register(self: &Arc<Self>, stream: &TcpStream) -> io::Result<Registration> {
        let duplicate = std::net::TcpStream::from(stream.as_fd().try_clone_to_owned()?);
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        match self.lock().as_mut() {
            Some(open) => {
                open.insert(number, duplicate);
                Ok(Registration {
                    connections: Arc::clone(self),
                    number,
                })
            }
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the backend was killed",
            )),
        }
    }

    /// Shuts every open connection down and refuses new registrations.
    pub(super) fn cut_all(&self) {
        let open = self.lock().take();
        for stream in open.into_iter().flat_map(HashMap::into_values) {
            // Fails only when the peer already reset the connection.
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<HashMap<u64, std::net::TcpStream>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(open) = self.connections.lock().as_mut() {
            open.remove(&self.number);
        }
    }
}
