//! Promotions this pool makes on request: [`FailoverPool::promote`] (any
//! policy; what `Manual` is for) and [`FailoverPool::switchover`], a planned
//! switch that holds writers back until the target has caught up and the
//! new writer is published.

use crate::core::endpoint::Role;
use crate::error::{Error, Result};
use crate::pool::FailoverPool;
use crate::pool::backend::Backend;
use crate::pool::inner::Inner;
use crate::pool::topology::Topology;
use std::sync::Arc;
use std::sync::atomic::Ordering::AcqRel;
use std::time::Duration;
use tokio::time::Instant;

/// How often a switchover looks at the topology while it waits.
const SWITCHOVER_POLL: Duration = Duration::from_millis(20);

/// Holds writers back while alive; wakes them when dropped (also when the
/// switchover future is dropped half-way).
struct PauseGuard<'a, B: Backend>(&'a Inner<B>);

impl<'a, B: Backend> PauseGuard<'a, B> {
    fn new(inner: &'a Inner<B>) -> Self {
        inner.paused.fetch_add(1, AcqRel);
        PauseGuard(inner)
    }
}

impl<B: Backend> Drop for PauseGuard<'_, B> {
    fn drop(&mut self) {
        self.0.paused.fetch_sub(1, AcqRel);
        self.0.wake_waiters();
    }
}

impl<B: Backend> FailoverPool<B> {
    /// Promotes a node by id (any policy; this is what `Manual` is for).
    /// Idempotent: promoting the current writer succeeds. Returns the new topology.
    pub async fn promote(&self, id: &str) -> Result<Arc<Topology>> {
        {
            let mut reconciler = self.inner.reconciler.lock().await;
            let slots = Arc::clone(&self.inner.routing.load().slots);
            let index = self.index_of(&slots, id)?;
            if self.topology().node(id).is_some_and(|n| n.fenced) {
                return Err(Error::Config(format!(
                    "node `{id}` is a fenced primary: rejoin it as a replica before promoting it"
                )));
            }
            let promote = self.inner.backend.promote(&slots[index].node);
            Inner::make_writer(
                &self.inner,
                &mut reconciler,
                &slots,
                index,
                "promotion",
                promote,
            )
            .await?;
        }
        Ok(self.refresh().await)
    }

    /// A planned switchover: stops handing out the writer, waits (up to
    /// `timeout`) until the target replica (or, with `None`, the most
    /// advanced one) has replayed everything the writer wrote, switches
    /// ([`Backend::switchover`]: Postgres promotes the target, Redis runs
    /// `FAILOVER TO`; with a topology source that runs an orchestrator, such
    /// as Sentinel, the orchestrator switches and picks the replica), and resumes.
    /// The old primary is fenced by the new epoch; stop it or rejoin it as a
    /// replica. If the target does not catch up in time, nothing is promoted
    /// and writes resume on the old writer. Writers are released only once
    /// the new writer is published, and also when this future is dropped.
    ///
    /// What it cannot hold back: connections already checked out of this
    /// pool (an open transaction) and other application instances. A write
    /// they make on the old primary after the catch-up check is not on the
    /// new one. For a zero-loss switch with several instances, make the old
    /// primary read-only first (`ALTER SYSTEM SET default_transaction_read_only
    /// = on; SELECT pg_reload_conf()`) or let an orchestrator do it.
    pub async fn switchover(
        &self,
        target: Option<&str>,
        timeout: Duration,
    ) -> Result<Arc<Topology>> {
        let topo = self.refresh().await;
        let Some(old) = topo.writer_status().map(|w| Arc::clone(&w.id)) else {
            return Err(Error::NoNode {
                wanted: "writer",
                waited: Duration::ZERO,
                last: None,
            });
        };
        let target: Arc<str> = match target {
            Some(id) => Arc::clone(&topo.node(id).ok_or_else(|| self.no_such_node(id))?.id),
            None => topo
                .readers
                .iter()
                .map(|&i| &topo.nodes[i])
                .max_by_key(|n| n.position)
                .map(|n| Arc::clone(&n.id))
                .ok_or_else(|| Error::Config("switchover needs a healthy replica".into()))?,
        };
        if target == old {
            return Ok(topo);
        }
        // Released on every exit, including when this future is dropped.
        let _pause = PauseGuard::new(&self.inner);
        let deadline = Instant::now() + timeout;
        self.wait_caught_up(&old, &target, deadline, timeout)
            .await?;
        let orchestrated = self.switch(&old, &target).await?;
        // Writers stay held back until the published topology has the new
        // writer (and the old one fenced): releasing them earlier would send
        // them to the old primary, which may still accept writes. An
        // orchestrator may have promoted another replica than `target`.
        loop {
            let t = self.refresh().await;
            if t.writer_status()
                .is_some_and(|w| w.id == target || (orchestrated && w.id != old))
            {
                return Ok(t);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: "switchover: waiting for the new writer to report itself primary",
                    after: timeout,
                    may_have_executed: true,
                });
            }
            tokio::time::sleep(SWITCHOVER_POLL / 4).await;
        }
    }

    /// Waits until `target` (a reachable replica) has replayed the writer's position.
    async fn wait_caught_up(
        &self,
        old: &str,
        target: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<()> {
        loop {
            let t = self.refresh().await;
            let (Some(w), Some(r)) = (t.node(old), t.node(target)) else {
                return Err(Error::Config(format!(
                    "switchover: node `{}` left the pool",
                    if t.node(old).is_none() { old } else { target }
                )));
            };
            if !r.up || r.role != Some(Role::Replica) {
                return Err(Error::Config(format!(
                    "switchover target `{target}` is not a reachable replica"
                )));
            }
            if w.up && r.position >= w.position {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: "switchover catch-up",
                    after: timeout,
                    may_have_executed: false,
                });
            }
            tokio::time::sleep(SWITCHOVER_POLL).await;
        }
    }

    /// The switch itself: through the topology source's orchestrator when
    /// it runs one ([`TopologySource::switchover`](crate::pool::TopologySource::switchover);
    /// returns `true`), else
    /// through [`Backend::switchover`].
    async fn switch(&self, from: &str, to: &str) -> Result<bool> {
        if let Some(switch) = self
            .inner
            .source
            .as_ref()
            .and_then(|s| s.switchover(from, to))
        {
            let timeout = self.inner.config.promotion_timeout;
            return match tokio::time::timeout(timeout, switch).await {
                Ok(r) => r.map(|()| true),
                Err(_) => Err(Error::Timeout {
                    what: "switchover through the topology source's orchestrator",
                    after: timeout,
                    may_have_executed: true,
                }),
            };
        }
        let mut reconciler = self.inner.reconciler.lock().await;
        let slots = Arc::clone(&self.inner.routing.load().slots);
        let from = self.index_of(&slots, from)?;
        let to = self.index_of(&slots, to)?;
        let switch = self
            .inner
            .backend
            .switchover(&slots[from].node, &slots[to].node);
        Inner::make_writer(
            &self.inner,
            &mut reconciler,
            &slots,
            to,
            "switchover",
            switch,
        )
        .await
        .map(|()| false)
    }

    fn index_of(&self, slots: &[Arc<crate::pool::inner::Slot<B>>], id: &str) -> Result<usize> {
        slots
            .iter()
            .position(|s| &*s.spec.id == id)
            .ok_or_else(|| self.no_such_node(id))
    }

    fn no_such_node(&self, id: &str) -> Error {
        Error::Config(format!("no node `{id}` in pool `{}`", self.inner.name))
    }
}
