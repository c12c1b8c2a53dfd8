//! [`MockDiscovery`]: a discovery your tests drive through a
//! [`MockDiscoveryHandle`] (add, remove, replace, fail, change health).

use crate::core::discovery::{Discovery, DiscoveryChange, DiscoveryFuture};
use crate::core::endpoint::{Endpoint, Health};
use crate::error::{Error, ErrorClass};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;

#[derive(Debug)]
enum Message {
    Change(DiscoveryChange),
    Fail(String),
}

/// A [`Discovery`] fed by a [`MockDiscoveryHandle`].
///
/// The first [`Discovery::next_change`] returns the initial list; each later
/// call returns the next thing the handle sent, in order, or waits for it.
/// When every handle is dropped and everything sent was returned, calls
/// wait forever.
///
/// ```
/// use failover_pool::core::events::EventBus;
/// use failover_pool::core::{BreakerConfig, Endpoint, EndpointSet};
/// use failover_pool::discovery::{DiscoveryBackoff, MockDiscovery, spawn_discovery};
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), failover_pool::Error> {
/// let (discovery, handle) = MockDiscovery::new(vec![Endpoint::new("a", "10.0.0.1", 80)]);
/// let set = Arc::new(EndpointSet::new(Vec::new(), Arc::new(BreakerConfig::default()))?);
/// let events = EventBus::new("test", 64);
/// let mut rx = events.subscribe();
/// let _task = spawn_discovery(Arc::new(discovery), Arc::clone(&set), events, DiscoveryBackoff::default());
///
/// rx.recv().await.unwrap(); // the initial list
/// handle.add(Endpoint::new("b", "10.0.0.2", 80));
/// rx.recv().await.unwrap();
/// assert_eq!(set.snapshot().len(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct MockDiscovery {
    name: String,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>,
}

/// Drives a [`MockDiscovery`]; cheap to clone. It remembers the list it has
/// reported so far (see [`MockDiscoveryHandle::endpoints`]).
#[derive(Debug, Clone)]
pub struct MockDiscoveryHandle {
    tx: mpsc::UnboundedSender<Message>,
    current: Arc<Mutex<Vec<Endpoint>>>,
}

impl MockDiscovery {
    /// A mock named "mock" that first reports `initial`, and its handle.
    pub fn new(initial: Vec<Endpoint>) -> (Self, MockDiscoveryHandle) {
        Self::named("mock", initial)
    }

    /// Like [`MockDiscovery::new`], with a name for logs and errors.
    pub fn named(name: impl Into<String>, initial: Vec<Endpoint>) -> (Self, MockDiscoveryHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = MockDiscoveryHandle {
            tx,
            current: Arc::new(Mutex::new(Vec::new())),
        };
        handle.replace(initial);
        (
            MockDiscovery {
                name: name.into(),
                rx: tokio::sync::Mutex::new(rx),
            },
            handle,
        )
    }
}

impl Discovery for MockDiscovery {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_change(&self) -> DiscoveryFuture<'_> {
        Box::pin(async move {
            let message = self.rx.lock().await.recv().await;
            match message {
                Some(Message::Change(change)) => Ok(change),
                Some(Message::Fail(message)) => Err(Error::backend(
                    self.name.clone(),
                    ErrorClass::not_executed(),
                    message,
                )),
                None => std::future::pending().await,
            }
        })
    }
}

impl MockDiscoveryHandle {
    fn send(&self, message: Message) {
        // The discovery may be gone (test over): nothing to report to.
        let _ = self.tx.send(message);
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Vec<Endpoint>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reports an endpoint as added, or changed if its id is known
    /// ([`DiscoveryChange::Upsert`]).
    pub fn add(&self, endpoint: Endpoint) {
        let mut current = self.current();
        match current.iter_mut().find(|e| e.id == endpoint.id) {
            Some(slot) => *slot = endpoint.clone(),
            None => current.push(endpoint.clone()),
        }
        self.send(Message::Change(DiscoveryChange::Upsert(endpoint)));
    }

    /// Reports an endpoint as gone ([`DiscoveryChange::Remove`]).
    pub fn remove(&self, id: &str) {
        self.current().retain(|e| &*e.id != id);
        self.send(Message::Change(DiscoveryChange::Remove(id.into())));
    }

    /// Reports a whole new list ([`DiscoveryChange::Replace`]).
    pub fn replace(&self, endpoints: Vec<Endpoint>) {
        *self.current() = endpoints.clone();
        self.send(Message::Change(DiscoveryChange::Replace(endpoints)));
    }

    /// Makes the next [`Discovery::next_change`] (after the changes already
    /// sent) fail with an [`Error::Backend`] carrying `message`.
    pub fn fail(&self, message: impl Into<String>) {
        self.send(Message::Fail(message.into()));
    }

    /// Reports endpoint `id` with `health` as its discovered health (an
    /// [`DiscoveryChange::Upsert`], like Consul reporting a check status).
    /// Applied through [`apply_change`](crate::core::discovery::apply_change), a
    /// changed, known health becomes the endpoint's live health. Returns
    /// false (and sends nothing) when the handle has not reported `id`.
    pub fn set_health(&self, id: &str, health: Health) -> bool {
        let endpoint = {
            let mut current = self.current();
            let Some(e) = current.iter_mut().find(|e| &*e.id == id) else {
                return false;
            };
            e.health = health;
            e.clone()
        };
        self.send(Message::Change(DiscoveryChange::Upsert(endpoint)));
        true
    }

    /// The list as reported so far.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.current().clone()
    }
}
