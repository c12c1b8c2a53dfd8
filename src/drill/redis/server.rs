//! A server of a [`LocalRedisCluster`]: its configuration file, its
//! `redis-server` process (with a watchdog), and waiting until it answers
//! or until some condition on it holds.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::queries::command_on;
use super::{ClusterError, LocalRedisCluster, POLL, ProcInfo, Target};
use crate::drill::process::{self, ServerProcess};

impl LocalRedisCluster {
    /// Writes node `index`'s `redis.conf` from the options and its current
    /// port. It never names a master: replicas get theirs on the command
    /// line at first start, so a [`restart`](Self::restart) starts a master.
    pub(super) fn write_node_conf(&self, index: usize) -> Result<(), ClusterError> {
        let (port, dir, config_path) = {
            let inner = self.lock();
            let n = &inner.nodes[index];
            (n.port, n.dir.clone(), n.config_path.clone())
        };
        let appendonly = if self.opts.aof { "yes" } else { "no" };
        let mut text = String::from("# Written by failover-pool's LocalRedisCluster.\n");
        let directives: Vec<(&str, String)> = vec![
            ("bind", "127.0.0.1".into()),
            ("port", port.to_string()),
            ("dir", quote(&dir.to_string_lossy())),
            ("protected-mode", "no".into()),
            ("daemonize", "no".into()),
            ("logfile", quote("")),
            ("loglevel", "notice".into()),
            ("save", quote("")),
            ("appendonly", appendonly.into()),
            ("dbfilename", "dump.rdb".into()),
            ("repl-diskless-sync", "yes".into()),
            ("repl-diskless-sync-delay", "0".into()),
            ("replica-announce-ip", "127.0.0.1".into()),
            ("replica-serve-stale-data", "yes".into()),
            ("replica-read-only", "yes".into()),
        ];
        for (name, value) in &directives {
            let _ = writeln!(text, "{name} {value}");
        }
        for (name, value) in &self.opts.settings {
            let _ = writeln!(text, "{name} {value}");
        }
        fs::write(&config_path, text)
            .map_err(|e| ClusterError::io(format!("could not write {}", config_path.display()), e))
    }

    /// Spawns the server for `target` in its own process group, logging to
    /// its log file, plus its watchdog. A sentinel runs with `--sentinel`;
    /// a node with `replica_of` runs with `--replicaof 127.0.0.1 <port>`.
    pub(super) fn spawn_server(
        &self,
        target: Target,
        replica_of: Option<u16>,
    ) -> Result<(), ClusterError> {
        let mut inner = self.lock();
        let proc = inner.get_mut(target)?;
        let open_log = || {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&proc.log_path)
                .map_err(|e| {
                    ClusterError::io(format!("could not open {}", proc.log_path.display()), e)
                })
        };
        let mut cmd = server_command(&self.server_bin, &proc.dir);
        cmd.arg(&proc.config_path)
            .stdout(Stdio::from(open_log()?))
            .stderr(Stdio::from(open_log()?));
        if matches!(target, Target::Sentinel(_)) {
            cmd.arg("--sentinel");
        }
        if let Some(port) = replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &port.to_string()]);
        }
        proc.server = Some(ServerProcess::spawn(&mut cmd, &proc.name)?);
        proc.frozen = false;
        Ok(())
    }

    /// Starts `target` for the first time (see
    /// [`spawn_server`](Self::spawn_server)) and waits until it answers
    /// `PING`. If its port was taken meanwhile (by another process), picks
    /// a new one, rewrites its configuration with `write_conf` and tries
    /// again.
    pub(super) async fn start_fresh(
        &self,
        target: Target,
        replica_of: Option<u16>,
        write_conf: impl Fn() -> Result<(), ClusterError>,
    ) -> Result<(), ClusterError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.spawn_server(target, replica_of)?;
            match self.wait_ping(target).await {
                Err(ClusterError::ServerExited { log_tail, .. })
                    if attempt < 3 && log_tail.contains("Address already in use") =>
                {
                    let port = process::free_port()?;
                    self.lock().get_mut(target)?.port = port;
                    write_conf()?;
                }
                other => return other,
            }
        }
    }

    /// Polls until `target` answers `PING` with `PONG` (a node still
    /// loading its data answers `LOADING` and is waited for).
    pub(super) async fn wait_ping(&self, target: Target) -> Result<(), ClusterError> {
        let info = self.proc_info(target)?;
        let timeout = self.opts.query_timeout;
        let info = &info;
        self.poll_until(info, "it to answer PING", || async move {
            let pong: String = command_on(&info.name, info.port, &["PING"], timeout).await?;
            Ok(pong == "PONG")
        })
        .await
    }

    /// Repeats `check` until it returns true, the server exits
    /// ([`ClusterError::ServerExited`]) or the start-up timeout passes
    /// ([`ClusterError::NotReady`] with the last error and the log tail).
    pub(super) async fn poll_until<F, Fut>(
        &self,
        info: &ProcInfo,
        what: &str,
        mut check: F,
    ) -> Result<(), ClusterError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool, ClusterError>>,
    {
        let began = Instant::now();
        let timeout = self.opts.startup_timeout;
        let mut last_error: String;
        loop {
            if let Some(status) = self.exit_status(info.target) {
                return Err(ClusterError::ServerExited {
                    node: info.name.clone(),
                    status,
                    log_tail: log_excerpt(&info.log_path),
                });
            }
            match check().await {
                Ok(true) => return Ok(()),
                Ok(false) => last_error = "condition not met yet".to_owned(),
                Err(e) => last_error = crate::error::chain(&e),
            }
            if began.elapsed() >= timeout {
                return Err(ClusterError::NotReady {
                    node: info.name.clone(),
                    what: what.to_owned(),
                    waited: began.elapsed(),
                    last_error,
                    log_tail: log_excerpt(&info.log_path),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// If `target`'s server has exited: reaps it, clears it and returns the
    /// exit status as text.
    pub(super) fn exit_status(&self, target: Target) -> Option<String> {
        let mut inner = self.lock();
        let proc = inner.get_mut(target).ok()?;
        let status = proc.server.as_mut()?.exit_status()?;
        if let Some(mut server) = proc.server.take() {
            server.disarm();
        }
        proc.frozen = false;
        Some(status)
    }
}

/// A [`Command`] for `redis-server` in `cwd`, in a process group of its
/// own, with stdin closed.
fn server_command(program: &Path, cwd: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd).stdin(Stdio::null()).process_group(0);
    cmd
}

/// The last lines of a server log, headed by its path.
pub(super) fn log_excerpt(path: &Path) -> String {
    format!(
        "last lines of {}:\n{}",
        path.display(),
        process::log_tail(path, 20)
    )
}

/// A `redis.conf` string argument: double-quoted, with backslashes and
/// double quotes escaped.
pub(super) fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_strings_are_quoted() {
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("/tmp/a b"), "\"/tmp/a b\"");
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
