//! [`LocalHttpBackends`]: the handle on a set of local HTTP backends.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::ledger::RequestLedger;
use super::mode::BackendMode;
use super::server::Running;
use super::state::BackendState;
use super::stats::BackendStats;

/// `n` real HTTP/1.1 servers on `127.0.0.1`, each on a free port of its
/// own, whose behaviour ([`BackendMode`]) can be switched at any time, and
/// which can be killed and restarted on the same port. Dropping the handle
/// kills every backend. See the [module documentation](super).
///
/// Backends are numbered from `0`; every method taking an index panics when
/// it is out of range.
pub struct LocalHttpBackends {
    backends: Vec<Backend>,
    ledger: Arc<RequestLedger>,
}

/// One backend: its fixed port, its state, and its listener while it runs.
#[derive(Debug)]
struct Backend {
    port: u16,
    state: Arc<BackendState>,
    running: Mutex<Option<Running>>,
}

impl Backend {
    fn running(&self) -> MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for LocalHttpBackends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for backend in &self.backends {
            list.entry(&format_args!(
                "{} 127.0.0.1:{} {:?}{}",
                backend.state.id(),
                backend.port,
                backend.state.mode(),
                if backend.running().is_some() {
                    ""
                } else {
                    " (killed)"
                },
            ));
        }
        list.finish()
    }
}

impl LocalHttpBackends {
    /// Starts `n` backends named `b0`, `b1`, ..., each listening on
    /// `127.0.0.1` on a free port, in [`BackendMode::Ok`]. Must be called
    /// inside a tokio runtime; the backends' tasks run on it.
    ///
    /// # Errors
    ///
    /// When a listening socket cannot be bound (the backends already
    /// started are stopped).
    pub async fn start(n: usize) -> io::Result<Self> {
        let ledger = Arc::new(RequestLedger::default());
        let mut backends = Vec::with_capacity(n);
        for i in 0..n {
            let state = Arc::new(BackendState::new(format!("b{i}"), Arc::clone(&ledger)));
            let (running, port) = Running::start(0, Arc::clone(&state)).await?;
            tracing::debug!(backend = state.id(), port, "drill HTTP backend started");
            backends.push(Backend {
                port,
                state,
                running: Mutex::new(Some(running)),
            });
        }
        Ok(LocalHttpBackends { backends, ledger })
    }

    /// How many backends there are (killed ones included).
    pub fn len(&self) -> usize {
        self.backends.len()
    }

    /// Whether there are no backends at all.
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// The base URL of backend `i`: `http://127.0.0.1:<port>`, without a
    /// trailing slash.
    pub fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.backend(i).port)
    }

    /// The base URLs of all backends, in order.
    pub fn urls(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.url(i)).collect()
    }

    /// The port backend `i` listens on; it keeps it across restarts.
    pub fn port(&self, i: usize) -> u16 {
        self.backend(i).port
    }

    /// The name of backend `i`: `b0`, `b1`, ...; also found in its JSON
    /// answers and in the `x-backend` header of every response.
    pub fn id(&self, i: usize) -> String {
        self.backend(i).state.id().to_owned()
    }

    /// Switches backend `i` to `mode`, for the requests that arrive from
    /// now on (requests already being handled keep their mode). An
    /// [`EveryNth`](BackendMode::EveryNth) counts from this call.
    pub fn set_mode(&self, i: usize, mode: BackendMode) {
        let backend = self.backend(i);
        tracing::debug!(
            backend = backend.state.id(),
            ?mode,
            "drill HTTP backend mode set"
        );
        backend.state.set_mode(mode);
    }

    /// The mode of backend `i`, as set.
    pub fn mode(&self, i: usize) -> BackendMode {
        self.backend(i).state.mode()
    }

    /// Whether backend `i` is listening (not killed).
    pub fn is_running(&self, i: usize) -> bool {
        self.backend(i).running().is_some()
    }

    /// Crashes backend `i`: when this returns, its listening socket is
    /// closed (new connects are refused) and every open connection has been
    /// shut down (its peer sees end-of-stream; requests in flight, hung
    /// ones included, fail); the tasks serving them are aborted. Killing a
    /// killed backend does nothing.
    pub fn kill(&self, i: usize) {
        let backend = self.backend(i);
        let running = backend.running().take();
        if running.is_some() {
            tracing::debug!(backend = backend.state.id(), "drill HTTP backend killed");
        }
        drop(running);
    }

    /// Brings backend `i` back on the same port, in [`BackendMode::Ok`];
    /// a running backend is killed first. Its statistics and the request
    /// ledger are kept.
    ///
    /// # Errors
    ///
    /// When the port cannot be bound again (another socket took it
    /// meanwhile).
    pub async fn restart(&self, i: usize) -> io::Result<()> {
        self.kill(i);
        let backend = self.backend(i);
        backend.state.set_mode(BackendMode::Ok);
        let (running, _) = Running::start(backend.port, Arc::clone(&backend.state)).await?;
        // Another restart of the same backend cannot have bound the port
        // meanwhile; whatever is stored here was killed already.
        drop(backend.running().replace(running));
        tracing::debug!(
            backend = backend.state.id(),
            port = backend.port,
            "drill HTTP backend restarted"
        );
        Ok(())
    }

    /// What backend `i` has seen so far.
    pub fn stats(&self, i: usize) -> BackendStats {
        self.backend(i).state.tally.snapshot()
    }

    /// How many times, across all backends, a request carrying the header
    /// `x-request-id: <request_id>` was executed.
    pub fn executions(&self, request_id: &str) -> u32 {
        self.ledger.executions(request_id)
    }

    /// The request ids executed more than once, across all backends, with
    /// their execution counts, sorted by id.
    pub fn duplicated(&self) -> Vec<(String, u32)> {
        self.ledger.duplicated()
    }

    /// Zeroes every backend's statistics and empties the request ledger.
    pub fn reset_stats(&self) {
        for backend in &self.backends {
            backend.state.tally.reset();
        }
        self.ledger.clear();
    }

    fn backend(&self, i: usize) -> &Backend {
        match self.backends.get(i) {
            Some(backend) => backend,
            None => panic!("no backend {i}: there are {} backends", self.backends.len()),
        }
    }
}
