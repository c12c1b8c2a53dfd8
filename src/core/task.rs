//! [`TaskHandle`]: ownership of a background task (a health-check loop, an
//! outlier sweep, a discovery watch) that aborts the task when dropped, so a
//! manager's loops end with it.

use std::future::Future;
use tokio::task::JoinHandle;

/// Owns a background task (a health-check loop, an outlier sweep, a
/// discovery watch) and aborts it when dropped.
///
/// ```
/// use failover_pool::core::task::TaskHandle;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handle = TaskHandle::spawn(async {
///     loop {
///         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
///     }
/// });
/// assert!(!handle.is_finished());
/// drop(handle); // the loop is aborted
/// # }
/// ```
#[derive(Debug)]
pub struct TaskHandle {
    /// `None` once [`TaskHandle::shutdown`] has taken the task, so `Drop` has
    /// nothing left to abort.
    inner: Option<JoinHandle<()>>,
}

impl TaskHandle {
    /// Takes ownership of a spawned task.
    pub fn new(handle: JoinHandle<()>) -> Self {
        TaskHandle {
            inner: Some(handle),
        }
    }

    /// Spawns `future` on the current Tokio runtime (panics outside one, like
    /// [`tokio::spawn`]).
    pub fn spawn<F>(future: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        TaskHandle::new(tokio::spawn(future))
    }

    /// Aborts the task now (dropping the handle does the same).
    pub fn abort(&self) {
        if let Some(h) = &self.inner {
            h.abort();
        }
    }

    /// Whether the task has finished (ended, panicked or been aborted).
    pub fn is_finished(&self) -> bool {
        self.inner.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Aborts the task and waits until it is gone.
    pub async fn shutdown(mut self) {
        if let Some(h) = self.inner.take() {
            h.abort();
            let _ = h.await;
        }
    }
}

impl From<JoinHandle<()>> for TaskHandle {
    fn from(handle: JoinHandle<()>) -> Self {
        TaskHandle::new(handle)
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        if let Some(h) = &self.inner {
            h.abort();
        }
    }
}
