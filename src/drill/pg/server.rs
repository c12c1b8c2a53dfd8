//! A node's server: its data directory (from the template or a
//! `pg_basebackup`), its settings (`drill_node.conf`), its postmaster
//! process with a watchdog, and waiting until it is ready or streaming.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::options::conninfo;
use super::queries::{connect_port, timed};
use super::{
    ClusterError, DB_USER, LocalPgCluster, NODE_CONF, NodeInfo, POLL, PgRole, Server, template,
};
use crate::drill::process;

impl LocalPgCluster {
    /// Creates the first primary's data directory: a copy of the cached
    /// template, or a fresh `initdb`.
    pub(super) async fn init_primary(&self) -> Result<(), ClusterError> {
        let info = self.info(0)?;
        let timeout = self.opts.startup_timeout;
        if self.opts.reuse_template {
            template::copy_to(&self.bin_dir, &self.user, &info.data_dir, timeout).await?;
        } else {
            template::initdb(&self.bin_dir, &self.user, &info.data_dir, timeout).await?;
        }
        self.write_node_conf(0)
    }

    /// `pg_basebackup` of the primary into node `index`, then start it.
    pub(super) async fn create_standby(&self, index: usize) -> Result<(), ClusterError> {
        let info = self.info(index)?;
        let primary = self.info(0)?;
        let mut cmd = self
            .user
            .command(self.bin_dir.join("pg_basebackup"), &info.node_dir);
        cmd.arg("-D")
            .arg(&info.data_dir)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                DB_USER,
            ])
            .args(["-X", "stream", "-c", "fast", "--no-sync"]);
        process::run(cmd, self.opts.startup_timeout).await?;
        self.write_node_conf(index)?;
        self.start_fresh(index, Some(true)).await?;
        self.wait_streaming(0, index).await
    }

    /// Starts a node for the first time; if its port was taken meanwhile
    /// (another process got it), picks a new one and tries again.
    pub(super) async fn start_fresh(
        &self,
        index: usize,
        recovery: Option<bool>,
    ) -> Result<(), ClusterError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.spawn_server(index)?;
            match self.wait_ready(index, recovery).await {
                Err(ClusterError::ServerExited { log_tail, .. })
                    if attempt < 3
                        && (log_tail.contains("could not bind")
                            || log_tail.contains("could not create any TCP/IP sockets")) =>
                {
                    let port = process::free_port()?;
                    self.lock().nodes[index].port = port;
                    self.write_node_conf(index)?;
                }
                other => return other,
            }
        }
    }

    /// Writes `drill_node.conf` (and `standby.signal` for a standby) for
    /// node `index` from its current role and port.
    pub(super) fn write_node_conf(&self, index: usize) -> Result<(), ClusterError> {
        let (name, port, role, data_dir, upstream_port) = {
            let inner = self.lock();
            let n = &inner.nodes[index];
            let upstream_port = match n.role {
                PgRole::Standby { upstream } => Some(inner.nodes[upstream].port),
                PgRole::Primary => None,
            };
            (
                n.name.clone(),
                n.port,
                n.role,
                n.data_dir.clone(),
                upstream_port,
            )
        };
        let socket_dir = self.root.to_string_lossy();
        // Unix socket paths are limited to ~107 bytes; TCP is what matters.
        let socket_dir = if socket_dir.len() > 80 {
            ""
        } else {
            &socket_dir
        };
        let mut settings: Vec<(&str, String)> = vec![
            ("listen_addresses", "127.0.0.1".into()),
            ("port", port.to_string()),
            ("unix_socket_directories", socket_dir.into()),
            ("cluster_name", name.clone()),
            ("max_connections", "60".into()),
            ("shared_buffers", "16MB".into()),
            ("dynamic_shared_memory_type", "mmap".into()),
            ("wal_level", "replica".into()),
            ("max_wal_senders", "10".into()),
            ("max_replication_slots", "10".into()),
            ("wal_keep_size", "256MB".into()),
            ("hot_standby", "on".into()),
            ("hot_standby_feedback", "on".into()),
            ("wal_log_hints", "on".into()),
            ("full_page_writes", "on".into()),
            ("fsync", "off".into()),
            ("wal_receiver_status_interval", "1s".into()),
            ("wal_retrieve_retry_interval", "500ms".into()),
            ("wal_receiver_timeout", "10s".into()),
            ("wal_sender_timeout", "10s".into()),
            ("recovery_target_timeline", "latest".into()),
            ("logging_collector", "off".into()),
            ("log_line_prefix", "%m [%p] %q%a ".into()),
            ("log_checkpoints", "off".into()),
        ];
        let sync_names = role == PgRole::Primary && self.opts.synchronous;
        if sync_names {
            settings.push(("synchronous_standby_names", "ANY 1 (*)".into()));
        }
        if let Some(up) = upstream_port {
            settings.push((
                "primary_conninfo",
                format!("{} application_name={name} connect_timeout=5", conninfo(up)),
            ));
        }
        let mut text = String::from("# Written by failover-pool's LocalPgCluster.\n");
        for (k, v) in settings {
            text.push_str(&format!("{k} = {}\n", quote_setting(&v)));
        }
        for (k, v) in &self.opts.settings {
            text.push_str(&format!("{k} = {}\n", quote_setting(v)));
        }
        self.user.write_file(&data_dir.join(NODE_CONF), text)?;
        self.lock().nodes[index].sync_names = sync_names;
        if upstream_port.is_some() {
            self.user.write_file(&data_dir.join("standby.signal"), "")?;
        }
        Ok(())
    }

    /// Spawns `postgres -D <data>` for node `index` in its own process
    /// group, logging to the node's log file, plus its watchdog.
    pub(super) fn spawn_server(&self, index: usize) -> Result<(), ClusterError> {
        let mut inner = self.lock();
        let node = inner.node_mut(index)?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(|e| {
                ClusterError::io(format!("could not open {}", node.log_path.display()), e)
            })?;
        self.user.chown(&node.log_path)?;
        let log_err = log.try_clone().map_err(|e| {
            ClusterError::io(format!("could not open {}", node.log_path.display()), e)
        })?;
        let mut cmd = self
            .user
            .command(self.bin_dir.join("postgres"), &node.node_dir);
        cmd.arg("-D")
            .arg(&node.data_dir)
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        node.server = Some(Server::spawn(&mut cmd, &node.name)?);
        node.frozen = false;
        Ok(())
    }

    /// Polls until node `index` answers a query (and, with `recovery`, its
    /// `pg_is_in_recovery()` matches).
    pub(super) async fn wait_ready(
        &self,
        index: usize,
        recovery: Option<bool>,
    ) -> Result<(), ClusterError> {
        let info = self.info(index)?;
        let what = match recovery {
            Some(true) => "it to accept connections in recovery",
            Some(false) => "it to accept connections as a primary",
            None => "it to accept connections",
        };
        let timeout = self.opts.query_timeout.min(Duration::from_secs(2));
        let info = &info;
        self.poll_until(info, what, || async move {
            let client = connect_port(&info.name, info.port, timeout).await?;
            let row = client
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await
                .map_err(|source| ClusterError::Query {
                    node: info.name.clone(),
                    sql: "SELECT pg_is_in_recovery()".into(),
                    source,
                })?;
            let in_recovery: bool = row.get(0);
            Ok(recovery.is_none_or(|want| want == in_recovery))
        })
        .await
    }

    /// Polls the primary until it shows `standby` streaming in
    /// `pg_stat_replication` (as sync or quorum candidate when the cluster
    /// is synchronous and `primary` has synchronous_standby_names).
    pub(super) async fn wait_streaming(
        &self,
        primary: usize,
        standby: usize,
    ) -> Result<(), ClusterError> {
        let standby_info = self.info(standby)?;
        let primary_info = self.info(primary)?;
        let want_sync = self.lock().nodes[primary].sync_names;
        let what = format!(
            "{} to show it {} in pg_stat_replication",
            primary_info.name,
            if want_sync {
                "as a synchronous standby"
            } else {
                "streaming"
            }
        );
        let sql = if want_sync {
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 \
             AND state = 'streaming' AND sync_state IN ('sync', 'quorum')"
        } else {
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 \
             AND state = 'streaming'"
        };
        let (standby_info, primary_info) = (&standby_info, &primary_info);
        self.poll_until(standby_info, &what, || async move {
            let client = connect_port(
                &primary_info.name,
                primary_info.port,
                self.opts.query_timeout,
            )
            .await?;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&standby_info.name];
            let query = client.query_one(sql, &params);
            let row = timed(&primary_info.name, sql, self.opts.query_timeout, query).await?;
            Ok(row.get::<_, i64>(0) > 0)
        })
        .await
    }

    /// Repeats `check` until it returns true, the node's postmaster exits
    /// ([`ClusterError::ServerExited`]) or the start-up timeout passes
    /// ([`ClusterError::NotReady`] with the last error and the log tail).
    pub(super) async fn poll_until<F, Fut>(
        &self,
        info: &NodeInfo,
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
            if let Some(status) = self.exit_status(info.index) {
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

    /// If node `index`'s postmaster has exited: reaps it, clears the node's
    /// server and returns the exit status as text.
    fn exit_status(&self, index: usize) -> Option<String> {
        let mut inner = self.lock();
        let node = inner.nodes.get_mut(index)?;
        let status = node.server.as_mut()?.exit_status()?;
        let mut server = node.server.take()?;
        server.disarm();
        Some(status)
    }
}

/// The last lines of a server log, headed by its path.
fn log_excerpt(path: &Path) -> String {
    format!(
        "last lines of {}:\n{}",
        path.display(),
        process::log_tail(path, 20)
    )
}

/// A `postgresql.conf` value: single-quoted, with quotes and backslashes
/// escaped.
fn quote_setting(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_quoted() {
        assert_eq!(quote_setting("ANY 1 (*)"), "'ANY 1 (*)'");
        assert_eq!(quote_setting("it's"), "'it''s'");
        assert_eq!(quote_setting(r"a\b"), r"'a\\b'");
    }
}
