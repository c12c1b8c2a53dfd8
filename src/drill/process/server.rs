//! [`ServerProcess`]: a server process of a drill cluster (a postmaster,
//! a `redis-server`, a sentinel) together with the watchdog that kills it
//! if this process dies without cleaning up.

use std::process::{Child, Command};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{ProcessGroup, describe, spawn_watchdog, wait_blocking};
use crate::drill::ClusterError;

/// A running server and its watchdog (see
/// [`spawn_watchdog`](super::spawn_watchdog)).
#[derive(Debug)]
pub(crate) struct ServerProcess {
    /// The server process (the leader of its own process group).
    pub(crate) child: Child,
    watchdog: Option<Child>,
}

impl ServerProcess {
    /// Spawns `cmd`, which must start a process group of its own
    /// (`process_group(0)`), and a watchdog for it. `node` names the
    /// server in the warning logged when the watchdog cannot start.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Spawn`] when the server cannot be started.
    pub(crate) fn spawn(cmd: &mut Command, node: &str) -> Result<ServerProcess, ClusterError> {
        let command = describe(cmd);
        let child = cmd
            .spawn()
            .map_err(|source| ClusterError::Spawn { command, source })?;
        let watchdog = match spawn_watchdog(child.id()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(node, error = %e, "could not start the server watchdog");
                None
            }
        };
        Ok(ServerProcess { child, watchdog })
    }

    /// The server's process group.
    pub(crate) fn group(&self) -> ProcessGroup {
        ProcessGroup::of(&self.child)
    }

    /// Kills and reaps the watchdog, so that it can never fire. Call it
    /// before stopping the server on purpose.
    pub(crate) fn disarm(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    /// Disarms the watchdog, then kills the server with all its children
    /// (`SIGCONT` first, so a frozen server dies as promptly) and reaps it,
    /// waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// The `errno` of signalling the group with `SIGKILL`.
    pub(crate) fn kill_and_reap(&mut self, timeout: Duration) -> nix::Result<()> {
        self.disarm();
        let group = self.group();
        let _ = group.signal_tree(Signal::SIGCONT);
        let result = group.signal_tree(Signal::SIGKILL);
        wait_blocking(&mut self.child, timeout);
        result
    }

    /// If the server has exited: its exit status as text (it is reaped);
    /// `None` while it runs.
    pub(crate) fn exit_status(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(status.to_string()),
            Err(e) => Some(format!("unknown status: {e}")),
        }
    }
}
