//! Faults and role changes of a [`LocalRedisCluster`]'s nodes: crash
//! ([`kill`](LocalRedisCluster::kill)), hang
//! ([`freeze`](LocalRedisCluster::freeze) /
//! [`thaw`](LocalRedisCluster::thaw)), graceful stop, restart as a master,
//! promotion, re-pointing a replica, and making a replica lag
//! ([`pause_replication`](LocalRedisCluster::pause_replication)). The
//! process-level operations work on sentinels too (see `sentinel.rs`).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{ClusterError, LocalRedisCluster, POLL, RedisRole, Target};
use crate::drill::process::ProcessGroup;

impl LocalRedisCluster {
    /// Crashes node `index`: `SIGKILL` to its server (and any child it has
    /// forked), which is reaped before this returns. Connections are
    /// reset; its replicas see their link drop at once.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoSuchNode`], [`ClusterError::InvalidState`] when it
    /// is not running, [`ClusterError::Signal`].
    pub fn kill(&self, index: usize) -> Result<(), ClusterError> {
        self.kill_target(Target::Node(index))
    }

    /// Hangs node `index`: `SIGSTOP` to its server. The kernel still
    /// accepts TCP connections (up to the listen backlog) but nothing
    /// answers, and its replicas keep their link until their
    /// `repl-timeout` (60 s) passes.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoSuchNode`], [`ClusterError::InvalidState`] when it
    /// is not running, [`ClusterError::Signal`].
    pub fn freeze(&self, index: usize) -> Result<(), ClusterError> {
        self.signal_target(Target::Node(index), Signal::SIGSTOP, "freeze", true)
    }

    /// Undoes [`freeze`](Self::freeze) (`SIGCONT`).
    ///
    /// # Errors
    ///
    /// As for [`freeze`](Self::freeze).
    pub fn thaw(&self, index: usize) -> Result<(), ClusterError> {
        self.signal_target(Target::Node(index), Signal::SIGCONT, "thaw", false)
    }

    /// Stops node `index` gracefully with `SIGTERM` (thawing it first if
    /// frozen) and waits until it has exited. Redis then behaves as on
    /// `SHUTDOWN`: with no save points (`save ""`) nothing is saved, the
    /// append-only file (if on) is flushed, and a master first waits up
    /// to `shutdown-timeout` (10 s) for lagging replicas.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoSuchNode`], [`ClusterError::InvalidState`] when it
    /// is not running, [`ClusterError::CommandTimeout`] when it has not
    /// exited within the start-up timeout (it is then killed).
    pub async fn stop_graceful(&self, index: usize) -> Result<(), ClusterError> {
        let target = Target::Node(index);
        {
            let mut inner = self.lock();
            let proc = inner.get_mut(target)?;
            let name = proc.name.clone();
            let frozen = proc.frozen;
            let Some(server) = proc.server.as_mut() else {
                return Err(not_running(&name, "stop"));
            };
            server.disarm();
            let group = server.group();
            if frozen {
                group
                    .signal_tree(Signal::SIGCONT)
                    .map_err(|source| signal_error(&name, Signal::SIGCONT, group, source))?;
            }
            nix::sys::signal::kill(group.pid(), Signal::SIGTERM)
                .map_err(|source| signal_error(&name, Signal::SIGTERM, group, source))?;
            proc.frozen = false;
        }
        self.wait_exit(target, self.opts.startup_timeout).await
    }

    /// Starts node `index` again on the same port after
    /// [`kill`](Self::kill) or [`stop_graceful`](Self::stop_graceful), as a
    /// master: its `redis.conf` is written afresh (dropping any `replicaof`
    /// a sentinel's `CONFIG REWRITE` added) and names no master. Waits
    /// until it answers `PING`. Without [`aof`](super::RedisClusterOptions::aof)
    /// it comes back empty with a new replication id, and replicas still
    /// pointing at it resynchronise from it in full, losing their data:
    /// the "old master restarted as a master" fault.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidState`] when it is running, otherwise as for
    /// start-up.
    pub async fn restart(&self, index: usize) -> Result<(), ClusterError> {
        let target = Target::Node(index);
        self.ensure_stopped(target)?;
        self.write_node_conf(index)?;
        {
            let mut inner = self.lock();
            let proc = inner.get_mut(target)?;
            proc.replica_of = None;
            proc.paused = false;
        }
        self.spawn_server(target, None)?;
        self.wait_ping(target).await
    }

    /// Promotes node `index` to a master (`REPLICAOF NO ONE`). Its other
    /// replicas, if any, keep following it; replicas of its old master keep
    /// following that one (see [`replicaof`](Self::replicaof)).
    ///
    /// # Errors
    ///
    /// As for [`exec`](Self::exec).
    pub async fn promote(&self, index: usize) -> Result<(), ClusterError> {
        self.exec(index, &["REPLICAOF", "NO", "ONE"]).await?;
        let mut inner = self.lock();
        let proc = inner.get_mut(Target::Node(index))?;
        proc.replica_of = None;
        proc.paused = false;
        Ok(())
    }

    /// Makes node `index` a replica of node `master`
    /// (`REPLICAOF 127.0.0.1 <port>`); returns without waiting for the link
    /// (see [`wait_link_up`](Self::wait_link_up)).
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidState`] when `index == master`, otherwise as
    /// for [`exec`](Self::exec).
    pub async fn replicaof(&self, index: usize, master: usize) -> Result<(), ClusterError> {
        let port = self.proc_info(Target::Node(master))?.port;
        if index == master {
            return Err(ClusterError::InvalidState {
                node: self.proc_info(Target::Node(index))?.name,
                operation: "make a replica of itself".to_owned(),
                reason: "a node cannot replicate from itself".to_owned(),
            });
        }
        self.point_at(index, port).await?;
        let mut inner = self.lock();
        let proc = inner.get_mut(Target::Node(index))?;
        proc.replica_of = Some(master);
        proc.paused = false;
        Ok(())
    }

    /// Makes replica `index` fall behind while it stays up and answers
    /// reads: it is pointed (`REPLICAOF`) at a loopback port the cluster
    /// holds bound but never listens on, so its link to its master drops
    /// and every reconnection attempt is refused. It keeps its data, its
    /// replication id and offset, serves (stale) reads and refuses writes;
    /// [`role`](Self::role) shows it as a replica of that port with its
    /// link down. [`resume_replication`](Self::resume_replication) points
    /// it back, and it catches up with a partial resynchronisation.
    /// Running sentinels undo a pause by themselves after a while
    /// (`+fix-slave-config`, after `failover-timeout` and their next `INFO`).
    /// Pausing a paused replica does nothing.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidState`] when the node is a master or
    /// replicates from a server that is not a node of this cluster,
    /// otherwise as for [`exec`](Self::exec).
    pub async fn pause_replication(&self, index: usize) -> Result<(), ClusterError> {
        let info = self.proc_info(Target::Node(index))?;
        if self.node(index).replication_paused {
            return Ok(());
        }
        let invalid = |reason: String| ClusterError::InvalidState {
            node: info.name.clone(),
            operation: "pause the replication of".to_owned(),
            reason,
        };
        let master_port = match self.role(index).await? {
            RedisRole::Replica { master_port, .. } => master_port,
            RedisRole::Master { .. } => return Err(invalid("it is a master".to_owned())),
        };
        let Some(master) = self.index_of_port(master_port) else {
            return Err(invalid(format!(
                "its master (port {master_port}) is not a node of this cluster"
            )));
        };
        self.point_at(index, self.parking_port).await?;
        let mut inner = self.lock();
        let proc = inner.get_mut(Target::Node(index))?;
        proc.replica_of = Some(master);
        proc.paused = true;
        Ok(())
    }

    /// Undoes [`pause_replication`](Self::pause_replication): points
    /// replica `index` back at the master it followed; returns without
    /// waiting for it to catch up (see
    /// [`wait_caught_up`](Self::wait_caught_up)).
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidState`] when it is not paused, otherwise as
    /// for [`exec`](Self::exec).
    pub async fn resume_replication(&self, index: usize) -> Result<(), ClusterError> {
        self.proc_info(Target::Node(index))?;
        let node = self.node(index);
        let master = match (node.replication_paused, node.replica_of) {
            (true, Some(master)) => master,
            _ => {
                return Err(ClusterError::InvalidState {
                    node: node.name,
                    operation: "resume the replication of".to_owned(),
                    reason: "its replication is not paused".to_owned(),
                });
            }
        };
        self.point_at(index, self.port(master)).await?;
        self.lock().nodes[index].paused = false;
        Ok(())
    }

    /// `REPLICAOF 127.0.0.1 <port>` on node `index`.
    async fn point_at(&self, index: usize, port: u16) -> Result<(), ClusterError> {
        let port = port.to_string();
        self.exec(index, &["REPLICAOF", "127.0.0.1", &port]).await?;
        Ok(())
    }

    /// `SIGKILL` to `target`'s server, reaped before returning.
    pub(super) fn kill_target(&self, target: Target) -> Result<(), ClusterError> {
        let mut inner = self.lock();
        let proc = inner.get_mut(target)?;
        let Some(mut server) = proc.server.take() else {
            return Err(not_running(&proc.name, "kill"));
        };
        proc.frozen = false;
        let group = server.group();
        server
            .kill_and_reap(Duration::from_secs(10))
            .map_err(|source| signal_error(&proc.name, Signal::SIGKILL, group, source))
    }

    /// Sends `signal` to `target`'s server and its children and records it
    /// as `frozen` or not.
    pub(super) fn signal_target(
        &self,
        target: Target,
        signal: Signal,
        operation: &str,
        frozen: bool,
    ) -> Result<(), ClusterError> {
        let mut inner = self.lock();
        let proc = inner.get_mut(target)?;
        let Some(server) = &proc.server else {
            return Err(not_running(&proc.name, operation));
        };
        let group = server.group();
        group
            .signal_tree(signal)
            .map_err(|source| signal_error(&proc.name, signal, group, source))?;
        proc.frozen = frozen;
        Ok(())
    }

    /// [`ClusterError::InvalidState`] unless `target` is stopped.
    pub(super) fn ensure_stopped(&self, target: Target) -> Result<(), ClusterError> {
        let mut inner = self.lock();
        let proc = inner.get_mut(target)?;
        if proc.server.is_some() {
            return Err(ClusterError::InvalidState {
                node: proc.name.clone(),
                operation: "restart".to_owned(),
                reason: "it is running; kill or stop it first".to_owned(),
            });
        }
        Ok(())
    }

    /// Waits until `target`'s server has exited and reaps it; kills it
    /// after `timeout`. The child stays in the state while waiting, so a
    /// cancelled wait still leaves it to `Drop`.
    async fn wait_exit(&self, target: Target, timeout: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut inner = self.lock();
                let proc = inner.get_mut(target)?;
                let Some(server) = proc.server.as_mut() else {
                    return Ok(());
                };
                if server.exit_status().is_some() {
                    proc.server = None;
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    if let Some(mut server) = proc.server.take() {
                        let _ = server.kill_and_reap(Duration::from_secs(10));
                    }
                    return Err(ClusterError::CommandTimeout {
                        command: format!("graceful shutdown of {}", proc.name),
                        timeout,
                    });
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn not_running(name: &str, operation: &str) -> ClusterError {
    ClusterError::InvalidState {
        node: name.to_owned(),
        operation: operation.to_owned(),
        reason: "it is not running".to_owned(),
    }
}

fn signal_error(
    name: &str,
    signal: Signal,
    group: ProcessGroup,
    source: nix::Error,
) -> ClusterError {
    ClusterError::Signal {
        node: name.to_owned(),
        signal: signal.as_str().to_owned(),
        pid: group.pid().as_raw(),
        source,
    }
}
