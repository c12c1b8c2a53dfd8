//! Faults and role changes of a [`LocalPgCluster`]'s nodes: crash
//! ([`kill`](LocalPgCluster::kill)), hang ([`freeze`](LocalPgCluster::freeze)
//! / [`thaw`](LocalPgCluster::thaw)), graceful stop, restart, promotion,
//! and turning a node into a standby of another
//! ([`rejoin_as_standby`](LocalPgCluster::rejoin_as_standby),
//! [`follow`](LocalPgCluster::follow)).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::options::conninfo;
use super::queries::promote_at;
use super::{ClusterError, LocalPgCluster, POLL, PgRole, remove_if_exists};
use crate::drill::process::{self, ProcessGroup};

impl LocalPgCluster {
    /// Crashes node `index`: `SIGKILL` to its postmaster and all of its
    /// children (no shutdown checkpoint, connections are reset, new ones
    /// refused). The postmaster is reaped before this returns.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoSuchNode`], [`ClusterError::InvalidState`] when it
    /// is not running, [`ClusterError::Signal`].
    pub fn kill(&self, index: usize) -> Result<(), ClusterError> {
        let mut inner = self.lock();
        let node = inner.node_mut(index)?;
        let name = node.name.clone();
        let Some(mut server) = node.server.take() else {
            return Err(not_running(&name, "kill"));
        };
        node.frozen = false;
        server.disarm();
        let group = ProcessGroup::of(&server.child);
        let result = group.signal_tree(Signal::SIGKILL);
        process::wait_blocking(&mut server.child, Duration::from_secs(10));
        result.map_err(|source| signal_error(&name, Signal::SIGKILL, group, source))
    }

    /// Hangs node `index`: `SIGSTOP` to its postmaster and all of its
    /// children. The kernel still completes TCP handshakes (up to the listen
    /// backlog) but nothing answers, and open connections stall.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoSuchNode`], [`ClusterError::InvalidState`] when it
    /// is not running, [`ClusterError::Signal`].
    pub fn freeze(&self, index: usize) -> Result<(), ClusterError> {
        self.signal_node(index, Signal::SIGSTOP, "freeze", true)
    }

    /// Undoes [`freeze`](Self::freeze): `SIGCONT` to the postmaster and its
    /// children.
    ///
    /// # Errors
    ///
    /// As for [`freeze`](Self::freeze).
    pub fn thaw(&self, index: usize) -> Result<(), ClusterError> {
        self.signal_node(index, Signal::SIGCONT, "thaw", false)
    }

    /// Sends `signal` to node `index`'s postmaster and all of its children
    /// (see [`ProcessGroup::signal_tree`]) and records it as `frozen` or not.
    fn signal_node(
        &self,
        index: usize,
        signal: Signal,
        operation: &str,
        frozen: bool,
    ) -> Result<(), ClusterError> {
        let mut inner = self.lock();
        let node = inner.node_mut(index)?;
        let Some(server) = &node.server else {
            return Err(not_running(&node.name, operation));
        };
        let group = ProcessGroup::of(&server.child);
        group
            .signal_tree(signal)
            .map_err(|source| signal_error(&node.name, signal, group, source))?;
        node.frozen = frozen;
        Ok(())
    }

    /// Stops node `index` with a fast shutdown (`SIGINT`: active
    /// transactions are rolled back, a shutdown checkpoint is written) and
    /// waits for the postmaster to exit. A frozen node is thawed first.
    ///
    /// # Errors
    ///
    /// [`ClusterError::NoSuchNode`], [`ClusterError::InvalidState`] when it
    /// is not running, [`ClusterError::CommandTimeout`] when it has not
    /// exited within the start-up timeout (it is then killed).
    pub async fn stop_graceful(&self, index: usize) -> Result<(), ClusterError> {
        {
            let mut inner = self.lock();
            let node = inner.node_mut(index)?;
            let frozen = node.frozen;
            let name = node.name.clone();
            let Some(server) = node.server.as_mut() else {
                return Err(not_running(&name, "stop"));
            };
            server.disarm();
            let group = ProcessGroup::of(&server.child);
            if frozen {
                group
                    .signal_tree(Signal::SIGCONT)
                    .map_err(|source| signal_error(&name, Signal::SIGCONT, group, source))?;
            }
            nix::sys::signal::kill(group.pid(), Signal::SIGINT)
                .map_err(|source| signal_error(&name, Signal::SIGINT, group, source))?;
            node.frozen = false;
        }
        self.wait_exit(index, self.opts.startup_timeout).await
    }

    /// Waits until node `index`'s postmaster has exited and reaps it; kills
    /// it after `timeout`. The child stays in the node state while waiting,
    /// so a cancelled wait still leaves it to `Drop`.
    async fn wait_exit(&self, index: usize, timeout: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut inner = self.lock();
                let node = inner.node_mut(index)?;
                let Some(server) = node.server.as_mut() else {
                    return Ok(());
                };
                let exited = !matches!(server.child.try_wait(), Ok(None));
                if exited {
                    node.server = None;
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    let mut server = node.server.take().expect("checked above");
                    let name = node.name.clone();
                    let _ = ProcessGroup::of(&server.child).signal_tree(Signal::SIGKILL);
                    process::wait_blocking(&mut server.child, Duration::from_secs(10));
                    return Err(ClusterError::CommandTimeout {
                        command: format!("fast shutdown of {name}"),
                        timeout,
                    });
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Starts node `index` again from its existing data directory on the
    /// same port (after [`kill`](Self::kill) or
    /// [`stop_graceful`](Self::stop_graceful)) and waits until it accepts
    /// connections. Its configuration is left as it was: a former primary
    /// whose standby was promoted meanwhile comes back as a second primary
    /// on the old timeline (split brain).
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidState`] when it is running, otherwise as for
    /// start-up.
    pub async fn restart(&self, index: usize) -> Result<(), ClusterError> {
        {
            let mut inner = self.lock();
            let node = inner.node_mut(index)?;
            if node.server.is_some() {
                return Err(ClusterError::InvalidState {
                    node: node.name.clone(),
                    operation: "restart".to_owned(),
                    reason: "it is running; kill or stop it first".to_owned(),
                });
            }
        }
        self.spawn_server(index)?;
        self.wait_ready(index, None).await
    }

    /// Promotes standby `index` (`SELECT pg_promote(true, 60)`), then runs a
    /// `CHECKPOINT` on it so that its control file shows the new timeline
    /// (which `pg_rewind` and `pg_control_checkpoint()` read). The cluster
    /// treats it as the primary from then on. Other standbys keep following
    /// their old upstream; see [`follow`](Self::follow).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Query`] (e.g. when it is not in recovery),
    /// [`ClusterError::InvalidState`] when promotion did not finish.
    pub async fn promote(&self, index: usize) -> Result<(), ClusterError> {
        let info = self.info(index)?;
        promote_at(&info.name, info.port, self.opts.query_timeout).await?;
        let mut inner = self.lock();
        inner.nodes[index].role = PgRole::Primary;
        inner.primary = index;
        Ok(())
    }

    /// Turns node `index` (typically a former primary) into a standby of
    /// `new_primary`: stops it if running, runs `pg_rewind` against the new
    /// primary (which also performs crash recovery first if the node was
    /// killed), writes `standby.signal` and a `primary_conninfo` pointing at
    /// the new primary, starts it and waits until it is in recovery and
    /// streaming from the new primary.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidState`] when `index == new_primary`,
    /// [`ClusterError::CommandFailed`] when `pg_rewind` fails, otherwise as
    /// for start-up.
    pub async fn rejoin_as_standby(
        &self,
        index: usize,
        new_primary: usize,
    ) -> Result<(), ClusterError> {
        let info = self.info(index)?;
        let source = self.info(new_primary)?;
        if index == new_primary {
            return Err(ClusterError::InvalidState {
                node: info.name,
                operation: "rejoin".to_owned(),
                reason: "a node cannot follow itself".to_owned(),
            });
        }
        if self.node(index).running {
            self.stop_graceful(index).await?;
        }
        // pg_rewind reads the source's timeline from its control file.
        self.exec(new_primary, "CHECKPOINT").await?;
        // pg_rewind's crash recovery runs a single-user server, which
        // refuses standby mode.
        for signal_file in ["standby.signal", "recovery.signal"] {
            remove_if_exists(&info.data_dir.join(signal_file))?;
        }
        let rewind = self.bin_dir.join("pg_rewind");
        let mut cmd = self.user.command(&rewind, &info.node_dir);
        cmd.arg("--target-pgdata")
            .arg(&info.data_dir)
            .arg("--source-server")
            .arg(conninfo(source.port))
            .arg("--no-sync");
        process::run(cmd, self.opts.startup_timeout).await?;
        self.lock().nodes[index].role = PgRole::Standby {
            upstream: new_primary,
        };
        self.write_node_conf(index)?;
        self.spawn_server(index)?;
        self.wait_ready(index, Some(true)).await?;
        self.wait_streaming(new_primary, index).await
    }

    /// Points standby `index` at `new_primary` (rewrites its
    /// `primary_conninfo` and reloads the configuration) and waits until it
    /// streams from it. The standby must not be ahead of the new primary's
    /// timeline fork (otherwise use
    /// [`rejoin_as_standby`](Self::rejoin_as_standby)).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Query`], or [`ClusterError::NotReady`] when it does
    /// not start streaming.
    pub async fn follow(&self, index: usize, new_primary: usize) -> Result<(), ClusterError> {
        self.info(new_primary)?;
        {
            let mut inner = self.lock();
            inner.node_mut(index)?.role = PgRole::Standby {
                upstream: new_primary,
            };
        }
        self.write_node_conf(index)?;
        let _: bool = self.query_scalar(index, "SELECT pg_reload_conf()").await?;
        self.wait_streaming(new_primary, index).await
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
